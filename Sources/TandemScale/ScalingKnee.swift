import Foundation

// MARK: - Where scaling stops paying

/// The knee of a scaling curve, measured or predicted: the largest worker count reached
/// before scaling stops paying by either of two criteria, walking N upwards:
///
/// 1. **efficiency** — E(N) falls below `efficiencyThreshold` (default 0.9);
/// 2. **marginal gain** — the throughput gained per doubling of N from the previous point,
///    g = (X(Nₖ)/X(Nₖ₋₁))^(1/log₂(Nₖ/Nₖ₋₁)) − 1, falls below `minimumGainPerDoubling`
///    (default 0.1, that is 10% more samples per second for twice the hardware).
///
/// The knee is the last N before the first failure of either criterion, and
/// ``reason`` says which one stopped the walk (nil when the whole curve passes, so the
/// knee is the largest N and may lie beyond it). Points need not be powers of two.
public struct ScalingKnee: Sendable, Equatable {
    /// One point of the curve the knee is looked for in.
    public struct Point: Sendable, Equatable {
        public var workers: Int
        /// Samples per second, all workers together.
        public var throughput: Double
        public var efficiency: Double
        public init(workers: Int, throughput: Double, efficiency: Double) {
            self.workers = workers
            self.throughput = throughput
            self.efficiency = efficiency
        }
    }

    public enum Reason: String, Sendable, Equatable {
        /// The next point's efficiency was below the threshold.
        case efficiency
        /// The next point gained less than the minimum per doubling.
        case marginalGain
    }

    /// The largest N that passes both criteria.
    public var workers: Int
    /// Efficiency at the knee.
    public var efficiency: Double
    /// What stopped the walk at the next point, nil if nothing did.
    public var reason: Reason?
    /// The first worker count that failed, nil if none did.
    public var firstFailingWorkers: Int?

    /// The knee of `points` (any order); nil when even the smallest N fails the
    /// efficiency threshold, or there are no points.
    public init?(points: [Point], efficiencyThreshold: Double = 0.9, minimumGainPerDoubling: Double = 0.1) {
        let sorted = points.sorted { $0.workers < $1.workers }
        guard let first = sorted.first, first.efficiency >= efficiencyThreshold else { return nil }
        var knee = first
        var reason: Reason?
        var failing: Int?
        for point in sorted.dropFirst() {
            if point.efficiency < efficiencyThreshold {
                reason = .efficiency
            } else if ScalingKnee.gainPerDoubling(from: knee, to: point) < minimumGainPerDoubling {
                reason = .marginalGain
            }
            if reason != nil { failing = point.workers; break }
            knee = point
        }
        workers = knee.workers
        efficiency = knee.efficiency
        self.reason = reason
        firstFailingWorkers = failing
    }

    /// Throughput gained per doubling of N between two points:
    /// (X₂/X₁)^(1/log₂(N₂/N₁)) − 1.
    public static func gainPerDoubling(from a: Point, to b: Point) -> Double {
        precondition(b.workers > a.workers, "a doubling needs more workers at the second point")
        let doublings = log2(Double(b.workers) / Double(a.workers))
        return pow(b.throughput / a.throughput, 1 / doublings) - 1
    }
}
