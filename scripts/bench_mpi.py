#!/usr/bin/env python3
"""Side-by-side benchmark of the MPI backend (docs/performance.md, "The MPI backend").

    python3 scripts/bench_mpi.py                       # mlp-wide, 2 workers, 3 repeats, Open MPI
    python3 scripts/bench_mpi.py --model mlp --workers 2 --repeats 5 --mpi mpich

Training throughput: for the model and worker count, runs alternately (tandem threads,
tandem mpi, pytorch, tandem threads, ...) --repeats times each, in this one invocation:
    <tandem> bench --model M --workers N --no-shard-optimizer --json             (threads)
    <mpirun> -np N <tandem> bench --backend mpi --model M --json                 (MPI)
    <torch-python> <torch-bench> --model M --workers N --threads 1 --port P      (DDP over gloo)
and prints the median samples/s of each with min-max, and the ratios mpi/threads and
mpi/pytorch. Then the all-reduce busbw of `tandem comm --backend mpi --compare-library`
(ours beside the library's own MPI_Allreduce), --repeats times, median ratio per size.
Figures on shared machines drift: compare only figures of one invocation.

A/B: --ab OTHER_TANDEM (repeatable; 'PATH;VAR=VALUE,...' adds environment variables, say
'PATH;TANDEM_MPI_DIRECT=0') puts another build's MPI runs and all-reduce table into the same
alternating rounds. Every round prints the load; --wait-quiet F waits before each run until
at most a fraction F of the cores is busy with other work.
"""
import argparse, json, os, statistics, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = {"mlp": 64, "mlp-wide": 64, "cnn": 64, "lstm": 32, "gpt": 4}
STEPS = {"mlp": 50, "mlp-wide": 10, "cnn": 30, "lstm": 10, "gpt": 3}
WARMUP = {"mlp": 5, "mlp-wide": 2, "cnn": 5, "lstm": 2, "gpt": 2}
MPI = {"openmpi": ("mpirun.openmpi", "libmpi.so.40", ["--allow-run-as-root", "--oversubscribe"]),
       "mpich": ("mpirun.mpich", "libmpich.so.12", [])}


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


LOADS = []


def load():
    """The 1-minute load average, kept for the summary (figures under load > 1.5 are suspect on 2 cores)."""
    one = os.getloadavg()[0]
    LOADS.append(one)
    return one


