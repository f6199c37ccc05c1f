#!/usr/bin/env python3
"""Tandem's GPU step against PyTorch's (torch_bench.py --device cuda --graph), side by side.

Alternates the two engines, each workload and precision in turn, `--repeats` times, and prints a
table of median step times (ms) and the ratio Tandem / PyTorch (below 1: Tandem is faster). Every
JSON result line goes to OUT/results.jsonl.

  python3 scripts/bench_gpu.py --tandem .gpu/tandem --torch-bench .gpu/torch_bench.py --out /tmp/gpu
"""
import argparse, json, os, statistics, subprocess, sys

GPU_BATCH = {"mlp": 256, "mlp-wide": 256, "cnn": 256, "lstm": 128, "gpt": 16}

def run(cmd, log):
    p = subprocess.run(cmd, capture_output=True, text=True)
    log.write("$ " + " ".join(cmd) + "\n" + p.stdout + p.stderr + "\n")
    log.flush()
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line), None
    return None, "no JSON line"

def main():
    a = argparse.ArgumentParser()
    a.add_argument("--tandem", default=".gpu/tandem")
    a.add_argument("--torch-bench", default=".gpu/torch_bench.py")
    a.add_argument("--models", default="mlp,mlp-wide,cnn,lstm,gpt")
    a.add_argument("--precisions", default="fp32,bf16")
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--steps", type=int, default=50)
    a.add_argument("--warmup", type=int, default=5)
    a.add_argument("--out", default=os.environ.get("OUT", "gpu-results"))
    args = a.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = open(os.path.join(args.out, "results.jsonl"), "a")
    log = open(os.path.join(args.out, "bench.log"), "a")
    times, errors = {}, {}
    for r in range(args.repeats):
        for precision in args.precisions.split(","):
            for model in args.models.split(","):
                b = str(GPU_BATCH[model])
                common = ["--model", model, "--batch", b, "--steps", str(args.steps), "--warmup", str(args.warmup)]
                runs = [("tandem", [args.tandem, "bench", "--device", "cuda", "--precision", precision, "--graph", "--json"] + common),
                        ("pytorch", [sys.executable, args.torch_bench, "--device", "cuda", "--graph"] + (["--bf16"] if precision == "bf16" else []) + common)]
                if r % 2: runs.reverse()
                for engine, cmd in runs:
                    res, err = run(cmd, log)
                    key = (model, precision, engine)
                    if res is None:
                        errors[key] = err
                        continue
                    res["repeat"] = r
                    results.write(json.dumps(res) + "\n"); results.flush()
                    times.setdefault(key, []).append(res["step_ms"]["mean"])
                    print(f"  {engine:8s} {model:9s} {precision}: {res['step_ms']['mean']:.3f} ms", flush=True)
    print()
    print(f"{'model':10s} {'precision':9s} {'tandem ms':>10s} {'pytorch ms':>11s} {'ratio':>7s}   (medians of {args.repeats}, step mean over {args.steps} steps, CUDA graph)")
    for precision in args.precisions.split(","):
        for model in args.models.split(","):
            t, p = times.get((model, precision, "tandem")), times.get((model, precision, "pytorch"))
            ts = f"{statistics.median(t):10.3f}" if t else f"{'-':>10s}"
            ps = f"{statistics.median(p):11.3f}" if p else f"{'-':>11s}"
            ratio = f"{statistics.median(t) / statistics.median(p):7.2f}" if t and p else f"{'-':>7s}"
            note = errors.get((model, precision, "tandem"), "") if not t else ""
            print(f"{model:10s} {precision:9s} {ts} {ps} {ratio}   {note[:90]}")

if __name__ == "__main__":
    main()
