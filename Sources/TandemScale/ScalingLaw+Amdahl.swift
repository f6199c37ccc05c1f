// MARK: - Amdahl's law

/// Amdahl's law S(N) = 1 / ((1 − p) + p/N) fitted to speedups by least squares over
/// p ∈ [0, 1] (G. M. Amdahl, "Validity of the single processor approach to achieving
/// large scale computing capabilities", AFIPS 1967). The law of strong scaling: a fixed
/// problem whose serial part 1 − p caps the speedup at 1/(1 − p).
///
/// Two objectives:
/// - ``Objective/speedup`` (default) minimises Σ (Sᵢ − S(Nᵢ; p))², the residuals that
///   ``rootMeanSquareError`` reports. S is monotone in p but the sum need not be convex,
///   so a grid of 2,001 values of p brackets the minimum and bisection on the analytic
///   derivative dS/dp = cᵢ·S², cᵢ = 1 − 1/Nᵢ, polishes it to machine precision.
/// - ``Objective/inverseSpeedup`` uses that 1/S = 1 − p·cᵢ is linear in p: least
///   squares of 1 − 1/Sᵢ = p·cᵢ has the closed form p = Σ cᵢ(1 − 1/Sᵢ) / Σ cᵢ², clamped
///   to [0, 1] (the objective is a convex parabola, so clamping is the constrained
///   optimum). It weighs small N more, where 1/S varies most.
///
/// Both recover p exactly from noise-free data. Samples at N = 1 carry no information
/// about p (c = 0); with no sample at N > 1 the fit returns p = 0.
///
/// ```swift
/// let fit = AmdahlFit(samples: [.init(workers: 2, speedup: 1.9), .init(workers: 8, speedup: 6.0)])
/// fit.parallelFraction          // ≈ 0.95
/// fit.predictedSpeedup(workers: 64)
/// ```
public struct AmdahlFit: ScalingLaw, Equatable {
    public enum Objective: String, Sendable, Codable, CaseIterable {
        /// Least squares of S.
        case speedup
        /// Least squares of 1/S (closed form).
        case inverseSpeedup
    }

    public var parallelFraction: Double
    public var samples: [SpeedupSample]
    public var objective: Objective

    /// Fits p to `samples`. Each speedup must be a positive finite number.
    public init(samples: [SpeedupSample], objective: Objective = .speedup) {
        precondition(samples.allSatisfy { $0.workers >= 1 && $0.speedup.isFinite && $0.speedup > 0 },
                     "Amdahl fit needs workers ≥ 1 and positive finite speedups")
        self.samples = samples
        self.objective = objective
        let points = samples.map { (c: 1 - 1 / Double($0.workers), s: $0.speedup) }
        switch objective {
        case .inverseSpeedup: parallelFraction = AmdahlFit.closedForm(points)
        case .speedup: parallelFraction = AmdahlFit.leastSquares(points)
        }
    }

    /// Amdahl's law with a given p, for predictions without a fit.
    public init(parallelFraction: Double) {
        precondition(parallelFraction >= 0 && parallelFraction <= 1, "a parallel fraction lies in [0, 1], got \(parallelFraction)")
        self.parallelFraction = parallelFraction
        self.samples = []
        self.objective = .speedup
    }

    /// 1 / ((1 − p) + p/N).
    public func predictedSpeedup(workers n: Double) -> Double {
        1 / ((1 - parallelFraction) + parallelFraction / n)
    }

    /// The limit of S as N → ∞: 1/(1 − p) (infinite when p = 1).
    public var speedupLimit: Double { 1 / (1 - parallelFraction) }

    // MARK: - Solvers

    /// p = Σ cᵢyᵢ / Σ cᵢ², yᵢ = 1 − 1/Sᵢ, clamped to [0, 1].
    static func closedForm(_ points: [(c: Double, s: Double)]) -> Double {
        let cc = points.map { $0.c * $0.c }.reduce(0, +)
        guard cc > 0 else { return 0 }
        let cy = points.map { $0.c * (1 - 1 / $0.s) }.reduce(0, +)
        return min(1, max(0, cy / cc))
    }

    /// Bounded least squares of S over p ∈ [0, 1]: grid, then bisection on the derivative.
    static func leastSquares(_ points: [(c: Double, s: Double)]) -> Double {
        guard points.contains(where: { $0.c > 0 }) else { return 0 }
        func model(_ c: Double, _ p: Double) -> Double { 1 / (1 - p * c) }
        func loss(_ p: Double) -> Double {
            points.map { let r = $0.s - model($0.c, p); return r * r }.reduce(0, +)
        }
        /// ½ d(loss)/dp = Σ (S(p) − Sᵢ)·cᵢ·S(p)².
        func slope(_ p: Double) -> Double {
            points.map { let m = model($0.c, p); return (m - $0.s) * $0.c * m * m }.reduce(0, +)
        }
        let steps = 2000
        var best = 0
        var bestLoss = loss(0)
        for k in 1...steps {
            let l = loss(Double(k) / Double(steps))
            if l < bestLoss { best = k; bestLoss = l }
        }
        var lo = Double(max(best - 1, 0)) / Double(steps)
        var hi = Double(min(best + 1, steps)) / Double(steps)
        // At a boundary the constrained optimum may be the boundary itself.
        if best == 0, slope(0) >= 0 { return 0 }
        if best == steps, slope(1) <= 0 { return 1 }
        guard slope(lo) < 0, slope(hi) > 0 else {
            // No sign change of the slope in the bracket (flat or pathological data):
            // golden-section search on the loss itself.
            let ratio = (5.0.squareRoot() - 1) / 2
            for _ in 0..<200 where hi - lo > 1e-15 {
                let a = hi - ratio * (hi - lo), b = lo + ratio * (hi - lo)
                if loss(a) < loss(b) { hi = b } else { lo = a }
            }
            return (lo + hi) / 2
        }
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            guard mid > lo, mid < hi else { break }
            if slope(mid) < 0 { lo = mid } else { hi = mid }
        }
        return (lo + hi) / 2
    }
}
