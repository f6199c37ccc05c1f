import ArgumentParser
import Foundation
import TandemCUDA
import TandemModels
import TandemParallel

// MARK: - scale --backend nccl: every configuration as a `tandem launch` job

/// Runs benchmark configurations as `tandem launch --gpus N -- tandem bench --device cuda
/// --backend nccl …` child jobs, one per configuration, and reads rank 0's result line.
struct NCCLJobRunner: Sendable {
    let tandem: String
    let precision: String
    let graph: Bool
    let timeout: Double

    init(precision: String, graph: Bool, timeout: Double = 900) {
        tandem = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        self.precision = precision
        self.graph = graph
        self.timeout = timeout
    }

    /// One configuration: `workers` GPUs, one process each.
    func measure(_ benchmark: Benchmark, workers: Int, recordEvents: Bool) throws -> Benchmark.Measurement {
        let output = try run(workers, ["bench", "--device", "cuda", "--backend", "nccl", "--model", benchmark.workload.rawValue,
                                       "--batch", "\(benchmark.batch)", "--steps", "\(benchmark.steps)", "--warmup", "\(benchmark.warmup)",
                                       "--precision", precision, "--json"] + (graph ? ["--graph"] : []))
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            throw ValidationError("--backend nccl: the job for \(benchmark.workload.rawValue) × \(workers) GPUs printed no result:\n\(output.suffix(2000))")
        }
        let result = try JSONDecoder.tandem.decode(RunResult.self, from: Data(line.utf8))
        return Benchmark.Measurement(result: result, spans: [], collectives: [])
    }

    /// One GPU's measured GEMM rate in the sweep's precision (true fp32, tf32, or bf16 for
    /// bf16 and fp16), the peak its MFU is against; GPU 0 is free once the jobs have ended.
    func peakFLOPS() throws -> Double {
        let c = try GPUCeilings.measure(gpu: try openGPU(), n: 4096, copyBytes: 256 << 20, repeats: 5)
        switch precision {
        case "fp32": return c.fp32TFLOPs * 1e12
        case "tf32": return c.tf32TFLOPs * 1e12
        default: return c.bf16TFLOPs * 1e12
        }
    }

    /// The all-reduce sweep between `workers` GPUs.
    func commRows(workers: Int, sizes: [Int], iterations: Int) throws -> [CommBenchmark.Row] {
        let output = try run(workers, ["comm", "--backend", "nccl", "--json", "--min-bytes", "\(sizes.min()!)", "--max-bytes", "\(sizes.max()!)",
                                       "--iterations", "\(iterations)"])
        return try output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { try JSONDecoder().decode(CommBenchmark.Row.self, from: Data($0.utf8)) }
    }

    /// Runs `tandem launch --gpus workers -- tandem arguments…`; its output, or an error with its tail.
    func run(_ workers: Int, _ arguments: [String]) throws -> String {
        try ChildJob.run(tandem, ["launch", "--gpus", "\(workers)", "--grace", "30", "--", tandem] + arguments, timeout: timeout,
                         what: "--backend nccl: tandem launch --gpus \(workers) -- tandem \(arguments.joined(separator: " "))")
    }
}
