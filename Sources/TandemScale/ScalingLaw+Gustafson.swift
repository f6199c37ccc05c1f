// MARK: - Gustafson's law

/// Gustafson's law S(N) = (1 − p) + N·p fitted by linear least squares (J. L. Gustafson,
/// "Reevaluating Amdahl's law", *Commun. ACM* 31(5), 1988). The law of weak scaling: the
/// problem grows with N, so the speedup grows without bound at slope p.
///
/// S − 1 = p·(N − 1) is a line through the origin in p, so least squares has the closed
/// form p = Σ (Nᵢ − 1)(Sᵢ − 1) / Σ (Nᵢ − 1)², clamped to [0, 1] (the objective is a
/// convex parabola in p, so clamping gives the constrained optimum). With no sample at
/// N > 1 the fit returns p = 0.
public struct GustafsonFit: ScalingLaw, Equatable {
    public var parallelFraction: Double
    public var samples: [SpeedupSample]

    /// Fits p to `samples`.
    public init(samples: [SpeedupSample]) {
        precondition(samples.allSatisfy { $0.workers >= 1 && $0.speedup.isFinite }, "Gustafson fit needs workers ≥ 1 and finite speedups")
        self.samples = samples
        let xx = samples.map { let x = Double($0.workers - 1); return x * x }.reduce(0, +)
        let xy = samples.map { Double($0.workers - 1) * ($0.speedup - 1) }.reduce(0, +)
        parallelFraction = xx > 0 ? min(1, max(0, xy / xx)) : 0
    }

    /// Gustafson's law with a given p, for predictions without a fit.
    public init(parallelFraction: Double) {
        precondition(parallelFraction >= 0 && parallelFraction <= 1, "a parallel fraction lies in [0, 1], got \(parallelFraction)")
        self.parallelFraction = parallelFraction
        self.samples = []
    }

    /// (1 − p) + N·p.
    public func predictedSpeedup(workers n: Double) -> Double { (1 - parallelFraction) + n * parallelFraction }
}
