import Foundation
import TandemCollectives
import TandemCore
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel
import Testing

// MARK: - A model with parameters that do not always get a gradient

/// `used` always takes part; `sometimes` only while `usesSometimes` is set; `never` never.
final class PartlyUsed: Model {
    let used: Linear, sometimes: Linear, never: Linear
    var usesSometimes = false

    init(seed: UInt64) {
        var g = SeededGenerator(seed: seed)
        used = Linear(inputDimensions: 12, outputDimensions: 10, generator: &g)
        sometimes = Linear(inputDimensions: 12, outputDimensions: 10, generator: &g)
        never = Linear(inputDimensions: 12, outputDimensions: 10, generator: &g)
    }

    var namedParameters: [(name: String, parameter: Parameter)] {
        prefixed("used", used) + prefixed("sometimes", sometimes) + prefixed("never", never)
    }

    func forward(_ inputs: Tensor) -> Tensor {
        usesSometimes ? used(inputs) + sometimes(inputs) : used(inputs)
    }

    var forwardFLOPsPerSample: Double { 0 }
}

extension ParallelTests {
    @Suite("Replicas, uneven data and unused parameters") struct Replicas {
        // MARK: Replica checksums

        struct Drift: Sendable, CustomStringConvertible {
            var ranks: Int, drifter: Int, ulps: Bool
            var description: String { "rank \(drifter) of \(ranks) perturbed by \(ulps ? "one ulp" : "0.25")" }
        }

