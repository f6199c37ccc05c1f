import ArgumentParser
import Foundation
import TandemCore
import TandemModels
import TandemOptim
import TandemParallel
import TandemCUDA
import TandemData

// MARK: - Devices on the command line

/// Where a command computes.
enum ComputeDevice: String, ExpressibleByArgument, CaseIterable {
    case cpu, cuda
}

extension GPUPrecision: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
}

extension ReferenceModel {
    /// Batch per worker on a GPU (WORKLOADS.md).
    var gpuBatch: Int {
        switch self {
        case .lstm: 128
        case .gpt: 16
        default: 256
        }
    }
}

/// Opens the first GPU, turning a missing driver or library into a one-line error.
func openGPU() throws -> CUDAContext {
    do { return try CUDAContext(device: 0) } catch let error as CUDAError {
        throw ValidationError("--device cuda: \(error.description)")
    }
}

// MARK: - bench --device cuda

extension Bench {
    func runOnGPU() throws {
        let job = launch.isNCCL ? try NCCLJob.join(timeout: 300) : nil
        let gpu = try job?.gpu ?? openGPU()
        let b = batch ?? model.gpuBatch
        var benchmark = GPUBenchmark(workload: model, batch: b, steps: steps, warmup: warmup, precision: precision, graph: graph)
        benchmark.collective = job?.group
        benchmark.bucketBytes = bucketByteCount(bucketMB)
        benchmark.wireType = wireType(compress)
        if profile {
            let (rows, launches, engine) = try benchmark.profile(gpu: gpu)
            print("layers: \(engine)")
            let total = rows.reduce(0) { $0 + $1.ms }
            print(String(format: "%@ %@: %.3f ms of kernels per eager step (each launch timed with events)", model.rawValue, precision.rawValue, total))
            for r in rows.prefix(40) { print(String(format: "%9.3f ms %5.1f%% %4d×  %@", r.ms, 100 * r.ms / total, r.count, r.label)) }
            if timeline {
                print("the last eager step, launch by launch (start and duration in µs; the stream: main or side):")
                for l in launches { print(String(format: "%9.1f %8.1f  %@  %@", 1000 * l.start, 1000 * l.ms, l.stream, l.label)) }
            }
            if let tuned = gpu.blasLt?.tuned, !tuned.isEmpty {
                print("GEMM algorithms chosen by timing (index in the list timed: cuBLASLt's heuristic results, then their other configurations; -1: cuBLAS, or cuBLAS and a kernel):")
                for t in tuned {
                    func ms(_ v: Double?) -> String { v.map { String(format: "%.4f ms", $0) } ?? "failed" }
                    let times = t.chosenMs == nil ? "read from the record" : "first \(ms(t.firstMs)), chosen \(ms(t.chosenMs))"
                    print("  \(t.choice) of \(t.candidates): \(times)  \(t.kind)")
                }
            }
            return
        }
        let m = try benchmark.run(gpu: gpu)
        guard job?.isPrimary ?? true else { return }
        let paramBytes = 4 * m.parameters
        let ranks = job?.group.size ?? 1
        var result = RunResult(
            model: model.rawValue, params: m.parameters, backend: job == nil ? "none" : "nccl", device_name: gpu.device.name, workers: ranks,
            batch_per_worker: b, global_batch: b * ranks, steps: steps, warmup: warmup, seconds: m.seconds,
            samples_per_s: Double(b * ranks * steps) / m.seconds, step_ms: .init(m.stepMilliseconds),
            memory: .init(peak_bytes: m.peakBytes, params: paramBytes, grads: paramBytes,
                          optimizer: m.bytes[.optimizer] ?? paramBytes, activations: m.bytes[.activations] ?? 0),
            loss: m.loss, flops_per_step: m.flopsPerStep)
        result.device = "cuda"
        result.precision = precision.rawValue
        // As torch_bench.py without --sync-each-step: the mean is wall time over steps.
        result.step_ms.mean = 1000 * m.seconds / Double(steps)
        if json {
            // The schedule the step took, for scripts that compare runs (scripts/gpu_ab.py); stdout stays one JSON object.
            FileHandle.standardError.write(Data("layers: \(m.engine)\n".utf8))
            try printJSON(result)
            return
        }
        print("\(result.model) on \(gpu.device.name) (\(precision.rawValue)\(graph ? ", graph" : "")): "
              + String(format: "%.1f samples/s, step mean %.3f ms, median %.3f ms, loss %.4f", result.samples_per_s, result.step_ms.mean, result.step_ms.median, result.loss))
    }
}

// MARK: - train --device cuda

