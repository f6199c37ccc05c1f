import Foundation
@testable import TandemCollectives
import TandemModels
@testable import TandemParallel
@testable import TandemScale
import Testing

// MARK: - What spans cost

@Suite("Instrumentation cost")
struct InstrumentationTests {
    @Test("per step: 4 clock reads per micro-batch and 4 per step, 3 + 2 kept spans when recording, one record per collective")
    func perStepArithmetic() {
        let cost = InstrumentationCost(clockRead: 1, spanRecord: 10, collectiveRecord: 100)
        #expect(cost.perStep(microBatches: 1, recording: false, collectives: 0) == 8)
        #expect(cost.perStep(microBatches: 1, recording: true, collectives: 0) == 8 + 50)
        #expect(cost.perStep(microBatches: 3, recording: true, collectives: 2) == 16 + 110 + 200)
    }

    @Test("measured on this machine: every piece positive and under 10 µs")
    func measured() {
        let cost = InstrumentationCost.measure(iterations: 2_000)
        for (name, value) in [("clock read", cost.clockRead), ("span record", cost.spanRecord), ("collective record", cost.collectiveRecord)] {
            #expect(value > 0 && value < 1e-5, "\(name): \(value) s")
        }
    }

    @Test("a benchmark run reports its instrumentation overhead as a fraction of the step")
    func benchmarkReportsOverhead() throws {
        let result = try Benchmark(workload: .mlp, batch: 8, steps: 3, warmup: 1).run(workers: 2)
        let overhead = try #require(result.instrumentation_overhead)
        // Microseconds of clock reads against a step of milliseconds: far under 2%.
        #expect(overhead > 0 && overhead < 0.02, "\(overhead)")
    }

    @Test("the analysis states the largest overhead of each workload among its findings")
    func finding() throws {
        func run(_ workers: Int, _ overhead: Double) -> RunResult {
            var r = RunResult(model: "mlp", params: 1000, backend: "threads", device_name: "cpu", workers: workers,
                              batch_per_worker: 64, global_batch: 64 * workers, steps: 2, warmup: 0, seconds: 1,
                              samples_per_s: 1000 * Double(workers), step_ms: .init([64, 64]), loss: 2)
            r.instrumentation_overhead = overhead
            return r
        }
        let configs = [(1, 0.0001), (2, 0.0004)].map { workers, overhead in
            Sweep.Configuration(model: .mlp, workers: workers, batchPerWorker: 64,
                                runs: [Benchmark.Measurement(result: run(workers, overhead), spans: [], collectives: [])])
        }
        let analysis = try Analysis(configurations: configs, mode: .weak, comm: [], peakFLOPS: 1e11)
        let lines = analysis.findings.filter { $0.contains("spans and collective records cost") }
        #expect(lines == ["mlp: spans and collective records cost 0.040% of the step at most (2 workers), measured in the run; they stay on."],
                "\(analysis.findings)")
    }
}
