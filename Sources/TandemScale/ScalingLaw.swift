// MARK: - Samples

/// One measured (or synthetic) speedup S at N workers, the input of a scaling-law fit.
public struct SpeedupSample: Sendable, Equatable, Codable {
    public var workers: Int
    public var speedup: Double
    public init(workers: Int, speedup: Double) {
        self.workers = workers
        self.speedup = speedup
    }
}

// MARK: - Scaling laws

/// A one-parameter law S(N; p) fitted to speedups, p the parallel fraction in [0, 1].
public protocol ScalingLaw: Sendable {
    /// The fitted parallel fraction p.
    var parallelFraction: Double { get }
    /// The samples the law was fitted to.
    var samples: [SpeedupSample] { get }
    /// S(N) predicted by the law at any (also fractional) N ≥ 1.
    func predictedSpeedup(workers: Double) -> Double
}

extension ScalingLaw {
    /// 1 − p.
    public var serialFraction: Double { 1 - parallelFraction }

    /// Observed minus predicted speedup, one per sample, in the samples' order.
    public var residuals: [Double] { samples.map { $0.speedup - predictedSpeedup(workers: Double($0.workers)) } }

    /// Root mean square of the residuals: √(Σ rᵢ² / n); 0 for no samples.
    public var rootMeanSquareError: Double {
        let r = residuals
        return r.isEmpty ? 0 : (r.map { $0 * $0 }.reduce(0, +) / Double(r.count)).squareRoot()
    }

    /// S(N) predicted at an integer worker count.
    public func predictedSpeedup(workers: Int) -> Double { predictedSpeedup(workers: Double(workers)) }

    /// E(N) = S(N) / N predicted by the law.
    public func predictedEfficiency(workers: Int) -> Double { predictedSpeedup(workers: workers) / Double(workers) }
}
