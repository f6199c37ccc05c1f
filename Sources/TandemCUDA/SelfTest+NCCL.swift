import Foundation
import TandemCore
import TandemModels
import TandemCollectives

// MARK: - NCCL on one GPU

extension GPUSelfTest {
    /// What one GPU can check of the NCCL backend: every collective of a job of one through
    /// both APIs (handles and stream order); a DDP step over NCCL against the plain step
    /// (identical weights), eager and in a captured graph, averaging over the one rank on purpose (``GPUTrainer/averagesAlone``)
    /// after backward and in buckets beside it, and with bf16 on the wire (close, not equal); and a rank that never joins ending
    /// in a timeout that names it instead of a hang.
    func ncclChecks() throws {
        let nccl: NCCLLibrary
        do { nccl = try NCCLLibrary.shared() } catch {
            record("nccl: library", "-", .nan, 0, note: "\(error)")
            return
        }
        record("nccl: library opened", "-", 0, 0, note: "\(nccl.path), version \((try? nccl.version()) ?? "?")")
        let folder = NSTemporaryDirectory() + "tandem-selftest-nccl-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let group = try NCCLGroup.join(gpu: gpu, rendezvous: try NCCLRendezvous(directory: folder + "/", rank: 0, size: 1), timeout: 30)

        // Collectives of a job of one: sum, average and max leave values as they are; broadcast,
        // all-gather and reduce-scatter copy. Checked on random data, through handles.
        let n = 1000
        let x = random(n)
        let a = try device(x, .fp32), b = try device(x, .fp32)
        defer { gpu.free(a); gpu.free(b) }
        var worst = 0.0
        for op in [ReduceOperation.sum, .average, .max] {
            try group.allReduce(.device(a, count: n), operation: op).wait()
            worst = max(worst, Self.relativeError(try gpu.downloadFloats(a, count: n), x))
        }
        try group.broadcast(.device(a, count: n), root: 0).wait()
        try group.allGather(send: .device(a, count: n), receive: .device(b, count: n)).wait()
        worst = max(worst, Self.relativeError(try gpu.downloadFloats(b, count: n), x))
        try gpu.fill(b, words: n, pattern: 0)
        try group.reduceScatter(send: .device(a, count: n), receive: .device(b, count: n), operation: .sum).wait()
        worst = max(worst, Self.relativeError(try gpu.downloadFloats(b, count: n), x))
        try group.barrier().wait()
        try group.allReduceInStream([.device(a, count: n)], operation: .average, stream: gpu.stream)
        try group.watch(stream: gpu.stream)
        worst = max(worst, Self.relativeError(try gpu.downloadFloats(a, count: n), x))
        try group.checkHealth()
        record("nccl: job of one, every collective (handles and stream order)", "fp32", worst, 0)

        // A DDP step over NCCL equals the plain step: the average over one rank is exact.
        for (w, p) in [(ReferenceModel.mlp, GPUPrecision.fp32), (.gpt, .bf16)] {
            let batchSize = Self.testBatch(w)
            var g = SeededGenerator(seed: 9)
            let batches = (0..<3).map { _ in w.syntheticBatch(size: batchSize, generator: &g) }
            let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false)
            let plain = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
            // One averages the whole gradient after backward; the others in buckets on the communication stream while
            // backward runs (as a job of several does), weight gradients beside on the side stream, and the same sending
            // it as bf16. 1 MiB buckets, so that all-reduces start while backward runs (mlp's whole gradient is
            // 7 MiB), and the plain step's schedule for all (each chose one by timing; GEMMs on a share of the
            // multiprocessors round differently from GEMMs on all).
            func averaging(buckets: Int, wire: DType? = nil) throws -> GPUTrainer {
                let t = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
                try t.join(group)
                t.averagesAlone = true
                t.bucketBytes = buckets
                t.schedule = plain.schedule
                if let wire { try t.compressGradients(to: wire) }
                return t
            }
            let ddp = try averaging(buckets: 0), bucketed = try averaging(buckets: 1 << 20)
            let narrowed = try averaging(buckets: 1 << 20, wire: .bfloat16)
            let initial = try plain.downloadParameters()
            for (i, batch) in batches.enumerated() {
                try plain.load(batch); try plain.step()
                for t in [ddp, bucketed, narrowed] {
                    try t.load(batch)
                    if i == 1 { try t.captureGraph() }
                    try t.step()
                }
            }
            try gpu.synchronize()
            try group.checkHealth()
            func flat(_ t: GPUTrainer) throws -> [Float] { let v = try t.downloadParameters(); return plain.names.flatMap { v[$0]! } }
            let reference = try flat(plain), start = plain.names.flatMap { initial[$0]! }
            for (t, how) in [(ddp, "DDP step"), (bucketed, "DDP step in buckets beside backward")] {
                record("nccl: \(w.rawValue) \(how) (eager, then graph) vs plain step, 3 steps", p.rawValue, Self.relativeError(try flat(t), reference),
                       w == .gpt ? 1e-5 : 0)
            }
            // bf16 on the wire rounds each gradient (at most 2⁻⁸ relative): the weights' changes over three steps stay that
            // close to the plain step's, and differ from those of the same step with fp32 on the wire (the rounding happened).
            func change(_ weights: [Float]) -> [Float] { zip(weights, start).map { $0 - $1 } }
            let narrow = change(try flat(narrowed))
            record("nccl: \(w.rawValue) DDP step with bf16 gradients on the wire: weight changes vs plain step", p.rawValue,
                   Self.relativeError(narrow, change(reference)), 1e-2)
            let apart = Self.relativeError(narrow, change(try flat(bucketed)))
            record("nccl: \(w.rawValue) DDP step with bf16 gradients on the wire differs from fp32 on the wire", p.rawValue, apart > 1e-6 ? 0 : 1, 0,
                   note: String(format: "weight changes %.2e apart", apart))
        }

        // A job of two whose rank 1 never comes: joining ends at the timeout, naming rank 1.
        let lonely = NSTemporaryDirectory() + "tandem-selftest-nccl-lonely-\(getpid())"
        try FileManager.default.createDirectory(atPath: lonely, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: lonely) }
        let start = Date()
        do {
            _ = try NCCLGroup.join(gpu: gpu, rendezvous: try NCCLRendezvous(directory: lonely, rank: 0, size: 2), timeout: 3)
            record("nccl: a rank that never joins is named at the timeout", "-", 1, 0, note: "joined a job of two alone")
        } catch {
            let seconds = Date().timeIntervalSince(start)
            let named = "\(error)".contains("rank 1 did not arrive")
            record("nccl: a rank that never joins is named at the timeout", "-", named && seconds < 10 ? 0 : 1, 0,
                   note: String(format: "after %.1f s: %@", seconds, "\(error)"))
        }
        try gpu.makeCurrent()
    }
}
