import TandemScale
import Testing

@Suite("Scaling laws")
struct ScalingLawTests {
    static let sweep = [1, 2, 4, 8, 16, 32, 64]

    static func amdahl(_ p: Double, _ n: Int) -> Double { 1 / ((1 - p) + p / Double(n)) }
    static func gustafson(_ p: Double, _ n: Int) -> Double { (1 - p) + Double(n) * p }

    struct FitCase: CustomTestStringConvertible, Sendable {
        var p: Double
        var objective: AmdahlFit.Objective
        var testDescription: String { "p = \(p), \(objective)" }
    }

    static let noiseFree = [0.0, 0.3, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0].flatMap { p in
        AmdahlFit.Objective.allCases.map { FitCase(p: p, objective: $0) }
    }

    @Test(arguments: noiseFree)
    func amdahlRecoversExactP(_ c: FitCase) {
        let samples = Self.sweep.map { SpeedupSample(workers: $0, speedup: Self.amdahl(c.p, $0)) }
        let fit = AmdahlFit(samples: samples, objective: c.objective)
        expectScaleClose(fit.parallelFraction, c.p, tolerance: 1e-6, "p")
        #expect(fit.rootMeanSquareError < 1e-6)
    }

    static let noisy = [(0.8, UInt64(1)), (0.9, 2), (0.95, 3), (0.99, 4), (0.5, 5), (0.9, 6), (0.95, 7)].flatMap { p, seed in
        AmdahlFit.Objective.allCases.map { (p, seed, $0) }
    }

    /// 1% multiplicative noise, three repeats per N averaged as a sweep would.
    @Test(arguments: noisy)
    func amdahlWithinTwoHundredthsUnderNoise(p: Double, seed: UInt64, objective: AmdahlFit.Objective) {
        var random = ScaleRandom(seed: seed)
        let samples = Self.sweep.flatMap { n in
            (0..<3).map { _ in SpeedupSample(workers: n, speedup: Self.amdahl(p, n) * (1 + 0.01 * random.normal())) }
        }
        let fit = AmdahlFit(samples: samples, objective: objective)
        expectScaleClose(fit.parallelFraction, p, tolerance: 0.02, "p with seed \(seed)")
    }

    @Test(arguments: [0.0, 0.2, 0.7, 0.95, 1.0])
    func gustafsonRecoversExactP(p: Double) {
        let fit = GustafsonFit(samples: Self.sweep.map { SpeedupSample(workers: $0, speedup: Self.gustafson(p, $0)) })
        expectScaleClose(fit.parallelFraction, p, tolerance: 1e-12, "p")
        #expect(fit.rootMeanSquareError < 1e-9)
    }

    @Test(arguments: [(0.7, UInt64(11)), (0.9, 12), (0.97, 13)])
    func gustafsonWithinTwoHundredthsUnderNoise(p: Double, seed: UInt64) {
        var random = ScaleRandom(seed: seed)
        let samples = Self.sweep.map { SpeedupSample(workers: $0, speedup: Self.gustafson(p, $0) * (1 + 0.01 * random.normal())) }
        expectScaleClose(GustafsonFit(samples: samples).parallelFraction, p, tolerance: 0.02, "p")
    }

    @Test func gustafsonResidualsByHand() {
        // p = (1·0.9 + 3·2.5) / (1 + 9) = 0.84; S(2) = 1.84, S(4) = 3.52.
        let fit = GustafsonFit(samples: [.init(workers: 2, speedup: 1.9), .init(workers: 4, speedup: 3.5)])
        expectScaleClose(fit.parallelFraction, 0.84, "p")
        expectScaleClose(fit.residuals, [0.06, -0.02], tolerance: 1e-12, "residuals")
        expectScaleClose(fit.rootMeanSquareError, 0.002.squareRoot(), "RMSE")
        expectScaleClose(fit.predictedSpeedup(workers: 10), 0.16 + 8.4, "S(10)")
    }

    @Test func amdahlPredictionsByHand() {
        let law = AmdahlFit(parallelFraction: 0.9)
        expectScaleClose(law.predictedSpeedup(workers: 10), 1 / 0.19, "S(10)")
        expectScaleClose(law.predictedEfficiency(workers: 10), 1 / 1.9, "E(10)")
        expectScaleClose(law.speedupLimit, 10, tolerance: 1e-12, "limit")
        expectScaleClose(law.serialFraction, 0.1, tolerance: 1e-15, "1 − p")
        #expect(AmdahlFit(parallelFraction: 1).speedupLimit == .infinity)
    }

    @Test func amdahlClosedFormByHand() {
        // c = 1/2 and 3/4; y = 1 − 1/S = 0.5 and 0.6: p = (0.25 + 0.45) / (0.25 + 0.5625).
        let fit = AmdahlFit(samples: [.init(workers: 2, speedup: 2), .init(workers: 4, speedup: 2.5)], objective: .inverseSpeedup)
        expectScaleClose(fit.parallelFraction, 0.7 / 0.8125, "p")
    }

    @Test func fitsClampToTheUnitInterval() {
        let superlinear = [SpeedupSample(workers: 2, speedup: 2.5), .init(workers: 4, speedup: 6)]
        #expect(AmdahlFit(samples: superlinear).parallelFraction == 1)
        #expect(AmdahlFit(samples: superlinear, objective: .inverseSpeedup).parallelFraction == 1)
        #expect(GustafsonFit(samples: superlinear).parallelFraction == 1)
        let slowdown = [SpeedupSample(workers: 2, speedup: 0.5), .init(workers: 4, speedup: 0.4)]
        #expect(AmdahlFit(samples: slowdown).parallelFraction == 0)
        #expect(GustafsonFit(samples: slowdown).parallelFraction == 0)
        #expect(AmdahlFit(samples: [.init(workers: 1, speedup: 1)]).parallelFraction == 0, "N = 1 says nothing about p")
    }
}

@Suite("ScalingKnee")
struct ScalingKneeTests {
    static func point(_ n: Int, _ x: Double) -> ScalingKnee.Point {
        ScalingKnee.Point(workers: n, throughput: x, efficiency: x / (100 * Double(n)))
    }

    @Test func stopsAtEfficiency() throws {
        let knee = try #require(ScalingKnee(points: [Self.point(1, 100), Self.point(2, 195), Self.point(4, 370), Self.point(8, 700)]))
        #expect(knee.workers == 4 && knee.reason == .efficiency && knee.firstFailingWorkers == 8)
        expectScaleClose(knee.efficiency, 0.925, "E(4)")
    }

    @Test func stopsAtMarginalGain() throws {
        let points = [Self.point(1, 100), Self.point(2, 195), Self.point(4, 210)]
        let knee = try #require(ScalingKnee(points: points, efficiencyThreshold: 0.5))
        #expect(knee.workers == 2 && knee.reason == .marginalGain)
    }

    @Test func wholeCurvePasses() throws {
        let knee = try #require(ScalingKnee(points: [Self.point(4, 400), Self.point(1, 100), Self.point(2, 200)]))
        #expect(knee.workers == 4 && knee.reason == nil && knee.firstFailingWorkers == nil)
        #expect(ScalingKnee(points: [Self.point(1, 50)]) == nil, "even N = 1 below the threshold")
        #expect(ScalingKnee(points: []) == nil)
    }

    @Test func gainPerDoublingOverSkippedCounts() {
        // 1 → 4 workers is two doublings; ×2.25 in throughput is ×1.5 per doubling.
        expectScaleClose(ScalingKnee.gainPerDoubling(from: Self.point(1, 100), to: Self.point(4, 225)), 0.5, "gain")
    }
}
