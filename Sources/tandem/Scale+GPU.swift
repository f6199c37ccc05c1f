import ArgumentParser
import Foundation
import TandemModels
import TandemParallel
import TandemCUDA

// MARK: - scale --device cuda: the batch size on one GPU

extension Scale {
    /// `--batches`, or ¼×, ½×, 1×, 2×, 4× the workload's GPU batch.
    func parsedBatches(_ model: ReferenceModel) throws -> [Int] {
        guard let batches else { return [4, 2, 1].map { max(1, model.gpuBatch / $0) } + [2, 4].map { model.gpuBatch * $0 } }
        let values = batches.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--batches must be positive integers separated by commas, like 64,128,256; got '\(batches)'")
        }
        return values.map { $0! }
    }

    /// Each workload at each batch size on GPU 0 (CUDA graph with --graph), `repeats` times: the
    /// median step, throughput, achieved TFLOP/s and peak memory; every run in `out/results.jsonl`.
    func runBatchSweepOnGPU() throws {
        let outputs = try Outputs(directory: out)
        guard let p = GPUPrecision(rawValue: precision) else { throw ValidationError("--precision must be fp32, tf32, bf16 or fp16, got '\(precision)'") }
        let gpu = try openGPU()
        let timed = steps ?? 50
        var lines: [String] = []
        print("\(gpu.device.name), \(p.rawValue)\(graph ? ", CUDA graph" : ""): median of \(repeats) runs of \(timed) steps each")
        print("model      batch   step ms   samples/s    TFLOP/s   peak MiB")
        for model in try parsedModels() {
            for b in try parsedBatches(model) {
                var steps: [Double] = []
                var last: GPUBenchmark.Measurement?
                for _ in 0..<repeats {
                    let m = try GPUBenchmark(workload: model, batch: b, steps: timed, warmup: max(warmup, 3), precision: p, graph: graph).run(gpu: gpu)
                    steps.append(1000 * m.seconds / Double(timed))
                    var result = RunResult(
                        model: model.rawValue, params: m.parameters, backend: "none", device_name: gpu.device.name, workers: 1,
                        batch_per_worker: b, global_batch: b, steps: timed, warmup: max(warmup, 3), seconds: m.seconds,
                        samples_per_s: Double(b * timed) / m.seconds, step_ms: .init(m.stepMilliseconds), loss: m.loss,
                        flops_per_step: m.flopsPerStep)
                    result.device = "cuda"
                    result.precision = p.rawValue
                    result.step_ms.mean = 1000 * m.seconds / Double(timed)
                    result.memory = .init(peak_bytes: m.peakBytes, params: 4 * m.parameters, grads: 4 * m.parameters,
                                          optimizer: m.bytes[.optimizer] ?? 0, activations: m.bytes[.activations] ?? 0)
                    lines.append(jsonLine(result))
                    last = m
                }
                let median = steps.sorted()[steps.count / 2]
                let m = last!
                print(String(format: "%-9@ %6d %9.3f %11.0f %10.1f %10.0f", model.rawValue, b, median, Double(b) / (median / 1000),
                             m.flopsPerStep / (median / 1000) / 1e12, Double(m.peakBytes) / 1_048_576))
            }
        }
        try outputs.write("results.jsonl", lines.joined())
        print("wrote \(outputs.directory)/results.jsonl")
    }
}
