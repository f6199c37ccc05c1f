import Foundation
@testable import TandemCollectives
import TandemModels
@testable import TandemParallel
@testable import TandemScale
import Testing

// MARK: - Host contention in the cost model

@Suite("Host contention")
struct HostContentionTests {
    /// A result with a known mean step and optimizer time (ms), `perRank` steps when given.
    static func run(workers: Int, backend: String, stepMs: Double, optimizerMs: Double, batch: Int = 64,
                    perRank: [Double]? = nil) -> RunResult {
        var r = RunResult(model: "mlp", params: 1000, backend: backend, device_name: "cpu", workers: workers,
                          batch_per_worker: batch, global_batch: batch * workers, steps: 4, warmup: 0, seconds: 1,
                          samples_per_s: 1000, step_ms: .init(mean: stepMs, median: stepMs, p10: stepMs, p90: stepMs),
                          breakdown_ms: .init(data: 0, forward: (stepMs - optimizerMs) / 3, backward: 2 * (stepMs - optimizerMs) / 3,
                                              comm_exposed: 0, optimizer: optimizerMs),
                          loss: 1)
        r.per_rank_step_ms = perRank
        return r
    }

    /// Two all-reduce timings of 2 workers: 4 KiB in 20 µs and 4 MiB in 2 ms.
    static let commRows = [
        #"{"operation": "all-reduce", "workers": 2, "bytes": 4096, "microseconds": 20, "algbw_gbps": 0.2, "busbw_gbps": 0.2}"#,
        #"{"operation": "all-reduce", "workers": 2, "bytes": 4194304, "microseconds": 2000, "algbw_gbps": 2.1, "busbw_gbps": 2.1}"#,
    ].map { try! JSONDecoder().decode(CommBenchmark.Row.self, from: Data($0.utf8)) }

    /// A sweep of mlp at 1 and 2 workers, batch 64, one run each.
    static func sweep(_ one: RunResult, _ two: RunResult) -> [Sweep.Configuration] {
        [(1, one), (2, two)].map { n, r in
            Sweep.Configuration(model: .mlp, workers: n, batchPerWorker: 64, runs: [Benchmark.Measurement(result: r, spans: [], collectives: [])])
        }
    }

    @Test("the factor grows linearly from 1 at one worker to the probe's at a full host, then stays")
    func interpolation() {
        let two = HostContention(workersPerHost: 2, computeSlowdown: 1.2, fixedSlowdown: 1.5)
        expectScaleClose([1, 2, 3, 64].map { two.computeFactor(workers: $0) }, [1, 1.2, 1.2, 1.2], "K = 2 compute")
        expectScaleClose([1, 2, 8].map { two.fixedFactor(workers: $0) }, [1, 1.5, 1.5], "K = 2 optimizer")
        let four = HostContention(workersPerHost: 4, computeSlowdown: 1.3, fixedSlowdown: 1)
        expectScaleClose([1, 2, 3, 4, 5].map { four.computeFactor(workers: $0) }, [1, 1.1, 1.2, 1.3, 1.3], tolerance: 1e-12, "K = 4")
        #expect(HostContention(workersPerHost: 1, computeSlowdown: 2, fixedSlowdown: 2).computeFactor(workers: 8) == 1)
    }

    @Test("from a one-worker run and a probe: slowdowns of compute per sample and of the optimizer")
    func fromRuns() throws {
        // Alone: (64 − 4) ms of compute for 64 samples, 4 ms of optimizer.
        let alone = Self.run(workers: 1, backend: "none", stepMs: 64, optimizerMs: 4)
        // Probe: replicas' own mean steps 75 and 77 ms (mean 76), optimizer 6 ms → compute 70 ms.
        let probe = Self.run(workers: 2, backend: Benchmark.independentBackend, stepMs: 75, optimizerMs: 6, perRank: [75, 77])
        let c = try HostContention(baseline: alone, probe: probe)
        #expect(c.workersPerHost == 2)
        expectScaleClose(c.computeSlowdown, 70.0 / 60, tolerance: 1e-12, relative: true, "compute")
        expectScaleClose(c.fixedSlowdown, 1.5, tolerance: 1e-12, relative: true, "optimizer")
    }

