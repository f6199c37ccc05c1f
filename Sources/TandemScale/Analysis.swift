import Foundation
import TandemCollectives
import TandemModels
import TandemParallel

// MARK: - From a finished sweep to curves, findings, a report and a table

/// Everything `tandem scale` says about a sweep: one scaling curve per workload, the
/// report sections, plain-language findings, the terminal table, and how well the α-β
/// model calibrated on the smallest worker count predicts the larger ones.
public struct Analysis {
    public struct PredictionCheck: Sendable {
        public var model: String
        public var workers: Int
        public var measured: Double
        public var predicted: Double
        public var error: Double { (predicted - measured) / measured }
    }

    public var curves: [ScalingCurve] = []
    public var reports: [ReportInput] = []
    public var findings: [String] = []
    public var predictions: [PredictionCheck] = []
    public var table = ""

    /// - Parameter peakFLOPS: one worker's peak (for MFU).
    /// - Parameter probes: contention probes (``Benchmark/independentBackend`` runs), any
    ///   number per workload; the predictions include the contention of each workload's
    ///   median-throughput probe.
    /// - Parameter overlappableFraction: the share of backward under which communication can
    ///   hide (``CostModel/overlappableFraction``): 0 when the all-reduce runs on the cores
    ///   that compute (CPU ranks filling their host), 1 when it runs beside them.
    public init(configurations: [Sweep.Configuration], mode: ScalingMode, comm: [CommBenchmark.Row], peakFLOPS: Double,
                probes: [RunResult] = [], overlappableFraction: Double = 1) throws {
        let results = configurations.flatMap { $0.runs.map(\.result) }
        curves = try ScalingCurve.curves(from: results, mode: mode)
        let busbw = comm.map { (bytes: $0.bytes, gbps: $0.busbw_gbps) }
        let link = try? Calibration.interconnect(samples: comm.compactMap(CollectiveSample.init(row:)), name: "measured threads backend")
        var rows = ["| model | workers | samples/s (min–max) | speedup | efficiency | Karp–Flatt | exposed comm | imbalance | MFU |",
                    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for curve in curves {
            // Smallest worker count first: it is the calibration baseline, whatever the input order.
            let configs = configurations.filter { $0.model.rawValue == curve.model }.sorted { $0.workers < $1.workers }
            // Each configuration's median-throughput run, once.
            let typicals = configs.map { Self.typical($0.runs.map(\.result)) }
            var points: [ReportPoint] = []
            var own: [String] = []
            for point in curve.points {
                guard let index = configs.firstIndex(where: { $0.workers == point.workers }) else { continue }
                let config = configs[index], typical = typicals[index]
                var diagnostics = RunDiagnostics(result: typical, peakFLOPSPerWorker: peakFLOPS)
                // Synchronous steps take equally long on every rank; imbalance is in the compute.
                if let compute = typical.per_rank_compute_ms { diagnostics.balance = LoadBalance(perRankMilliseconds: compute) }
                let b = diagnostics.breakdown
                var breakdown: [String: Double] = [:]
                if let b {
                    breakdown = ["data": b.data, "forward": b.forward, "backward": b.backward, "comm_exposed": b.exposedCommunication,
                                 "optimizer": b.optimizer, "other": max(0, b.other)]
                }
                var memory: [String: Int] = [:]
                if let m = typical.memory {
                    memory = ["params": m.params, "grads": m.grads, "optimizer": m.optimizer, "activations": m.activations, "comm_buffers": 0]
                }
                points.append(ReportPoint(workers: point.workers, throughputMedian: point.throughput.median, throughputMin: point.throughput.min,
                                          throughputMax: point.throughput.max, speedup: point.speedup, efficiency: point.efficiency,
                                          breakdownMs: breakdown, perRankStepMs: config.runs.first?.result.per_rank_steps_ms ?? [],
                                          memoryBytes: memory))
                let exposed = b.map { $0.stepMilliseconds > 0 ? $0.exposedCommunication / $0.stepMilliseconds : 0 } ?? 0
                let imbalance = diagnostics.balance?.imbalance
                rows.append(String(format: "| %@ | %d | %.1f (%.1f–%.1f) | %.2f | %.0f%% | %@ | %.0f%% | %@ | %@ |",
                                   curve.model, point.workers, point.throughput.median, point.throughput.min, point.throughput.max,
                                   point.speedup, 100 * point.efficiency, point.karpFlatt.map { String(format: "%.3f", $0) } ?? "–",
                                   100 * exposed, imbalance.map { String(format: "%.1f%%", 100 * $0) } ?? "–",
                                   diagnostics.utilization.map { String(format: "%.0f%%", 100 * $0.mfu) } ?? "–"))
                if point.workers > 1 && exposed > 0.1 {
                    own.append(String(format: "%@: communication is %.0f%% of the step and exposed at %d workers; larger buckets (--bucket-mb) or accumulating 2 micro-batches (--accumulate 2) would hide more of it.",
                                      curve.model, 100 * exposed, point.workers))
                }
                if let balance = diagnostics.balance, point.workers > 1, balance.imbalance > 0.05 {
                    own.append(String(format: "%@: rank %d is the straggler at %d workers, %.0f%% slower than the mean.",
                                      curve.model, balance.slowestRank, point.workers, 100 * balance.imbalance))
                }
            }
            let overheads = zip(configs, typicals).compactMap { c, t in t.instrumentation_overhead.map { (c.workers, $0) } }
            if let worst = overheads.max(by: { $0.1 < $1.1 }) {
                own.append(String(format: "%@: spans and collective records cost %.3f%% of the step at most (%d worker%@), measured in the run; they stay on.",
                                  curve.model, 100 * worst.1, worst.0, worst.0 == 1 ? "" : "s"))
            }
            let uncertainties = zip(configs, typicals).filter { $0.0.workers > 1 }.compactMap { $0.1.clock_uncertainty_us }
            if let widest = uncertainties.max() {
                own.append(String(format: "%@: the ranks' clocks were aligned to rank 0's within ±%.1f µs (barrier and broadcast at start-up); the trace is on rank 0's clock.",
                                  curve.model, widest))
            }
            // Calibrate on the smallest worker count; predict the others.
            if let link, let first = configs.first, first.workers == 1, configs.count > 1, let baseline = typicals.first,
               let calibration = try? Calibration(baseline: baseline) {
                var model = CostModel(calibration: calibration, algorithm: .ring(link), bucketBytes: 25 << 20,
                                      overlappableFraction: overlappableFraction)
                let probesOfModel = probes.filter { $0.model == curve.model }
                if !probesOfModel.isEmpty { model.hostContention = try? HostContention(baseline: baseline, probe: Self.typical(probesOfModel)) }
                let contention = (model.hostContention.map {
                    String(format: ", host contention from %d lock-step replicas: compute ×%.2f, optimizer ×%.2f", $0.workersPerHost, $0.computeSlowdown, $0.fixedSlowdown)
                } ?? "") + (overlappableFraction < 1 ? String(format: ", %.0f%% of backward to hide communication under", 100 * overlappableFraction) : "")
                for config in configs.dropFirst() {
                    let batch: CostModel.Batch = mode == .weak ? .perWorker(config.batchPerWorker) : .global(config.batchPerWorker * config.workers)
                    guard let predicted = model.predict(workers: [config.workers], batch: batch).first,
                          let measured = curve.point(workers: config.workers)?.throughput.median else { continue }
                    let check = PredictionCheck(model: curve.model, workers: config.workers, measured: measured, predicted: predicted.throughput)
                    predictions.append(check)
                    own.append(String(format: "%@: the α-β model calibrated on 1 worker (α = %.1f µs, busbw %.1f GB/s%@) predicts %.1f samples/s at %d workers; measured %.1f (%+.0f%%).",
                                      curve.model, link.alpha * 1e6, 1 / link.beta / 1e9, contention, predicted.throughput, config.workers, measured, 100 * check.error))
                }
            }
            let fit = curve.amdahlFit()
            let widest = curve.points.map(\.workers).max() ?? 1
            let predicted = CostModel.powersOfTwo(upTo: max(8, 4 * widest)).map { (workers: $0, speedup: fit.predictedSpeedup(workers: $0)) }
            findings += own
            reports.append(ReportInput(title: "\(curve.model) (\(mode.rawValue) scaling)", mode: mode.rawValue, points: points,
                                       amdahl: curve.points.count > 1 ? (p: fit.parallelFraction, predicted: predicted) : nil,
                                       busbw: busbw, findings: own))
        }
        table = rows.joined(separator: "\n")
    }

    /// The run whose throughput is the median of the repeats (the upper median of an even count).
    public static func typical(_ runs: [RunResult]) -> RunResult {
        precondition(!runs.isEmpty, "the typical run of no runs")
        return runs.sorted { $0.samples_per_s < $1.samples_per_s }[runs.count / 2]
    }

    /// Every rank's spans and collectives as trace events (one process per rank), each
    /// rank's times moved onto rank 0's clock by its measured offset.
    public static func events(_ run: Benchmark.Measurement) -> [SpanEvent] {
        let offset = { (rank: Int) in rank < run.clocks.count ? run.clocks[rank].offset : 0 }
        var events: [SpanEvent] = []
        for (rank, spans) in run.spans.enumerated() {
            events += spans.map { SpanEvent(rank: rank, name: $0.name, start: $0.start + offset(rank), duration: $0.duration) }
        }
        for (rank, records) in run.collectives.enumerated() {
            events += records.map {
                SpanEvent(rank: rank, name: "\($0.operation) #\($0.sequence)", start: $0.start + offset(rank), duration: $0.duration,
                          args: ["bytes": "\($0.bytes)"])
            }
        }
        return events
    }
}
