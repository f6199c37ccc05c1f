import Foundation
// The memberwise initialisers of `Sweep.Configuration`, `Benchmark.Measurement` and
// `CollectiveRecord` are internal, so this file needs a debug (testable) build, as
// ReportTests and TraceTests do.
@testable import TandemCollectives
import TandemModels
@testable import TandemParallel
@testable import TandemScale
import Testing

// MARK: - Hand-made sweeps

/// Results built field by field, so every number `Analysis` sees is known.
private enum AnalysisFixture {
    /// One run: `model` at `workers` workers, 64 samples per worker, `samplesPerSecond`
    /// overall, a mean (and median) step of `stepMs`, and the given breakdown and per-rank times.
    static func run(model: String = "mlp", workers: Int, samplesPerSecond: Double, stepMs: Double,
                    forward: Double = 20, backward: Double = 40, commExposed: Double = 0, optimizer: Double = 2,
                    perRankComputeMs: [Double]? = nil, perRankStepsMs: [[Double]]? = nil) -> RunResult {
        var r = RunResult(
            model: model, params: 1000, backend: workers > 1 ? "threads" : "none", device_name: "test cpu", workers: workers,
            batch_per_worker: 64, global_batch: 64 * workers, steps: 2, warmup: 0, seconds: 1,
            samples_per_s: samplesPerSecond, step_ms: .init(mean: stepMs, median: stepMs, p10: stepMs, p90: stepMs),
            breakdown_ms: .init(data: 0, forward: forward, backward: backward, comm_exposed: commExposed, optimizer: optimizer),
            memory: .init(peak_bytes: 20_000, params: 4000, grads: 4000, optimizer: 4000, activations: 8000),
            loss: 2.3, flops_per_step: 1e6 * Double(workers))
        r.per_rank_compute_ms = perRankComputeMs ?? Array(repeating: forward + backward, count: workers)
        r.per_rank_steps_ms = perRankStepsMs ?? (0..<workers).map { _ in [stepMs, stepMs] }
        r.per_rank_step_ms = r.per_rank_steps_ms!.map { $0.reduce(0, +) / Double($0.count) }
        return r
    }

    static func measurement(_ result: RunResult) -> Benchmark.Measurement {
        Benchmark.Measurement(result: result, spans: [], collectives: [])
    }

    static func configuration(_ model: ReferenceModel, workers: Int, _ runs: [RunResult]) -> Sweep.Configuration {
        Sweep.Configuration(model: model, workers: workers, batchPerWorker: 64, runs: runs.map(measurement))
    }

    /// Two all-reduce sizes on 2 workers: enough to calibrate α and β.
    static let commRows: [CommBenchmark.Row] = {
        let lines = [
            #"{"operation": "all-reduce", "workers": 2, "bytes": 4096, "microseconds": 20, "algbw_gbps": 0.2, "busbw_gbps": 0.2}"#,
            #"{"operation": "all-reduce", "workers": 2, "bytes": 4194304, "microseconds": 2000, "algbw_gbps": 2.1, "busbw_gbps": 2.1}"#,
        ]
        return lines.map { try! JSONDecoder().decode(CommBenchmark.Row.self, from: Data($0.utf8)) }
    }()

    /// mlp: 1 worker at 1000 samples/s, 2 workers at 1600 (medians of three repeats); the
    /// typical 2-worker run spends 16 of its 80 ms in exposed communication, and rank 1
    /// computes 12 ms where rank 0 computes 10.
    static let mlpOne = [
        run(workers: 1, samplesPerSecond: 1000, stepMs: 64, perRankStepsMs: [[63, 65]]),
        run(workers: 1, samplesPerSecond: 980, stepMs: 65.3),
        run(workers: 1, samplesPerSecond: 1020, stepMs: 62.7),
    ]
    static let mlpTwo = [
        // The first repeat (the traced one) is not the median one.
        run(workers: 2, samplesPerSecond: 1500, stepMs: 85.3, commExposed: 1, perRankStepsMs: [[85, 86], [85.5, 85]]),
        run(workers: 2, samplesPerSecond: 1600, stepMs: 80, commExposed: 16, perRankComputeMs: [10, 12]),
        run(workers: 2, samplesPerSecond: 1700, stepMs: 75.3, commExposed: 1),
    ]
    /// cnn: balanced, with little exposed communication (4 of 80 ms = 5%).
    static let cnnOne = [run(model: "cnn", workers: 1, samplesPerSecond: 800, stepMs: 80)]
    static let cnnTwo = [run(model: "cnn", workers: 2, samplesPerSecond: 1520, stepMs: 84.2, commExposed: 4, perRankComputeMs: [11, 11])]

    /// Both models, the cnn configurations out of order (2 workers before 1).
    static func configurations() -> [Sweep.Configuration] {
        [
            configuration(.mlp, workers: 1, mlpOne), configuration(.mlp, workers: 2, mlpTwo),
            configuration(.cnn, workers: 2, cnnTwo), configuration(.cnn, workers: 1, cnnOne),
        ]
    }

