#!/usr/bin/env python3
"""The least memory traffic a GPU training step of each reference workload can have, and what that
and its FLOPs allow on a card: a roofline per workload, to set the measured step against.

Counted (a lower bound: every tensor crosses memory the fewest times the step's data flow allows):
- optimizer (SGD, momentum): read weight, gradient, momentum; write weight, momentum (20 bytes a
  parameter), plus the 16-bit copy of the weights written in bf16 (2 bytes);
- GEMM operands: each weight read forward and once more for the input gradient, in the operand
  type (4 bytes fp32, 2 bf16), and its fp32 gradient written once;
- activations: every tensor forward keeps for backward written once and read once (in the
  activation type; gpt's residual stream and LayerNorm statistics in fp32), the logits and their
  gradient written once and read twice, the inputs read once.

    python3 scripts/step_traffic.py [--fp32-tflops 51.0] [--bf16-tflops 802.7] [--tbps 4.29] [--steps ms.json]

Ceilings default to `tandem doctor --measure` on the H200 (docs/performance.md). FLOPs are
3 × forward FLOPs (forward, input gradient, weight gradient), as Tandem and torch_bench.py count them.
"""
import argparse

BATCH = {"mlp": 256, "mlp-wide": 256, "cnn": 256, "lstm": 128, "gpt": 16}


def mlp(dims, B, e):
    params = sum(i * o + o for i, o in zip(dims, dims[1:]))
    weights = sum(i * o for i, o in zip(dims, dims[1:]))
    flops = 2 * B * weights
    saved = B * dims[0] * 4 + sum(B * o * e for o in dims[1:-1])   # fp32 input, hidden outputs
    logits = B * dims[-1] * e
    return params, weights, flops, 2 * saved + 4 * logits


def cnn(B, e):
    # Conv 3→32 3×3 pad 1, ReLU, pool 2; 32→64, ReLU, pool 2; 64→128, ReLU; global average; Linear 128→10.
    convs = [(3, 32, 32), (32, 64, 16), (64, 128, 8)]   # (in, out, side)
    weights = sum(ci * co * 9 for ci, co, _ in convs) + 128 * 10
    params = weights + sum(co for _, co, _ in convs) + 10
    flops = sum(2 * B * s * s * co * ci * 9 for ci, co, s in convs) + 2 * B * 128 * 10
    saved = B * 3 * 32 * 32 * 4                                   # the fp32 input
    for i, (ci, co, s) in enumerate(convs):
        saved += B * co * s * s * e                               # the convolution's output (after ReLU)
        if i < 2:
            saved += B * co * (s // 2) ** 2 * e                   # the pooled output
    return params, weights, flops, 2 * saved + 4 * B * 10 * e


def lstm(B, e):
    T, I, H, O = 64, 32, 256, 32
    weights = 4 * H * I + 4 * H * H + 4 * H * H + 4 * H * H + O * H
    params = weights + 2 * 2 * 4 * H + O
    flops = 2 * B * T * (4 * H * I + 4 * H * H) + 2 * B * T * (4 * H * H + 4 * H * H) + 2 * B * O * H
    # Per layer and step: the four gates (kept for backward), h and c.
    saved = 2 * B * T * (4 * H + 2 * H) * 4 + B * T * I * 4
    return params, weights, flops, 2 * saved + 4 * B * O * 4


def gpt(B, e):
    T, C, V, L, P = 256, 512, 8192, 6, 256
    N = B * T
    block = 3 * C * C + 3 * C + C * C + C + 4 * C * C + 4 * C + 4 * C * C + C + 4 * C
    params = V * C + P * C + L * block + 2 * C + V * C + V
    weights = L * (3 * C * C + C * C + 8 * C * C) + V * C        # GEMM weights (the embeddings are gathered)
    H = 8
    attention = L * 2 * 2 * B * T * T * C                          # QKᵀ and PV, counted whole as Tandem does
    flops = 2 * N * weights + attention
    per_block = (N * C * e * 4            # ln1, ln2, merged, out-projection output
                 + N * 3 * C * e          # qkv
                 + 2 * N * 4 * C * e      # before and after GELU
                 + 2 * N * C * 4          # residual and mid (fp32)
                 + 2 * 2 * N * 4          # LayerNorm statistics
                 + B * H * T * 4)         # attention's log-sum-exp
    saved = L * per_block + N * C * 4 + N * C * e + N * 4          # embedding output, final LayerNorm
    logits = N * V * e
    return params, weights, flops, 2 * saved + 4 * logits


def traffic(model, precision):
    e = 2 if precision == "bf16" else 4
    B = BATCH[model]
    if model in ("mlp", "mlp-wide"):
        dims = [784, 1024, 1024, 10] if model == "mlp" else [1024, 4096, 4096, 4096, 10]
        params, weights, flops, activations = mlp(dims, B, e)
    else:
        params, weights, flops, activations = {"cnn": cnn, "lstm": lstm, "gpt": gpt}[model](B, e)
    optimizer = params * (20 + (2 if e == 2 else 0))
    operands = weights * (2 * e + 4)
    return 3 * flops, optimizer + operands + activations, params


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--fp32-tflops", type=float, default=51.0)
    a.add_argument("--bf16-tflops", type=float, default=802.7)
    a.add_argument("--tbps", type=float, default=4.29)
    args = a.parse_args()
    print("| model | precision | GFLOP/step | MB/step (least) | FLOP time at ceiling ms | byte time at copy rate ms | bound ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in BATCH:
        for precision in ("fp32", "bf16"):
            flops, bytes_, params = traffic(model, precision)
            ceiling = args.fp32_tflops if precision == "fp32" else args.bf16_tflops
            t_flop = flops / (ceiling * 1e12) * 1e3
            t_byte = bytes_ / (args.tbps * 1e12) * 1e3
            print(f"| {model} | {precision} | {flops / 1e9:.1f} | {bytes_ / 1e6:.0f} | {t_flop:.3f} | {t_byte:.3f} | {max(t_flop, t_byte):.3f} |")


if __name__ == "__main__":
    main()
