// MARK: - Aligning the clocks of ranks

/// This rank's clock against rank 0's: `offset` seconds to add to a local time to get
/// rank 0's time, known to within ± `uncertainty` seconds.
///
/// Estimated at start-up with Cristian's method over the group's own collectives, so it
/// works on every backend: each round, every other rank notes its clock (t₀) and enters a
/// barrier; rank 0 leaves the barrier, reads its clock and broadcasts the reading; the
/// rank notes its clock again when the broadcast returns (t₁). Rank 0 cannot leave the
/// barrier before this rank entered it, nor broadcast a reading it has not taken, so the
/// reading was taken between t₀ and t₁, and offset = reading − (t₀ + t₁)/2 is wrong by at
/// most (t₁ − t₀)/2. The round with the narrowest window wins. Threads of one process (and processes of one host) share a
/// clock, and their offset comes out within its uncertainty of zero; ranks on different
/// hosts differ by whatever their clocks do.
///
/// - Complexity: `rounds` barriers and broadcasts of 8 bytes.
public struct ClockAlignment: Sendable, Equatable {
    public var offset: Double
    public var uncertainty: Double

    public init(offset: Double, uncertainty: Double) {
        self.offset = offset
        self.uncertainty = uncertainty
    }

    /// Rank 0's own alignment.
    public static let reference = ClockAlignment(offset: 0, uncertainty: 0)

    /// Measures this rank's alignment; every rank of `group` must call it together.
    public static func estimate(group: any ProcessGroup, rounds: Int = 16, now: () -> Double) throws(CollectiveError) -> ClockAlignment {
        guard rounds >= 1 else { throw .invalid("clock alignment needs at least one round, got \(rounds)") }
        var best = ClockAlignment(offset: 0, uncertainty: .infinity)
        // A reading travels as two float32 values, hi + lo (a float-float pair), exact to
        // about 1e-10 s for times of days; float32 is the one dtype every backend carries.
        let words = UnsafeMutablePointer<Float>.allocate(capacity: 2)
        defer { words.deallocate() }
        for _ in 0..<rounds {
            let before = now()
            try group.barrier().wait()
            if group.rank == 0 {
                let reading = now()
                words[0] = Float(reading)
                words[1] = Float(reading - Double(words[0]))
            }
            try group.broadcast(CollectiveBuffer(words, count: 2), root: 0).wait()
            let after = now()
            guard group.rank != 0 else { continue }
            let reading = Double(words[0]) + Double(words[1])
            let window = (after - before) / 2
            if window < best.uncertainty { best = ClockAlignment(offset: reading - (before + after) / 2, uncertainty: window) }
        }
        return group.rank == 0 ? .reference : best
    }
}
