import Foundation
import TandemCollectives
import TandemCore
import TandemData
import TandemModels
import TandemOptim
import TandemParallel
import Testing

// MARK: - N workers × batch B ≡ 1 worker × batch N·B

/// What one rank of a data-parallel run ends with.
struct RankRun: Sendable {
    /// Every parameter's final values.
    var weights: [[Float]]
    /// The sample indices of every micro-batch this rank drew, in order.
    var drawn: [[Int]]
    /// `DistributedDataParallel.bytesPerStep`.
    var bytesPerStep: Int
}

/// One data-parallel training run over threads: every rank builds its model from a
/// different seed (DDP must broadcast rank 0's weights), reads its shard through a
/// `DistributedSampler` and a `DataLoader`, and takes `steps` `Worker` steps of
/// `accumulate` micro-batches of `batch` samples.
func trainDistributed(
    _ workload: Workload, data: Dataset, ranks: Int, strategy: DistributedSampler.Strategy = .block, batch: Int = 2,
    accumulate: Int = 1, steps: Int = 3, optimizer: OptimizerKind = .sgd, compression: GradientCompression = .none,
    bucketBytes: Int = 512, samplerSeed: UInt64 = 5, clipNorm: Float? = nil, shardOptimizer: Bool = false
) throws -> [RankRun] {
    try ThreadLauncher.run(workers: ranks, timeout: 120) { rank, group in
        let model = workload.make(seed: rank == 0 ? 0 : 1000 + UInt64(rank))
        let worker = try Worker(model: model, group: group, optimizer: try optimizer.make(), bucketBytes: bucketBytes,
                                compression: compression, shardOptimizer: shardOptimizer)
        worker.clipNorm = clipNorm
        let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: ranks, strategy: strategy,
                                             shuffle: true, seed: samplerSeed)
        let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: batch, dropLast: true, prefetch: 1)
        var drawn: [[Int]] = []
        for _ in 0..<steps {
            try worker.step(microBatches: accumulate) { try draw(loader, workload, rank: rank, into: &drawn) }
        }
        if shardOptimizer { try worker.ddp.verifyReplicas() }
        return RankRun(weights: weights(model), drawn: drawn, bytesPerStep: worker.ddp.bytesPerStep)
    }
}

/// Each optimizer step's global batch: the union, over ranks, of the micro-batches that
/// rank drew for that step (so the order in which the shards were cut does not matter).
func globalBatches(_ runs: [RankRun], accumulate: Int, steps: Int) -> [[Int]] {
    (0..<steps).map { s in runs.flatMap { $0.drawn[(s * accumulate)..<((s + 1) * accumulate)].flatMap { $0 } } }
}

/// Requires every rank to hold rank 0's weights bit for bit.
func expectReplicasIdentical(_ runs: [RankRun], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for r in runs.indices.dropFirst() {
        expectClose(runs[r].weights, runs[0].weights, .exact, "\(what): rank \(r) vs rank 0", sourceLocation: sourceLocation)
    }
}

extension ParallelTests {
    @Suite("Data-parallel equivalence") struct Equivalence {
        struct Combination: Sendable, CustomStringConvertible {
            var workload: Workload
            var strategy: DistributedSampler.Strategy
            var ranks: Int
            var accumulate: Int
            var description: String { "\(workload), \(strategy) shards, \(ranks) ranks, \(accumulate) micro-batch\(accumulate == 1 ? "" : "es")" }
        }

        static let combinations: [Combination] = Workload.allCases.flatMap { w in
            DistributedSampler.Strategy.allCases.flatMap { s in
                [1, 2, 3, 4, 8].flatMap { n in [1, 2].map { k in Combination(workload: w, strategy: s, ranks: n, accumulate: k) } }
            }
        }

