import ArgumentParser
import Foundation
import TandemCore
import TandemFormats
import TandemModels
import TandemParallel
import TandemScale

struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a scaling sweep and write results.jsonl, report.html and trace.json.",
        discussion: """
            For every workload and worker count (each repeated), times the data-parallel training \
            step, then reports throughput, speedup, efficiency, Karp–Flatt, Amdahl and Gustafson fits, \
            the step breakdown, load balance, jitter, memory per worker and MFU; times the all-reduce \
            over message sizes; and checks the α-β cost model, calibrated on the smallest worker count, \
            against the larger ones it did not see.
            """)

    @Option(help: "Workload, or all.") var model = "all"
    @Option(help: "Worker counts, comma-separated.") var workers = "1,2"
    @Option(help: "weak (batch per worker fixed) or strong (global batch fixed).") var mode = "weak"
    @Option(help: "threads (ranks are threads of this process), mpi (each configuration runs as an mpirun job of N processes) or nccl (N GPUs, one process each, started by tandem launch).") var backend = "threads"
    @Option(help: "With --backend nccl: fp32, tf32, bf16 or fp16.") var precision = "fp32"
    @Flag(help: "With --backend nccl: capture each step in a CUDA graph.") var graph = false
    @Option(help: "Timed steps per run (default: per workload, a few seconds each).") var steps: Int?
    @Option(help: "Untimed steps per run (each rank's first steps fill its buffer cache and fault pages in).") var warmup = 3
    @Option(help: "Repeats of each configuration (median and spread).") var repeats = 3
    @Option(help: "Batch per worker (weak) or per worker at the largest count (strong).") var batch: Int?
    @Option(help: "Output directory.") var out = "scale-results"
    @Flag(help: "No progress bar.") var quiet = false
    @Option(help: "cpu, or cuda: sweep the batch size on one GPU (--batches) instead of the worker count.") var device: ComputeDevice = .cpu
    @Option(help: "With --device cuda: batch sizes, comma-separated (default: ¼×, ½×, 1×, 2×, 4× the GPU batch of WORKLOADS.md).") var batches: String?

    func parsedWorkers() throws -> [Int] {
        let parts = workers.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--workers must be positive integers separated by commas, like 1,2,4; got '\(workers)'")
        }
        let list = Array(Set(parts.map { $0! })).sorted()
        guard list.max()! <= 64 else { throw ValidationError("--workers above 64 threads is not a sweep this machine can run; use `tandem predict`") }
        return list
    }

    func parsedModels() throws -> [ReferenceModel] {
        if model == "all" { return ReferenceModel.allCases }
        guard let m = ReferenceModel(rawValue: model) else {
            throw ValidationError("--model must be all or one of \(ReferenceModel.allValueStrings.joined(separator: ", ")), got '\(model)'")
        }
        return [m]
    }

    func validate() throws {
        _ = try parsedModels()
        _ = try parsedWorkers()
        guard ScalingMode(rawValue: mode) != nil else { throw ValidationError("--mode must be weak or strong, got '\(mode)'") }
        guard ["threads", "mpi", "nccl"].contains(backend) else { throw ValidationError("--backend must be threads, mpi or nccl, got '\(backend)'") }
        guard ["fp32", "tf32", "bf16", "fp16"].contains(precision) else { throw ValidationError("--precision must be fp32, tf32, bf16 or fp16, got '\(precision)'") }
        if device == .cuda {
            guard backend == "threads" else { throw ValidationError("--device cuda sweeps the batch size on one GPU; --backend nccl sweeps the number of GPUs") }
            _ = try parsedBatches(.mlp)
        } else if backend != "nccl" && (graph || precision != "fp32") {
            throw ValidationError("--precision and --graph apply to --backend nccl (GPUs) and --device cuda")
        }
        if let steps { try requirePositive(steps, "--steps") }
        if let batch { try requirePositive(batch, "--batch") }
        try requirePositive(repeats, "--repeats")
        guard warmup >= 0 else { throw ValidationError("--warmup must be ≥ 0, got \(warmup)") }
        // A strong sweep whose global batch does not split evenly fails here, before --out is created.
        let sweep = Sweep(models: try parsedModels(), workers: try parsedWorkers(), mode: ScalingMode(rawValue: mode)!, batch: batch)
        for model in sweep.models {
            for n in sweep.workers {
                do { _ = try sweep.batchPerWorker(model, workers: n) } catch { throw ValidationError(error.description) }
            }
        }
    }

    func run() throws {
        if device == .cuda { try runBatchSweepOnGPU(); return }
        let outputs = try Outputs(directory: out)
        var sweep = Sweep(models: try parsedModels(), workers: try parsedWorkers(), mode: ScalingMode(rawValue: mode)!,
                          steps: steps, warmup: warmup, repeats: repeats, batch: batch)
        let mpi = backend == "mpi" ? try MPIJobRunner() : nil
        if let mpi { sweep.runner = { try mpi.measure($0, workers: $1, recordEvents: $2) } }
        let nccl = backend == "nccl" ? NCCLJobRunner(precision: precision, graph: graph) : nil
        if let nccl {
            sweep.runner = { try nccl.measure($0, workers: $1, recordEvents: $2) }
            sweep.defaultBatch = { $0.gpuBatch }
            if steps == nil { sweep.steps = 50; sweep.warmup = max(warmup, 10) }
        }
        // The host's contention probe per workload: as many independent replicas as the widest
        // run puts on this host's cores, in lock-step with no communication (HostContention).
        // GPUs do not share their compute: no probe for an NCCL sweep.
        let widest = sweep.workers.max()!
        let perHost = nccl != nil ? 1 : min(widest, ProcessInfo.processInfo.activeProcessorCount)
        if perHost > 1 { sweep.probeReplicas = perHost }
        let bar = ProgressBar(enabled: !quiet)
        let outcome = try sweep.run { done, total, label, left in bar.show(done, total, label, left) }
        bar.finish()
        let configurations = outcome.configurations
        let results = configurations.flatMap { $0.runs.map(\.result) }
        try outputs.write("results.jsonl", results.map(jsonLine).joined())
        let probes = outcome.probes.map(\.result)
        if !probes.isEmpty { try outputs.write("probes.jsonl", probes.map(jsonLine).joined()) }

        // The all-reduce over message sizes, at the largest worker count.
        var comm: [CommBenchmark.Row] = []
        if widest > 1 {
            bar.show(0, 1, "all-reduce sweep on \(widest) workers", nil)
            let sizes = (0..<8).map { 4096 << (2 * $0) }
            comm = try mpi?.commRows(workers: widest, sizes: sizes, iterations: 5)
                ?? nccl?.commRows(workers: widest, sizes: sizes, iterations: 20)
                ?? CommBenchmark(operation: .allReduce, workers: widest, sizes: sizes, iterations: 5).run()
            bar.finish()
        }
        // MFU against one worker's peak: a core's measured GEMM rate, or a GPU's in the sweep's precision.
        let peak = try nccl?.peakFLOPS() ?? Ceilings.measure().gflops * 1e9
        // CPU ranks reduce gradients on the cores they compute on: with the host full, no
        // idle core is left for the all-reduce to hide on.
        let overlap = nccl == nil && perHost >= ProcessInfo.processInfo.activeProcessorCount ? 0.0 : 1.0
        let analysis = try Analysis(configurations: configurations, mode: sweep.mode, comm: comm, peakFLOPS: peak, probes: probes,
                                    overlappableFraction: overlap)
        try outputs.write("report.html", HTMLReport.render(analysis.reports, title: "Tandem scaling: \(sweep.mode.rawValue) scaling on \(cpuName())"))
        if let traced = configurations.last(where: { $0.model == configurations.first?.model }), let run = traced.runs.first {
            try outputs.write("trace.json", ChromeTrace.render(Analysis.events(run)))
        }
        print(analysis.table)
        for line in analysis.findings { print("  • \(line)") }
        print("wrote \(outputs.directory)/results.jsonl, \(probes.isEmpty ? "" : "probes.jsonl, ")report.html, trace.json")
    }

    func jsonLine(_ r: RunResult) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return String(decoding: (try? encoder.encode(r)) ?? Data("{}".utf8), as: UTF8.self) + "\n"
    }
}

/// The output directory, checked writable before any work, written file by file atomically.
struct Outputs {
    let directory: String

    init(directory: String) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("--out \(directory): cannot create the directory (\(error.localizedDescription)), expected a writable path")
        }
        let probe = (directory as NSString).appendingPathComponent(".tandem-write-test-\(getpid())")
        guard FileManager.default.createFile(atPath: probe, contents: Data()) else {
            throw ValidationError("--out \(directory): the directory is not writable, expected a writable path")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }

    func write(_ name: String, _ text: String) throws {
        try FileIO.writeAtomically(Array(text.utf8), to: (directory as NSString).appendingPathComponent(name))
    }
}

/// One line on stderr, redrawn: a bar, what runs now, and the time left.
final class ProgressBar {
    let enabled: Bool
    init(enabled: Bool) { self.enabled = enabled }
    func show(_ done: Int, _ total: Int, _ label: String, _ left: Double?) {
        guard enabled else { return }
        let width = 24, filled = total > 0 ? width * done / total : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let eta = left.map { String(format: "  %.0fs left", $0) } ?? ""
        FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(done)/\(total)  \(label)\(eta)".utf8))
    }
    func finish() { if enabled { FileHandle.standardError.write(Data("\n".utf8)) } }
}