    @Test("a probe that is not independent replicas, or another batch, is refused with the reason")
    func refused() {
        let alone = Self.run(workers: 1, backend: "none", stepMs: 64, optimizerMs: 4)
        #expect(throws: CalibrationError.self) {
            _ = try HostContention(baseline: alone, probe: Self.run(workers: 2, backend: "threads", stepMs: 70, optimizerMs: 4))
        }
        #expect(throws: CalibrationError.self) {
            _ = try HostContention(baseline: alone, probe: Self.run(workers: 2, backend: Benchmark.independentBackend, stepMs: 70, optimizerMs: 4, batch: 32))
        }
        #expect(throws: CalibrationError.self) {
            _ = try HostContention(baseline: alone, probe: Self.run(workers: 2, backend: Benchmark.independentBackend, stepMs: 3, optimizerMs: 4))
        }
    }

    @Test("the cost model's step: compute and optimizer times their factors, communication as before")
    func costModel() {
        let link = Interconnect(alpha: 1e-6, beta: 1e-9)
        var model = CostModel(computeSecondsPerSample: 1e-3, fixedSecondsPerStep: 4e-3, gradientBytes: 1_000_000, algorithm: .ring(link))
        let before = model.stepSeconds(workers: 2, batchPerWorker: 64)
        let exposed = model.exposedCommunicationSeconds(workers: 2, batchPerWorker: 64)
        model.hostContention = HostContention(workersPerHost: 2, computeSlowdown: 1.25, fixedSlowdown: 2)
        expectScaleClose(model.stepSeconds(workers: 1, batchPerWorker: 64), 64e-3 + 4e-3, tolerance: 1e-15, "one worker: no contention")
        // Backward (2/3 of 80 ms) still hides the same one-bucket all-reduce: exposed unchanged.
        expectScaleClose(model.stepSeconds(workers: 2, batchPerWorker: 64), 80e-3 + 8e-3 + exposed, tolerance: 1e-15, "two workers")
        #expect(model.stepSeconds(workers: 2, batchPerWorker: 64) > before)
        let p = model.predict(workers: [1, 2], batch: .perWorker(64))
        expectScaleClose(p[1].computeSeconds, 80e-3, tolerance: 1e-15, "prediction's compute at 2")
        expectScaleClose(p[1].efficiency, 68e-3 / (88e-3 + exposed), tolerance: 1e-12, relative: true, "efficiency at 2")
    }

    @Test("the analysis predicts with the probe's contention and says so")
    func analysis() throws {
        let alone = Self.run(workers: 1, backend: "none", stepMs: 64, optimizerMs: 4)
        var two = Self.run(workers: 2, backend: "threads", stepMs: 80, optimizerMs: 6)
        two.samples_per_s = 1600
        var one = alone
        one.samples_per_s = 1000
        let probe = Self.run(workers: 2, backend: Benchmark.independentBackend, stepMs: 76, optimizerMs: 6, perRank: [76, 76])
        let configs = Self.sweep(one, two)
        let rows = Self.commRows
        let plain = try Analysis(configurations: configs, mode: .weak, comm: rows, peakFLOPS: 1e11)
        let probed = try Analysis(configurations: configs, mode: .weak, comm: rows, peakFLOPS: 1e11, probes: [probe])
        let a = try #require(plain.predictions.first), b = try #require(probed.predictions.first)
        // Compute 60 → 70 ms and optimizer 4 → 6 ms per step: the probed prediction is slower.
        #expect(b.predicted < a.predicted, "\(a.predicted) vs \(b.predicted)")
        let link = try Calibration.interconnect(samples: rows.compactMap(CollectiveSample.init(row:)))
        var model = CostModel(calibration: try Calibration(baseline: one), algorithm: .ring(link), bucketBytes: 25 << 20)
        model.hostContention = try HostContention(baseline: one, probe: probe)
        expectScaleClose(b.predicted, model.throughput(workers: 2, batchPerWorker: 64), tolerance: 1e-9, relative: true, "probed prediction")
        #expect(probed.findings.contains { $0.contains("host contention from 2 lock-step replicas: compute ×1.17, optimizer ×1.50") },
                "\(probed.findings)")
    }

    @Test("with no core left for the all-reduce (a full CPU host), all of it adds to the step")
    func noOverlapOnAFullHost() throws {
        // 10 M parameters: 40 MB of gradient in two 25 MiB buckets, the first of which could hide.
        var one = Self.run(workers: 1, backend: "none", stepMs: 64, optimizerMs: 4)
        one.params = 10_000_000
        var two = Self.run(workers: 2, backend: "threads", stepMs: 80, optimizerMs: 6)
        two.params = one.params
        var probe = Self.run(workers: 2, backend: Benchmark.independentBackend, stepMs: 76, optimizerMs: 6, perRank: [76, 76])
        probe.params = one.params
        let configs = Self.sweep(one, two)
        let rows = Self.commRows
        let hidden = try #require(try Analysis(configurations: configs, mode: .weak, comm: rows, peakFLOPS: 1e11, probes: [probe]).predictions.first)
        let full = try Analysis(configurations: configs, mode: .weak, comm: rows, peakFLOPS: 1e11, probes: [probe], overlappableFraction: 0)
        let c = try #require(full.predictions.first)
        let link = try Calibration.interconnect(samples: rows.compactMap(CollectiveSample.init(row:)))
        let model = CostModel(calibration: try Calibration(baseline: one), algorithm: .ring(link), bucketBytes: 25 << 20)
        #expect(model.bucketCount == 2)
        let step = 70e-3 + 6e-3 + model.communicationSeconds(workers: 2)
        expectScaleClose(c.predicted, 128 / step, tolerance: 1e-9, relative: true, "no overlap: compute + optimizer + all of T")
        #expect(c.predicted < hidden.predicted, "\(c.predicted) vs \(hidden.predicted)")
        #expect(full.findings.contains { $0.contains("0% of backward to hide communication under") }, "\(full.findings)")
    }
}
