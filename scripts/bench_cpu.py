#!/usr/bin/env python3
"""Side-by-side CPU benchmark: Tandem against the PyTorch reference (shared/bench/torch_bench.py).

    python3 scripts/bench_cpu.py                                  # all models, workers 1 and 2
    python3 scripts/bench_cpu.py --models mlp,cnn --workers 1,2 --repeats 5 --raw out.jsonl

For each model and worker count it runs Tandem's benchmark command and torch_bench.py
alternately (tandem, pytorch, tandem, pytorch, ...), --repeats times each, in this one
invocation, and prints a markdown table of throughput (median and min-max over repeats),
the Tandem/PyTorch ratio of the medians and, for workers > 1, each engine's weak-scaling
efficiency E(N) = throughput(N) / (N * throughput(1)) from medians measured in this same
invocation (workers=1 is added to the sweep when needed). Figures drift on shared machines:
compare only figures from one invocation.

Commands run (each prints one JSON line in the shared/WORKLOADS.md schema as the last line
of its stdout):
    <tandem> bench --model M --workers N --batch B --steps S --warmup W --json
    <torch-python> <torch-bench> --model M --workers N --batch B --steps S --warmup W --threads 1 --port P
the latter with OMP_NUM_THREADS=1. A run that fails (exit status, timeout, no JSON) is shown
as "failed" with its stderr tail, and the sweep goes on. Standard library only: any python3.

With --engines tandem,pytorch,ceiling it also measures the machine's own limit for weak
scaling: for N workers, N independent single-worker Tandem processes run at the same time
(no communication at all), and their summed throughput over N times the single-worker median
is the efficiency no data-parallel engine can beat on this machine (cores sharing caches,
memory bandwidth and clock boost). It is shown as "ceiling efficiency". Independent processes
drift out of phase, though; synchronous training cannot. The engine lockstep runs
`tandem bench --lockstep-replicas`: N worker threads that each train their own replica, exchange
nothing, and meet at a barrier every step, as data-parallel ranks must — the ceiling for any
synchronous data-parallel engine here, shown as "lock-step efficiency".

Engines tandem-sharded and tandem-unsharded run the same binary with --shard-optimizer and
--no-shard-optimizer (workers > 1 only; their efficiency is over the plain tandem engine's
1-worker median), for an A/B of the sharded optimizer step inside one invocation; a second
table then lists them beside the plain tandem engine.
"""
import argparse, json, os, platform, shlex, signal, statistics, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["mlp", "mlp-wide", "cnn", "lstm", "gpt"]
# shared/WORKLOADS.md, CPU: batch per worker 64 (lstm 32, gpt 4), one thread per worker.
BATCH = {"mlp": 64, "mlp-wide": 64, "cnn": 64, "lstm": 32, "gpt": 4}
STEPS = {"mlp": 50, "mlp-wide": 10, "cnn": 30, "lstm": 10, "gpt": 3}
WARMUP = {"mlp": 5, "mlp-wide": 2, "cnn": 5, "lstm": 2, "gpt": 2}
# Tandem run with one flag more, for A/B comparisons of the optimizer step.
VARIANTS = ("tandem-sharded", "tandem-unsharded")
VARIANT_FLAGS = {"tandem-sharded": ["--shard-optimizer"], "tandem-unsharded": ["--no-shard-optimizer"],
                 "lockstep": ["--lockstep-replicas"]}
