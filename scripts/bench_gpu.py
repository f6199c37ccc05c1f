#!/usr/bin/env python3
"""Tandem's GPU step against PyTorch's (torch_bench.py --device cuda --graph), side by side.

Alternates the two engines, each workload and precision in turn, `--repeats` times, and prints a
table of median step times (ms) and the ratio Tandem / PyTorch (below 1: Tandem is faster). Every
JSON result line goes to OUT/results.jsonl.

  python3 scripts/bench_gpu.py --tandem .gpu/tandem --torch-bench .gpu/torch_bench.py --out /tmp/gpu

--ab-cudnn adds Tandem with TANDEM_CUDNN=0 (im2col + cuBLAS convolutions, step-by-step LSTM) as a third
engine. --torch-ieee adds PyTorch with cuDNN's tf32 turned off (its default lets cuDNN convolutions and
RNNs use tf32 in an "fp32" run; Tandem's fp32 is true fp32), fp32 only.
"""
import argparse, json, os, statistics, subprocess, sys

GPU_BATCH = {"mlp": 256, "mlp-wide": 256, "cnn": 256, "lstm": 128, "gpt": 16}

IEEE = ("import sys, runpy, torch\n"
        "torch.backends.cudnn.allow_tf32 = False\n"
        "for part in ('conv', 'rnn'):\n"
        "    try: setattr(getattr(torch.backends.cudnn, part), 'fp32_precision', 'ieee')\n"
        "    except Exception: pass\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")

def run(cmd, log, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=None if env is None else {**os.environ, **env})
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
    a.add_argument("--ab-cudnn", action="store_true", help="also run Tandem with TANDEM_CUDNN=0")
    a.add_argument("--torch-ieee", action="store_true", help="also run PyTorch with cuDNN's tf32 off (fp32 only)")
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
                tandem = [args.tandem, "bench", "--device", "cuda", "--precision", precision, "--graph", "--json"] + common
                torch = [args.torch_bench, "--device", "cuda", "--graph"] + (["--bf16"] if precision == "bf16" else []) + common
                runs = [("tandem", tandem, None), ("pytorch", [sys.executable] + torch, None)]
                if args.ab_cudnn: runs.append(("tandem-nocudnn", tandem, {"TANDEM_CUDNN": "0"}))
                if args.torch_ieee and precision == "fp32": runs.append(("pytorch-ieee", [sys.executable, "-c", IEEE] + torch, None))
                if r % 2: runs.reverse()
                for engine, cmd, env in runs:
                    res, err = run(cmd, log, env)
                    key = (model, precision, engine)
                    if res is None:
                        errors[key] = err
                        continue
                    res["repeat"] = r
                    res["bench_engine"] = engine
                    results.write(json.dumps(res) + "\n"); results.flush()
                    times.setdefault(key, []).append(res["step_ms"]["mean"])
                    print(f"  {engine:14s} {model:9s} {precision}: {res['step_ms']['mean']:.3f} ms", flush=True)
    print()
    print(f"{'model':10s} {'precision':9s} {'tandem ms':>10s} {'pytorch ms':>11s} {'ratio':>7s}   (medians of {args.repeats}, step mean over {args.steps} steps, CUDA graph)")
    for precision in args.precisions.split(","):
        for model in args.models.split(","):
            t, p = times.get((model, precision, "tandem")), times.get((model, precision, "pytorch"))
            ts = f"{statistics.median(t):10.3f}" if t else f"{'-':>10s}"
            ps = f"{statistics.median(p):11.3f}" if p else f"{'-':>11s}"
            ratio = f"{statistics.median(t) / statistics.median(p):7.2f}" if t and p else f"{'-':>7s}"
            note = errors.get((model, precision, "tandem"), "") if not t else ""
            extra = ""
            for other in ("tandem-nocudnn", "pytorch-ieee"):
                o = times.get((model, precision, other))
                if o: extra += f"  {other} {statistics.median(o):.3f}" + (f" (tandem/it {statistics.median(t) / statistics.median(o):.2f})" if t else "")
            print(f"{model:10s} {precision:9s} {ts} {ps} {ratio}   {note[:90]}{extra}")

if __name__ == "__main__":
    main()
