import Foundation
import TandemModels
import TandemParallel
import TandemScale
import Testing

// MARK: - The order of a sweep's runs

@Suite("Sweep")
struct SweepTests {
    final class Calls: @unchecked Sendable {
        let lock = NSLock()
        var workers: [Int] = []
        func add(_ n: Int) { lock.lock(); workers.append(n); lock.unlock() }
    }

    @Test("each repeat goes through the worker counts, then the probe; probes are kept apart from the configurations")
    func interleaved() throws {
        var sweep = Sweep(models: [.mlp], workers: [1, 2], mode: .weak, steps: 1, warmup: 0, repeats: 2, batch: 2)
        sweep.probeReplicas = 2
        let calls = Calls()
        sweep.runner = { benchmark, n, record in
            calls.add(n)
            return try benchmark.measure(workers: 1, recordEvents: record)
        }
        var labels: [String] = [], totals: Set<Int> = []
        let outcome = try sweep.run { done, total, label, _ in labels.append(label); totals.insert(total) }
        #expect(calls.workers == [1, 2, 1, 2])
        #expect(totals == [6])
        #expect(labels.count == 7 && labels.last == "done")
        #expect(labels[2].contains("contention probe") && labels[5].contains("contention probe"), "\(labels)")
        #expect(outcome.configurations.map(\.workers) == [1, 2])
        #expect(outcome.configurations.allSatisfy { $0.runs.count == 2 })
        #expect(outcome.probes.count == 2)
        #expect(outcome.probes.allSatisfy { $0.result.backend == Benchmark.independentBackend && $0.result.workers == 2 })
    }

    @Test("without probe replicas (or with one) there is no probe")
    func noProbe() throws {
        for replicas in [nil, 1] as [Int?] {
            var sweep = Sweep(models: [.mlp], workers: [1], mode: .weak, steps: 1, warmup: 0, repeats: 1, batch: 2)
            sweep.probeReplicas = replicas
            let outcome = try sweep.run()
            #expect(outcome.probes.isEmpty && outcome.configurations.count == 1)
        }
    }
}
