import Foundation
import TandemCollectives
import TandemCore
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel
import Testing

// MARK: - Sharded optimizer step (ZeRO stage 1) against the unsharded step

/// How a run updates its weights.
enum UpdateKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Every rank all-reduces the gradients and updates its whole replica.
    case unsharded
    /// `ShardedOptimizer`, fused reduce–update–gather on shared memory.
    case sharedMemory
    /// `ShardedOptimizer` through the group's reduce-scatter and all-gather (the MPI and NCCL path).
    case collectives
    var description: String { rawValue }
}

/// What one rank ends a sharded-test run with.
struct ShardRun: Sendable {
    var weights: [[Float]]
    /// Bytes of optimizer state the rank holds after the run.
    var stateBytes: Int
}

/// Options of one sharded-test run.
struct ShardSetup: Sendable, CustomStringConvertible {
    var workload: Workload = .mlp
    var ranks = 2
    var update: UpdateKind = .sharedMemory
    var accumulate = 1
    var clipNorm: Float?
    var optimizer: OptimizerKind = .sgd
    var compression: GradientCompression = .none
    var bucketBytes = 512
    /// All-reduces of at most this many bytes take the tree (0: always the ring, which sums in
    /// rank order as the reduce-scatter does).
    var treeThresholdBytes = 0
    var description: String {
        "\(workload), \(ranks) ranks, \(update), \(accumulate) micro-batch\(accumulate == 1 ? "" : "es")"
            + (clipNorm.map { ", clip \($0)" } ?? "") + (compression == .none ? "" : ", \(compression)") + ", \(optimizer)"
    }
}

/// The global batch of micro-batch `k` of step `s`: 12 samples (divisible by 1, 2, 3 and 4
/// ranks), the same for every worker count, so runs on different N take the same steps.
func globalMicroBatch(step s: Int, micro k: Int, of count: Int) -> [Int] {
    (0..<12).map { (s * 29 + k * 12 + $0 * 7) % count }
}

/// Trains `setup.workload` over threads for the steps in `steps`, each rank on its 12/N
/// share of each global micro-batch; optionally resumes from a checkpoint first and writes
/// one at the end (a real `Checkpoint`, through files).
func trainSharded(_ setup: ShardSetup, data: Dataset, steps: Range<Int>, resumeFrom: String? = nil,
                  checkpointTo: String? = nil) throws -> [ShardRun] {
    let world = ThreadWorld(size: setup.ranks, timeout: 120, treeThresholdBytes: setup.treeThresholdBytes)
    let results = runRanks(world) { group in
        let rank = group.rank, n = setup.ranks
        let model = setup.workload.make(seed: rank == 0 ? 0 : 1000 + UInt64(rank))
        let ddp = try DistributedDataParallel(model, group: group, bucketBytes: setup.bucketBytes, compression: setup.compression)
        let state = OptimizerState(try setup.optimizer.make())
        let sharded = setup.update == .unsharded ? nil : try ShardedOptimizer(state: state, ddp: ddp, sharedMemory: setup.update == .sharedMemory)
        sharded?.clipNorm = setup.clipNorm
        if let dir = resumeFrom {
            _ = try Checkpoint.resume(from: dir, model: model, optimizer: state, settings: [:])
            try sharded?.loadState()
        }
        let tape = Tape()
        for s in steps {
            model.zeroGradients()
            for k in 0..<setup.accumulate {
                let global = globalMicroBatch(step: s, micro: k, of: data.count)
                let mine = Array(global[(rank * 12 / n)..<((rank + 1) * 12 / n)])
                let batch = setup.workload.batch(data.batch(indices: mine))
                var loss = tape.record { model.loss(batch) }
                if setup.accumulate > 1 { loss = tape.record { loss * (1 / Float(setup.accumulate)) } }
                if k < setup.accumulate - 1 { ddp.withoutSync { tape.backward(loss) } } else { tape.backward(loss) }
            }
            try ddp.synchronize()
            if let sharded {
                try sharded.step()
            } else {
                if let clip = setup.clipNorm { clipGradientNorm(model.parameters, maxNorm: clip) }
                state.apply(to: model.namedParameters)
            }
        }
        if let dir = checkpointTo {
            try sharded?.gatherState()
            if rank == 0 { try Checkpoint(step: state.step, batchesDrawn: 0, workers: n, settings: [:]).write(model: model, optimizer: state, to: dir) }
            sharded?.releaseGatheredState()
            try group.barrier().wait()
        }
        let stateBytes = sharded?.stateBytes ?? state.slots.values.reduce(0) { $0 + $1.reduce(0) { $0 + 4 * $1.count } }
        return ShardRun(weights: weights(model), stateBytes: stateBytes)
    }
    return try values(results, "\(setup)")
}

