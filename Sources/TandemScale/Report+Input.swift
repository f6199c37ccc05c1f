// MARK: - What a report draws

/// Everything ``HTMLReport`` draws, already reduced to numbers and sentences.
///
/// The report writer owns this small model so that it does not depend on how the sweep
/// was measured or fitted: the caller fills it from its results and fits. Values may be
/// missing or odd (one point, zeros, NaN); the report then says so instead of drawing it.
///
/// ```swift
/// let input = ReportInput(title: "mlp, threads", mode: "weak", points: points,
///                         amdahl: (p: 0.95, predicted: [(1, 1), (2, 1.9), (4, 3.5)]),
///                         findings: ["Communication is 9% of the step at 4 workers."])
/// try HTMLReport.render(input).write(toFile: "report.html", atomically: true, encoding: .utf8)
/// ```
public struct ReportInput: Sendable {
    /// Heading of the page and of its `<title>`.
    public var title: String
    /// `"weak"` (batch per worker fixed) or `"strong"` (global batch fixed); other text is shown as given.
    public var mode: String
    /// One point per worker count; the report sorts them by `workers`.
    public var points: [ReportPoint]
    /// The fitted Amdahl curve to draw over the measured speedups: the parallel fraction `p`
    /// and the fit's predicted speedup at each worker count.
    public var amdahl: (p: Double, predicted: [(workers: Int, speedup: Double)])?
    /// Bus bandwidth of a communication sweep (message bytes, GB/s); empty when none was run.
    public var busbw: [(bytes: Int, gbps: Double)]
    /// Plain-language sentences, already computed; the report adds a few of its own from the data.
    public var findings: [String]

    public init(title: String, mode: String, points: [ReportPoint],
                amdahl: (p: Double, predicted: [(workers: Int, speedup: Double)])? = nil,
                busbw: [(bytes: Int, gbps: Double)] = [], findings: [String] = []) {
        self.title = title; self.mode = mode; self.points = points
        self.amdahl = amdahl; self.busbw = busbw; self.findings = findings
    }
}

/// One worker count of a scaling sweep.
public struct ReportPoint: Sendable {
    /// Number of workers (ranks).
    public var workers: Int
    /// Samples per second over all workers: median and range over the repeats.
    public var throughputMedian, throughputMin, throughputMax: Double
    /// S(N) and E(N) = S(N) / N, as defined in WORKLOADS.md for the sweep's mode.
    public var speedup, efficiency: Double
    /// Step time split in milliseconds; the usual keys are `data`, `forward`, `backward`,
    /// `comm_exposed`, `optimizer` and `other` (drawn in that order, then any others by name).
    public var breakdownMs: [String: Double]
    /// Step-time samples in milliseconds, one array per rank (rank 0 first).
    public var perRankStepMs: [[Double]]
    /// Peak memory per worker in bytes; the usual keys are `params`, `grads`, `optimizer`,
    /// `activations` and `comm_buffers`.
    public var memoryBytes: [String: Int]

    public init(workers: Int, throughputMedian: Double, throughputMin: Double, throughputMax: Double,
                speedup: Double, efficiency: Double, breakdownMs: [String: Double] = [:],
                perRankStepMs: [[Double]] = [], memoryBytes: [String: Int] = [:]) {
        self.workers = workers
        self.throughputMedian = throughputMedian; self.throughputMin = throughputMin; self.throughputMax = throughputMax
        self.speedup = speedup; self.efficiency = efficiency
        self.breakdownMs = breakdownMs; self.perRankStepMs = perRankStepMs; self.memoryBytes = memoryBytes
    }
}
