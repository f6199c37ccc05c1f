// MARK: - What it takes to scale

extension CostModel {
    /// The smallest batch that keeps weak-scaling efficiency at a target.
    public struct BatchChoice: Sendable, Equatable {
        public var batchPerWorker: Int
        /// batchPerWorker × workers.
        public var globalBatch: Int
        /// E(N) at that batch.
        public var efficiency: Double
    }

    /// A bucket size that keeps efficiency at a target.
    public struct BucketChoice: Sendable, Equatable {
        /// The bucket size of highest efficiency (n/k rounded up, k the bucket count).
        public var bucketBytes: Int
        public var bucketCount: Int
        /// E(N) with that bucket size.
        public var efficiency: Double
        /// The smallest and largest bucket sizes searched that also reach the target.
        public var feasibleBucketBytes: ClosedRange<Int>
    }

    /// Weak-scaling efficiency at N with b samples per worker and k buckets:
    /// step(1, b) / step(N, b).
    func weakEfficiency(workers: Int, batchPerWorker b: Double, buckets k: Int) -> Double {
        stepSeconds(workers: 1, batchPerWorker: b, buckets: k) / stepSeconds(workers: workers, batchPerWorker: b, buckets: k)
    }

    /// The smallest per-worker batch (a whole number up to `maximumBatchPerWorker`) whose
    /// weak-scaling efficiency at `workers` is at least `efficiency`, or nil if none is.
    ///
    /// Efficiency = (compute + fixed) / (compute + fixed + exposed) rises with the batch:
    /// compute grows and the exposed communication can only shrink as backward gets
    /// longer. So an exponential search brackets the answer and bisection finds it.
    ///
    /// - Complexity: O(log maximumBatchPerWorker).
    public func batchFor(efficiency target: Double, workers: Int, maximumBatchPerWorker: Int = 1 << 24) -> BatchChoice? {
        precondition(target > 0 && target <= 1, "a target efficiency lies in (0, 1], got \(target)")
        precondition(workers >= 1, "workers must be at least 1, got \(workers)")
        let k = bucketCount
        func meets(_ b: Int) -> Bool { weakEfficiency(workers: workers, batchPerWorker: Double(b), buckets: k) >= target }
        guard meets(maximumBatchPerWorker) else { return nil }
        var hi = 1
        while hi < maximumBatchPerWorker && !meets(hi) { hi = min(hi * 2, maximumBatchPerWorker) }
        var lo = hi / 2   // fails (or is 0)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2
            if meets(mid) { hi = mid } else { lo = mid }
        }
        return BatchChoice(batchPerWorker: hi, globalBatch: hi * workers,
                           efficiency: weakEfficiency(workers: workers, batchPerWorker: Double(hi), buckets: k))
    }

    /// The bucket size of highest weak-scaling efficiency at `workers` with
    /// `batchPerWorker` samples, if it reaches `efficiency`; nil otherwise.
    ///
    /// Efficiency is not monotone in the bucket size: small buckets pay the latency a(N)
    /// k times, large ones leave the last bucket's time exposed. Every bucket count
    /// k = 1…K is tried, K = min(`maximumBuckets`, n / `minimumBucketBytes`), bucket
    /// size ⌈n/k⌉; ties go to the larger bucket (fewer collectives).
    ///
    /// - Complexity: O(K).
    public func bucketFor(efficiency target: Double, workers: Int, batchPerWorker: Int,
                          minimumBucketBytes: Int = 1 << 10, maximumBuckets: Int = 1 << 16) -> BucketChoice? {
        precondition(target > 0 && target <= 1, "a target efficiency lies in (0, 1], got \(target)")
        precondition(workers >= 1 && batchPerWorker >= 1, "workers and batch per worker must be at least 1")
        precondition(minimumBucketBytes >= 1 && maximumBuckets >= 1, "bucket limits must be at least 1")
        guard gradientBytes > 0 else { return nil }
        let limit = max(1, min(maximumBuckets, gradientBytes / minimumBucketBytes))
        var best: (k: Int, e: Double)?
        var feasible: [Int] = []
        for k in 1...limit {
            let e = weakEfficiency(workers: workers, batchPerWorker: Double(batchPerWorker), buckets: k)
            if best == nil || e > best!.e { best = (k, e) }
            if e >= target { feasible.append((gradientBytes + k - 1) / k) }
        }
        guard let best, best.e >= target, let smallest = feasible.min(), let largest = feasible.max() else { return nil }
        return BucketChoice(bucketBytes: (gradientBytes + best.k - 1) / best.k, bucketCount: best.k,
                            efficiency: best.e, feasibleBucketBytes: smallest...largest)
    }
}
