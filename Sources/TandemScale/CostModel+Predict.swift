import Foundation

// MARK: - Predictions over worker counts

extension CostModel {
    /// What stays fixed as N grows.
    public enum Batch: Sendable, Equatable {
        /// Weak scaling: b samples per worker at every N.
        case perWorker(Int)
        /// Strong scaling: G samples per step split over N workers (G/N each, fractional
        /// when N does not divide G; worker counts above G are left out).
        case global(Int)

        public var mode: ScalingMode {
            switch self {
            case .perWorker: return .weak
            case .global: return .strong
            }
        }

        /// Samples per worker at N.
        public func perWorker(workers n: Int) -> Double {
            switch self {
            case .perWorker(let b): return Double(b)
            case .global(let g): return Double(g) / Double(n)
            }
        }
    }

    /// The model's figures at one worker count.
    public struct Prediction: Sendable, Equatable {
        public var workers: Int
        public var batchPerWorker: Double
        public var computeSeconds: Double
        /// All buckets' all-reduce time T.
        public var communicationSeconds: Double
        /// The part of T not hidden under backward.
        public var exposedCommunicationSeconds: Double
        public var stepSeconds: Double
        /// Samples per second, all workers.
        public var throughput: Double
        /// Weak: throughput(N)/throughput(1); strong: step(1)/step(N).
        public var speedup: Double
        /// S(N)/N.
        public var efficiency: Double
    }

    /// 1, 2, 4, … up to and including the largest power of two ≤ `limit`.
    public static func powersOfTwo(upTo limit: Int = 4096) -> [Int] {
        precondition(limit >= 1, "the limit must be at least 1, got \(limit)")
        return Array(sequence(first: 1) { $0 <= limit / 2 ? $0 * 2 : nil })
    }

    /// Step time, throughput, speedup and efficiency at each worker count, relative to
    /// one worker with the same fixed batch.
    ///
    /// - Complexity: O(workers.count).
    public func predict(workers: [Int] = CostModel.powersOfTwo(upTo: 4096), batch: Batch) -> [Prediction] {
        precondition(workers.allSatisfy { $0 >= 1 }, "worker counts must be at least 1")
        switch batch {
        case .perWorker(let b): precondition(b >= 1, "batch per worker must be at least 1, got \(b)")
        case .global(let g): precondition(g >= 1, "global batch must be at least 1, got \(g)")
        }
        let baseStep = stepSeconds(workers: 1, batchPerWorker: batch.perWorker(workers: 1))
        let baseThroughput = batch.perWorker(workers: 1) / baseStep
        return workers.sorted().compactMap { n in
            if case .global(let g) = batch, n > g { return nil }
            let b = batch.perWorker(workers: n)
            let step = stepSeconds(workers: n, batchPerWorker: b)
            let throughput = Double(n) * b / step
            let speedup = batch.mode == .weak ? throughput / baseThroughput : baseStep / step
            return Prediction(workers: n, batchPerWorker: b, computeSeconds: computeSeconds(workers: n, batchPerWorker: b),
                              communicationSeconds: communicationSeconds(workers: n),
                              exposedCommunicationSeconds: exposedCommunicationSeconds(workers: n, batchPerWorker: b),
                              stepSeconds: step, throughput: throughput, speedup: speedup, efficiency: speedup / Double(n))
        }
    }

    /// The knee of the predicted curve (see ``ScalingKnee``).
    public func knee(workers: [Int] = CostModel.powersOfTwo(upTo: 4096), batch: Batch,
                     efficiencyThreshold: Double = 0.9, minimumGainPerDoubling: Double = 0.1) -> ScalingKnee? {
        ScalingKnee(points: predict(workers: workers, batch: batch).map {
            ScalingKnee.Point(workers: $0.workers, throughput: $0.throughput, efficiency: $0.efficiency)
        }, efficiencyThreshold: efficiencyThreshold, minimumGainPerDoubling: minimumGainPerDoubling)
    }
}
