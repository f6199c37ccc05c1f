#!/usr/bin/env python3
"""Summarises Nsight Compute's SASS source page of one kernel: where its warps stall and what it executes.

    ncu --kernel-name K --launch-count 1 --set full --import-source no -o R BINARY ...
    ncu -i R.ncu-rep --page source --print-source sass --csv > K-sass.csv
    python3 scripts/ncu_sass.py K-sass.csv [--top 25] [--per N]

Prints the stall reasons over all samples, the instructions with the most samples (with their two largest reasons),
and the instruction mix by opcode; with --per N, the mix divided by N (for example the rows a launch processes times
the warps a row, to read instructions a row a warp).
"""
import argparse, collections, csv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25, help="instructions with the most stall samples to list")
    ap.add_argument("--per", type=float, default=0, help="divide the instruction mix by this many (0: totals)")
    args = ap.parse_args()
    rows = list(csv.reader(open(args.csv)))
    header = next(i for i, r in enumerate(rows) if "Source" in r and "Instructions Executed" in r)
    names, data = rows[header], rows[header + 1:]
    col = {n: i for i, n in enumerate(names)}
    samples, source, executed = col["Warp Stall Sampling (All Samples)"], col["Source"], col["Instructions Executed"]
    stalls = [i for i, n in enumerate(names) if n.startswith("stall_") and "Not Issued" not in n]
    value = lambda r, i: int(r[i] or 0)
    total = sum(value(r, samples) for r in data) or 1
    print(f"{args.csv}: {total} samples, {sum(value(r, executed) for r in data)} warp instructions, {len(data)} SASS lines")
    reasons = collections.Counter()
    for r in data:
        for i in stalls:
            reasons[names[i][6:]] += value(r, i)
    print("stalls: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in reasons.most_common(9)))
    print("most sampled instructions (line, samples, executed, instruction, top reasons):")
    for n, r in sorted(enumerate(data), key=lambda x: -value(x[1], samples))[:args.top]:
        top = sorted(((value(r, i), names[i][6:]) for i in stalls), reverse=True)[:2]
        print(f"  {n:5d} {value(r, samples):5d} {value(r, executed):8d}  {r[source].strip()[:60]:60s} {top}")
    mix = collections.Counter()
    for r in data:
        words = [w for w in r[source].split() if not w.startswith("@")]
        if words:
            mix[words[0].split(".")[0]] += value(r, executed)
    scale = args.per or 1
    print("instruction mix" + (f" (per {args.per:g})" if args.per else "") + ": "
          + ", ".join(f"{k} {v / scale:.1f}" for k, v in mix.most_common(20)))


if __name__ == "__main__":
    main()
