#!/usr/bin/env python3
"""How far cuBLASLt's heuristic list is from the best configuration it can run, per GEMM shape (GPU host; needs
PyTorch for device memory and events, and libcublasLt.so).

For each call, described in Tandem's row-major terms (C[m, n] = op(A) · op(B), as `CuBLASLt.plan` builds it: the
operands swapped, cuBLASLt's A our B), it times (1) every algorithm of the heuristic's list, as Tandem's tuner does,
and (2) every configuration those algorithms accept with another tile, stage count, split-k or swizzle (set with
cublasLtMatmulAlgoConfigSetAttribute, checked with cublasLtMatmulAlgoCheck), and (3) every other algorithm id the
library lists for the types, configured the same way. It prints the best of each, so one call tells whether a wider
search is worth building. Calls are launched from Python (~10 µs each), so times under ~15 µs are launch-bound here;
the tuner's own timings (in its record, `TANDEM_GEMM_CACHE`) are the reference for small calls.

    python3 scripts/cublaslt_probe.py            # the shapes of mlp-wide fp32 and gpt bf16
    python3 scripts/cublaslt_probe.py --calls 'NT 256 4096 1024 f32'
"""
import argparse, ctypes, itertools, sys

import torch

# cublasLt.h values (unchanged from cuBLASLt 11 to 13).
CONFIG_ID, CONFIG_TILE, CONFIG_SPLITK, CONFIG_REDUCTION, CONFIG_SWIZZLE, CONFIG_STAGES, CONFIG_CLUSTER = 0, 1, 2, 3, 4, 6, 8
CAP_SPLITK, CAP_REDUCTION_MASK, CAP_SWIZZLE, CAP_TILES, CAP_STAGES = 0, 1, 2, 6, 13
DESC_TRANSA, DESC_TRANSB = 3, 4
PREF_WORKSPACE, PREF_IMPL_MASK = 1, 12
R32F, R16BF, COMPUTE_32F = 0, 14, 68
WORKSPACE = 32 << 20

lt = ctypes.CDLL("libcublasLt.so.13")
vp, i32, u64, sz = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint64, ctypes.c_size_t


class Algo(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class Result(ctypes.Structure):
    _fields_ = [("algo", Algo), ("workspace", sz), ("state", i32), ("waves", ctypes.c_float), ("reserved", i32 * 4)]


def check(status, what):
    if status != 0:
        raise RuntimeError(f"{what}: status {status}")


handle = vp()
check(lt.cublasLtCreate(ctypes.byref(handle)), "cublasLtCreate")


def layout(dtype, rows, cols, ld):
    l = vp()
    check(lt.cublasLtMatrixLayoutCreate(ctypes.byref(l), i32(dtype), u64(rows), u64(cols), ctypes.c_int64(ld)), "layout")
    return l


def cap_list(algo, attr):
    written = sz(0)
    lt.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), i32(attr), None, sz(0), ctypes.byref(written))
    n = written.value // 4
    if n == 0:
        return []
    buf = (ctypes.c_uint32 * n)()
    check(lt.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), i32(attr), buf, sz(4 * n), ctypes.byref(written)), "cap")
    return list(buf)


def cap_int(algo, attr):
    v, written = ctypes.c_int32(0), sz(0)
    lt.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), i32(attr), ctypes.byref(v), sz(4), ctypes.byref(written))
    return v.value


def config(algo, attr, size=4):
    v = ctypes.c_uint32(0) if size == 4 else ctypes.c_uint16(0)
    written = sz(0)
    lt.cublasLtMatmulAlgoConfigGetAttribute(ctypes.byref(algo), i32(attr), ctypes.byref(v), sz(size), ctypes.byref(written))
    return v.value


def configured(algo, settings):
    a = Algo()
    ctypes.memmove(ctypes.byref(a), ctypes.byref(algo), 64)
    for attr, value, size in settings:
        v = ctypes.c_uint32(value) if size == 4 else ctypes.c_uint16(value)
        if lt.cublasLtMatmulAlgoConfigSetAttribute(ctypes.byref(a), i32(attr), ctypes.byref(v), sz(size)) != 0:
            return None
    return a


def name(algo):
    return (f"id {config(algo, CONFIG_ID)} tile {config(algo, CONFIG_TILE)} stages {config(algo, CONFIG_STAGES)} "
            f"splitk {config(algo, CONFIG_SPLITK)} swizzle {config(algo, CONFIG_SWIZZLE)} cluster {config(algo, CONFIG_CLUSTER, 2)}")


