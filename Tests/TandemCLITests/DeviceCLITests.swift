import Foundation
import Testing

// MARK: - `--device cuda` on a host without the CUDA libraries

/// Every GPU command, with the CUDA search pointed at an empty folder (as on a host without a
/// driver): a one-line error naming what is missing and what to install, never a crash.
@Suite("GPU commands without CUDA")
struct DeviceCLITests {
    static let empty: String = {
        let path = NSTemporaryDirectory() + "tandem-no-cuda-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    @Test("a missing driver is a clear error for every GPU command", arguments: [
        ["bench", "--device", "cuda", "--model", "mlp"],
        ["train", "--device", "cuda", "--model", "mlp", "--steps", "2"],
        ["selftest", "--device", "cuda"],
        ["scale", "--device", "cuda", "--model", "mlp", "--batches", "8,16", "--out", NSTemporaryDirectory() + "tandem-no-cuda-scale"],
    ])
    func missingDriver(arguments: [String]) throws {
        let outcome = try CLI.run(arguments, environment: ["TANDEM_CUDA_LIBS": Self.empty])
        expectCleanFailure(outcome, mentions: ["CUDA driver", "libcuda.so.1", "not found", "install", Self.empty])
    }

    @Test("GPU flags are checked before any GPU is opened", arguments: [
        (["train", "--device", "cuda", "--workers", "2"], ["one GPU", "--workers"]),
        (["scale", "--device", "cuda", "--batches", "0,x"], ["--batches", "positive"]),
        (["scale", "--device", "cuda", "--backend", "mpi"], ["--backend nccl"]),
        (["scale", "--precision", "bf16"], ["--precision", "GPU"]),
        (["bench", "--device", "tpu"], ["--device"]),
        (["bench", "--device", "cuda", "--precision", "fp8"], ["--precision"]),
        (["bench", "--device", "cuda", "--compress", "bf16"], ["--compress", "--backend nccl"]),
        (["train", "--device", "cuda", "--model", "mlp", "--compress", "fp16"], ["--compress", "--backend nccl"]),
        (["bench", "--device", "cuda", "--backend", "nccl", "--compress", "fp16"], ["--compress fp16", "--compress bf16"]),
        (["bench", "--device", "cuda", "--bucket-mb", "0"], ["--bucket-mb", "(0, 1048576]"]),
    ])
    func badFlags(arguments: [String], words: [String]) throws {
        let outcome = try CLI.run(arguments, environment: ["TANDEM_CUDA_LIBS": Self.empty])
        expectCleanFailure(outcome, mentions: words)
    }

    @Test("doctor names every CUDA library it could not find, and still exits 0")
    func doctor() throws {
        let outcome = try CLI.run(["doctor"], environment: ["TANDEM_CUDA_LIBS": Self.empty])
        #expect(outcome.exitedNormally && outcome.status == 0, "\(outcome)")
        for library in ["CUDA driver:", "NVRTC:", "cuBLAS:", "cuBLASLt:", "cuDNN:", "NCCL:", "kernel cache:", "GEMM algorithms:"] {
            #expect(outcome.stdout.contains(library), "doctor printed no \(library) line: \(outcome)")
        }
        #expect(outcome.stdout.contains("TANDEM_CUDA_LIBS=\(Self.empty)"), "\(outcome)")
    }

    @Test("doctor says where GEMM choices are kept and how many, and when they are not")
    func doctorCaches() throws {
        let dir = Self.empty + "-gemm-\(getpid())"
        mkdir(dir, 0o755)
        let record = "# header\nNN 1x2x3 of 8\t1\tnote\nTN 4x5x6 of 8 or other\t-1\tnote\n"
        #expect(FileManager.default.createFile(atPath: dir + "/GPU-lt.tsv", contents: Data(record.utf8)))
        let kept = try CLI.run(["doctor"], environment: ["TANDEM_CUDA_LIBS": Self.empty, "TANDEM_GEMM_CACHE": dir])
        #expect(kept.exitedNormally && kept.status == 0, "\(kept)")
        #expect(kept.stdout.contains("GEMM algorithms: chosen by timing; kept in \(dir) (2 kinds of GEMM in 1 files"), "\(kept)")
        let off = try CLI.run(["doctor"], environment: ["TANDEM_CUDA_LIBS": Self.empty, "TANDEM_GEMM_CACHE": "none", "TANDEM_GEMM_TUNE": "0",
                                                        "TANDEM_KERNEL_CACHE": "none"])
        #expect(off.stdout.contains("GEMM algorithms: not timed (TANDEM_GEMM_TUNE=0)"), "\(off)")
        #expect(off.stdout.contains("not kept (TANDEM_GEMM_CACHE=none)"), "\(off)")
        #expect(off.stdout.contains("kernel cache: off"), "\(off)")
    }
}
