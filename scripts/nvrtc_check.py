#!/usr/bin/env python3
"""Compiles Tandem's CUDA kernels with NVRTC on a host without a GPU, so a typo in a kernel is found
before a GPU host's time is spent. The kernel source is read from the Swift files the way
KernelSource.all joins it; `--ptxas-verbose` prints registers and spills per kernel.

    pip install nvidia-cuda-nvrtc-cu12          # or point --nvrtc at any libnvrtc.so
    python3 scripts/nvrtc_check.py [--arch sm_90] [--ptxas-verbose] [--grep lstm_seq] [-D NAME=VALUE] [--ptx FILE]
"""
import argparse, ctypes, glob, os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def kernel_source():
    swift = "".join(open(p).read() for p in sorted(glob.glob(os.path.join(ROOT, "Sources/TandemCUDA/Kernels+*.swift"))))
    parts = dict(re.findall(r'static let (\w+) = #"""\n(.*?)\n"""#', swift, re.S))
    order = re.search(r"public static let all = ([\w +]+)\n", swift).group(1).split(" + ")
    missing = [name for name in order if name not in parts]
    if missing:
        sys.exit(f"kernel source parts not found in Sources/TandemCUDA/Kernels+*.swift: {missing}")
    return "\n".join(parts[name] for name in order)


def find_nvrtc(explicit):
    if explicit:
        return explicit
    for pattern in ["/tmp/nvrtcenv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.*",
                    os.path.join(sys.prefix, "lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.*"),
                    "/usr/local/cuda/lib64/libnvrtc.so*"]:
        hits = [h for h in glob.glob(pattern) if "builtins" not in h and ".alt." not in h]
        if hits:
            return sorted(hits)[-1]
    sys.exit("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12, or pass --nvrtc PATH")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvrtc", help="path of libnvrtc.so")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--ptxas-verbose", action="store_true", help="print ptxas's registers/spills per kernel")
    ap.add_argument("--grep", help="with --ptxas-verbose: only lines about kernels containing this")
    ap.add_argument("--ptx", metavar="FILE", help="write the PTX there, to compare two versions' code")
    ap.add_argument("-D", "--define", action="append", default=[], metavar="NAME=VALUE",
                    help="a -D option for NVRTC, as TANDEM_KERNEL_DEFINES passes them (repeatable)")
    args = ap.parse_args()
    lib = ctypes.CDLL(find_nvrtc(args.nvrtc))
    source = kernel_source().encode()
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), source, b"tandem.cu", 0, None, None) != 0:
        sys.exit("nvrtcCreateProgram failed")
    options = [f"--gpu-architecture={args.arch}".encode(), b"--std=c++17", b"-default-device"]
    options += [f"-D{d}".encode() for d in args.define]
    if args.ptxas_verbose:
        options.append(b"--ptxas-options=-v")
    arr = (ctypes.c_char_p * len(options))(*options)
    rc = lib.nvrtcCompileProgram(prog, len(options), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    text = log.value.decode(errors="replace")
    if args.grep:
        lines, keep = [], False
        for line in text.splitlines():
            if "Compiling entry function" in line:
                keep = args.grep in line
            if keep:
                lines.append(line)
        text = "\n".join(lines)
    print(text)
    if rc == 0 and args.ptx:
        ptx = None
        if lib.nvrtcGetPTXSize(prog, ctypes.byref(size)) == 0:
            ptx = ctypes.create_string_buffer(size.value)
        if ptx is None or lib.nvrtcGetPTX(prog, ptx) != 0:
            sys.exit("nvrtcGetPTX failed (an older NVRTC gives PTX only for a virtual architecture: --arch compute_90)")
        with open(args.ptx, "w") as f:
            f.write(ptx.value.decode())
    print("compiled" if rc == 0 else f"NVRTC error {rc}", f"({len(source)} bytes of source, {args.arch})")
    sys.exit(0 if rc == 0 else 1)


if __name__ == "__main__":
    main()