        @Test("verifyReplicas passes after training, and names the one rank whose weight was perturbed", arguments: [
            Drift(ranks: 2, drifter: 1, ulps: false), Drift(ranks: 2, drifter: 1, ulps: true),
            Drift(ranks: 3, drifter: 0, ulps: false), Drift(ranks: 3, drifter: 2, ulps: true),
            Drift(ranks: 4, drifter: 1, ulps: true), Drift(ranks: 4, drifter: 0, ulps: true),
            Drift(ranks: 8, drifter: 5, ulps: false), Drift(ranks: 8, drifter: 7, ulps: true),
        ])
        func verifyReplicas(_ d: Drift) throws {
            let data = try Workload.mlp.dataset(count: 37)
            let outcomes = try ThreadLauncher.run(workers: d.ranks, timeout: 60) { rank, group -> [String] in
                let model = Workload.mlp.make(seed: UInt64(rank))
                let worker = try Worker(model: model, group: group, optimizer: try OptimizerKind.sgd.make())
                let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: d.ranks, strategy: .cyclic)
                let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: 2, dropLast: true, prefetch: 0)
                var drawn: [[Int]] = []
                for _ in 0..<3 { try worker.step { try draw(loader, .mlp, rank: rank, into: &drawn) } }
                var messages: [String] = []
                do { try worker.ddp.verifyReplicas() } catch { messages.append("after training: \(error)") }
                if rank == d.drifter {
                    let w = model.parameters[1].value.pointer  // a bias deep inside the sums
                    w[3] = d.ulps ? w[3].nextUp : w[3] + 0.25
                }
                do {
                    try worker.ddp.verifyReplicas()
                    messages.append("no error after the perturbation")
                } catch let error as CollectiveError {
                    messages.append("\(error)")
                }
                return messages
            }
            for (r, messages) in outcomes.enumerated() {
                #expect(messages.count == 1, "\(d): rank \(r): \(messages)")
                guard let message = messages.last else { continue }
                if d.ranks == 2 {
                    // Two ranks cannot tell which of them drifted; the check must still fail.
                    #expect(message.contains("drifted"), "\(d): rank \(r): \(message)")
                } else {
                    #expect(message.contains("rank \(d.drifter) drifted"), "\(d): rank \(r): \(message)")
                }
            }
        }

        @Test("identical replicas pass the check even when a weight is NaN on every rank")
        func nanEverywhere() throws {
            let outcomes = try ThreadLauncher.run(workers: 3, timeout: 30) { rank, group -> String in
                let model = Workload.mlp.make(seed: 0)
                let ddp = try DistributedDataParallel(model, group: group)
                model.parameters[0].value.pointer[5] = .nan
                do { try ddp.verifyReplicas(); return "" } catch { return "\(error)" }
            }
            #expect(outcomes == ["", "", ""], "\(outcomes)")
        }

        // MARK: Uneven data

        struct Uneven: Sendable, CustomStringConvertible {
            var count: Int, ranks: Int, strategy: DistributedSampler.Strategy, samplerDropsLast: Bool
            var description: String { "\(count) samples on \(ranks) ranks, \(strategy)\(samplerDropsLast ? ", sampler drops the rest" : "")" }
        }

        static let uneven: [Uneven] = [13, 29].flatMap { n in
            [2, 3, 5, 8].flatMap { r in
                DistributedSampler.Strategy.allCases.flatMap { s in [false, true].map { Uneven(count: n, ranks: r, strategy: s, samplerDropsLast: $0) } }
            }
        }

        @Test("data not divisible by N·B: every rank runs the same number of steps, nobody waits forever", arguments: uneven)
        func unevenData(_ u: Uneven) throws {
            let data = try Workload.mlp.dataset(count: u.count)
            let batch = 3
            let steps = try ThreadLauncher.run(workers: u.ranks, timeout: 10) { rank, group -> Int in
                let model = Workload.mlp.make(seed: 0)
                let worker = try Worker(model: model, group: group, optimizer: try OptimizerKind.sgd.make())
                let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: u.ranks, strategy: u.strategy,
                                                     shuffle: true, seed: 3, dropLast: u.samplerDropsLast)
                let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: batch, dropLast: true, prefetch: 1)
                var steps = 0
                for epoch in 0..<2 {
                    for b in loader.epoch(epoch) {
                        guard b.size == batch else { throw CollectiveError.invalid("rank \(rank): a batch of \(b.size)") }
                        try worker.step { Workload.mlp.batch(b) }
                        steps += 1
                    }
                }
                try worker.ddp.verifyReplicas()
                return steps
            }
            #expect(Set(steps).count == 1, "\(u): steps per rank \(steps)")
            if u.strategy != .hash {
                #expect(steps[0] == 2 * ((u.samplerDropsLast ? u.count / u.ranks : (u.count + u.ranks - 1) / u.ranks) / batch), "\(u): \(steps[0]) steps")
            }
        }

        @Test("a rank that stops one step early: the others time out naming it instead of hanging", arguments: [(2, 1), (3, 0), (4, 2)])
        func rankStopsEarly(ranks: Int, quitter: Int) throws {
            let data = try Workload.mlp.dataset(count: 37)
            let timeout = 0.5
            let start = now()
            do {
                _ = try ThreadLauncher.run(workers: ranks, timeout: timeout) { rank, group -> Int in
                    let worker = try Worker(model: Workload.mlp.make(seed: 0), group: group, optimizer: try OptimizerKind.sgd.make(), bucketBytes: 256)
                    let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: ranks)
                    let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: 2, dropLast: true, prefetch: 0)
                    var drawn: [[Int]] = []
                    for _ in 0..<(rank == quitter ? 2 : 3) { try worker.step { try draw(loader, .mlp, rank: rank, into: &drawn) } }
                    return rank
                }
                Issue.record("\(ranks) ranks: the run finished although rank \(quitter) skipped a step")
            } catch let error as CollectiveError {
                guard case .timeout(let operation, _, let missing, _) = error else {
                    Issue.record("expected a timeout, got \(error)"); return
                }
                #expect(operation == "all-reduce" && missing == [quitter], "\(error)")
            }
            #expect(now() - start < timeout + 3, "took \(now() - start) s")
        }

        // MARK: Parameters without gradients

        @Test("a parameter no rank uses: DDP finishes, leaves it alone, and trains the rest as one worker would", arguments: [1, 2, 3])
        func unusedEverywhere(ranks: Int) throws {
            let data = try Workload.mlp.dataset(count: 37)
            let runs = try ThreadLauncher.run(workers: ranks, timeout: 30) { rank, group -> RankRun in
                let model = PartlyUsed(seed: UInt64(rank))
                let worker = try Worker(model: model, group: group, optimizer: try OptimizerKind.sgd.make(), bucketBytes: 256)
                let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: ranks, strategy: .block)
                let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: 2, dropLast: true, prefetch: 0)
                var drawn: [[Int]] = []
                for _ in 0..<3 { try worker.step(microBatches: 2) { try draw(loader, .mlp, rank: rank, into: &drawn) } }
                try worker.ddp.verifyReplicas()
                return RankRun(weights: weights(model), drawn: drawn, bytesPerStep: worker.ddp.bytesPerStep)
            }
            let reference = PartlyUsed(seed: 0)
            let initial = weights(reference)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            let tape = Tape()
            for indices in globalBatches(runs, accumulate: 2, steps: 3) {
                let batch = Workload.mlp.batch(data.batch(indices: indices))
                reference.zeroGradients()
                tape.backward(tape.record { reference.loss(batch) })
                state.apply(to: reference.namedParameters)
            }
            expectClose(runs[0].weights, weights(reference), .float, "\(ranks) ranks vs one worker")
            expectClose(Array(runs[0].weights[2...]), Array(initial[2...]), .exact, "\(ranks) ranks: the unused layers moved")
            expectReplicasIdentical(runs, "unused parameter on \(ranks) ranks")
        }

        struct Usage: Sendable, CustomStringConvertible {
            var ranks: Int
            var accumulate: Int
            /// Whether rank r uses `sometimes` in micro-batch k.
            var rule: String
            var compression = GradientCompression.none
            func uses(rank: Int, micro: Int) -> Bool {
                switch rule {
                case "rank 0 only": rank == 0
                case "first micro-batch only": micro == 0
                default: (rank + micro) % 2 == 0
                }
            }
            var description: String { "\(ranks) ranks, \(accumulate) micro-batches, sometimes used by \(rule)\(compression == .none ? "" : ", \(compression) gradients")" }
        }

        /// A parameter used on some ranks, or in some micro-batches, gets the gradient of the
        /// whole global batch: Σ over ranks and micro-batches of its gradient / (N·K).
        @Test("parameters used on some ranks or micro-batches only get the global batch's gradient", arguments: [
            Usage(ranks: 2, accumulate: 1, rule: "rank 0 only"),
            Usage(ranks: 3, accumulate: 2, rule: "rank 0 only"),
            Usage(ranks: 2, accumulate: 2, rule: "first micro-batch only"),
            Usage(ranks: 3, accumulate: 3, rule: "first micro-batch only"),
            Usage(ranks: 3, accumulate: 2, rule: "alternating"),
            Usage(ranks: 1, accumulate: 2, rule: "first micro-batch only"),
            Usage(ranks: 2, accumulate: 1, rule: "rank 0 only", compression: .bf16),
            Usage(ranks: 2, accumulate: 2, rule: "first micro-batch only", compression: .bf16),
            Usage(ranks: 3, accumulate: 2, rule: "alternating", compression: .fp16),
        ])
        func partlyUsed(_ u: Usage) throws {
            let data = try Workload.mlp.dataset(count: 37)
            let steps = 3
            let runs = try ThreadLauncher.run(workers: u.ranks, timeout: 30) { rank, group -> RankRun in
                let model = PartlyUsed(seed: 7)
                let worker = try Worker(model: model, group: group, optimizer: try OptimizerKind.sgd.make(), bucketBytes: 256,
                                        compression: u.compression)
                let sampler = try DistributedSampler(count: data.count, rank: rank, worldSize: u.ranks, strategy: .cyclic)
                let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: 2, dropLast: true, prefetch: 0)
                var drawn: [[Int]] = []
                for _ in 0..<steps {
                    var micro = 0
                    try worker.step(microBatches: u.accumulate) {
                        model.usesSometimes = u.uses(rank: rank, micro: micro)
                        micro += 1
                        return try draw(loader, .mlp, rank: rank, into: &drawn)
                    }
                }
                try worker.ddp.verifyReplicas()
                return RankRun(weights: weights(model), drawn: drawn, bytesPerStep: 0)
            }
            // One model, every (rank, micro-batch) loss scaled by 1/(N·K), gradients summed.
            let reference = PartlyUsed(seed: 7)
            let state = OptimizerState(try OptimizerKind.sgd.make())
            let tape = Tape()
            let scale = 1 / Float(u.ranks * u.accumulate)
            for s in 0..<steps {
                reference.zeroGradients()
                for r in 0..<u.ranks {
                    for k in 0..<u.accumulate {
                        reference.usesSometimes = u.uses(rank: r, micro: k)
                        let batch = Workload.mlp.batch(data.batch(indices: runs[r].drawn[s * u.accumulate + k]))
                        tape.backward(tape.record { reference.loss(batch) * scale })
                    }
                }
                state.apply(to: reference.namedParameters)
            }
            let tolerance = switch u.compression {
            case .none: Tolerance.float
            case .bf16: Tolerance(relative: 3e-2, absolute: 3e-3)
            case .fp16: Tolerance(relative: 3e-3, absolute: 3e-4)
            }
            expectClose(runs[0].weights, weights(reference), tolerance, "\(u)")
            expectReplicasIdentical(runs, "\(u)")
        }
    }
}
