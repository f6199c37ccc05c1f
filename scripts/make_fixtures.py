#!/usr/bin/env python3
"""Write the PyTorch reference fixtures that Tandem's Swift tests compare against.

    ~/torchenv/bin/python scripts/make_fixtures.py            # writes Tests/TandemModelsTests/Fixtures/
    ~/torchenv/bin/python scripts/make_fixtures.py --out DIR  # somewhere else

Needs torch, numpy and safetensors (see shared/WORKLOADS.md for the venv). CI never runs
this script: CI has no PyTorch, so the .safetensors files it writes are committed and the
Swift tests only read them. Re-run it (and commit the results) only when the fixture
definitions below change. Output is deterministic for a given PyTorch version
(torch.manual_seed(0), one thread, float32 everywhere except integer labels).

One file per model, `<model>.safetensors`, using the exact architectures (hence the exact
state_dict names) of shared/bench/torch_bench.py's `make_model`, at small sizes (see
CONFIGS; each file's `__metadata__["config"]` holds them as JSON). Tensors in each file:

  param.<name>      initial weights (state_dict names: `0.weight`, `rnn.weight_ih_l0`,
                    `blocks.0.att.in_proj_weight`, ...)
  x, y              the one batch (y int64 for class / token targets, float32 otherwise)
  loss [1]          initial loss;  grad.<name>  its gradients
  sgd.<name>        after 2 steps SGD(lr=0.1, momentum=0.9, weight_decay=0.01), same batch
  sgd_loss2 [1]     loss at step 2 (before the 2nd update)
  nesterov.<name>   after 2 steps SGD(lr=0.1, momentum=0.9, nesterov=True);  nesterov_loss2 [1]
  adamw.<name>      after 2 steps AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8,
                    weight_decay=0.01);  adamw_loss2 [1]
  clip.<name>       after 1 step SGD(lr=0.1) preceded by clip_grad_norm_(max_norm=0.5)
  clip_total_norm [1]  the (pre-clipping) norm clip_grad_norm_ returned

Each optimizer run starts from a fresh copy of the initial weights.

`ops.safetensors` holds single-op references (gelu, layernorm, conv, maxpool, ce, attn,
lstm; see make_ops) so Swift can check PyTorch semantics precisely. The script also
re-implements MultiheadAttention and LSTM by hand and asserts they match PyTorch, which
pins down the conventions the Swift side must follow (see check_semantics).
"""
import argparse, copy, json, math, os, sys

import torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "Tests", "TandemModelsTests", "Fixtures")

# Sizes of each fixture model. Structures are torch_bench.py's; only sizes are small.
CONFIGS = {
    "mlp": dict(dims=[20, 16, 12, 10], batch=6),
    "mlp-wide": dict(dims=[24, 32, 32, 32, 10], batch=6),
    # torch_bench's cnn structure with narrower channels (3->8->16->32, Linear 32->10) and a
    # 16x16 input, so the fixture stays small; the names are those of the full model.
    "cnn": dict(channels=[3, 8, 16, 32], classes=10, batch=2, spatial=16),
    "lstm": dict(input=8, hidden=16, layers=2, out=8, batch=3, steps=5),
    "gpt": dict(vocab=64, d=32, heads=4, layers=2, T=8, batch=2, pos_init="randn*0.02"),
}

OPTIMIZERS = {
    "sgd": dict(kind="SGD", lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=False, steps=2),
    "nesterov": dict(kind="SGD", lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=True, steps=2),
    "adamw": dict(kind="AdamW", lr=0.01, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, steps=2),
    "clip": dict(kind="SGD", lr=0.1, clip_grad_norm=0.5, steps=1),
}


# ---------------------------------------------------------------- models (torch_bench layouts)