func temporaryDirectory(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "tandem-sharded-\(name)-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Not element-wise: its update of one weight reads every gradient (a global mean), so it
/// cannot be sharded.
final class MeanGradientDescent: Optimizer {
    var learningRate: Float = 0.1
    var stateNames: [String] { [] }
    func update(parameter: Parameter, gradient: Tensor, state: inout [Tensor], step: Int) {
        let mean = gradient.scalars.reduce(0, +) / Float(max(gradient.count, 1))
        for i in 0..<parameter.count { parameter.value.pointer[i] -= learningRate * mean }
    }
}

extension ParallelTests {
    @Suite("Sharded optimizer step") struct Sharded {
        struct Combination: Sendable, CustomStringConvertible {
            var workload: Workload
            var ranks: Int
            var accumulate: Int
            var clip: Bool
            var description: String { "\(workload), \(ranks) ranks, \(accumulate) micro-batch\(accumulate == 1 ? "" : "es")\(clip ? ", clipped" : "")" }
        }

        static let combinations: [Combination] = [Workload.mlp, .gpt, .lstm].flatMap { w in
            [1, 2, 3, 4].flatMap { n in [1, 2].flatMap { k in [false, true].map { c in Combination(workload: w, ranks: n, accumulate: k, clip: c) } } }
        }

        /// Both sharded paths give the unsharded step's weights: bit for bit when the
        /// all-reduce sums in rank order (the ring) and nothing is clipped; with clipping the
        /// global norm is summed shard by shard, so within float tolerance.
        @Test("sharded and unsharded steps give the same weights", arguments: combinations)
        func sameWeights(_ c: Combination) throws {
            let data = try c.workload.dataset(count: 41)
            var setup = ShardSetup(workload: c.workload, ranks: c.ranks, update: .unsharded, accumulate: c.accumulate,
                                   clipNorm: c.clip ? 0.05 : nil)
            let reference = try trainSharded(setup, data: data, steps: 0..<4)
            let initial = weights(c.workload.make(seed: 0))
            #expect(maxRelativeError(reference[0].weights, initial) > 1e-3, "\(c): training did not change the weights")
            for update in [UpdateKind.sharedMemory, .collectives] {
                setup.update = update
                let runs = try trainSharded(setup, data: data, steps: 0..<4)
                for r in runs.indices {
                    expectClose(runs[r].weights, reference[0].weights, c.clip ? .float : .exact, "\(c), \(update): rank \(r) vs unsharded")
                }
            }
        }

        /// Every bucket's element count against every N: most leave a remainder, and with
        /// 1-byte buckets some buckets hold fewer elements than there are ranks.
        @Test("any element count splits over any N", arguments: [1, 4, 512, 1 << 20], [3, 4])
        func unevenSplits(bucketBytes: Int, ranks: Int) throws {
            let data = try Workload.mlp.dataset(count: 41)
            var setup = ShardSetup(workload: .mlp, ranks: ranks, update: .unsharded, bucketBytes: bucketBytes)
            let reference = try trainSharded(setup, data: data, steps: 0..<3)
            for update in [UpdateKind.sharedMemory, .collectives] {
                setup.update = update
                let runs = try trainSharded(setup, data: data, steps: 0..<3)
                expectClose(runs[ranks - 1].weights, reference[0].weights, .exact, "buckets of \(bucketBytes) bytes, \(ranks) ranks, \(update)")
            }
        }

        /// With the backend's default algorithms the all-reduce sums small buckets pairwise (a
        /// tree) and large ones in rank order; the fused pass sums each bucket the same way, so
        /// the bits agree for every N. The group's reduce-scatter always sums in rank order:
        /// from 4 ranks on, small buckets then agree within float tolerance.
        @Test("default tree threshold: the fused pass sums as the all-reduce does", arguments: [2, 4, 5, 6, 8])
        func defaultAlgorithms(ranks: Int) throws {
            let data = try Workload.gpt.dataset(count: 41)
            var setup = ShardSetup(workload: .gpt, ranks: ranks, update: .unsharded, treeThresholdBytes: 64 << 10)
            let reference = try trainSharded(setup, data: data, steps: 0..<3)
            setup.update = .sharedMemory
            expectClose(try trainSharded(setup, data: data, steps: 0..<3)[0].weights, reference[0].weights, .exact, "gpt, \(ranks) ranks, fused")
            setup.update = .collectives
            expectClose(try trainSharded(setup, data: data, steps: 0..<3)[0].weights, reference[0].weights, ranks <= 3 ? .exact : .float,
                        "gpt, \(ranks) ranks, reduce-scatter")
        }

        @Test("AdamW and Nesterov momentum shard too", arguments: [2, 3])
        func otherRules(ranks: Int) throws {
            let data = try Workload.mlp.dataset(count: 41)
            var setup = ShardSetup(workload: .mlp, ranks: ranks, update: .unsharded, optimizer: .adamw)
            let reference = try trainSharded(setup, data: data, steps: 0..<3)
            setup.update = .sharedMemory
            expectClose(try trainSharded(setup, data: data, steps: 0..<3)[1].weights, reference[0].weights, .exact, "AdamW, \(ranks) ranks")
        }

        /// Compressed gradients take the collectives path: the same 16-bit reduction as the
        /// unsharded all-reduce, so the same weights.
        @Test("bf16 and fp16 compression", arguments: [GradientCompression.bf16, .fp16])
        func compression(_ compression: GradientCompression) throws {
            let data = try Workload.mlp.dataset(count: 41)
            var setup = ShardSetup(workload: .mlp, ranks: 3, update: .unsharded, compression: compression)
            let reference = try trainSharded(setup, data: data, steps: 0..<3)
            setup.update = .sharedMemory
            let runs = try trainSharded(setup, data: data, steps: 0..<3)
            expectClose(runs[2].weights, reference[0].weights, .exact, "\(compression), 3 ranks")
        }

        /// Each rank keeps the state of ⌈C/N⌉ elements per bucket: the unsharded state over N,
        /// plus at most one element per bucket of rounding.
        @Test("optimizer memory per rank is divided by N", arguments: [1, 2, 3, 4])
        func memory(ranks: Int) throws {
            let data = try Workload.gpt.dataset(count: 41)
            var setup = ShardSetup(workload: .gpt, ranks: ranks, update: .unsharded, optimizer: .adamw, bucketBytes: 2048)
            let unsharded = try trainSharded(setup, data: data, steps: 0..<1)
            setup.update = .sharedMemory
            let sharded = try trainSharded(setup, data: data, steps: 0..<1)
            let model = Workload.gpt.make(seed: 0)
            let full = 2 * 4 * model.parameterCount   // AdamW: two slots
            #expect(unsharded.allSatisfy { $0.stateBytes == full })
            let buckets = 1 + model.parameterCount * 4 / 2048
            for (r, run) in sharded.enumerated() {
                #expect(run.stateBytes >= full / ranks && run.stateBytes <= full / ranks + 2 * 4 * (buckets + model.parameters.count),
                        "rank \(r) of \(ranks): \(run.stateBytes) bytes of state, the unsharded step keeps \(full)")
            }
        }

        /// Save at step 3 of 6 from a sharded run on 2 ranks; resume unsharded, sharded on
        /// another N, and as before; each must end where an uninterrupted run ends.
        @Test("a sharded checkpoint resumes sharded or not, on any N")
        func checkpoints() throws {
            let data = try Workload.mlp.dataset(count: 41)
            let sharded2 = ShardSetup(workload: .mlp, ranks: 2, update: .sharedMemory, clipNorm: nil, optimizer: .sgd)
            let uninterrupted = try trainSharded(sharded2, data: data, steps: 0..<6)[0].weights
            let dir = temporaryDirectory("resume")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            _ = try trainSharded(sharded2, data: data, steps: 0..<3, checkpointTo: dir)

            // Same layout: bit for bit.
            expectClose(try trainSharded(sharded2, data: data, steps: 3..<6, resumeFrom: dir)[1].weights, uninterrupted, .exact, "sharded 2 → sharded 2")
            // Unsharded on 2 ranks, same summation order: bit for bit.
            var plain2 = sharded2; plain2.update = .unsharded
            expectClose(try trainSharded(plain2, data: data, steps: 3..<6, resumeFrom: dir)[0].weights, uninterrupted, .exact, "sharded 2 → unsharded 2")
            // Other worker counts sum the gradients in another grouping: float tolerance.
            for (ranks, update) in [(1, UpdateKind.unsharded), (3, .sharedMemory), (4, .collectives), (1, .sharedMemory)] {
                var other = sharded2; other.ranks = ranks; other.update = update
                let runs = try trainSharded(other, data: data, steps: 3..<6, resumeFrom: dir)
                expectClose(runs[0].weights, uninterrupted, .float, "sharded 2 → \(update) \(ranks)")
            }
            // And an unsharded checkpoint resumes sharded.
            let dir2 = temporaryDirectory("resume-plain")
            defer { try? FileManager.default.removeItem(atPath: dir2) }
            _ = try trainSharded(plain2, data: data, steps: 0..<3, checkpointTo: dir2)
            expectClose(try trainSharded(sharded2, data: data, steps: 3..<6, resumeFrom: dir2)[0].weights, uninterrupted, .exact, "unsharded 2 → sharded 2")
        }

        @Test("an update rule that is not element-wise is refused")
        func refusesNonElementwise() throws {
            let results = runRanks(ThreadWorld(size: 2, timeout: 30)) { group in
                let ddp = try DistributedDataParallel(Workload.mlp.make(seed: 0), group: group)
                _ = try ShardedOptimizer(MeanGradientDescent(), ddp: ddp)
            }
            for result in results {
                #expect(throws: ShardingError.self) { try result.get() }
            }
        }

        /// The worker's sharded step keeps replicas identical (the replica checksum agrees).
        @Test("Worker with shardOptimizer keeps replicas identical", arguments: [2, 3])
        func worker(ranks: Int) throws {
            let data = try Workload.cnn.dataset(count: 41)
            let runs = try trainDistributed(.cnn, data: data, ranks: ranks, accumulate: 2, clipNorm: 0.05, shardOptimizer: true)
            let reference = try trainDistributed(.cnn, data: data, ranks: ranks, accumulate: 2, clipNorm: 0.05)
            expectReplicasIdentical(runs, "cnn sharded on \(ranks) ranks")
            expectClose(runs[0].weights, reference[0].weights, .float, "cnn sharded vs unsharded Worker on \(ranks) ranks")
        }
    }
}
