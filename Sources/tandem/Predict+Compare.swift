import ArgumentParser
import Foundation
import TandemParallel
import TandemScale

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict throughput and efficiency from 1 to 4096 workers with an α-β model calibrated on a measured run.")

    @Option(help: "Results file (JSON lines) holding a one-worker run of the model.") var from: String
    @Option(help: "Which model in the file (default: the first with a one-worker run).") var model: String?
    @Option(help: "nvlink4, pcie5, ib-ndr400, 100gbe, 25gbe, or measured (needs --comm).") var interconnect = "100gbe"
    @Option(help: "A `tandem comm --json` output to calibrate α and β from (with --interconnect measured).") var comm: String?
    @Option(name: .customLong("alpha-us"), help: "Link latency α in µs (with --beta-gbps, instead of --interconnect).") var alphaMicroseconds: Double?
    @Option(name: .customLong("beta-gbps"), help: "Link bandwidth in GB/s.") var bandwidthGBps: Double?
    @Option(help: "ring, tree, hierarchical:G (G workers per node on NVLink 4), ps:S (S parameter servers).") var algorithm = "ring"
    @Option(name: .customLong("bucket-mb"), help: "Gradient bucket size in MB.") var bucketMB = 25.0
    @Option(help: "Largest worker count.") var max = 4096
    @Option(help: "Efficiency target for the knee and the batch/bucket questions.") var efficiency = 0.9
    @Option(help: "Answer: what batch or bucket keeps --efficiency at this many workers.") var at: Int?
    @Option(help: "A `probes.jsonl` from `tandem scale`: the host-contention probe of the same model (the median of its repeats), applied to compute and optimizer.") var probes: String?
    @Option(help: "Share of backward that communication can hide under, 0–1: 1 where the all-reduce runs beside compute (GPUs, spare cores), 0 where it runs on the cores that compute (CPU ranks filling their host).") var overlap = 1.0

    func link() throws -> Interconnect {
        if let alphaMicroseconds, let bandwidthGBps {
            guard alphaMicroseconds >= 0, bandwidthGBps > 0 else { throw ValidationError("--alpha-us must be ≥ 0 and --beta-gbps > 0") }
            return Interconnect(name: "custom", latency: alphaMicroseconds * 1e-6, bandwidth: bandwidthGBps * 1e9)
        }
        switch interconnect {
        case "nvlink4": return .nvlink4
        case "pcie5": return .pcie5x16
        case "ib-ndr400": return .infinibandNDR400
        case "100gbe": return .ethernet100G
        case "25gbe": return .ethernet25G
        case "measured":
            guard let comm else { throw ValidationError("--interconnect measured needs --comm FILE from `tandem comm --json`") }
            let text = try String(contentsOfFile: comm, encoding: .utf8)
            var samples: [CollectiveSample] = []
            for (i, line) in text.split(whereSeparator: \.isNewline).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                guard let row = try? JSONDecoder().decode(CommBenchmark.Row.self, from: Data(line.utf8)), let sample = CollectiveSample(row: row) else {
                    throw ValidationError("\(comm):\(i + 1): not a `tandem comm --json` line")
                }
                samples.append(sample)
            }
            do { return try Calibration.interconnect(samples: samples) } catch { throw ValidationError("\(comm): \(error)") }
        default:
            throw ValidationError("--interconnect must be nvlink4, pcie5, ib-ndr400, 100gbe, 25gbe or measured, got '\(interconnect)'")
        }
    }

    func parsedAlgorithm(_ link: Interconnect) throws -> AllReduceAlgorithm {
        let parts = algorithm.split(separator: ":").map(String.init)
        switch (parts.first, parts.count) {
        case ("ring", 1): return .ring(link)
        case ("tree", 1): return .tree(link)
        case ("hierarchical", 2): if let g = Int(parts[1]), g >= 1 { return .hierarchical(workersPerNode: g, intraNode: .nvlink4, interNode: link) }
        case ("ps", 2): if let s = Int(parts[1]), s >= 1 { return .parameterServer(servers: s, link: link) }
        default: break
        }
        throw ValidationError("--algorithm must be ring, tree, hierarchical:G or ps:S, got '\(algorithm)'")
    }

    func validate() throws {
        try requirePositive(max, "--max")
        guard efficiency > 0 && efficiency < 1 else { throw ValidationError("--efficiency must be in (0, 1), got \(efficiency)") }
        guard bucketMB > 0 && bucketMB.isFinite else { throw ValidationError("--bucket-mb must be > 0, got \(bucketMB)") }
        if let at { try requirePositive(at, "--at") }
        guard (0...1).contains(overlap) else { throw ValidationError("--overlap must be in [0, 1], got \(overlap)") }
    }

    func run() throws {
        let results = try ResultsFile.read(path: from)
        guard let baseline = results.first(where: { $0.workers == 1 && (model == nil || $0.model == model) }) else {
            throw ValidationError("\(from): no one-worker run\(model.map { " of \($0)" } ?? "") to calibrate from")
        }
        let link = try link()
        var cost = CostModel(calibration: try Calibration(baseline: baseline), algorithm: try parsedAlgorithm(link), bucketBytes: Int(bucketMB * 1_048_576),
                              overlappableFraction: overlap)
        if let probes {
            let own = try ResultsFile.read(path: probes).filter { $0.model == baseline.model && $0.backend == Benchmark.independentBackend }
            guard !own.isEmpty else {
                throw ValidationError("\(probes): no contention probe (backend \(Benchmark.independentBackend)) of \(baseline.model)")
            }
            // The median-throughput probe when the sweep repeated it.
            do { cost.hostContention = try HostContention(baseline: baseline, probe: Analysis.typical(own)) } catch { throw ValidationError("\(probes): \(error)") }
            let c = cost.hostContention!
            print(String(format: "host contention from %d lock-step replicas: compute ×%.2f, optimizer ×%.2f", c.workersPerHost, c.computeSlowdown, c.fixedSlowdown))
        }
        let batch = CostModel.Batch.perWorker(baseline.batch_per_worker)
        print("\(baseline.model), batch \(baseline.batch_per_worker) per worker, \(AllReduceAlgorithm.ring(link).name == cost.algorithm.name ? "ring" : algorithm) over \(link.name) (α \(String(format: "%.1f", link.alpha * 1e6)) µs, \(String(format: "%.1f", 1 / link.beta / 1e9)) GB/s)")
        print("  workers   step ms   comm ms  exposed ms   samples/s   efficiency")
        for p in cost.predict(workers: CostModel.powersOfTwo(upTo: max), batch: batch) {
            print(String(format: "%9d %9.2f %9.2f %11.2f %11.0f %11.1f%%", p.workers, 1000 * p.stepSeconds, 1000 * p.communicationSeconds,
                         1000 * p.exposedCommunicationSeconds, p.throughput, 100 * p.efficiency))
        }
        if let knee = cost.knee(workers: CostModel.powersOfTwo(upTo: max), batch: batch, efficiencyThreshold: efficiency) {
            print(String(format: "knee: %d workers (efficiency %.1f%%)", knee.workers, 100 * knee.efficiency))
        }
        if let at {
            if let b = cost.batchFor(efficiency: efficiency, workers: at) {
                print(String(format: "at %d workers, a batch of %d per worker (global %d) keeps efficiency at %.1f%%", at, b.batchPerWorker, b.globalBatch, 100 * b.efficiency))
            } else {
                print("at \(at) workers no batch per worker keeps efficiency ≥ \(Int(100 * efficiency))%")
            }
            if let c = cost.bucketFor(efficiency: efficiency, workers: at, batchPerWorker: baseline.batch_per_worker) {
                let size = c.bucketBytes >= 1 << 20 ? String(format: "%.1f MiB", Double(c.bucketBytes) / 1_048_576)
                                                    : String(format: "%.0f KiB", Double(c.bucketBytes) / 1024)
                print(String(format: "at %d workers with batch %d, buckets of %@ (%d buckets) give %.1f%%", at, baseline.batch_per_worker,
                             size, c.bucketCount, 100 * c.efficiency))
            } else {
                print("at \(at) workers with batch \(baseline.batch_per_worker), no bucket size keeps efficiency ≥ \(Int(100 * efficiency))%")
            }
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Two result files side by side, with ratios (B over A).")

    @Argument(help: "Baseline results (JSON lines), e.g. torch_bench.py output.") var a: String
    @Argument(help: "Candidate results (JSON lines).") var b: String

    func run() throws {
        let comparison = Comparison(baseline: try ResultsFile.read(path: a), candidate: try ResultsFile.read(path: b),
                                    baselineName: a, candidateName: b)
        print(comparison.markdown())
    }
}