def make_model(name, c):
    if name in ("mlp", "mlp-wide"):
        d = c["dims"]; layers = []
        for i in range(len(d) - 1):
            if i: layers.append(nn.ReLU())
            layers.append(nn.Linear(d[i], d[i + 1]))
        return nn.Sequential(*layers)
    if name == "cnn":
        ch = c["channels"]
        return nn.Sequential(nn.Conv2d(ch[0], ch[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(ch[1], ch[2], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(ch[2], ch[3], 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(ch[3], c["classes"]))
    if name == "lstm":
        class M(nn.Module):
            def __init__(s):
                super().__init__()
                s.rnn = nn.LSTM(c["input"], c["hidden"], num_layers=c["layers"], batch_first=True)
                s.head = nn.Linear(c["hidden"], c["out"])
            def forward(s, x):
                y, _ = s.rnn(x); return s.head(y[:, -1])
        return M()
    if name == "gpt":
        class Block(nn.Module):
            def __init__(s, d, h):
                super().__init__(); s.ln1 = nn.LayerNorm(d); s.att = nn.MultiheadAttention(d, h, batch_first=True); s.ln2 = nn.LayerNorm(d)
                s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
            def forward(s, x, mask):
                a = s.ln1(x); x = x + s.att(a, a, a, attn_mask=mask, need_weights=False)[0]; return x + s.mlp(s.ln2(x))
        class G(nn.Module):
            def __init__(s, V, d, h, L, T):
                super().__init__(); s.emb = nn.Embedding(V, d); s.pos = nn.Parameter(torch.zeros(T, d)); s.blocks = nn.ModuleList(Block(d, h) for _ in range(L)); s.ln = nn.LayerNorm(d); s.out = nn.Linear(d, V)
            def forward(s, idx):
                T = idx.shape[1]; mask = torch.triu(torch.full((T, T), float('-inf'), device=idx.device), 1)
                x = s.emb(idx) + s.pos[:T]
                for b in s.blocks: x = b(x, mask)
                return s.out(s.ln(x))
        m = G(c["vocab"], c["d"], c["heads"], c["layers"], c["T"])
        with torch.no_grad():  # torch_bench starts pos at zeros; make it non-trivial here
            m.pos.copy_(torch.randn(c["T"], c["d"]) * 0.02)
        return m
    raise SystemExit(f"unknown model {name}")


def make_batch(name, c):
    B = c["batch"]
    if name in ("mlp", "mlp-wide"):
        return torch.randn(B, c["dims"][0]), torch.randint(0, c["dims"][-1], (B,))
    if name == "cnn":
        s = c["spatial"]
        return torch.randn(B, c["channels"][0], s, s), torch.randint(0, c["classes"], (B,))
    if name == "lstm":
        return torch.randn(B, c["steps"], c["input"]), torch.randn(B, c["out"])
    if name == "gpt":
        return torch.randint(0, c["vocab"], (B, c["T"])), torch.randint(0, c["vocab"], (B, c["T"]))


def loss_fn(name, out, y):  # as torch_bench.py
    if name == "lstm": return F.mse_loss(out, y)
    if name == "gpt": return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.cross_entropy(out, y)


def one(t):
    return t.detach().reshape(1).to(torch.float32).clone()


def run_optimizer(name, model0, x, y, key):
    o = OPTIMIZERS[key]
    m = copy.deepcopy(model0)
    params = list(m.parameters())
    if o["kind"] == "AdamW":
        opt = torch.optim.AdamW(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    else:
        opt = torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0),
                              weight_decay=o.get("weight_decay", 0.0), nesterov=o.get("nesterov", False))
    losses, norm = [], None
    for _ in range(o["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(name, m(x), y); losses.append(loss.detach().clone())
        loss.backward()
        if "clip_grad_norm" in o:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm=o["clip_grad_norm"])
        opt.step()
    return m, losses, norm


def make_model_fixture(name, out_dir):
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = make_model(name, c)
    x, y = make_batch(name, c)
    T = {}
    for k, v in model.state_dict().items():
        T["param." + k] = v
    T["x"], T["y"] = x, y
    loss = loss_fn(name, model(x), y)
    loss.backward()
    T["loss"] = one(loss)
    for k, p in model.named_parameters():
        T["grad." + k] = p.grad
    model.zero_grad(set_to_none=True)
    for key in OPTIMIZERS:
        m, losses, norm = run_optimizer(name, model, x, y, key)
        for k, v in m.state_dict().items():
            T[f"{key}.{k}"] = v
        if len(losses) > 1:
            T[f"{key}_loss2"] = one(losses[1])
        if norm is not None:
            T["clip_total_norm"] = one(norm)
        assert torch.allclose(losses[0], loss), "optimizer copy diverged from the initial loss"
    T = {k: v.detach().contiguous().clone() for k, v in T.items()}
    for k, v in T.items():
        if k != "y": assert v.dtype == torch.float32 or k == "x" and name == "gpt", (k, v.dtype)
    meta = {"model": name, "config": json.dumps(c), "torch_version": torch.__version__,
            "optimizers": json.dumps(OPTIMIZERS), "seed": "0",
            "params": str(sum(p.numel() for p in model.parameters()))}
    path = os.path.join(out_dir, f"{name}.safetensors")
    save_file(T, path, metadata=meta)
    canonicalize(path)
    return path, T


# ---------------------------------------------------------------- single-op references

def make_ops(out_dir):
    torch.manual_seed(0)
    T = {}

    # GELU, exact (erf) form: 0.5 x (1 + erf(x / sqrt 2))
    x = torch.linspace(-4, 4, 50)
    T["gelu.x"], T["gelu.y"] = x, F.gelu(x)

    # LayerNorm over the last dim (biased variance, eps 1e-5 inside the sqrt)
    x = torch.randn(3, 7, requires_grad=True)
    w, b = torch.randn(7, requires_grad=True), torch.randn(7, requires_grad=True)
    y = F.layer_norm(x, (7,), w, b, 1e-5); gy = torch.randn_like(y)
    (y * gy).sum().backward()
    T.update({"layernorm.x": x, "layernorm.weight": w, "layernorm.bias": b, "layernorm.y": y,
              "layernorm.gy": gy, "layernorm.grad_x": x.grad, "layernorm.grad_weight": w.grad,
              "layernorm.grad_bias": b.grad})

    # Conv2d, stride 2, padding 1 (zero padding), cross-correlation, weight [out, in, kh, kw]
    x = torch.randn(2, 3, 7, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True); b = torch.randn(4, requires_grad=True)
    y = F.conv2d(x, w, b, stride=2, padding=1); gy = torch.randn_like(y)
    (y * gy).sum().backward()
    T.update({"conv.x": x, "conv.weight": w, "conv.bias": b, "conv.y": y, "conv.gy": gy,
              "conv.grad_x": x.grad, "conv.grad_weight": w.grad, "conv.grad_bias": b.grad})

    # MaxPool2d(2): gradient goes to the (first) arg-max of each window
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    y = F.max_pool2d(x, 2, 2); gy = torch.randn_like(y)
    (y * gy).sum().backward()
    T.update({"maxpool.x": x, "maxpool.y": y, "maxpool.gy": gy, "maxpool.grad_x": x.grad})

    # cross-entropy, mean over the batch
    logits = torch.randn(5, 7, requires_grad=True); target = torch.randint(0, 7, (5,))
    loss = F.cross_entropy(logits, target); loss.backward()
    T.update({"ce.logits": logits, "ce.target": target, "ce.loss": one(loss), "ce.grad": logits.grad})

    # MultiheadAttention(16, 4, batch_first) self-attention with a causal float mask
    att = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():  # PyTorch initialises both biases to zero; make them non-trivial
        att.in_proj_bias.copy_(torch.randn(48) * 0.1); att.out_proj.bias.copy_(torch.randn(16) * 0.1)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mask = torch.triu(torch.full((5, 5), float('-inf')), 1)
    y = att(x, x, x, attn_mask=mask, need_weights=False)[0]; gy = torch.randn_like(y)
    (y * gy).sum().backward()
    T.update({"attn.x": x, "attn.in_proj_weight": att.in_proj_weight, "attn.in_proj_bias": att.in_proj_bias,
              "attn.out_proj.weight": att.out_proj.weight, "attn.out_proj.bias": att.out_proj.bias,
              "attn.y": y, "attn.gy": gy, "attn.grad_x": x.grad,
              "attn.grad_in_proj_weight": att.in_proj_weight.grad, "attn.grad_in_proj_bias": att.in_proj_bias.grad,
              "attn.grad_out_proj.weight": att.out_proj.weight.grad, "attn.grad_out_proj.bias": att.out_proj.bias.grad})
    check_attention(att, x.detach(), mask, y.detach())

    # LSTM(4, 6), one layer, batch_first, zero initial state
    lstm = nn.LSTM(4, 6, num_layers=1, batch_first=True)
    x = torch.randn(2, 3, 4, requires_grad=True)
    y, (h, cst) = lstm(x); gy = torch.randn_like(y)
    (y * gy).sum().backward()
    for k, p in lstm.named_parameters():
        T["lstm." + k] = p
        T["lstm.grad_" + k] = p.grad
    T.update({"lstm.x": x, "lstm.y": y, "lstm.h_n": h, "lstm.c_n": cst, "lstm.gy": gy, "lstm.grad_x": x.grad})
    check_lstm(lstm, x.detach(), y.detach())

    T = {k: v.detach().contiguous().clone() for k, v in T.items()}
    path = os.path.join(out_dir, "ops.safetensors")
    save_file(T, path, metadata={"model": "ops", "torch_version": torch.__version__, "seed": "0",
                                 "config": json.dumps({"conv": {"stride": 2, "padding": 1}, "maxpool": {"kernel": 2, "stride": 2},
                                                       "layernorm": {"eps": 1e-5}, "attn": {"embed": 16, "heads": 4, "causal": True},
                                                       "lstm": {"input": 4, "hidden": 6, "layers": 1}})})
    canonicalize(path)
    return path, T


def canonicalize(path):
    """save_file writes the JSON header in hash-map order, so reruns differ byte-wise; rewrite
    it with sorted keys (same length, padded with spaces as the format allows; tensor offsets
    are untouched) so that regenerating unchanged fixtures gives identical files."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        canon = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        assert len(canon) <= n, (len(canon), n)
        f.seek(8); f.write(canon + b" " * (n - len(canon)))


# ---------------------------------------------------------------- hand re-implementations

def check_attention(att, x, mask, y_ref):
    """in_proj_weight is [Wq; Wk; Wv] stacked by rows (3E x E), in_proj_bias likewise;
    heads are contiguous slices of E; scores scaled by 1/sqrt(head_dim) (applied to q);
    the float mask is added to the scores before the softmax; out_proj after concat."""
    with torch.no_grad():
        E, H = att.embed_dim, att.num_heads; hd = E // H; B, L, _ = x.shape
        qkv = x @ att.in_proj_weight.T + att.in_proj_bias
        q, k, v = qkv.split(E, dim=-1)
        sh = lambda t: t.reshape(B, L, H, hd).transpose(1, 2)
        q, k, v = sh(q), sh(k), sh(v)
        s = (q / math.sqrt(hd)) @ k.transpose(-1, -2) + mask
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, L, E)
        y = o @ att.out_proj.weight.T + att.out_proj.bias
        assert torch.allclose(y, y_ref, atol=1e-5), (y - y_ref).abs().max()


def check_lstm(lstm, x, y_ref):
    """Gates stacked by rows in the order i, f, g, o (4H x in); both biases are added;
    c' = f*c + i*g, h' = o*tanh(c'); i, f, o sigmoid, g tanh."""
    with torch.no_grad():
        H = lstm.hidden_size; B, L, _ = x.shape
        h = torch.zeros(B, H); c = torch.zeros(B, H); ys = []
        for t in range(L):
            z = x[:, t] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
            i, f, g, o = z.split(H, dim=-1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh(); h = o.sigmoid() * c.tanh(); ys.append(h)
        y = torch.stack(ys, 1)
        assert torch.allclose(y, y_ref, atol=1e-6), (y - y_ref).abs().max()


def check_optimizers():
    """The update rules the fixtures encode (PyTorch defaults: dampening 0, maximize False):
    SGD: g += wd*p; buf = g (first step) else momentum*buf + g; step = g + momentum*buf if
    nesterov else buf; p -= lr*step.  AdamW: p *= 1 - lr*wd; m,v EMAs; p -= lr * m_hat /
    (sqrt(v)/sqrt(1-b2^t) + eps), m_hat = m/(1-b1^t).  clip_grad_norm_: total = L2 norm over
    all grads; coef = min(max_norm / (total + 1e-6), 1); grads *= coef."""
    torch.manual_seed(1)
    p0 = torch.randn(5); grads = [torch.randn(5), torch.randn(5)]
    for nesterov, wd in ((False, 0.01), (True, 0.0)):
        p = p0.clone().requires_grad_(); opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=wd, nesterov=nesterov)
        q = p0.clone(); buf = None
        for g in grads:
            p.grad = g.clone(); opt.step()
            d = g + wd * q; buf = d.clone() if buf is None else 0.9 * buf + d
            q = q - 0.1 * (d + 0.9 * buf if nesterov else buf)
        assert torch.allclose(p.detach(), q, atol=1e-6)
    p = p0.clone().requires_grad_(); opt = torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    q = p0.clone(); m = torch.zeros(5); v = torch.zeros(5)
    for t, g in enumerate(grads, 1):
        p.grad = g.clone(); opt.step()
        q = q * (1 - 0.01 * 0.01); m = 0.9 * m + 0.1 * g; v = 0.999 * v + 0.001 * g * g
        q = q - 0.01 * (m / (1 - 0.9 ** t)) / (v.sqrt() / math.sqrt(1 - 0.999 ** t) + 1e-8)
    assert torch.allclose(p.detach(), q, atol=1e-6)
    ps = [torch.randn(3).requires_grad_(), torch.randn(4).requires_grad_()]
    gs = [torch.randn(3), torch.randn(4)]
    for p, g in zip(ps, gs): p.grad = g.clone()
    n = torch.nn.utils.clip_grad_norm_(ps, 0.5)
    tot = torch.cat(gs).norm(); coef = min(0.5 / (tot.item() + 1e-6), 1.0)
    assert torch.allclose(n, tot) and all(torch.allclose(p.grad, g * coef) for p, g in zip(ps, gs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--models", default=",".join(CONFIGS) + ",ops")
    ap.add_argument("--config", action="append", default=[], metavar='MODEL=JSON',
                    help='override sizes, e.g. --config \'cnn={"channels": [3, 8, 16, 32]}\'')
    a = ap.parse_args()
    for o in a.config:
        m, _, js = o.partition("=")
        CONFIGS[m].update(json.loads(js))
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(a.out, exist_ok=True)
    check_optimizers()
    for name in a.models.split(","):
        path, T = make_ops(a.out) if name == "ops" else make_model_fixture(name, a.out)
        print(f"{os.path.relpath(path)}: {os.path.getsize(path):,} bytes, {len(T)} tensors")


if __name__ == "__main__":
    main()
