// MARK: - Balance across ranks

/// How evenly the ranks of one run share the work, from each rank's mean step time
/// (`per_rank_step_ms`, the per-rank time the schema carries).
///
/// - **load imbalance** = max / mean − 1 (WORKLOADS.md): 0 when every rank takes the
///   same time; 0.25 when the slowest takes a quarter longer than the average.
/// - **stragglers**: every rank, slowest first (ties by rank), with how much slower it is
///   than the fastest rank, in ms and as a fraction (t / t_fastest − 1).
///
/// In lock-step data parallelism a collective makes the fast ranks wait for the slow one,
/// so step times that include that wait flatten the imbalance; the ranking still names
/// the rank the others wait for.
public struct LoadBalance: Sendable, Equatable {
    /// One rank in the straggler ranking.
    public struct Straggler: Sendable, Equatable {
        public var rank: Int
        public var stepMilliseconds: Double
        /// t − t_fastest.
        public var behindFastestMilliseconds: Double
        /// t / t_fastest − 1 (0 when the fastest is 0).
        public var behindFastestFraction: Double
        public init(rank: Int, stepMilliseconds: Double, behindFastestMilliseconds: Double, behindFastestFraction: Double) {
            self.rank = rank
            self.stepMilliseconds = stepMilliseconds
            self.behindFastestMilliseconds = behindFastestMilliseconds
            self.behindFastestFraction = behindFastestFraction
        }
    }

    /// Each rank's mean step time in ms, indexed by rank.
    public var perRankMilliseconds: [Double]

    /// The balance of `perRankMilliseconds`; nil when empty.
    public init?(perRankMilliseconds: [Double]) {
        guard !perRankMilliseconds.isEmpty else { return nil }
        self.perRankMilliseconds = perRankMilliseconds
    }

    /// max / mean − 1 (0 when the mean is 0).
    public var imbalance: Double {
        let mean = perRankMilliseconds.reduce(0, +) / Double(perRankMilliseconds.count)
        return mean == 0 ? 0 : perRankMilliseconds.max()! / mean - 1
    }

    /// Ranks slowest first; ties keep the lower rank first.
    public var stragglers: [Straggler] {
        let fastest = perRankMilliseconds.min()!
        return perRankMilliseconds.enumerated()
            .sorted { $0.element != $1.element ? $0.element > $1.element : $0.offset < $1.offset }
            .map { rank, t in
                Straggler(rank: rank, stepMilliseconds: t, behindFastestMilliseconds: t - fastest,
                          behindFastestFraction: fastest == 0 ? 0 : t / fastest - 1)
            }
    }

    /// The slowest rank (the lowest one among equals).
    public var slowestRank: Int { stragglers[0].rank }
}