def busy_fraction(seconds=1.0):
    """The fraction of all cores busy over `seconds` (from /proc/stat): other work right now."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v) - idle, sum(v)
    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (b1 - b0) / max(t1 - t0, 1)


QUIET = {"threshold": None, "seen": []}


def wait_quiet():
    """With --wait-quiet X: before each run, wait (up to 10 minutes) until at most a fraction X
    of the cores is busy with other work; the fraction seen is kept for the summary."""
    if QUIET["threshold"] is None:
        return
    deadline = time.time() + 600
    while True:
        b = busy_fraction()
        if b <= QUIET["threshold"] or time.time() > deadline:
            QUIET["seen"].append(b)
            return
        time.sleep(5)


def run(cmd, env=None, timeout=900):
    wait_quiet()
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
    if p.returncode != 0:
        print("failed:", " ".join(cmd), p.stderr[-800:], file=sys.stderr)
        return None
    return p.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mlp-wide")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mpi", default="openmpi", choices=sorted(MPI))
    p.add_argument("--tandem", default=os.path.join(REPO, ".build", "release", "tandem"))
    p.add_argument("--torch-python", default=os.path.expanduser("~/torchenv/bin/python"))
    p.add_argument("--torch-bench", default="/work/shared/bench/torch_bench.py")
    p.add_argument("--port", type=int, default=29711)
    p.add_argument("--skip-comm", action="store_true", help="only the training throughput")
    p.add_argument("--comm-only", action="store_true", help="only the all-reduce comparison")
    p.add_argument("--skip-torch", action="store_true", help="leave PyTorch DDP out of the training runs")
    p.add_argument("--ab", metavar="TANDEM", action="append", default=[],
                   help="another tandem build to alternate with --tandem (A/B): its MPI training runs and its "
                        "all-reduce comparison join the same rounds; 'PATH;VAR=VALUE,…' also sets environment "
                        "variables for it (say 'PATH;TANDEM_MPI_DIRECT=0'); repeatable")
    p.add_argument("--min-bytes", type=int, default=4096, help="smallest all-reduce (then ×4 up to --max-bytes)")
    p.add_argument("--max-bytes", type=int, default=64 << 20)
    p.add_argument("--iterations", type=int, default=10, help="timed all-reduces per size and repeat")
    p.add_argument("--wait-quiet", type=float, metavar="FRACTION",
                   help="before each run, wait until at most this fraction of the cores is busy (say 0.15)")
    a = p.parse_args()
    QUIET["threshold"] = a.wait_quiet
    launcher, library, flags = MPI[a.mpi]
    m, n = a.model, a.workers
    common = ["--model", m, "--batch", str(BATCH[m]), "--steps", str(STEPS[m]), "--warmup", str(WARMUP[m]), "--json"]
    engines = {
        # The same optimizer step on both backends: threads shard it by default, MPI does not.
        "tandem threads": lambda i: ([a.tandem, "bench", "--workers", str(n), "--no-shard-optimizer"] + common, {}),
        "tandem mpi": lambda i: ([launcher] + flags + ["-np", str(n), a.tandem, "bench", "--backend", "mpi"] + common, {"TANDEM_MPI": library}),
        "pytorch ddp (gloo)": lambda i: ([a.torch_python, a.torch_bench, "--model", m, "--workers", str(n), "--batch", str(BATCH[m]),
                                          "--steps", str(STEPS[m]), "--warmup", str(WARMUP[m]), "--threads", "1", "--port", str(a.port + i)],
                                         {"OMP_NUM_THREADS": "1"}),
    }
    if a.skip_torch:
        del engines["pytorch ddp (gloo)"]
    def build(spec):
        path, _, extra = spec.partition(";")
        env = {"TANDEM_MPI": library}
        env.update(dict(kv.split("=", 1) for kv in extra.split(",") if kv))
        return path, env

    builds = [("A", a.tandem, {"TANDEM_MPI": library})] + [(f"B{k + 1}",) + build(spec) for k, spec in enumerate(a.ab)]
    for label, path, env in builds[1:]:
        engines[f"tandem mpi [{label}]"] = (lambda path, env: lambda i: ([launcher] + flags + ["-np", str(n), path, "bench", "--backend", "mpi"] + common,
                                                                         env))(path, env)
    results = {k: [] for k in engines}
    for i in range(0 if a.comm_only else a.repeats):
        print(f"round {i + 1}: load {load():.2f}", file=sys.stderr)
        for name, make in engines.items():
            cmd, env = make(i)
            out = run(cmd, env)
            r = last_json(out or "")
            if r:
                results[name].append(r["samples_per_s"])
                print(f"  {name}: {r['samples_per_s']:.1f} samples/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    if not a.comm_only:
        print(f"\n{m}, {n} workers, {a.repeats} alternating repeats, MPI: {a.mpi}, 1-min load {min(LOADS):.2f}–{max(LOADS):.2f}"
              + (f", cores busy before each run {min(QUIET['seen']):.0%}–{max(QUIET['seen']):.0%}" if QUIET["seen"] else "") + "\n")
        QUIET["seen"].clear()
    if med:
        print("| engine | samples/s median | min–max |")
        print("| --- | --- | --- |")
    for k, v in results.items():
        if v:
            print(f"| {k} | {med[k]:.1f} | {min(v):.1f}–{max(v):.1f} |")
    if "tandem mpi" in med and "tandem threads" in med:
        print(f"\nmpi / threads: {med['tandem mpi'] / med['tandem threads']:.3f}")
    for label, path, env in builds[1:]:
        name = f"tandem mpi [{label}]"
        if name in med and "tandem mpi" in med:
            print(f"{label} ({path} {env}) / A: {med[name] / med['tandem mpi']:.3f}; {label} / threads: {med[name] / med['tandem threads']:.3f}")
    if "tandem mpi" in med and "pytorch ddp (gloo)" in med:
        print(f"mpi / pytorch: {med['tandem mpi'] / med['pytorch ddp (gloo)']:.3f}")
    if a.skip_comm:
        return
    ratios = {label: {} for label, _, _ in builds}
    LOADS.clear()
    for i in range(a.repeats):
        print(f"all-reduce round {i + 1}: load {load():.2f}", file=sys.stderr)
        for label, path, env in builds:
            size_flags = ["--min-bytes", str(a.min_bytes), "--max-bytes", str(a.max_bytes)]
            out = run([launcher] + flags + ["-np", str(n), path, "comm", "--backend", "mpi", "--compare-library", "--json",
                                            "--iterations", str(a.iterations)] + size_flags, env)
            for line in (out or "").splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    ratios[label].setdefault(row["bytes"], []).append((row["busbw_gbps"], row["library_busbw_gbps"], row["microseconds"], row["library_us"]))
    for label, path, env in builds:
        print(f"\nall-reduce, {n} processes, {label} ({path} {env}) against MPI_Allreduce ({a.mpi}), medians of {a.repeats} "
              f"(each the median of {a.iterations} iterations); min–max of the ratio; 1-min load {min(LOADS):.2f}–{max(LOADS):.2f}"
              + (f", cores busy before each run {min(QUIET['seen']):.0%}–{max(QUIET['seen']):.0%}" if QUIET["seen"] else "") + "\n")
        print("| bytes | tandem µs | MPI_Allreduce µs | tandem busbw GB/s | MPI_Allreduce busbw GB/s | ratio | ratio min–max |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for b in sorted(ratios[label]):
            rows = ratios[label][b]
            ours = statistics.median(r[0] for r in rows)
            theirs = statistics.median(r[1] for r in rows)
            each = [r[0] / r[1] for r in rows if r[1] > 0]
            print(f"| {b:,} | {statistics.median(r[2] for r in rows):.1f} | {statistics.median(r[3] for r in rows):.1f} | "
                  f"{ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | {min(each):.2f}–{max(each):.2f} |")


if __name__ == "__main__":
    main()