# Engines measured only for workers > 1, their efficiency over the tandem engine's 1-worker median.
OVER_TANDEM = ("ceiling", "lockstep") + VARIANTS


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: %(default)s)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="runs per engine and configuration (default: 3)")
    p.add_argument("--steps", type=int, help="timed steps for every model (default: per model, %s)" % STEPS)
    p.add_argument("--warmup", type=int, help="warm-up steps for every model (default: per model, %s)" % WARMUP)
    p.add_argument("--batch", type=int, help="batch per worker for every model (default: per model, %s)" % BATCH)
    p.add_argument("--tandem", default=os.path.join(REPO, ".build", "release", "tandem"), help="Tandem binary (default: %(default)s)")
    p.add_argument("--torch-python", default=os.path.expanduser("~/torchenv/bin/python"), help="python with torch (default: %(default)s)")
    p.add_argument("--torch-bench", default="/work/shared/bench/torch_bench.py", help="(default: %(default)s)")
    p.add_argument("--engines", default="tandem,pytorch", help="which engines to run (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run (default: %(default)s)")
    p.add_argument("--port", type=int, default=29611, help="first rendezvous port for torch runs; each run takes the next one")
    p.add_argument("--raw", help="append every result JSON line to this file")
    a = p.parse_args()
    a.models = [m for m in a.models.split(",") if m]
    for m in a.models:
        if m not in BATCH: p.error(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    a.workers = sorted({int(w) for w in a.workers.split(",") if w})
    if any(w < 1 for w in a.workers): p.error("worker counts must be >= 1")
    if any(w > 1 for w in a.workers) and 1 not in a.workers:
        a.workers.insert(0, 1)  # efficiency needs throughput(1) from this same invocation
    a.engines = [e for e in a.engines.split(",") if e]
    for e in a.engines:
        if e not in ("tandem", "pytorch") + OVER_TANDEM: p.error(f"unknown engine {e!r}")
    if a.repeats < 1: p.error("--repeats must be >= 1")
    return a


def tail(text, lines=6, chars=600):
    t = "\n".join((text or "").strip().splitlines()[-lines:])
    return t[-chars:]


def last_json(stdout):
    for line in reversed((stdout or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                return None, None
            return (obj, line) if isinstance(obj, dict) else (None, None)
        if line:
            return None, None  # the JSON line must be the last non-empty line
    return None, None


class Runner:
    def __init__(self, a):
        self.a = a
        self.port = a.port
        self.raw = open(a.raw, "a") if a.raw else None

    def command(self, engine, model, workers, batch, steps, warmup):
        common = ["--model", model, "--workers", str(workers), "--batch", str(batch),
                  "--steps", str(steps), "--warmup", str(warmup)]
        env = dict(os.environ)
        if engine == "tandem" or engine in VARIANT_FLAGS:
            return [self.a.tandem, "bench"] + common + VARIANT_FLAGS.get(engine, []) + ["--json"], env
        self.port += 1
        env["OMP_NUM_THREADS"] = "1"
        return [self.a.torch_python, self.a.torch_bench] + common + ["--threads", "1", "--port", str(self.port)], env

    def run(self, engine, model, workers, batch, steps, warmup):
        if engine == "ceiling":
            return self.run_ceiling(model, workers, batch, steps, warmup)
        cmd, env = self.command(engine, model, workers, batch, steps, warmup)
        t0 = time.time()
        res = dict(engine=engine, cmd=" ".join(shlex.quote(c) for c in cmd))
        try:  # own process group, so a timeout also ends the worker processes it spawned
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO, start_new_session=True)
        except OSError as e:
            return dict(res, ok=False, why=f"could not start: {e}", stderr="")
        try:
            out, err = p.communicate(timeout=self.a.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = p.communicate()
            return dict(res, ok=False, why=f"timed out after {self.a.timeout:g} s", stderr=tail(err))
        except KeyboardInterrupt:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        res["wall_s"] = time.time() - t0
        obj, line = last_json(out)
        if p.returncode != 0:
            return dict(res, ok=False, why=f"exit status {p.returncode}", stderr=tail(err or out))
        if obj is None:
            return dict(res, ok=False, why="no JSON object on the last line of stdout",
                        stderr=(tail(err) + ("\n[stdout] " + tail(out, 2) if out.strip() else "")).strip())
        sps = obj.get("samples_per_s")
        if not isinstance(sps, (int, float)) or sps <= 0:
            return dict(res, ok=False, why=f"bad samples_per_s {sps!r}", stderr=tail(err))
        if self.raw:
            self.raw.write(line + "\n"); self.raw.flush()
        mismatch = [f"{k}={obj.get(k)!r} (asked {v})" for k, v in (("model", model), ("workers", workers),
                    ("batch_per_worker", batch)) if k in obj and obj[k] != v]
        return dict(res, ok=True, sps=float(sps), obj=obj, mismatch=mismatch)


    def run_ceiling(self, model, workers, batch, steps, warmup):
        """`workers` single-worker Tandem processes at once; throughput is their sum."""
        cmd, env = self.command("tandem", model, 1, batch, steps, warmup)
        res = dict(engine="ceiling", cmd=f"{workers} at once: " + " ".join(shlex.quote(c) for c in cmd))
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                  start_new_session=True) for _ in range(workers)]
        total = 0.0
        for p in procs:
            try:
                out, err = p.communicate(timeout=self.a.timeout)
            except subprocess.TimeoutExpired:
                for q in procs:
                    try: os.killpg(q.pid, signal.SIGKILL)
                    except ProcessLookupError: pass
                return dict(res, ok=False, why=f"timed out after {self.a.timeout:g} s", stderr="")
            obj, _ = last_json(out)
            if p.returncode != 0 or obj is None or not isinstance(obj.get("samples_per_s"), (int, float)):
                return dict(res, ok=False, why=f"exit status {p.returncode}", stderr=tail(err or out))
            total += float(obj["samples_per_s"])
        return dict(res, ok=True, sps=total, obj={"engine_version": "-"}, mismatch=[])


def fmt_rate(x):
    if x is None: return "—"
    if x >= 100: return f"{x:,.0f}"
    if x >= 10: return f"{x:,.1f}"
    return f"{x:,.2f}"


def summarize(results):
    ok = [r["sps"] for r in results if r["ok"]]
    if not ok: return None, None, None
    return statistics.median(ok), min(ok), max(ok)


def cell(results, repeats):
    med, lo, hi = summarize(results)
    nfail = sum(not r["ok"] for r in results)
    if med is None:
        return ("failed" if results else "not run"), "—"
    spread = fmt_rate(lo) + "–" + fmt_rate(hi) if len(results) - nfail > 1 else "—"
    if nfail: spread += f" ({nfail}/{len(results)} failed)"
    return fmt_rate(med), spread


def main():
    a = parse_args()
    run = Runner(a)
    R = {}  # (model, workers, engine) -> [result]
    configs = [(m, w) for m in a.models for w in a.workers]
    total = len(configs) * a.repeats * len(a.engines); k = 0
    t_start = time.time()
    for model, workers in configs:
        batch = a.batch or BATCH[model]
        steps = a.steps or STEPS[model]
        warmup = a.warmup if a.warmup is not None else WARMUP[model]
        for rep in range(a.repeats):
            for engine in a.engines:  # alternate engines within each repeat
                if engine in OVER_TANDEM and workers == 1: continue  # the same as tandem alone
                k += 1
                r = run.run(engine, model, workers, batch, steps, warmup)
                R.setdefault((model, workers, engine), []).append(r)
                msg = f"{r['sps']:,.2f} samples/s" if r["ok"] else f"FAILED: {r['why']}"
                if r.get("mismatch"): msg += "  (result reports " + ", ".join(r["mismatch"]) + ")"
                print(f"[{k}/{total}] {engine:16s} {model:8s} workers={workers} batch={batch} "
                      f"repeat {rep + 1}/{a.repeats}: {msg}", file=sys.stderr, flush=True)

    def med(model, workers, engine):
        return summarize(R.get((model, workers, engine), []))[0]

    def eff(model, workers, engine):
        if workers == 1: return "—"
        t1, tn = med(model, 1, "tandem" if engine in OVER_TANDEM else engine), med(model, workers, engine)
        if t1 is None or tn is None: return "—"
        return f"{100 * tn / (workers * t1):.0f}%"

    def version(engine):
        for (m, w, e), rs in R.items():
            for r in rs:
                if e == engine and r["ok"]: return str(r["obj"].get("engine_version", "?"))
        return "?"

    print(f"\nTandem vs PyTorch on CPU ({platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()}); tandem {version('tandem')}, pytorch {version('pytorch')}; "
          f"{a.repeats} alternating repeats per engine, medians; {time.time() - t_start:.0f} s in all.\n")
    print("| model | workers | batch/worker | tandem samples/s | tandem min–max | pytorch samples/s | pytorch min–max "
          "| tandem/pytorch | tandem efficiency | pytorch efficiency | ceiling efficiency | lock-step efficiency |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model, workers in configs:
        batch = a.batch or BATCH[model]
        t_med, t_spread = cell(R.get((model, workers, "tandem"), []), a.repeats)
        p_med, p_spread = cell(R.get((model, workers, "pytorch"), []), a.repeats)
        tm, pm = med(model, workers, "tandem"), med(model, workers, "pytorch")
        ratio = f"{tm / pm:.2f}×" if tm and pm else "—"
        print(f"| {model} | {workers} | {batch} | {t_med} | {t_spread} | {p_med} | {p_spread} | {ratio} "
              f"| {eff(model, workers, 'tandem')} | {eff(model, workers, 'pytorch')} | {eff(model, workers, 'ceiling')} "
              f"| {eff(model, workers, 'lockstep')} |")

    variants = [e for e in VARIANTS if e in a.engines]
    if variants and any(w > 1 for w in a.workers):
        print("\nThe optimizer step, A/B (efficiency over the tandem engine's 1-worker median):\n")
        print("| model | workers | " + " | ".join(f"{e} samples/s | {e} min–max | {e} efficiency" for e in ["tandem"] + variants) + " |")
        print("| --- | ---: | " + " | ".join("---: | ---: | ---:" for _ in ["tandem"] + variants) + " |")
        for model, workers in configs:
            if workers == 1: continue
            cells = []
            for e in ["tandem"] + variants:
                m, spread = cell(R.get((model, workers, e), []), a.repeats)
                cells.append(f"{m} | {spread} | {eff(model, workers, e)}")
            print(f"| {model} | {workers} | " + " | ".join(cells) + " |")

    failures = [(key, r) for key, rs in R.items() for r in rs if not r["ok"]]
    if failures:
        print("\nFailed runs:\n")
        seen = set()
        for (model, workers, engine), r in failures:
            sig = (model, workers, engine, r["why"], r["stderr"])
            if sig in seen: continue  # identical failures of the same config once
            seen.add(sig)
            n = sum(1 for (k2, r2) in failures if k2 == (model, workers, engine) and r2["why"] == r["why"])
            print(f"- {engine} {model} workers={workers}: {r['why']} (x{n})\n  `{r['cmd']}`")
            if r["stderr"]:
                print("  ```\n" + "\n".join("  " + l for l in r["stderr"].splitlines()) + "\n  ```")
    if a.raw:
        print(f"\nRaw JSON lines appended to {a.raw}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
