import TandemParallel
import TandemScale
import Testing

@Suite("Spread of repeats")
struct SpreadTests {
    @Test func handComputedQuantiles() throws {
        let s = try #require(Spread([4, 1, 3, 2]))
        #expect(s.count == 4 && s.min == 1 && s.max == 4)
        expectScaleClose(s.mean, 2.5, "mean")
        expectScaleClose(s.median, 2.5, "median of an even count is the mean of the middle two")
        expectScaleClose(s.p10, 1.3, "p10 = x0 + 0.3·(x1 − x0)")
        expectScaleClose(s.p90, 3.7, "p90 = x2 + 0.7·(x3 − x2)")
        expectScaleClose(s.relativeWidth, 2.4 / 2.5, "relative width")
    }

    @Test func oneValueAndNone() throws {
        let s = try #require(Spread([7]))
        #expect([s.min, s.max, s.median, s.p10, s.p90, s.mean] == [7, 7, 7, 7, 7, 7])
        #expect(Spread([]) == nil)
    }
}

@Suite("ScalingCurve")
struct ScalingCurveTests {
    /// Weak scaling: N = 1 three repeats (median 100), N = 2 (median 180), N = 4 (320).
    static let weakRuns: [RunResult] = [
        ScaleFixture.run(workers: 1, samplesPerSecond: 110, stepMs: 10),
        ScaleFixture.run(workers: 2, samplesPerSecond: 190, stepMs: 12),
        ScaleFixture.run(workers: 1, samplesPerSecond: 100, stepMs: 11),
        ScaleFixture.run(workers: 4, samplesPerSecond: 320, stepMs: 13),
        ScaleFixture.run(workers: 2, samplesPerSecond: 170, stepMs: 14),
        ScaleFixture.run(workers: 1, samplesPerSecond: 90, stepMs: 12),
        ScaleFixture.run(workers: 2, samplesPerSecond: 180, stepMs: 13),
    ]

