import Foundation
import TandemParallel
import TandemScale
import Testing

@Suite("ResultsFile and ResultRecord")
struct ResultsFileTests {
    @Test func fullTandemLine() throws {
        let record = try ResultRecord(json: ScaleFixture.workloadsExample)
        let r = record.result
        #expect(record.imputed.isEmpty && record.dropped.isEmpty && record.mode == nil)
        #expect(r.model == "mlp" && r.params == 1_863_690 && r.workers == 2 && r.global_batch == 128)
        #expect(r.step_ms.mean == 20.4 && r.step_ms.median == 20.1 && r.step_ms.p10 == 19.8 && r.step_ms.p90 == 21.3)
        #expect(r.breakdown_ms?.backward == 12.1 && r.comm?.bytes_per_step == 7_454_760 && r.comm?.overlap == 0.82)
        #expect(r.memory?.activations == 1_200_000 && record.peakBytes == 52_000_000)
        #expect(r.per_rank_step_ms == [20.0, 20.2] && r.loss == 2.03)
    }

    @Test func torchCPULineKeepsItsModeAndNeedsNothing() throws {
        let record = try ResultRecord(json: ScaleFixture.torchCPU)
        #expect(record.mode == "eager" && record.imputed.isEmpty && record.dropped.isEmpty)
        #expect(record.result.engine == "pytorch" && record.result.step_ms.median == 19.9 && record.result.breakdown_ms == nil)
    }

    @Test func torchCUDALineWithOnlyAMeanStep() throws {
        let record = try ResultRecord(json: ScaleFixture.torchCUDA)
        #expect(record.imputed == ["step_ms.median", "step_ms.p10", "step_ms.p90"])
        #expect(record.dropped == ["memory"] && record.result.memory == nil && record.peakBytes == 3_000_000_000)
        let q = record.result.step_ms
        #expect(q.mean == 4.44 && q.median == 4.44 && q.p10 == 4.44 && q.p90 == 4.44)
        #expect(record.mode == "graph" && record.result.precision == "bf16")
    }

    @Test func minimalLineIsFilledIn() throws {
        let record = try ResultRecord(json: #"{"model": "cnn", "workers": 4, "global_batch": 256, "samples_per_s": 1000, "loss": NaN, "new_field": [1, 2]}"#)
        let r = record.result
        #expect(r.batch_per_worker == 64 && r.global_batch == 256)
        expectScaleClose(r.step_ms.mean, 256.0, "1000 · 256 / 1000 samples/s")
        #expect(r.loss.isNaN, "Python writes a diverged loss as NaN")
        #expect(r.engine == "unknown" && r.precision == "fp32" && r.params == 0 && r.seconds == 0)
        #expect(record.imputed == ["batch_per_worker", "step_ms.mean", "step_ms.median", "step_ms.p10", "step_ms.p90",
                                   "engine", "engine_version", "params", "backend", "device", "device_name", "precision",
                                   "steps", "warmup", "seconds"])
        let bare = try ResultRecord(json: #"{"model": "cnn", "workers": 2, "batch_per_worker": 8, "samples_per_s": 16, "step_ms": 1000}"#)
        #expect(bare.result.global_batch == 16 && bare.result.step_ms.median == 1000 && bare.result.loss.isNaN)
        #expect(bare.imputed.contains("loss") && bare.imputed.contains("global_batch") && !bare.imputed.contains("step_ms.mean"))
    }

    struct BadLine: CustomTestStringConvertible, Sendable {
        var label: String
        var json: String
        var field: String?
        var keyword: String
        var testDescription: String { label }
    }