def probe(spec, budget):
    trans, m, n, k, kind = spec.split()
    m, n, k = int(m), int(n), int(k)
    transA, transB = trans[0] == "T", trans[1] == "T"
    beta_value = 1.0 if kind.endswith("+") else 0.0
    kind = kind.rstrip("+")
    ab_type, c_type = {"f32": (R32F, R32F), "bf16": (R16BF, R16BF), "bf16f32": (R16BF, R32F)}[kind]
    torch_ab = torch.float32 if ab_type == R32F else torch.bfloat16
    torch_c = torch.float32 if c_type == R32F else torch.bfloat16
    lda = m if transA else k
    ldb = k if transB else n
    A = torch.randn(m * k, device="cuda").to(torch_ab)
    B = torch.randn(k * n, device="cuda").to(torch_ab)
    C = torch.zeros(m * n, device="cuda", dtype=torch_c)
    W = torch.empty(WORKSPACE, device="cuda", dtype=torch.uint8)
    desc = vp()
    check(lt.cublasLtMatmulDescCreate(ctypes.byref(desc), i32(COMPUTE_32F), i32(R32F)), "desc")
    for attr, value in ((DESC_TRANSA, int(transB)), (DESC_TRANSB, int(transA))):
        v = ctypes.c_int32(value)
        check(lt.cublasLtMatmulDescSetAttribute(desc, i32(attr), ctypes.byref(v), sz(4)), "desc attr")
    ltA = layout(ab_type, k, n, ldb) if transB else layout(ab_type, n, k, ldb)
    ltB = layout(ab_type, m, k, lda) if transA else layout(ab_type, k, m, lda)
    ltC = layout(c_type, n, m, n)
    pref = vp()
    check(lt.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "pref")
    ws = ctypes.c_uint64(WORKSPACE)
    check(lt.cublasLtMatmulPreferenceSetAttribute(pref, i32(PREF_WORKSPACE), ctypes.byref(ws), sz(8)), "pref ws")
    if ab_type == R32F:
        mask = ctypes.c_uint64(~0xfe & 0xffffffffffffffff)
        check(lt.cublasLtMatmulPreferenceSetAttribute(pref, i32(PREF_IMPL_MASK), ctypes.byref(mask), sz(8)), "pref mask")
    results = (Result * 32)()
    returned = ctypes.c_int(0)
    check(lt.cublasLtMatmulAlgoGetHeuristic(handle, desc, ltA, ltB, ltC, ltC, pref, 32, results, ctypes.byref(returned)), "heuristic")
    heuristic = [results[i].algo for i in range(returned.value) if results[i].state == 0 and results[i].workspace <= WORKSPACE]
    stream = torch.cuda.current_stream().cuda_stream
    one, beta = ctypes.c_float(1.0), ctypes.c_float(beta_value)

    def run(algo):
        return lt.cublasLtMatmul(handle, desc, ctypes.byref(one), vp(B.data_ptr()), ltA, vp(A.data_ptr()), ltB, ctypes.byref(beta),
                                 vp(C.data_ptr()), ltC, vp(C.data_ptr()), ltC, ctypes.byref(algo), vp(W.data_ptr()), sz(WORKSPACE),
                                 vp(stream))

    def time(algo, reps=10, rounds=3):
        if run(algo) != 0:
            return None
        torch.cuda.synchronize()
        best = None
        for _ in range(rounds):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(reps):
                run(algo)
            e.record()
            e.synchronize()
            t = s.elapsed_time(e) * 1000 / reps
            best = t if best is None else min(best, t)
        return best

    def valid(algo):
        r = Result()
        return lt.cublasLtMatmulAlgoCheck(handle, desc, ltA, ltB, ltC, ltC, ctypes.byref(algo), ctypes.byref(r)) == 0 \
            and r.workspace <= WORKSPACE

    timed = [(time(a), "heuristic", i, a) for i, a in enumerate(heuristic)]
    heur = [t for t in timed if t[0] is not None]
    first = heur[0][0] if heur else None
    best_heur = min(heur, key=lambda t: t[0]) if heur else None

    def variants(algo):
        tiles = cap_list(algo, CAP_TILES) or [config(algo, CONFIG_TILE)]
        stages = cap_list(algo, CAP_STAGES) or [config(algo, CONFIG_STAGES)]
        splits = [1, 2, 3, 4] if cap_int(algo, CAP_SPLITK) else [1]
        swizzles = [0, 1] if cap_int(algo, CAP_SWIZZLE) else [0]
        for tile, stage, split, swizzle in itertools.product(tiles, stages, splits, swizzles):
            settings = [(CONFIG_TILE, tile, 4), (CONFIG_STAGES, stage, 4), (CONFIG_SPLITK, split, 4), (CONFIG_SWIZZLE, swizzle, 4)]
            if split > 1:
                settings.append((CONFIG_REDUCTION, 1, 4))   # in place
            a = configured(algo, settings)
            if a is not None and valid(a):
                yield a

    seen, wider = set(), []
    for i, algo in enumerate(heuristic[:4]):
        for a in variants(algo):
            key = bytes(a.data)
            if key in seen:
                continue
            seen.add(key)
            if len(wider) >= budget:
                break
            t = time(a)
            if t is not None:
                wider.append((t, "variant of heuristic", i, a))
    ids = (ctypes.c_int * 256)()
    count = ctypes.c_int(0)
    lt.cublasLtMatmulAlgoGetIds(handle, i32(COMPUTE_32F), i32(R32F), i32(ab_type), i32(ab_type), i32(c_type), i32(c_type), 256, ids,
                                ctypes.byref(count))
    listed = []
    for algo_id in list(ids)[:count.value]:
        a = Algo()
        if lt.cublasLtMatmulAlgoInit(handle, i32(COMPUTE_32F), i32(R32F), i32(ab_type), i32(ab_type), i32(c_type), i32(c_type),
                                     i32(algo_id), ctypes.byref(a)) != 0:
            continue
        n_before = len(listed)
        for v in variants(a):
            key = bytes(v.data)
            if key in seen or len(listed) - n_before >= budget // 8 or len(listed) >= budget:
                continue
            seen.add(key)
            t = time(v)
            if t is not None:
                listed.append((t, "library id", algo_id, v))
    flops = 2.0 * m * n * k
    def line(label, t):
        if t is None:
            return f"    {label}: none"
        return f"    {label}: {t[0]:8.2f} us  {flops / t[0] / 1e6:7.1f} TFLOP/s  ({t[1]} {t[2]}: {name(t[3])})"
    print(f"{spec}: {len(heur)} heuristic, {len(wider)} variants, {len(listed)} from {count.value} library ids", flush=True)
    print(f"    heuristic first: {first:8.2f} us" if first else "    heuristic first: none")
    print(line("heuristic best", best_heur))
    print(line("variants best ", min(wider, key=lambda t: t[0]) if wider else None))
    print(line("library best  ", min(listed, key=lambda t: t[0]) if listed else None))
    everything = sorted(heur + wider + listed, key=lambda t: t[0])[:5]
    for t in everything:
        print("      " + line("top", t).strip())
    sys.stdout.flush()


