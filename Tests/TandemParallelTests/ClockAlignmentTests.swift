import TandemCollectives
import TandemParallel
import Testing

// MARK: - Clock alignment over collectives

@Suite("Clock alignment")
struct ClockAlignmentTests {
    /// Rank r's clock runs `skew[r]` seconds ahead of the shared one.
    static func align(ranks: Int, skew: @escaping @Sendable (Int) -> Double) throws -> [ClockAlignment] {
        try ThreadLauncher.run(workers: ranks, timeout: 30) { rank, group in
            let clock = MonotonicClock()
            return try ClockAlignment.estimate(group: group, rounds: 8) { clock.now() + skew(rank) }
        }
    }

    @Test("ranks sharing one clock: every offset is zero within its uncertainty", arguments: [1, 2, 4])
    func sharedClock(ranks: Int) throws {
        let clocks = try Self.align(ranks: ranks) { _ in 0 }
        #expect(clocks[0] == .reference)
        for (rank, c) in clocks.enumerated().dropFirst() {
            #expect(c.uncertainty >= 0 && c.uncertainty < 0.05, "rank \(rank): ±\(c.uncertainty) s")
            #expect(abs(c.offset) <= c.uncertainty + 1e-6, "rank \(rank): offset \(c.offset) s ± \(c.uncertainty)")
        }
    }

    @Test("skewed clocks: rank r's offset is −(its skew) + rank 0's skew, within the uncertainty")
    func skewedClocks() throws {
        // Seconds of skew at a time of day's magnitude: float-float readings must stay exact.
        let skews = [12_345.678_9, -3.25, 86_400.5, 0.000_2]
        let clocks = try Self.align(ranks: 4) { skews[$0] }
        for rank in 1..<4 {
            let expected = skews[0] - skews[rank]
            #expect(abs(clocks[rank].offset - expected) <= clocks[rank].uncertainty + 1e-6,
                    "rank \(rank): offset \(clocks[rank].offset), expected \(expected) ± \(clocks[rank].uncertainty)")
        }
    }

    @Test("zero rounds is an error, not a hang")
    func zeroRounds() throws {
        #expect(throws: CollectiveError.self) {
            _ = try Self.align(ranks: 2) { _ in 0 }.count  // warm path
            _ = try ThreadLauncher.run(workers: 1) { _, group in try ClockAlignment.estimate(group: group, rounds: 0) { 0 } }
        }
    }
}
