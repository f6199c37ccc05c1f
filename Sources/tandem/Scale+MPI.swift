import ArgumentParser
import Foundation
import TandemMPI
import TandemParallel

// MARK: - scale --backend mpi: every configuration as an MPI job

/// Runs benchmark configurations as `mpirun -np N tandem bench --backend mpi …` child jobs,
/// one per configuration, and reads back each job's measurement (every rank's spans, from
/// rank 0). The launcher is `TANDEM_MPIRUN`, else the one that matches the MPI library found
/// (`mpirun.openmpi`, `mpirun.mpich`), else `mpirun`; as root, Open MPI gets
/// `--allow-run-as-root`, and always `--oversubscribe` (more ranks than cores is how a
/// sweep on a small machine runs).
struct MPIJobRunner: Sendable {
    let launcher: String
    let flags: [String]
    let tandem: String
    let timeout: Double

    init(timeout: Double = 600) throws {
        let library: MPILibrary
        do { library = try MPILibrary.shared() } catch { throw ValidationError("--backend mpi: \(error)") }
        let environment = ProcessInfo.processInfo.environment
        let preferred = library.family == .openMPI ? "mpirun.openmpi" : "mpirun.mpich"
        guard let launcher = environment["TANDEM_MPIRUN"] ?? MPIDoctor.findExecutable(preferred) ?? MPIDoctor.findExecutable("mpirun") else {
            throw ValidationError("--backend mpi: no mpirun found (looked for \(preferred) and mpirun on PATH; set TANDEM_MPIRUN)")
        }
        self.launcher = launcher
        let isOpenMPI = library.family == .openMPI
        flags = isOpenMPI ? (getuid() == 0 ? ["--allow-run-as-root"] : []) + ["--oversubscribe"] : []
        tandem = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        self.timeout = timeout
        setenv("TANDEM_MPI", library.path, 1)   // the children open the same library
    }

    /// One configuration: `workers` processes of `tandem bench`.
    func measure(_ benchmark: Benchmark, workers: Int, recordEvents: Bool) throws -> Benchmark.Measurement {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-scale-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try run(workers, ["bench", "--backend", "mpi", "--model", benchmark.workload.rawValue, "--batch", "\(benchmark.batch)",
                          "--steps", "\(benchmark.steps)", "--warmup", "\(benchmark.warmup)", "--measurement-out", file]
                + (recordEvents ? ["--record-events"] : []))
        do {
            return try JSONDecoder.tandem.decode(Benchmark.Measurement.self, from: Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            throw ValidationError("--backend mpi: the MPI job for \(benchmark.workload.rawValue) × \(workers) wrote no measurement (\(error))")
        }
    }

    /// The all-reduce sweep as an MPI job of `workers` processes.
    func commRows(workers: Int, sizes: [Int], iterations: Int) throws -> [CommBenchmark.Row] {
        let output = try run(workers, ["comm", "--backend", "mpi", "--json", "--min-bytes", "\(sizes.min()!)", "--max-bytes", "\(sizes.max()!)",
                                       "--iterations", "\(iterations)"])
        return try output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { try JSONDecoder().decode(CommBenchmark.Row.self, from: Data($0.utf8)) }
    }

    /// Runs `mpirun -np workers tandem arguments…`; its standard output, or an error with its tail.
    @discardableResult
    func run(_ workers: Int, _ arguments: [String]) throws -> String {
        try ChildJob.run(launcher, flags + ["-np", "\(workers)", tandem] + arguments, timeout: timeout,
                         what: "--backend mpi: \(launcher) -np \(workers) tandem \(arguments.joined(separator: " "))")
    }
}

/// A child job of a sweep: runs `executable arguments…` with its output (both streams) in a
/// temporary log, ends it at `timeout` (TERM, then KILL 5 s later), and returns its output,
/// or an error with the output's tail when it fails.
enum ChildJob {
    static func run(_ executable: String, _ arguments: [String], timeout: Double, what: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-scale-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            process.terminate()
            let grace = Date().addingTimeInterval(5)
            while process.isRunning && Date() < grace { usleep(50_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        let output = String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self)
        guard process.terminationReason == .exit && process.terminationStatus == 0 else {
            throw ValidationError("\(what) failed (status \(process.terminationStatus)):\n\(output.suffix(2000))")
        }
        return output
    }
}

extension JSONDecoder {
    /// Reads what `JSONEncoder.tandem` writes (non-finite numbers as strings).
    static var tandem: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }
}

extension JSONEncoder {
    /// Writes non-finite numbers as strings.
    static var tandem: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }
}

// MARK: - bench --measurement-out

/// The hidden options `scale --backend mpi` passes to `bench`.
struct MeasurementOptions: ParsableArguments {
    @Option(name: .customLong("measurement-out"), help: .hidden) var measurementOut: String?
    @Flag(name: .customLong("record-events"), help: .hidden) var recordEvents = false

    /// Writes the measurement (rank 0 only).
    func write(_ measurement: Benchmark.Measurement) throws {
        guard let measurementOut, Launch.isPrimary else { return }
        try Data(try JSONEncoder.tandem.encode(measurement)).write(to: URL(fileURLWithPath: measurementOut), options: .atomic)
    }
}
