import ArgumentParser
import Foundation
import TandemCore
import TandemCUDA

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Say which native libraries Tandem found, and where.")

    @Flag(help: "Also measure this core's ceilings: single-precision GEMM (1024³) and memory copy.") var measure = false

    func run() throws {
        if let blas = BLAS.library {
            print("BLAS: \(blas.path)\(blas.config.map { " (\($0))" } ?? "")")
        } else {
            print("BLAS: not found — GEMM runs portable Swift kernels (slower). Install it with `apt-get install libopenblas0` or set TANDEM_BLAS=/path/to/libopenblas.so.0")
        }
        if let override = ProcessInfo.processInfo.environment["TANDEM_BLAS"] { print("  TANDEM_BLAS=\(override)") }
        for line in CUDAInventory.report() { print(line) }
        for line in MPIDoctor.report() { print(line) }
        if measure {
            let (gflops, gbps) = Ceilings.measure()
            print(String(format: "one core: GEMM %.1f GFLOP/s (1024×1024×1024, best of 10), memory copy %.1f GB/s (64 MiB, best of 10)", gflops, gbps))
            if let gpu = try? CUDAContext(device: 0) {
                let c = try GPUCeilings.measure(gpu: gpu)
                print(String(format: "GPU 0: GEMM 8192³ %.1f TFLOP/s fp32, %.1f tf32, %.1f bf16; device copy %.2f TB/s (4 GiB; medians of 10)",
                             c.fp32TFLOPs, c.tf32TFLOPs, c.bf16TFLOPs, c.copyTBps))
            }
        }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// The roofline of one core, measured: the best GEMM rate and copy bandwidth over a few runs.
enum Ceilings {
    static func measure() -> (gflops: Double, gbps: Double) {
        let n = 1024
        let a = Tensor(repeating: 0.5, shape: [n, n]), b = Tensor(repeating: 0.25, shape: [n, n]), c = Tensor(zeros: [n, n])
        var best = Double.infinity
        for _ in 0..<10 {
            let t0 = Date()
            Kernels.gemm(m: n, n: n, k: n, a: a.pointer, b: b.pointer, c: c.pointer)
            best = min(best, Date().timeIntervalSince(t0))
        }
        let bytes = 64 << 20
        let src = Tensor(repeating: 1, shape: [bytes / 4]), dst = Tensor(zeros: [bytes / 4])
        var copy = Double.infinity
        for _ in 0..<10 {
            let t0 = Date()
            dst.pointer.update(from: src.pointer, count: bytes / 4)
            copy = min(copy, Date().timeIntervalSince(t0))
        }
        // A copy reads and writes every byte.
        return (2 * Double(n * n * n) / best / 1e9, 2 * Double(bytes) / copy / 1e9)
    }
}
