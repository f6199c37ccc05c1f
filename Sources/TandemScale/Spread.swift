// MARK: - Order statistics of repeated measurements

/// The centre and spread of a few repeated measurements of one quantity (throughput or
/// step time of one configuration measured several times).
///
/// Quantiles interpolate linearly between order statistics — type 7 of Hyndman & Fan,
/// "Sample quantiles in statistical packages", *The American Statistician* 50(4), 1996;
/// the default of NumPy and R. With the two or three repeats a sweep usually has, this
/// gives the true median of an even count (the mean of the middle two), where the
/// nearest-rank rule of `RunResult.Quantiles` would pick one of them.
public struct Spread: Sendable, Equatable {
    /// How many values.
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
    public var median: Double
    /// 10th and 90th percentiles.
    public var p10: Double
    public var p90: Double

    /// The spread of `values`, or nil when there are none.
    ///
    /// - Complexity: O(n log n) for the sort.
    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        count = sorted.count
        min = sorted[0]
        max = sorted[sorted.count - 1]
        mean = sorted.reduce(0, +) / Double(sorted.count)
        median = Spread.quantile(sorted: sorted, 0.5)
        p10 = Spread.quantile(sorted: sorted, 0.1)
        p90 = Spread.quantile(sorted: sorted, 0.9)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) of already sorted values, interpolating linearly:
    /// h = (n − 1)·q, Q = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]) (Hyndman & Fan type 7).
    public static func quantile(sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "a quantile needs at least one value")
        precondition(q >= 0 && q <= 1, "a quantile level must lie in [0, 1], got \(q)")
        let h = Double(sorted.count - 1) * q
        let lower = Int(h.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (h - Double(lower)) * (sorted[upper] - sorted[lower])
    }

    /// The `q`-quantile of unsorted values (see ``quantile(sorted:_:)``).
    public static func quantile(_ values: [Double], _ q: Double) -> Double {
        quantile(sorted: values.sorted(), q)
    }

    /// The relative width of the central 80%: (p90 − p10) / median (0 when the median is 0).
    public var relativeWidth: Double { median == 0 ? 0 : (p90 - p10) / median }
}
