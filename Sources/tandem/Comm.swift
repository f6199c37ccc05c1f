import ArgumentParser
import Foundation
import TandemParallel

struct Comm: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure collective latency and bandwidth over a sweep of sizes (as nccl-tests).")

    @Option(help: "all-reduce, broadcast, all-gather or reduce-scatter.") var operation = "all-reduce"
    @Option(help: "Workers (threads).") var workers = 2
    @Option(name: .customLong("min-bytes"), help: "Smallest message.") var minBytes = 8
    @Option(name: .customLong("max-bytes"), help: "Largest message.") var maxBytes = 64 << 20
    @Option(help: "Timed repetitions per size.") var iterations = 20
    @Flag(help: "One JSON line per size.") var json = false
    @OptionGroup var launch: BackendOptions
    @Flag(name: .customLong("compare-library"), help: "MPI all-reduce: also time the MPI library's own MPI_Allreduce on the same sizes.") var compareLibrary = false
    @Flag(help: "Instead of timing, check every collective's result (sizes 0, 1, uneven, large; sum, average, max; fp32, bf16, fp16).") var verify = false

    func validate() throws {
        guard CommBenchmark.Operation(rawValue: operation) != nil else {
            throw ValidationError("--operation must be one of \(CommBenchmark.Operation.allCases.map(\.rawValue).joined(separator: ", ")), got '\(operation)'")
        }
        try requirePositive(workers, "--workers")
        try requirePositive(iterations, "--iterations")
        guard minBytes >= 4 && maxBytes >= minBytes else { throw ValidationError("need 4 ≤ --min-bytes ≤ --max-bytes, got \(minBytes) and \(maxBytes)") }
    }

    mutating func run() throws {
        workers = try launch.prepare(workers: workers)
        if verify && launch.isNCCL { throw ValidationError("--verify checks the threads and MPI backends; NCCL's collectives are checked by `tandem selftest --device cuda`") }
        if verify { return try verifyCollectives() }
        if compareLibrary && (launch.resolved != .mpi || operation != "all-reduce") {
            throw ValidationError("--compare-library needs --backend mpi and --operation all-reduce")
        }
        var sizes: [Int] = []
        var s = minBytes
        while s <= maxBytes { sizes.append(s); s *= 4 }
        if launch.isNCCL { return try runOverNCCL(sizes: sizes) }
        var benchmark = CommBenchmark(operation: CommBenchmark.Operation(rawValue: operation)!, workers: workers, sizes: sizes, iterations: iterations)
        benchmark.backend = launch.resolved
        benchmark.compareLibrary = compareLibrary
        let rows = try benchmark.run()
        guard Launch.isPrimary else { return }
        if json { for r in rows { try printJSON(r) }; return }
        if compareLibrary { return printLibraryComparison(rows) }
        print("\(operation), \(workers) workers (\(launch.resolved.rawValue) backend)")
        print("       bytes      time(us)   algbw(GB/s)   busbw(GB/s)")
        for r in rows {
            print(String(format: "%12d  %12.1f  %12.2f  %12.2f", r.bytes, r.microseconds, r.algbw_gbps, r.busbw_gbps))
        }
    }
}
