// MARK: - Step-to-step variation

/// How much the time of a step varies from step to step (one rank's timed steps, or a
/// run's), and how many steps were outliers.
///
/// - **coefficient of variation** = s / mean, s the sample standard deviation
///   (divisor n − 1; 0 for a single step).
/// - **p99**: the 99th percentile, linear interpolation (``Spread/quantile(sorted:_:)``).
/// - **spikes**: steps slower than median + 3·MAD, where MAD = median |tᵢ − median| is the
///   raw median absolute deviation (not rescaled by 1.4826 to estimate σ; the rescaled
///   rule would be median + 4.45·MAD). The rule is robust: the spikes themselves barely
///   move the median or the MAD (F. R. Hampel, "The influence curve and its role in
///   robust estimation", *JASA* 69, 1974). When more than half the steps are equal the
///   MAD is 0 and every step above the median counts.
public struct Jitter: Sendable, Equatable {
    public var count: Int
    public var mean: Double
    /// Sample standard deviation (n − 1).
    public var standardDeviation: Double
    public var median: Double
    public var p99: Double
    /// Median absolute deviation from the median.
    public var medianAbsoluteDeviation: Double
    /// Indices of the steps slower than ``spikeThreshold``, in order.
    public var spikeIndices: [Int]

    /// The jitter of `stepMilliseconds`; nil when empty.
    public init?(stepMilliseconds times: [Double]) {
        guard !times.isEmpty else { return nil }
        let sorted = times.sorted()
        count = times.count
        mean = times.reduce(0, +) / Double(count)
        let m = mean
        standardDeviation = count > 1 ? (times.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(count - 1)).squareRoot() : 0
        median = Spread.quantile(sorted: sorted, 0.5)
        p99 = Spread.quantile(sorted: sorted, 0.99)
        let center = median
        medianAbsoluteDeviation = Spread.quantile(times.map { abs($0 - center) }, 0.5)
        let threshold = median + 3 * medianAbsoluteDeviation
        spikeIndices = times.indices.filter { times[$0] > threshold }
    }

    /// s / mean (0 when the mean is 0).
    public var coefficientOfVariation: Double { mean == 0 ? 0 : standardDeviation / mean }

    /// median + 3·MAD.
    public var spikeThreshold: Double { median + 3 * medianAbsoluteDeviation }

    /// How many steps were slower than ``spikeThreshold``.
    public var spikes: Int { spikeIndices.count }
}
