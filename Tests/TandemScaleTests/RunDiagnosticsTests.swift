import TandemParallel
import TandemScale
import Testing

@Suite("Run diagnostics")
struct RunDiagnosticsTests {
    static let example = try! ResultRecord(json: ScaleFixture.workloadsExample).result

    @Test func stepBreakdownByHand() throws {
        let b = try #require(StepBreakdown(result: Self.example))
        #expect(b.stepMilliseconds == 20.4, "the mean step, which the phases add up to")
        expectScaleClose(b.other, 20.4 - (0.1 + 6.0 + 12.1 + 0.9 + 1.2), tolerance: 1e-12, "other")
        expectScaleClose(b.other, 0.1, tolerance: 1e-12, "other")
        expectScaleClose(b.compute, 18.1, tolerance: 1e-12, "forward + backward")
        expectScaleClose(b.fraction(.backward), 12.1 / 20.4, "backward share")
        expectScaleClose(StepBreakdown.Phase.allCases.map { b.fraction($0) }.reduce(0, +), 1, tolerance: 1e-12, "shares")
        #expect(b.milliseconds(.exposedCommunication) == 0.9 && b.milliseconds(.data) == 0.1)
    }

    @Test func otherStaysSignedWhenPhasesOverrun() {
        let b = StepBreakdown(stepMilliseconds: 10, data: 0, forward: 4, backward: 6, exposedCommunication: 1, optimizer: 1)
        expectScaleClose(b.other, -2, "other")
    }

    @Test func overlapByHand() throws {
        let run = ScaleFixture.run(workers: 2, samplesPerSecond: 100, stepMs: 10, extra: """
            , "comm": {"bytes_per_step": 8000000, "algbw_gbps": 4.0, "busbw_gbps": 4.0, "overlap": 0.75}, \
            "breakdown_ms": {"data": 0, "forward": 3, "backward": 5, "comm_exposed": 0.5, "optimizer": 1}
            """)
        let o = try #require(CommunicationOverlap(result: run))
        #expect(o.fraction == 0.75 && o.bytesPerStep == 8_000_000)
        expectScaleClose(try #require(o.totalMilliseconds), 2, tolerance: 1e-12, "8 MB at 4 GB/s")
        expectScaleClose(try #require(o.hiddenMilliseconds), 1.5, tolerance: 1e-12, "hidden")
        expectScaleClose(try #require(o.derivedFraction), 0.75, tolerance: 1e-12, "1 − 0.5/2")
        #expect(CommunicationOverlap(result: ScaleFixture.run(workers: 1, samplesPerSecond: 1, stepMs: 1)) == nil)
    }

    @Test func loadImbalanceAndStragglersByHand() throws {
        let balance = try #require(LoadBalance(perRankMilliseconds: [10, 12, 14, 12]))
        expectScaleClose(balance.imbalance, 14.0 / 12 - 1, "max/mean − 1")
        let ranking = balance.stragglers
        #expect(ranking.map(\.rank) == [2, 1, 3, 0], "slowest first, ties by rank")
        expectScaleClose(ranking.map(\.behindFastestMilliseconds), [4, 2, 2, 0], "ms behind")
        expectScaleClose(ranking.map(\.behindFastestFraction), [0.4, 0.2, 0.2, 0], "fraction behind")
        #expect(balance.slowestRank == 2)
        #expect(LoadBalance(perRankMilliseconds: []) == nil)
        expectScaleClose(LoadBalance(perRankMilliseconds: [5, 5])!.imbalance, 0, "balanced")
    }

    @Test func jitterByHand() throws {
        let j = try #require(Jitter(stepMilliseconds: [10, 11, 9, 10, 12, 8, 10, 30, 11, 9]))
        expectScaleClose(j.mean, 12, "mean")
        expectScaleClose(j.standardDeviation, (372.0 / 9).squareRoot(), "s (n − 1)")
        expectScaleClose(j.coefficientOfVariation, (372.0 / 9).squareRoot() / 12, "CV")
        expectScaleClose(j.median, 10, "median")
        expectScaleClose(j.medianAbsoluteDeviation, 1, "MAD")
        expectScaleClose(j.p99, 12 + 0.91 * 18, tolerance: 1e-9, "p99 between the two largest")
        expectScaleClose(j.spikeThreshold, 13, "median + 3·MAD")
        #expect(j.spikes == 1 && j.spikeIndices == [7])
    }

    @Test func jitterWithZeroDeviation() throws {
        let j = try #require(Jitter(stepMilliseconds: [5, 5, 5, 6, 5]))
        #expect(j.medianAbsoluteDeviation == 0 && j.spikeIndices == [3], "with MAD 0 anything above the median is a spike")
        let one = try #require(Jitter(stepMilliseconds: [4]))
        #expect(one.standardDeviation == 0 && one.coefficientOfVariation == 0 && one.spikes == 0)
        #expect(Jitter(stepMilliseconds: []) == nil)
    }

    @Test func mfuByHand() throws {
        // 1.44 GFLOP a step for both workers; 6,400 samples/s at a global batch of 128 is 50 steps/s:
        // 72 GFLOP/s over 2 × 100 GFLOP/s.
        let run = ScaleFixture.run(workers: 2, batch: 64, samplesPerSecond: 6400, stepMs: 20, extra: #", "flops_per_step": 1.44e9"#)
        let u = try #require(Utilization(result: run, peakFLOPSPerWorker: 100e9))
        expectScaleClose(u.achievedFLOPS, 72e9, tolerance: 1e-9, relative: true, "achieved")
        expectScaleClose(u.peakFLOPS, 200e9, tolerance: 1e-12, relative: true, "peak")
        expectScaleClose(u.mfu, 0.36, tolerance: 1e-12, "MFU")
        #expect(Utilization(result: ScaleFixture.run(workers: 1, samplesPerSecond: 1, stepMs: 1), peakFLOPSPerWorker: 1) == nil)
    }

    @Test func bundleOfATorchResultHasOnlyWhatItCarries() throws {
        let d = RunDiagnostics(result: try ResultRecord(json: ScaleFixture.torchCPU).result, peakFLOPSPerWorker: 100e9)
        #expect(d.breakdown == nil && d.overlap == nil && d.balance == nil && d.utilization == nil)
        let full = RunDiagnostics(result: Self.example)
        #expect(full.breakdown != nil && full.overlap != nil && full.utilization == nil)
        expectScaleClose(try #require(full.balance).imbalance, 20.2 / 20.1 - 1, "imbalance of [20.0, 20.2]")
    }
}
