import Foundation
import TandemCollectives
import TandemCore
import TandemModels
import TandemOptim
import TandemParallel
import Testing

extension ParallelTests {
    @Suite("The contention probe's lock-step") struct Lockstep {
        struct Outcome: Codable, Sendable { var seconds: Double; var weights: [Float] }

        /// Two replicas, each alone in its own one-rank group; rank 1 takes `delay` seconds
        /// to fetch its batch. Returns rank 0's step time and the weights each rank ends with.
        static func steps(lockstep: Bool, delay: Double) throws -> (rank0: Double, weights: [[Float]]) {
            let perRank = try Launch.run(backend: .threads, workers: 2) { rank, group in
                let model = ReferenceModel.mlp.make(seed: 0)
                let worker = try Worker(model: model, group: ThreadWorld(size: 1).group(rank: 0), optimizer: try SGD(learningRate: 0.01, momentum: 0.9))
                if lockstep { worker.lockstep = group }
                var generator = SeededGenerator(seed: UInt64(rank))
                let batch = ReferenceModel.mlp.syntheticBatch(size: 4, generator: &generator)
                try worker.step { batch }   // warm-up, both ranks at once
                let start = monotonicSeconds()
                try worker.step {
                    if rank == 1 { Thread.sleep(forTimeInterval: delay) }
                    return batch
                }
                return Outcome(seconds: monotonicSeconds() - start, weights: model.parameters[0].value.scalars)
            }
            return (perRank[0].seconds, perRank.map(\.weights))
        }

        @Test("a replica in lock-step waits for the slowest at the barrier; alone it does not; neither exchanges gradients")
        func waitsForTheSlowest() throws {
            let delay = 0.6   // long enough that a step alone stays under half of it on a loaded 2-core machine
            let together = try Self.steps(lockstep: true, delay: delay)
            #expect(together.rank0 >= delay * 0.9, "rank 0's step took \(together.rank0) s")
            let alone = try Self.steps(lockstep: false, delay: delay)
            #expect(alone.rank0 < delay * 0.5, "rank 0's step took \(alone.rank0) s without the barrier")
            // Different data, no averaging: the replicas' weights part ways either way.
            #expect(together.weights[0] != together.weights[1])
        }
    }
}
