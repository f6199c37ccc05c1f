import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Running tandem under mpirun

/// One MPI implementation installed side by side with the others (Debian: `mpirun.openmpi`
/// with `libmpi.so.40`, `mpirun.mpich` with `libmpich.so.12`).
struct Implementation: CustomStringConvertible, Sendable {
    var name: String
    var launcher: String
    var library: String
    /// Flags every launch needs (Open MPI refuses root and more ranks than cores without them).
    var flags: [String]

    var description: String { name }

    static let openMPI = Implementation(name: "Open MPI", launcher: "mpirun.openmpi", library: "libmpi.so.40",
                                        flags: ["--allow-run-as-root", "--oversubscribe", "--mca", "btl_base_warn_component_unused", "0"])
    static let mpich = Implementation(name: "MPICH", launcher: "mpirun.mpich", library: "libmpich.so.12", flags: [])

    /// The launcher's path, or nil when this implementation is not installed.
    var launcherPath: String? { Tools.find(launcher) }
    /// True when both the launcher and the library are here.
    var isInstalled: Bool { launcherPath != nil && dlopen(library, RTLD_NOW | RTLD_LOCAL) != nil }

    /// Installed implementations; prints which ones are missing, once.
    static let installed: [Implementation] = {
        let all = [openMPI, mpich]
        for i in all where !i.isInstalled {
            print("MPI tests: \(i.name) is not installed (\(i.launcher), \(i.library)); its cases are skipped — run scripts/setup.sh")
        }
        return all.filter(\.isInstalled)
    }()
}

enum Tools {
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]
        for directory in directories {
            let path = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// The `tandem` executable built next to this test bundle.
    static let tandem: String? = {
        var directories: [URL] = []
        if let first = CommandLine.arguments.first { directories.append(URL(fileURLWithPath: first).deletingLastPathComponent()) }
        directories.append(Bundle.main.bundleURL)
        for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        for directory in directories + directories.map({ $0.deletingLastPathComponent() }) {
            let candidate = directory.appendingPathComponent("tandem").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    static func requireTandem(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try #require(tandem, "the 'tandem' executable was not found next to the test bundle; run `swift build --build-tests` first",
                     sourceLocation: sourceLocation)
    }

    /// The repository root (this file is `<root>/Tests/TandemMPITests/MPISupport.swift`).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// What one command did.
struct Run: CustomStringConvertible {
    var command: [String]
    var status: Int32
    var timedOut: Bool
    var seconds: Double
    var output: String

    var description: String {
        "\(command.joined(separator: " ")) → \(timedOut ? "timed out" : "status \(status)") after \(String(format: "%.1f", seconds)) s\n\(output)"
    }

    /// Lines of the output that start with `prefix`.
    func lines(_ prefix: String) -> [String] { output.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) } }
}

/// Runs `command` (stdout and stderr together, through a file), killing its whole process
/// group after `timeout` seconds.
func runCommand(_ command: [String], environment: [String: String] = [:], timeout: Double = 120, directory: String? = nil) throws -> Run {
    let capture = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-mpi-\(UUID().uuidString).log")
    _ = FileManager.default.createFile(atPath: capture.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: capture) }
    let handle = try FileHandle(forWritingTo: capture)
    let process = Process()
    // Foundation's Process makes the child a process-group leader, so the whole tree can be killed.
    process.executableURL = URL(fileURLWithPath: command[0].contains("/") ? command[0] : Tools.find(command[0]) ?? command[0])
    process.arguments = Array(command.dropFirst())
    process.standardOutput = handle
    process.standardError = handle
    process.standardInput = FileHandle.nullDevice
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    var env = ProcessInfo.processInfo.environment
    // A tandem run inside the test must not think the test runner's launcher started it.
    for key in env.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMI_") || key.hasPrefix("PMIX_") { env[key] = nil }
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let start = Date()
    try process.run()
    try? handle.close()
    let deadline = start.addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    var timedOut = false
    if process.isRunning {
        timedOut = true
        kill(-process.processIdentifier, SIGKILL)
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
    let output = String(decoding: (try? Data(contentsOf: capture)) ?? Data(), as: UTF8.self)
    return Run(command: command, status: process.terminationStatus, timedOut: timedOut, seconds: Date().timeIntervalSince(start), output: output)
}

/// `mpirun -np n tandem arguments…` under `implementation`, its library chosen with TANDEM_MPI.
func mpirun(_ implementation: Implementation, _ n: Int, _ arguments: [String], environment: [String: String] = [:],
            launcherFlags: [String] = [], timeout: Double = 120) throws -> Run {
    let tandem = try Tools.requireTandem()
    let launcher = try #require(implementation.launcherPath)
    var env = environment
    env["TANDEM_MPI"] = implementation.library
    var command = [launcher] + implementation.flags + launcherFlags + ["-np", "\(n)"]
    if implementation.name == "Open MPI" { command += ["-x", "TANDEM_MPI"] + env.keys.filter { $0.hasPrefix("TANDEM_") && $0 != "TANDEM_MPI" }.flatMap { ["-x", $0] } }
    return try runCommand(command + [tandem] + arguments, environment: env, timeout: timeout)
}

/// A fresh directory, removed by `remove()`.
struct Scratch {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-mpi-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