    static func analysis() throws -> Analysis {
        try Analysis(configurations: configurations(), mode: .weak, comm: commRows, peakFLOPS: 1e11)
    }
}

// MARK: - Analysis

@Suite("Analysis")
struct AnalysisTests {
    @Test("curves: speedup and efficiency from the median throughput of the repeats")
    func curves() throws {
        let analysis = try AnalysisFixture.analysis()
        #expect(analysis.curves.map(\.model) == ["cnn", "mlp"])
        let mlp = try #require(analysis.curves.first { $0.model == "mlp" })
        #expect(mlp.points.map(\.workers) == [1, 2])
        let one = try #require(mlp.point(workers: 1)), two = try #require(mlp.point(workers: 2))
        expectScaleClose(one.throughput.median, 1000, "mlp × 1 median")
        expectScaleClose(two.throughput.median, 1600, "mlp × 2 median")
        expectScaleClose(two.throughput.min, 1500, "mlp × 2 min")
        expectScaleClose(two.throughput.max, 1700, "mlp × 2 max")
        expectScaleClose(one.speedup, 1, "S(1)")
        expectScaleClose(one.efficiency, 1, "E(1)")
        expectScaleClose(two.speedup, 1.6, tolerance: 1e-12, relative: true, "S(2)")
        expectScaleClose(two.efficiency, 0.8, tolerance: 1e-12, relative: true, "E(2)")
        let cnn = try #require(analysis.curves.first { $0.model == "cnn" })
        expectScaleClose(try #require(cnn.point(workers: 2)).speedup, 1.9, tolerance: 1e-12, relative: true, "cnn S(2)")
        expectScaleClose(try #require(cnn.point(workers: 2)).efficiency, 0.95, tolerance: 1e-12, relative: true, "cnn E(2)")
    }

    @Test("findings: rank 1 is the straggler, and communication over 10% of the step is exposed")
    func findings() throws {
        let analysis = try AnalysisFixture.analysis()
        let mlp = analysis.findings.filter { $0.hasPrefix("mlp:") }
        let straggler = mlp.filter { $0.contains("straggler") }
        #expect(straggler.count == 1, "\(analysis.findings)")
        // Imbalance of [10, 12]: 12 / 11 − 1 = 9%.
        #expect(straggler.first?.contains("rank 1 is the straggler at 2 workers, 9% slower than the mean") == true,
                "\(straggler)")
        let exposed = mlp.filter { $0.contains("communication is") && $0.contains("exposed") }
        #expect(exposed.count == 1, "\(analysis.findings)")
        // The typical (median-throughput) run: 16 of 80 ms.
        #expect(exposed.first?.contains("communication is 20% of the step and exposed at 2 workers") == true, "\(exposed)")

        // cnn: 5% exposed and balanced ranks, so neither finding.
        let cnn = analysis.findings.filter { $0.hasPrefix("cnn:") }
        #expect(!cnn.contains { $0.contains("straggler") }, "\(cnn)")
        #expect(!cnn.contains { $0.contains("exposed at") }, "\(cnn)")

        // The table shows what the findings say.
        let lines = analysis.table.split(separator: "\n").map(String.init)
        #expect(lines.count == 2 + 4, "\(analysis.table)")
        let row = try #require(lines.first { $0.hasPrefix("| mlp | 2 |") }, "\(analysis.table)")
        #expect(row.contains("| 1600.0 (1500.0–1700.0) | 1.60 | 80% |"), "\(row)")
        #expect(row.contains("| 20% | 9.1% |"), "\(row)")
    }

    @Test("findings: no straggler when the imbalance is at most 5%, no exposed communication at 10% or less")
    func quietFindings() throws {
        let configurations = [
            AnalysisFixture.configuration(.mlp, workers: 1, [AnalysisFixture.run(workers: 1, samplesPerSecond: 1000, stepMs: 64)]),
            AnalysisFixture.configuration(.mlp, workers: 2, [
                AnalysisFixture.run(workers: 2, samplesPerSecond: 1800, stepMs: 71.1, commExposed: 7, perRankComputeMs: [10, 10.5]),
            ]),
        ]
        let analysis = try Analysis(configurations: configurations, mode: .weak, comm: [], peakFLOPS: 1e11)
        #expect(!analysis.findings.contains { $0.contains("straggler") || $0.contains("exposed at") }, "\(analysis.findings)")
        // Without a communication sweep there is no link to calibrate, so nothing is predicted.
        #expect(analysis.predictions.isEmpty)
    }

    @Test("reports: one input per model, points sorted by workers, from the typical run")
    func reports() throws {
        let analysis = try AnalysisFixture.analysis()
        #expect(analysis.reports.count == 2)
        #expect(analysis.reports.map(\.title) == ["cnn (weak scaling)", "mlp (weak scaling)"])
        for report in analysis.reports {
            #expect(report.mode == "weak")
            #expect(report.points.map(\.workers) == [1, 2], "\(report.title)")
            #expect(report.amdahl != nil, "\(report.title): two points make a fit")
            #expect(report.busbw.map(\.bytes) == [4096, 4_194_304])
        }
        let mlp = try #require(analysis.reports.last)
        let two = try #require(mlp.points.last)
        expectScaleClose(two.throughputMedian, 1600, "median")
        expectScaleClose(two.speedup, 1.6, tolerance: 1e-12, relative: true, "speedup")
        expectScaleClose(two.efficiency, 0.8, tolerance: 1e-12, relative: true, "efficiency")
        // The breakdown of the median run: 80 ms = 20 + 40 + 16 + 2 + 2 other.
        expectScaleClose(two.breakdownMs["comm_exposed"] ?? .nan, 16, "comm_exposed")
        expectScaleClose(two.breakdownMs["forward"] ?? .nan, 20, "forward")
        expectScaleClose(two.breakdownMs["other"] ?? .nan, 2, tolerance: 1e-9, "other")
        // The step distribution is the first (traced) repeat's.
        #expect(two.perRankStepMs == [[85, 86], [85.5, 85]])
        #expect(two.memoryBytes["params"] == 4000 && two.memoryBytes["comm_buffers"] == 0)
        #expect(mlp.findings.allSatisfy { $0.hasPrefix("mlp:") } && !mlp.findings.isEmpty)
    }

    @Test("predictions: the α-β model calibrated on 1 worker, error = (predicted − measured) / measured")
    func predictions() throws {
        let analysis = try AnalysisFixture.analysis()
        // Both models, although the cnn configurations were given 2 workers first.
        #expect(analysis.predictions.map(\.model).sorted() == ["cnn", "mlp"], "\(analysis.predictions)")
        let link = try Calibration.interconnect(samples: AnalysisFixture.commRows.compactMap(CollectiveSample.init(row:)))
        for (model, one, measured) in [("mlp", AnalysisFixture.mlpOne[0], 1600.0), ("cnn", AnalysisFixture.cnnOne[0], 1520.0)] {
            let check = try #require(analysis.predictions.first { $0.model == model })
            #expect(check.workers == 2)
            expectScaleClose(check.measured, measured, "\(model) measured")
            let cost = CostModel(calibration: try Calibration(baseline: one), algorithm: .ring(link), bucketBytes: 25 << 20)
            let expected = try #require(cost.predict(workers: [2], batch: .perWorker(64)).first).throughput
            expectScaleClose(check.predicted, expected, tolerance: 1e-9, relative: true, "\(model) predicted")
            #expect(check.predicted > 0 && check.predicted.isFinite)
            expectScaleClose(check.error, (check.predicted - check.measured) / check.measured, "\(model) error")
            expectScaleClose(check.error, (expected - measured) / measured, tolerance: 1e-9, "\(model) error")
            #expect(analysis.findings.contains { $0.hasPrefix("\(model): the α-β model calibrated on 1 worker") })
        }
    }

    @Test("events: every rank's spans and collectives, on that rank")
    func events() throws {
        let result = AnalysisFixture.run(workers: 2, samplesPerSecond: 1600, stepMs: 80)
        let measurement = Benchmark.Measurement(
            result: result,
            spans: [
                [Span(name: "step", start: 10.0, duration: 0.08), Span(name: "forward", start: 10.0, duration: 0.02)],
                [Span(name: "step", start: 10.001, duration: 0.079)],
            ],
            collectives: [
                [CollectiveRecord(operation: "all-reduce", sequence: 0, start: 10.05, duration: 0.01, bytes: 4000)],
                [CollectiveRecord(operation: "all-reduce", sequence: 0, start: 10.052, duration: 0.008, bytes: 4000),
                 CollectiveRecord(operation: "broadcast", sequence: 1, start: 10.07, duration: 0.001, bytes: 16)],
            ])
        let events = Analysis.events(measurement)
        #expect(events.count == 6)
        #expect(events.filter { $0.rank == 0 }.map(\.name).sorted() == ["all-reduce #0", "forward", "step"])
        #expect(events.filter { $0.rank == 1 }.map(\.name).sorted() == ["all-reduce #0", "broadcast #1", "step"])
        #expect(Set(events.map(\.rank)) == [0, 1])
        let forward = try #require(events.first { $0.name == "forward" })
        #expect(forward.start == 10.0 && forward.duration == 0.02 && forward.args.isEmpty)
        let broadcast = try #require(events.first { $0.name == "broadcast #1" })
        #expect(broadcast.rank == 1 && broadcast.start == 10.07 && broadcast.duration == 0.001)
        #expect(broadcast.args == ["bytes": "16"])
        #expect(events.filter { $0.name == "all-reduce #0" }.allSatisfy { $0.args == ["bytes": "4000"] })

        // As a trace: one process per rank.
        let trace = ChromeTrace.render(events)
        #expect(trace.components(separatedBy: "\"name\":\"process_name\"").count - 1 == 2)

        // Nothing recorded, nothing to show.
        #expect(Analysis.events(AnalysisFixture.measurement(result)).isEmpty)
    }
}