DEFAULT = [
    # mlp-wide fp32 (batch 256): first layer forward and weight gradient, a 4096-wide forward, input and weight gradient.
    "NT 256 4096 1024 f32", "TN 4096 1024 256 f32+", "NT 256 4096 4096 f32", "NN 256 4096 4096 f32", "TN 4096 4096 256 f32+",
    # gpt bf16 (4096 rows): qkv, out-projection, MLP forward; their input gradients; weight gradients into fp32.
    "NT 4096 1536 512 bf16", "NT 4096 512 512 bf16", "NT 4096 2048 512 bf16", "NT 4096 512 2048 bf16",
    "NN 4096 512 1536 bf16", "NN 4096 512 512 bf16", "NN 4096 2048 512 bf16", "NN 4096 512 2048 bf16",
    "TN 512 2048 4096 bf16f32", "TN 2048 512 4096 bf16f32", "TN 512 512 4096 bf16f32", "TN 1536 512 4096 bf16f32",
]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", nargs="+", default=DEFAULT, help="'TRANS M N K TYPES[+]' (TYPES f32, bf16, bf16f32; + adds C)")
    ap.add_argument("--budget", type=int, default=400, help="most configurations timed per call and search")
    args = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, cuBLASLt {lt.cublasLtGetVersion()}", flush=True)
    for spec in args.calls:
        try:
            probe(spec, args.budget)
        except Exception as error:
            print(f"{spec}: {error}", flush=True)