extension Train {
    func runOnGPU() throws {
        guard workers == 1 else { throw ValidationError("--device cuda trains on one GPU: leave --workers at 1") }
        guard accumulate == 1, checkpointDir == nil else { throw ValidationError("--device cuda does not take --accumulate or --checkpoint-dir yet") }
        if graph && (schedule != "constant" || warmupSteps > 0) {
            throw ValidationError("--graph replays one captured step with a fixed learning rate: use --schedule constant and no --warmup-steps")
        }
        let data = try TrainingData(data: self.data, model: model, hidden: try parsedHidden(), evalFraction: evalFraction, seed: seed)
        let network = data.makeModel()
        if let initial = `init` { try network.loadWeights(from: initial) }
        let b = batch ?? model.gpuBatch
        // Over NCCL: this process is one rank (one GPU) and reads its shard of the data.
        let job = launch.isNCCL ? try NCCLJob.join(timeout: timeout) : nil
        let (rank, ranks) = (job?.group.rank ?? 0, job?.group.size ?? 1)
        let strategy = DistributedSampler.Strategy(rawValue: shard) ?? .block
        let stream = try data.stream(rank: rank, worldSize: ranks, strategy: strategy, batch: b, prefetch: prefetch)
        let total = steps ?? epochs.map { $0 * data.stepsPerEpoch(batch: b, worldSize: ranks, accumulate: 1) } ?? 100
        let rates = try parsedSchedule(steps: total)
        let gpu = try job?.gpu ?? openGPU()
        let opt: GPUOptimizer = optimizer == "adamw"
            ? .adamw(learningRate: lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: weightDecay)
            : .sgd(learningRate: lr, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        if optimizer == "sgd" { _ = try makeOptimizer() }   // the CPU optimizer's checks of the hyperparameters
        let trainer = try GPUTrainer(gpu: gpu, workload: model, model: network, batch: b, precision: precision, optimizer: opt,
                                     clipNorm: clipNorm ?? 0)
        if let job { try trainer.join(job.group) }
        if let bytes = bucketByteCount(bucketMB) { trainer.bucketBytes = bytes }
        if let type = wireType(compress) { try trainer.compressGradients(to: type) }
        let quiet = self.quiet || !(job?.isPrimary ?? true)
        let start = Date()
        var loss: Float = .nan
        for step in 0..<total {
            try trainer.load(stream.next())
            trainer.setLearningRate(rates.rate(base: lr, step: step + 1, warmup: warmupSteps))
            if graph && step == 3 { try trainer.captureGraph() }
            try trainer.step()
            if step == total - 1 || (!quiet && (step + 1) % 10 == 0) {
                loss = try trainer.loss()
                try requireFiniteLoss(loss)
                if !quiet {
                    let elapsed = Date().timeIntervalSince(start)
                    printError(String(format: "step %d/%d  loss %.4f  %.0f samples/s", step + 1, total, loss, Double(b * ranks * (step + 1)) / elapsed))
                }
            }
        }
        try gpu.synchronize()
        try job?.group.checkHealth()
        let seconds = Date().timeIntervalSince(start)
        try trainer.downloadWeights()
        guard job?.isPrimary ?? true else { return }
        if let save { try network.saveWeights(to: save) }
        let held = data.evalBatches()
        let e: (loss: Double, accuracy: Double?)? = held.isEmpty ? nil : TandemParallel.Evaluation.run(network, held)
        var evaluation = ""
        if let e {
            evaluation = String(format: ", held-out loss %.4f", e.loss) + (e.accuracy.map { String(format: ", accuracy %.2f%%", 100 * $0) } ?? "")
        }
        let state = try trainer.stepState()
        if json {
            var result = RunResult(model: model.rawValue, params: trainer.parameterCount, backend: job == nil ? "none" : "nccl",
                                   device_name: gpu.device.name, workers: ranks,
                                   batch_per_worker: b, global_batch: b * ranks, steps: total, warmup: 0, seconds: seconds,
                                   samples_per_s: Double(b * ranks * total) / seconds, step_ms: .init([1000 * seconds / Double(total)]), loss: Double(loss))
            result.device = "cuda"
            result.precision = precision.rawValue
            if let e { result.eval_loss = e.loss; result.accuracy = e.accuracy }
            try printJSON(result)
            return
        }
        print(String(format: "%@ on %@ (%@%@): %d steps, loss %.4f, %.1f samples/s%@%@", model.rawValue, gpu.device.name, precision.rawValue,
                     graph ? ", graph" : "", total, loss, Double(b * ranks * total) / seconds, evaluation,
                     precision == .fp16 ? String(format: ", loss scale %.0f, %d steps skipped", state[2], total - Int(state[5])) : ""))
    }
}