    @Test func weakScalingByHand() throws {
        let curve = try ScalingCurve(results: Self.weakRuns, mode: .weak)
        #expect(curve.points.map(\.workers) == [1, 2, 4])
        #expect(curve.points.map(\.repeats) == [3, 3, 1])
        #expect(curve.baselineWorkers == 1 && curve.model == "mlp")
        let (one, two, four) = (curve.points[0], curve.points[1], curve.points[2])
        #expect(one.throughput.median == 100 && one.throughput.min == 90 && one.throughput.max == 110)
        #expect(one.stepMilliseconds.median == 11)
        expectScaleClose(one.throughput.p10, 92, tolerance: 1e-9, "p10 of 90, 100, 110")
        expectScaleClose([one.speedup, two.speedup, four.speedup], [1, 1.8, 3.2], "speedup")
        expectScaleClose([one.efficiency, two.efficiency, four.efficiency], [1, 0.9, 0.8], "efficiency")
        #expect(one.karpFlatt == nil)
        expectScaleClose(try #require(two.karpFlatt), (1 / 1.8 - 0.5) / 0.5, "e(2)")
        expectScaleClose(try #require(four.karpFlatt), (1 / 3.2 - 0.25) / 0.75, "e(4)")
    }

    @Test func strongScalingByHand() throws {
        let runs = [
            ScaleFixture.run(workers: 1, batch: 128, samplesPerSecond: 1280, stepMs: 100),
            ScaleFixture.run(workers: 2, batch: 64, samplesPerSecond: 2327, stepMs: 55),
            ScaleFixture.run(workers: 4, batch: 32, samplesPerSecond: 4266, stepMs: 30),
        ]
        let curve = try ScalingCurve(results: runs, mode: .strong)
        expectScaleClose(curve.points.map(\.speedup), [1, 100.0 / 55, 100.0 / 30], "S = step(1)/step(N), not throughput")
        expectScaleClose(curve.points.map(\.efficiency), [1, 100.0 / 110, 100.0 / 120], "E = S/N")
    }

    @Test func baselineAboveOneWorkerIsTakenAsPerfect() throws {
        let runs = [ScaleFixture.run(workers: 8, samplesPerSecond: 800, stepMs: 10),
                    ScaleFixture.run(workers: 16, samplesPerSecond: 1400, stepMs: 11)]
        let curve = try ScalingCurve(results: runs, mode: .weak)
        #expect(curve.baselineWorkers == 8)
        expectScaleClose(curve.points.map(\.speedup), [8, 14], "S(N) = N₀·X(N)/X(N₀)")
        expectScaleClose(curve.points.map(\.efficiency), [1, 0.875], "E")
    }

    /// Karp–Flatt recovers Amdahl's serial fraction exactly, at every N.
    @Test(arguments: [0.0, 0.05, 0.3])
    func karpFlattOfAmdahlIsItsSerialFraction(serial: Double) {
        for n in [2, 3, 8, 100] {
            let s = AmdahlFit(parallelFraction: 1 - serial).predictedSpeedup(workers: n)
            expectScaleClose(ScalingCurve.karpFlatt(speedup: s, workers: n)!, serial, tolerance: 1e-12, "e(\(n))")
        }
        #expect(ScalingCurve.karpFlatt(speedup: 1, workers: 1) == nil)
    }

    struct BadSet: CustomTestStringConvertible, Sendable {
        var label: String
        var runs: [RunResult]
        var mode: ScalingMode
        var keyword: String
        var testDescription: String { label }
    }

    static let badSets: [BadSet] = [
        BadSet(label: "empty", runs: [], mode: .weak, keyword: "no results"),
        BadSet(label: "two models", runs: [ScaleFixture.run(model: "mlp", workers: 1, samplesPerSecond: 1, stepMs: 1),
                                           ScaleFixture.run(model: "cnn", workers: 2, samplesPerSecond: 2, stepMs: 1)],
               mode: .weak, keyword: "cnn, mlp"),
        BadSet(label: "weak with two per-worker batches",
               runs: [ScaleFixture.run(workers: 1, batch: 64, samplesPerSecond: 1, stepMs: 1),
                      ScaleFixture.run(workers: 2, batch: 32, samplesPerSecond: 2, stepMs: 1)],
               mode: .weak, keyword: "batch_per_worker"),
        BadSet(label: "strong with two global batches",
               runs: [ScaleFixture.run(workers: 1, batch: 64, samplesPerSecond: 1, stepMs: 1),
                      ScaleFixture.run(workers: 2, batch: 64, samplesPerSecond: 2, stepMs: 1)],
               mode: .strong, keyword: "global_batch"),
    ]

    @Test(arguments: badSets)
    func setsThatAreNotOneCurve(_ bad: BadSet) {
        #expect {
            _ = try ScalingCurve(results: bad.runs, mode: bad.mode)
        } throws: { error in
            (error as? ScalingError)?.description.contains(bad.keyword) == true
        }
    }

    @Test func curvesGroupByModelAndBatch() throws {
        let runs = Self.weakRuns + [ScaleFixture.run(model: "cnn", workers: 1, samplesPerSecond: 50, stepMs: 1),
                                    ScaleFixture.run(model: "cnn", workers: 2, samplesPerSecond: 95, stepMs: 1)]
        let curves = try ScalingCurve.curves(from: runs, mode: .weak)
        #expect(curves.map(\.model) == ["cnn", "mlp"])
        expectScaleClose(curves[0].points.map(\.efficiency), [1, 0.95], "cnn efficiency")
    }

    @Test func curveKneeAndFits() throws {
        let curve = try ScalingCurve(results: Self.weakRuns, mode: .weak)
        let knee = try #require(curve.knee())
        #expect(knee.workers == 2 && knee.reason == .efficiency && knee.firstFailingWorkers == 4)
        #expect(curve.speedups == [.init(workers: 1, speedup: 1), .init(workers: 2, speedup: 1.8), .init(workers: 4, speedup: 3.2)])
        #expect(curve.amdahlFit().samples.count == 3)
        #expect(curve.gustafsonFit().parallelFraction > 0.7)
    }
}