    static let ok = #""model": "mlp", "workers": 2, "batch_per_worker": 64, "samples_per_s": 100"#
    static let badLines: [BadLine] = [
        BadLine(label: "not JSON", json: "{\"model\": ", field: nil, keyword: "not valid JSON"),
        BadLine(label: "an array", json: "[1, 2]", field: nil, keyword: "found an array"),
        BadLine(label: "no model", json: #"{"workers": 2, "batch_per_worker": 64, "samples_per_s": 100}"#, field: "model", keyword: "missing"),
        BadLine(label: "model a number", json: #"{"model": 3, "workers": 2, "batch_per_worker": 64, "samples_per_s": 100}"#,
                field: "model", keyword: "found a number"),
        BadLine(label: "zero workers", json: #"{"model": "mlp", "workers": 0, "batch_per_worker": 64, "samples_per_s": 100}"#,
                field: "workers", keyword: "integer ≥ 1"),
        BadLine(label: "throughput a string", json: #"{"model": "mlp", "workers": 1, "batch_per_worker": 64, "samples_per_s": "fast"}"#,
                field: "samples_per_s", keyword: "found a string"),
        BadLine(label: "no batch at all", json: #"{"model": "mlp", "workers": 1, "samples_per_s": 100}"#,
                field: "batch_per_worker", keyword: "global_batch"),
        BadLine(label: "median a string", json: "{\(ok), \"step_ms\": {\"mean\": 1, \"median\": \"x\"}}", field: "step_ms.median",
                keyword: "expected a number"),
        BadLine(label: "breakdown a list", json: "{\(ok), \"breakdown_ms\": [1, 2]}", field: "breakdown_ms", keyword: "expected an object"),
        BadLine(label: "loss a string", json: "{\(ok), \"loss\": \"low\"}", field: "loss", keyword: "expected a number"),
        BadLine(label: "per-rank times not numbers", json: "{\(ok), \"per_rank_step_ms\": [\"a\"]}", field: "per_rank_step_ms[0]",
                keyword: "expected a number"),
        BadLine(label: "comm bytes fractional", json: "{\(ok), \"comm\": {\"bytes_per_step\": 1.5, \"algbw_gbps\": 1, \"busbw_gbps\": 1, \"overlap\": 0}}",
                field: "comm.bytes_per_step", keyword: "integer"),
    ]

    @Test(arguments: badLines)
    func badLinesNameTheField(_ bad: BadLine) {
        do {
            _ = try ResultRecord(json: bad.json)
            Issue.record("\(bad.label): decoded")
        } catch {
            #expect(error.field == bad.field, "\(error)")
            #expect(error.description.contains(bad.keyword), "\(error)")
        }
    }

    @Test func fileSkipsBlankLinesAndNamesTheLineOfAnError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-scale-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.jsonl")
        try (ScaleFixture.workloadsExample + "\n\n   \n" + ScaleFixture.torchCPU + "\n" + ScaleFixture.torchCUDA + "\n")
            .write(to: good, atomically: true, encoding: .utf8)
        let runs = try ResultsFile.read(path: good.path)
        #expect(runs.map(\.engine) == ["tandem", "pytorch", "pytorch"])
        #expect(try ResultsFile.records(path: good.path).map(\.mode) == [nil, "eager", "graph"])

        let bad = directory.appendingPathComponent("bad.jsonl")
        try (ScaleFixture.torchCPU + "\n\n" + #"{"model": "mlp", "workers": "two"}"# + "\n").write(to: bad, atomically: true, encoding: .utf8)
        #expect {
            _ = try ResultsFile.read(path: bad.path)
        } throws: { error in
            let e = error as? ResultsFileError
            return e?.line == 3 && e?.description == "\(bad.path):3: field workers: expected an integer ≥ 1, found a string"
        }
        let missing = directory.appendingPathComponent("absent.jsonl").path
        #expect {
            _ = try ResultsFile.read(path: missing)
        } throws: { error in
            (error as? ResultsFileError).map { $0.line == 0 && $0.description.hasPrefix(missing + ": cannot be read") } == true
        }
    }

    @Test func textWithWindowsLineEndings() throws {
        let runs = try ResultsFile.parse(text: ScaleFixture.torchCPU + "\r\n" + ScaleFixture.workloadsExample + "\r\n")
        #expect(runs.count == 2)
    }
}

@Suite("Comparison")
struct ComparisonTests {
    static func side(_ engine: String, _ x: [(Int, Double, Double)], model: String = "mlp") -> [RunResult] {
        x.map { workers, throughput, step in
            var r = ScaleFixture.run(model: model, workers: workers, samplesPerSecond: throughput, stepMs: step)
            r.engine = engine
            return r
        }
    }

    @Test func ratiosOfMediansByHand() throws {
        let torch = Self.side("pytorch", [(1, 6264, 10.2), (1, 6300, 10.0), (1, 6100, 10.5), (2, 6383, 20.0)])
        let tandem = Self.side("tandem", [(1, 7000, 9.0), (1, 7200, 8.8), (2, 6000, 21.0), (4, 9000, 28)])
        let c = Comparison(baseline: torch, candidate: tandem)
        #expect(c.baselineName == "pytorch" && c.candidateName == "tandem")
        #expect(c.rows.map(\.key.workers) == [1, 2])
        #expect(c.rows[0].baseline.runs == 3 && c.rows[0].baseline.samplesPerSecond == 6264 && c.rows[0].baseline.stepMilliseconds == 10.2)
        #expect(c.rows[0].candidate.samplesPerSecond == 7100 && c.rows[0].candidate.stepMilliseconds == 8.9)
        expectScaleClose(c.rows[0].throughputRatio, 7100.0 / 6264, "throughput ratio")
        expectScaleClose(c.rows[0].stepRatio, 8.9 / 10.2, "step ratio")
        #expect(c.onlyInCandidate == [Comparison.Key(model: "mlp", workers: 4, batchPerWorker: 64)] && c.onlyInBaseline.isEmpty)
        #expect(c.markdown() == """
            | model | workers | batch/worker | pytorch samples/s | tandem samples/s | tandem/pytorch | pytorch step ms | tandem step ms | tandem/pytorch |
            | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
            | mlp | 1 | 64 | 6,264 | 7,100 | 1.13× | 10.20 | 8.900 | 0.87× |
            | mlp | 2 | 64 | 6,383 | 6,000 | 0.94× | 20.00 | 21.00 | 1.05× |

            Only in tandem: mlp × 4 (batch 64).

            """)
    }

    @Test func configurationsAreKeyedByBatchToo() {
        let a = Self.side("x", [(2, 100, 1)])
        var b = Self.side("y", [(2, 100, 1)])
        b[0].batch_per_worker = 32
        let c = Comparison(baseline: a, candidate: b, baselineName: "old", candidateName: "new")
        #expect(c.rows.isEmpty && c.onlyInBaseline.count == 1 && c.onlyInCandidate.count == 1)
        #expect(c.markdown().contains("Only in old: mlp × 2 (batch 64).") && c.markdown().contains("Only in new: mlp × 2 (batch 32)."))
        let same = Comparison(baseline: a, candidate: a)
        #expect(same.baselineName == "x (baseline)" && same.candidateName == "x (candidate)")
    }
}
