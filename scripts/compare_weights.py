#!/usr/bin/env python3
"""Compare the weights of two safetensors files, tensor by tensor.

    python3 scripts/compare_weights.py one_gpu.safetensors two_gpus.safetensors --tolerance 1e-4

For every tensor (same names, shapes and dtypes required; F32, F16 and BF16 read) prints the
largest absolute difference and that difference over the tensor's largest magnitude, then
the worst of those relative differences. Exits 1 when it is above --tolerance, 2 when the
files do not hold the same tensors. Standard library only (runs where numpy does not).
"""
import argparse, json, struct, sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        sys.exit(f"{path}: {len(data)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        sys.exit(f"{path}: header of {n} bytes runs past the end of the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        raw = body[lo:hi]
        dtype = info["dtype"]
        if dtype == "F32":
            values = struct.unpack(f"<{len(raw) // 4}f", raw)
        elif dtype == "F16":
            values = struct.unpack(f"<{len(raw) // 2}e", raw)
        elif dtype == "BF16":
            halves = struct.unpack(f"<{len(raw) // 2}H", raw)
            values = struct.unpack(f"<{len(halves)}f", struct.pack(f"<{len(halves)}I", *[h << 16 for h in halves]))
        else:
            sys.exit(f"{path}: tensor {name} has dtype {dtype}; F32, F16 and BF16 are read")
        tensors[name] = (dtype, tuple(info["shape"]), values)
    return tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed |a − b| / max |a| per tensor")
    args = ap.parse_args()
    a, b = read(args.a), read(args.b)
    if a.keys() != b.keys():
        print(f"different tensors: only in {args.a}: {sorted(a.keys() - b.keys())}, only in {args.b}: {sorted(b.keys() - a.keys())}")
        sys.exit(2)
    worst = 0.0
    for name in sorted(a):
        (ta, sa, va), (tb, sb, vb) = a[name], b[name]
        if (ta, sa) != (tb, sb):
            print(f"{name}: {ta}{list(sa)} against {tb}{list(sb)}")
            sys.exit(2)
        diff = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
        scale = max((abs(x) for x in va), default=0.0)
        relative = diff / scale if scale > 0 else diff
        worst = max(worst, relative)
        print(f"{name:40s} {ta:5s} {str(list(sa)):16s} max |a−b| {diff:.3e}  relative {relative:.3e}")
    verdict = "within" if worst <= args.tolerance else "ABOVE"
    print(f"worst relative difference {worst:.3e}, {verdict} the tolerance {args.tolerance:g}")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
