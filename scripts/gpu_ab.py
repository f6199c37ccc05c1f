#!/usr/bin/env python3
"""A/B of Tandem GPU step times in one call: variants (a binary and environment settings each) take turns, round by
round (each round starting one variant later), on one workload, so drift on a shared card and a variant's place in the
round fall on every variant alike; prints each variant's step means, their median and its ratio to the first variant's.

    python3 scripts/gpu_ab.py --model gpt --precision bf16 \\
        new=.gpu/tandem base=.gpu/tandem-base \\
        'defer=.gpu/tandem:TANDEM_DEFER_UPDATES=1,TANDEM_OVERLAP_OPTIMIZER=0' \\
        'blocks2=.gpu/tandem:TANDEM_KERNEL_DEFINES=FA_BWD_BLOCKS=2'

A variant is LABEL=BINARY[:NAME=VALUE,NAME=VALUE…] (a value may hold '=', not ','). Each run is
`BINARY bench --device cuda --model M --precision P --batch B --graph --steps S --warmup W --json`; its step mean comes
from the JSON line it prints last. One warm-up run per variant first (kernel compilation, GEMM tuning). Set
TANDEM_GEMM_CACHE so the variants share GEMM choices.
"""
import argparse, json, os, statistics, subprocess, sys

GPU_BATCH = {"lstm": 128, "gpt": 16}


def parse_variant(text):
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        sys.exit(f"variant '{text}': expected LABEL=BINARY[:NAME=VALUE,…]")
    binary, _, settings = rest.partition(":")
    env = {}
    for item in filter(None, settings.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name:
            sys.exit(f"variant '{text}': setting '{item}' is not NAME=VALUE")
        env[name] = value
    return label, binary, env


def run(binary, env, args, batch, steps, warmup):
    command = [binary, "bench", "--device", "cuda", "--model", args.model, "--precision", args.precision, "--batch", str(batch),
               "--graph", "--steps", str(steps), "--warmup", str(warmup), "--json"]
    try:
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {args.timeout} s"
    except OSError as error:
        return None, f"cannot run {binary}: {error.strerror}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return None, f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    try:
        result = json.loads(lines[-1])
        engine = next((line[len("layers: "):] for line in done.stderr.splitlines() if line.startswith("layers: ")), "")
        return (float(result["step_ms"]["mean"]), engine), None
    except (ValueError, KeyError, TypeError) as error:
        return None, f"no step mean in the output ({error})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch", type=int, help="default: WORKLOADS.md's GPU batch (256, lstm 128, gpt 16)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--timeout", type=int, default=120, help="seconds a run may take")
    ap.add_argument("--out", help="file to append each run's line to")
    ap.add_argument("variants", nargs="+", metavar="LABEL=BINARY[:NAME=VALUE,…]")
    args = ap.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        sys.exit("--rounds and --steps must be at least 1, --warmup at least 0")
    variants = [parse_variant(v) for v in args.variants]
    labels = [label for label, _, _ in variants]
    if len(set(labels)) != len(labels):
        sys.exit(f"variant labels must differ: {labels}")
    batch = args.batch or GPU_BATCH.get(args.model, 256)
    out = open(args.out, "a", buffering=1) if args.out else None   # line-buffered: kept if a time limit stops the run
    for label, binary, env in variants:   # compile kernels and tune GEMMs outside the timed runs
        _, error = run(binary, env, args, batch, 3, 1)
        if error:
            sys.exit(f"{label}: warm-up run failed: {error}")
    times = {label: [] for label in labels}
    for r in range(args.rounds):
        row = []
        # Each round starts one variant later, so no variant always runs first or last in a round.
        for label, binary, env in variants[r % len(variants):] + variants[:r % len(variants)]:
            measured, error = run(binary, env, args, batch, args.steps, args.warmup)
            if error:
                print(f"round {r + 1}, {label}: {error}", file=sys.stderr)
                row.append(f"{label} failed")
                continue
            ms, engine = measured
            times[label].append(ms)
            if out:   # what the run chose (its layers and schedule), beside its time
                out.write(f"  {label} {ms:.4f}: {engine}\n")
            row.append(f"{label} {ms:.4f}")
        line = f"{args.model} {args.precision} round {r + 1}: " + " | ".join(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
    first = statistics.median(times[labels[0]]) if times[labels[0]] else None
    print(f"\n{'variant':<12} {'runs':>4} {'median ms':>10} {'min–max':>17} {'/ ' + labels[0]:>10}")
    for label in labels:
        t = times[label]
        if not t:
            print(f"{label:<12} {0:>4} {'—':>10}")
            continue
        m = statistics.median(t)
        ratio = f"{m / first:.4f}" if first else "—"
        print(f"{label:<12} {len(t):>4} {m:>10.4f} {min(t):>8.4f}–{max(t):<8.4f} {ratio:>10}")
    if out:
        out.close()
    if any(not t for t in times.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