        /// The defining property of data parallelism: N workers with batch B (and K micro-batches
        /// per step) take the same steps as one worker with the union of their batches.
        @Test("N workers × batch B give the weights of 1 worker × batch N·B", arguments: combinations)
        func defining(_ c: Combination) throws {
            let steps = 3
            let data = try c.workload.dataset(count: 37)
            let runs = try trainDistributed(c.workload, data: data, ranks: c.ranks, strategy: c.strategy, accumulate: c.accumulate, steps: steps)
            #expect(runs.allSatisfy { $0.drawn.count == steps * c.accumulate }, "\(c): ranks drew different numbers of batches")
            let global = globalBatches(runs, accumulate: c.accumulate, steps: steps)
            #expect(global.allSatisfy { $0.count == 2 * c.ranks * c.accumulate }, "\(c): global batch sizes \(global.map(\.count))")
            // The shards of one step are disjoint apart from the sampler's padding.
            let reference = try trainReference(c.workload, data: data, steps: global, optimizer: .sgd)
            expectClose(runs[0].weights, reference, .float, "\(c): rank 0 vs one worker over the union of the batches")
            expectReplicasIdentical(runs, "\(c)")
            // Training moved the weights (an all-zero gradient would pass the comparison too).
            let initial = weights(c.workload.make(seed: 0))
            #expect(maxRelativeError(reference, initial) > 1e-3, "\(c): training did not change the weights")
        }

        @Test("the shards of one step partition the epoch's samples (block and cyclic, no padding)", arguments: [DistributedSampler.Strategy.block, .cyclic], [2, 3, 4])
        func shardsAreDisjoint(strategy: DistributedSampler.Strategy, ranks: Int) throws {
            let data = try Workload.mlp.dataset(count: 24)
            let runs = try trainDistributed(.mlp, data: data, ranks: ranks, strategy: strategy, batch: 2, steps: 2)
            let global = globalBatches(runs, accumulate: 1, steps: 2)
            let all = global.flatMap { $0 }
            #expect(Set(all).count == all.count, "\(strategy) on \(ranks) ranks: a sample was read twice in one epoch: \(global)")
        }

        @Test("bucket size does not change the result", arguments: [Workload.mlp, .gpt], [1, 64, 512, 25 << 20])
        func bucketSizes(workload: Workload, bucketBytes: Int) throws {
            let data = try workload.dataset(count: 37)
            let runs = try trainDistributed(workload, data: data, ranks: 3, accumulate: 2, bucketBytes: bucketBytes)
            let reference = try trainReference(workload, data: data, steps: globalBatches(runs, accumulate: 2, steps: 3), optimizer: .sgd)
            expectClose(runs[0].weights, reference, .float, "\(workload), buckets of \(bucketBytes) bytes")
            expectReplicasIdentical(runs, "\(workload), buckets of \(bucketBytes) bytes")
        }

        @Test("AdamW keeps the property too", arguments: [Workload.mlp, .lstm], [2, 4])
        func adamW(workload: Workload, ranks: Int) throws {
            let data = try workload.dataset(count: 37)
            let runs = try trainDistributed(workload, data: data, ranks: ranks, strategy: .cyclic, optimizer: .adamw)
            let reference = try trainReference(workload, data: data, steps: globalBatches(runs, accumulate: 1, steps: 3), optimizer: .adamw)
            // Adam divides by √v, which magnifies rounding in tiny gradients: a looser absolute floor.
            expectClose(runs[0].weights, reference, Tolerance(relative: 1e-5, absolute: 1e-5), "\(workload) AdamW on \(ranks) ranks")
            expectReplicasIdentical(runs, "\(workload) AdamW on \(ranks) ranks")
        }

        @Test("gradient clipping acts on the averaged gradients, as on one worker", arguments: [Workload.mlp, .cnn], [2, 3])
        func clipping(workload: Workload, ranks: Int) throws {
            let data = try workload.dataset(count: 37)
            let clip: Float = 0.05
            let runs = try trainDistributed(workload, data: data, ranks: ranks, accumulate: 2, clipNorm: clip)
            let model = workload.make(seed: 0)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            let tape = Tape()
            var norms: [Float] = []
            for indices in globalBatches(runs, accumulate: 2, steps: 3) {
                let batch = workload.batch(data.batch(indices: indices))
                model.zeroGradients()
                tape.backward(tape.record { model.loss(batch) })
                norms.append(clipGradientNorm(model.parameters, maxNorm: clip))
                state.apply(to: model.namedParameters)
            }
            #expect(norms.allSatisfy { $0 > clip }, "\(workload): clipping never engaged (norms \(norms))")
            expectClose(runs[0].weights, weights(model), .float, "\(workload) clipped at \(clip) on \(ranks) ranks vs one worker")
            expectReplicasIdentical(runs, "\(workload) clipped on \(ranks) ranks")
        }

