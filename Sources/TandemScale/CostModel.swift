// MARK: - Step time of data-parallel training, predicted

/// Predicts the step time of data-parallel training at any number of workers from a few
/// calibrated constants and the α-β cost of the gradient all-reduce.
///
/// One step on one worker with b samples:
///
///     compute(b)  = b · computeSecondsPerSample        (data, forward, backward)
///     backward(b) = backwardFraction · compute(b)
///     step(N, b)  = compute(b) + fixedSecondsPerStep + exposed(N, b)
///
/// With ``hostContention`` measured, compute and the fixed part are multiplied by the
/// slowdown a worker sees when the other workers of its host are busy too.
///
/// **Buckets and overlap.** The gradient of n bytes is all-reduced in k = ⌈n / bucket⌉
/// buckets of n/k bytes (``bucketBytes``; nil means one all-reduce after backward, as
/// without hooks). One bucket takes c = a(N) + b(N)·n/k (``AllReduceAlgorithm/cost(workers:)``),
/// all k take T = k·a(N) + b(N)·n. Buckets become ready evenly over the last
/// W = overlappableFraction · backward of the backward pass and go out one after the
/// other, so the communication left after backward ends (the makespan of that pipeline
/// minus backward) is
///
///     exposed = max(c, T − W·(k − 1)/k)
///
/// — the last bucket can never hide, and with one bucket nothing hides. For many small
/// buckets this tends to the simpler max(0, T − W) plus the last bucket; it is the same
/// pipeline argument as in PyTorch DDP's design (Li et al., "PyTorch Distributed:
/// experiences on accelerating data parallel training", VLDB 2020).
///
/// ```swift
/// let model = CostModel(calibration: calibration, algorithm: .ring(.infinibandNDR400), bucketBytes: 25 << 20)
/// for p in model.predict(batch: .perWorker(256)) { print(p.workers, p.efficiency) }
/// ```
public struct CostModel: Sendable, Equatable {
    /// Seconds of data, forward and backward per sample on one worker.
    public var computeSecondsPerSample: Double
    /// Seconds per step that do not grow with the batch (the optimizer update).
    public var fixedSecondsPerStep: Double
    /// Share of compute spent in backward (about 2/3: backward costs twice forward's FLOPs).
    public var backwardFraction: Double
    /// Share of backward under which communication can hide (1: all of it).
    public var overlappableFraction: Double
    /// Bytes all-reduced per step (the gradient).
    public var gradientBytes: Int
    public var algorithm: AllReduceAlgorithm
    /// Bucket size in bytes, nil for one all-reduce after backward.
    public var bucketBytes: Int?
    /// How much slower a worker computes when the other workers of its host compute too
    /// (shared caches, memory bandwidth, clock boost); nil: not at all.
    public var hostContention: HostContention?

    public init(computeSecondsPerSample: Double, fixedSecondsPerStep: Double = 0, backwardFraction: Double = 2.0 / 3,
                overlappableFraction: Double = 1, gradientBytes: Int, algorithm: AllReduceAlgorithm,
                bucketBytes: Int? = nil) {
        precondition(computeSecondsPerSample > 0, "compute per sample must be positive, got \(computeSecondsPerSample)")
        precondition(fixedSecondsPerStep >= 0, "fixed seconds per step must be ≥ 0, got \(fixedSecondsPerStep)")
        precondition((0...1).contains(backwardFraction), "backward fraction lies in [0, 1], got \(backwardFraction)")
        precondition((0...1).contains(overlappableFraction), "overlappable fraction lies in [0, 1], got \(overlappableFraction)")
        precondition(gradientBytes >= 0, "gradient bytes must be ≥ 0, got \(gradientBytes)")
        precondition(bucketBytes.map { $0 > 0 } ?? true, "a bucket holds a positive number of bytes")
        self.computeSecondsPerSample = computeSecondsPerSample
        self.fixedSecondsPerStep = fixedSecondsPerStep
        self.backwardFraction = backwardFraction
        self.overlappableFraction = overlappableFraction
        self.gradientBytes = gradientBytes
        self.algorithm = algorithm
        self.bucketBytes = bucketBytes
    }

    /// A model from measured constants (see ``Calibration``).
    public init(calibration: Calibration, algorithm: AllReduceAlgorithm, bucketBytes: Int? = nil, overlappableFraction: Double = 1) {
        self.init(computeSecondsPerSample: calibration.computeSecondsPerSample, fixedSecondsPerStep: calibration.fixedSecondsPerStep,
                  backwardFraction: calibration.backwardFraction, overlappableFraction: overlappableFraction,
                  gradientBytes: calibration.gradientBytes, algorithm: algorithm, bucketBytes: bucketBytes)
    }

    // MARK: - Pieces of a step

    /// k = ⌈n / bucket⌉ (1 without buckets or without bytes).
    public var bucketCount: Int {
        guard let bucket = bucketBytes, gradientBytes > 0 else { return 1 }
        return max(1, (gradientBytes + bucket - 1) / bucket)
    }

    /// compute(b) = b · computeSecondsPerSample, times the host-contention factor at N workers.
    public func computeSeconds(workers: Int = 1, batchPerWorker b: Double) -> Double {
        b * computeSecondsPerSample * (hostContention?.computeFactor(workers: workers) ?? 1)
    }

    /// fixedSecondsPerStep, times the host-contention factor at N workers.
    public func fixedSeconds(workers: Int = 1) -> Double {
        fixedSecondsPerStep * (hostContention?.fixedFactor(workers: workers) ?? 1)
    }

    /// T: all buckets' all-reduce time, k·a(N) + b(N)·n.
    public func communicationSeconds(workers: Int) -> Double {
        communicationSeconds(workers: workers, buckets: bucketCount)
    }

    /// The communication left after backward: max(c, T − W·(k − 1)/k).
    public func exposedCommunicationSeconds(workers: Int, batchPerWorker b: Double) -> Double {
        exposedCommunicationSeconds(workers: workers, batchPerWorker: b, buckets: bucketCount)
    }

    /// compute(N, b) + fixed(N) + exposed(N, b).
    public func stepSeconds(workers: Int, batchPerWorker b: Double) -> Double {
        stepSeconds(workers: workers, batchPerWorker: b, buckets: bucketCount)
    }

    /// Samples per second of all workers: N·b / step(N, b).
    public func throughput(workers: Int, batchPerWorker b: Double) -> Double {
        Double(workers) * b / stepSeconds(workers: workers, batchPerWorker: b)
    }

    // MARK: - With an explicit bucket count (for the searches)

    func communicationSeconds(workers: Int, buckets k: Int) -> Double {
        let cost = algorithm.cost(workers: workers)
        return Double(k) * cost.latency + cost.secondsPerByte * Double(gradientBytes)
    }

    func exposedCommunicationSeconds(workers: Int, batchPerWorker b: Double, buckets k: Int) -> Double {
        let cost = algorithm.cost(workers: workers)
        guard workers > 1 else { return 0 }
        let perBucket = cost.seconds(bytes: Double(gradientBytes) / Double(k))
        let total = Double(k) * perBucket
        let window = overlappableFraction * backwardFraction * computeSeconds(workers: workers, batchPerWorker: b)
        return max(perBucket, total - window * Double(k - 1) / Double(k))
    }

    func stepSeconds(workers: Int, batchPerWorker b: Double, buckets k: Int) -> Double {
        computeSeconds(workers: workers, batchPerWorker: b) + fixedSeconds(workers: workers)
            + exposedCommunicationSeconds(workers: workers, batchPerWorker: b, buckets: k)
    }
}
