import TandemParallel

// MARK: - Constants of the cost model, from measurements

/// Why measurements cannot calibrate the cost model. Thrown: they come from files.
public struct CalibrationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One timed all-reduce: `bytes` over `workers` in `seconds` (a row of `tandem comm`
/// or of nccl-tests' `all_reduce_perf`).
public struct CollectiveSample: Sendable, Equatable, Codable {
    public var workers: Int
    public var bytes: Int
    public var seconds: Double
    public init(workers: Int, bytes: Int, seconds: Double) {
        self.workers = workers
        self.bytes = bytes
        self.seconds = seconds
    }

    /// The sample of one all-reduce row of ``CommBenchmark``; nil for other operations.
    public init?(row: CommBenchmark.Row) {
        guard row.operation == CommBenchmark.Operation.allReduce.rawValue else { return nil }
        self.init(workers: row.workers, bytes: row.bytes, seconds: row.microseconds * 1e-6)
    }
}

/// The measured constants of a ``CostModel``: what one worker computes, what it must
/// communicate, and how fast the link is.
///
/// ```swift
/// let one = try ResultsFile.read(path: "runs.jsonl").first { $0.workers == 1 }!
/// let calibration = try Calibration(baseline: one)
/// let link = try Calibration.interconnect(samples: commRows.compactMap(CollectiveSample.init(row:)))
/// let model = CostModel(calibration: calibration, algorithm: .ring(link), bucketBytes: 25 << 20)
/// ```
public struct Calibration: Sendable, Equatable {
    /// (step − optimizer) / batch of the one-worker run: data, forward and backward per sample.
    public var computeSecondsPerSample: Double
    /// The one-worker run's optimizer time per step (0 without a breakdown).
    public var fixedSecondsPerStep: Double
    /// backward / (forward + backward) from the breakdown; 2/3 without one.
    public var backwardFraction: Double
    /// Bytes all-reduced per step: parameters × bytes per gradient element.
    public var gradientBytes: Int

    public init(computeSecondsPerSample: Double, fixedSecondsPerStep: Double, backwardFraction: Double, gradientBytes: Int) {
        self.computeSecondsPerSample = computeSecondsPerSample
        self.fixedSecondsPerStep = fixedSecondsPerStep
        self.backwardFraction = backwardFraction
        self.gradientBytes = gradientBytes
    }

    /// The constants of a one-worker run: its mean step (`step_ms.mean`, the average the
    /// breakdown is in) minus its optimizer, per sample; its backward share; and
    /// `params × bytesPerGradientElement` bytes of gradient (4 for fp32 gradients).
    public init(baseline: RunResult, bytesPerGradientElement: Int = 4) throws(CalibrationError) {
        precondition(bytesPerGradientElement > 0, "a gradient element has a positive size")
        guard baseline.workers == 1 else {
            throw CalibrationError("calibration needs a one-worker run, got \(baseline.workers) workers for \(baseline.model)")
        }
        guard baseline.batch_per_worker > 0 else {
            throw CalibrationError("\(baseline.model): batch_per_worker must be positive, got \(baseline.batch_per_worker)")
        }
        guard baseline.params > 0 else {
            throw CalibrationError("\(baseline.model): params must be positive to size the gradient, got \(baseline.params)")
        }
        let step = baseline.step_ms.mean / 1000
        let optimizer = (baseline.breakdown_ms?.optimizer ?? 0) / 1000
        guard step.isFinite, step > optimizer, optimizer >= 0 else {
            throw CalibrationError("\(baseline.model): step_ms.mean \(baseline.step_ms.mean) must exceed the optimizer's \(optimizer * 1000) ms")
        }
        var backwardFraction = 2.0 / 3
        if let b = baseline.breakdown_ms, b.forward >= 0, b.backward >= 0, b.forward + b.backward > 0 {
            backwardFraction = b.backward / (b.forward + b.backward)
        }
        self.init(computeSecondsPerSample: (step - optimizer) / Double(baseline.batch_per_worker), fixedSecondsPerStep: optimizer,
                  backwardFraction: backwardFraction, gradientBytes: baseline.params * bytesPerGradientElement)
    }

    // MARK: - The link

    /// The link of a ring all-reduce from two nccl-tests style figures: the bus bandwidth
    /// of large messages (GB/s, 10⁹ bytes/s), whose limit is 1/β, and the time of a small
    /// all-reduce of `smallMessageBytes` over `workers`, which is 2(N−1)α + 2(N−1)/N·nβ:
    ///
    ///     β = 1 / busbw,  α = (t_small − 2(N−1)/N · n_small · β) / (2(N−1)).
    public static func interconnect(busBandwidthGBps: Double, smallMessageSeconds: Double, smallMessageBytes: Double = 0,
                                    workers: Int, name: String = "calibrated") throws(CalibrationError) -> Interconnect {
        guard workers >= 2 else { throw CalibrationError("a measured all-reduce needs at least 2 workers, got \(workers)") }
        guard busBandwidthGBps > 0, busBandwidthGBps.isFinite else {
            throw CalibrationError("bus bandwidth must be a positive number of GB/s, got \(busBandwidthGBps)")
        }
        let n = Double(workers)
        let beta = 1 / (busBandwidthGBps * 1e9)
        let alpha = (smallMessageSeconds - 2 * (n - 1) / n * smallMessageBytes * beta) / (2 * (n - 1))
        guard alpha >= 0, alpha.isFinite else {
            throw CalibrationError("small-message time \(smallMessageSeconds) s is below what \(smallMessageBytes) bytes take at \(busBandwidthGBps) GB/s")
        }
        return Interconnect(name: name, alpha: alpha, beta: beta)
    }

    /// The link (α, β) that best explains timed ring all-reduces, t = α·xᵢ + β·yᵢ with
    /// xᵢ = 2(Nᵢ−1), yᵢ = 2(Nᵢ−1)/Nᵢ · nᵢ: weighted linear least squares with weights
    /// 1/tᵢ², so that every sample counts by its relative error and the small messages
    /// that determine α are not drowned by the large ones that determine β. A negative
    /// α (noise on a fast link) is clamped to 0 and β refitted alone.
    ///
    /// Throws unless there are samples at N ≥ 2 of at least two different sizes.
    public static func interconnect(samples: [CollectiveSample], name: String = "calibrated") throws(CalibrationError) -> Interconnect {
        let usable = samples.filter { $0.workers >= 2 }
        for s in usable where !(s.seconds > 0 && s.seconds.isFinite && s.bytes >= 0) {
            throw CalibrationError("a collective sample needs a positive time and bytes ≥ 0, got \(s.bytes) bytes in \(s.seconds) s")
        }
        let rows = usable.map { s -> (x: Double, y: Double, t: Double, w: Double) in
            let n = Double(s.workers)
            return (2 * (n - 1), 2 * (n - 1) / n * Double(s.bytes), s.seconds, 1 / (s.seconds * s.seconds))
        }
        var sxx = 0.0, sxy = 0.0, syy = 0.0, sxt = 0.0, syt = 0.0
        for r in rows {
            sxx += r.w * r.x * r.x; sxy += r.w * r.x * r.y; syy += r.w * r.y * r.y
            sxt += r.w * r.x * r.t; syt += r.w * r.y * r.t
        }
        let determinant = sxx * syy - sxy * sxy
        guard rows.count >= 2, syy > 0, determinant > 1e-12 * sxx * syy else {
            throw CalibrationError("fitting α and β needs all-reduce samples at 2 or more workers of at least two different sizes, got \(usable.count)")
        }
        var alpha = (syy * sxt - sxy * syt) / determinant
        var beta = (sxx * syt - sxy * sxt) / determinant
        if alpha < 0 {
            alpha = 0
            beta = syt / syy
        }
        guard beta > 0, beta.isFinite else { throw CalibrationError("the samples give no positive per-byte time; are the times increasing with size?") }
        return Interconnect(name: name, alpha: alpha, beta: beta)
    }
}