        // MARK: The classic DataParallel

        @Test("DataParallel on the union batch gives DDP's weights", arguments: Workload.allCases, [1, 2, 3, 4])
        func dataParallel(workload: Workload, devices: Int) throws {
            let steps = 3
            let data = try workload.dataset(count: 37)
            let runs = try trainDistributed(workload, data: data, ranks: devices, strategy: .cyclic, steps: steps)
            let global = globalBatches(runs, accumulate: 1, steps: steps)
            let dp = DataParallel(devices: devices) { workload.make(seed: 0) }
            #expect(dp.devices == devices)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            let tape = Tape()
            for indices in global {
                let batch = workload.batch(data.batch(indices: indices))
                let loss = dp.forwardBackward(batch)
                // The returned loss is the whole batch's mean loss.
                let whole = tape.record { dp.master.loss(batch) }
                tape.reset()
                #expect(abs(loss - whole.item) <= 1e-5 * max(1, abs(whole.item)), "\(workload) on \(devices) devices: loss \(loss) vs \(whole.item)")
                state.apply(to: dp.master.namedParameters)
            }
            expectClose(weights(dp.master), runs[0].weights, .float, "\(workload): DataParallel on \(devices) devices vs DDP rank 0")
            let reference = try trainReference(workload, data: data, steps: global, optimizer: .sgd)
            expectClose(weights(dp.master), reference, .float, "\(workload): DataParallel on \(devices) devices vs one worker")
        }

        @Test("DataParallel with a batch smaller than the device count")
        func dataParallelSmallBatch() throws {
            let data = try Workload.mlp.dataset(count: 8)
            let dp = DataParallel(devices: 4) { Workload.mlp.make(seed: 0) }
            let reference = Workload.mlp.make(seed: 0)
            let batch = Workload.mlp.batch(data.batch(indices: [3, 5]))
            _ = dp.forwardBackward(batch)
            let tape = Tape()
            let loss = tape.record { reference.loss(batch) }
            tape.backward(loss)
            expectClose(dp.master.parameters.map { $0.gradient?.scalars ?? [] }, reference.parameters.map { $0.gradient!.scalars }, .float,
                        "gradients of a 2-sample batch over 4 devices")
        }

        // MARK: Compression

        @Test("bf16 and fp16 gradients: weights close to float32, half the bytes", arguments: [Workload.mlp, .gpt], [GradientCompression.bf16, .fp16])
        func compression(workload: Workload, compression: GradientCompression) throws {
            let data = try workload.dataset(count: 37)
            let exact = try trainDistributed(workload, data: data, ranks: 4)
            let compressed = try trainDistributed(workload, data: data, ranks: 4, compression: compression)
            let model = workload.make(seed: 0)
            #expect(exact[0].bytesPerStep == 4 * model.parameterCount, "\(workload): float32 bytes per step")
            #expect(2 * compressed[0].bytesPerStep == exact[0].bytesPerStep, "\(workload) \(compression): \(compressed[0].bytesPerStep) bytes per step vs \(exact[0].bytesPerStep)")
            #expect(compressed.map(\.drawn) == exact.map(\.drawn))
            let tolerance = compression == .bf16 ? Tolerance(relative: 3e-2, absolute: 2e-3) : Tolerance(relative: 3e-3, absolute: 3e-4)
            expectClose(compressed[0].weights, exact[0].weights, tolerance, "\(workload) \(compression) vs float32 gradients")
            #expect(maxRelativeError(compressed[0].weights, exact[0].weights) > 0, "\(workload) \(compression): no rounding at all")
            expectReplicasIdentical(compressed, "\(workload) \(compression)")
        }
    }
}
