#!/usr/bin/env python3
"""Multi-GPU side by side: Tandem over NCCL against PyTorch DDP over NCCL, on one host.

    python3 scripts/bench_nccl.py --tandem .gpu/tandem --torch-bench .gpu/torch_bench.py \\
        --gpus 1,2,4,8 --models mlp-wide,gpt --precisions fp32,bf16 --repeats 3

For each model, precision and GPU count N (weak scaling: the GPU batch of WORKLOADS.md per
GPU), alternately, --repeats times each:
    tandem launch --gpus N -- tandem bench --device cuda --backend nccl --model M --precision P [--graph] [--compress bf16] --json
    python3 torch_bench.py --device cuda --workers N --ddp --model M --batch B [--bf16] [--graph]
(PyTorch's --graph under DDP is tried first and, if it fails, eager DDP is used and the
table says so.) Then the all-reduce bus bandwidth of both at the largest N on the same sizes:
    tandem launch --gpus N -- tandem comm --backend nccl --json
    python3 scripts/torch_allreduce.py --gpus N
Prints markdown tables: throughput medians (min–max), Tandem/PyTorch, each engine's
weak-scaling efficiency from medians of this same invocation, and busbw per size.
Standard library only.
"""
import argparse, json, os, statistics, subprocess, sys

BATCH = {"mlp": 256, "mlp-wide": 256, "cnn": 256, "lstm": 128, "gpt": 16}
HERE = os.path.dirname(os.path.abspath(__file__))


def last_json(text):
    for line in reversed((text or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run(cmd, timeout):
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if p.returncode != 0:
        return None, (p.stderr or p.stdout)[-800:]
    return p.stdout, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default=".gpu/tandem")
    ap.add_argument("--torch-bench", default=".gpu/torch_bench.py")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--gpus", default="1")
    ap.add_argument("--models", default="mlp-wide,gpt")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--raw", help="append every result JSON line here")
    ap.add_argument("--compress", choices=["none", "bf16"], default="none",
                    help="Tandem's gradients between GPUs (torch_bench.py takes no compression hook: PyTorch stays fp32)")
    a = ap.parse_args()
    gpus = sorted({int(g) for g in a.gpus.split(",")})
    raw = open(a.raw, "a", buffering=1) if a.raw else None   # line-buffered: a run stopped by a time limit keeps its lines
    R, torch_mode, failures = {}, {}, []
    for model in a.models.split(","):
        for prec in a.precisions.split(","):
            for n in gpus:
                b = BATCH[model]
                for rep in range(a.repeats):
                    tcmd = [a.tandem, "launch", "--gpus", str(n), "--", a.tandem, "bench", "--device", "cuda", "--backend", "nccl",
                            "--model", model, "--batch", str(b), "--steps", str(a.steps), "--warmup", str(a.warmup),
                            "--precision", prec, "--graph", "--json"] + (["--compress", a.compress] if a.compress != "none" else [])
                    out, err = run(tcmd, a.timeout)
                    r = last_json(out)
                    if r: R.setdefault((model, prec, n, "tandem"), []).append(r["samples_per_s"])
                    else: failures.append(("tandem", model, prec, n, err))
                    if raw and r: raw.write(json.dumps(r) + "\n")
                    mode = torch_mode.get((model, prec), "graph")
                    for attempt in ([mode] if mode == "eager" else ["graph", "eager"]):
                        pcmd = [a.python, a.torch_bench, "--device", "cuda", "--workers", str(n), "--ddp", "--model", model,
                                "--batch", str(b), "--steps", str(a.steps), "--warmup", str(a.warmup),
                                "--port", str(29700 + 7 * rep + n)] + (["--bf16"] if prec == "bf16" else []) + (["--graph"] if attempt == "graph" else [])
                        out, err = run(pcmd, a.timeout)
                        r = last_json(out)
                        if r:
                            torch_mode[(model, prec)] = attempt
                            R.setdefault((model, prec, n, "pytorch"), []).append(r["samples_per_s"])
                            if raw: raw.write(json.dumps(r) + "\n")
                            break
                        failures.append(("pytorch " + attempt, model, prec, n, err))
                    print(f"{model} {prec} N={n} repeat {rep + 1}: done", file=sys.stderr, flush=True)

    def med(*k):
        v = R.get(k)
        return statistics.median(v) if v else None

    print("\n| model | precision | GPUs | Tandem samples/s (min–max) | PyTorch DDP samples/s (min–max) | Tandem/PyTorch | Tandem eff. | PyTorch eff. |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in a.models.split(","):
        for prec in a.precisions.split(","):
            for n in gpus:
                t, p = med(model, prec, n, "tandem"), med(model, prec, n, "pytorch")
                t1, p1 = med(model, prec, gpus[0], "tandem"), med(model, prec, gpus[0], "pytorch")
                def cell(k):
                    v = R.get(k)
                    return f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})" if v else "failed"
                eff = lambda x, x1: f"{100 * x * gpus[0] / (n * x1):.0f}%" if x and x1 else "—"
                print(f"| {model} | {prec} | {n} | {cell((model, prec, n, 'tandem'))} | {cell((model, prec, n, 'pytorch'))} "
                      f"({torch_mode.get((model, prec), '?')}) | {f'{t / p:.2f}×' if t and p else '—'} | {eff(t, t1)} | {eff(p, p1)} |")
    n = gpus[-1]
    out, err = run([a.tandem, "launch", "--gpus", str(n), "--", a.tandem, "comm", "--backend", "nccl", "--json",
                    "--min-bytes", "4096", "--max-bytes", str(256 << 20)], a.timeout)
    tandem_rows = [json.loads(l) for l in (out or "").splitlines() if l.startswith("{")]
    if err: failures.append(("tandem comm", "-", "-", n, err))
    out, err = run([a.python, os.path.join(HERE, "torch_allreduce.py"), "--gpus", str(n)], a.timeout)
    torch_rows = {r["bytes"]: r for r in (json.loads(l) for l in (out or "").splitlines() if l.startswith("{"))}
    if err: failures.append(("torch all_reduce", "-", "-", n, err))
    print(f"\nAll-reduce over NCCL, {n} GPU(s), float32 sum (busbw as nccl-tests):\n")
    print("| bytes | Tandem µs | Tandem busbw GB/s | PyTorch µs | PyTorch busbw GB/s | Tandem/PyTorch busbw |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in tandem_rows:
        q = torch_rows.get(r["bytes"])
        print(f"| {r['bytes']:,} | {r['microseconds']:.1f} | {r['busbw_gbps']:.1f} | "
              f"{q['microseconds']:.1f} | {q['busbw_gbps']:.1f} | {r['busbw_gbps'] / q['busbw_gbps']:.2f} |" if q else
              f"| {r['bytes']:,} | {r['microseconds']:.1f} | {r['busbw_gbps']:.1f} | — | — | — |")
    for f in failures:
        print(f"\nfailed: {f[0]} {f[1]} {f[2]} N={f[3]}: {f[4]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
