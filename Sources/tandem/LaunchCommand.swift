import ArgumentParser
import Foundation

/// `tandem launch --gpus N -- COMMAND…`: one process per GPU on this host, as torchrun starts them.
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Start one process per GPU of this host (for --backend nccl), meeting through a shared folder.",
        discussion: """
            Runs COMMAND once per rank with RANK, LOCAL_RANK and WORLD_SIZE set (as torchrun sets \
            them) and TANDEM_RENDEZVOUS naming a fresh folder where rank 0 publishes the NCCL \
            communicator's id and every rank leaves its progress. When a rank fails, the others \
            get --grace seconds to end on their own (their collectives time out naming the missing \
            rank), then are stopped; the exit status is the first failed rank's.
            Example: tandem launch --gpus 8 -- tandem train --model gpt --device cuda --backend nccl
            """)

    @Option(help: "Processes to start, one per GPU.") var gpus: Int
    @Option(help: "Rendezvous folder (default: a fresh one under the temporary directory).") var rendezvous: String?
    @Option(help: "Seconds the other ranks get to end after one fails.") var grace: Double = 60
    @Argument(parsing: .captureForPassthrough, help: "The command every rank runs (after --).") var command: [String] = []

    func validate() throws {
        try requirePositive(gpus, "--gpus")
        guard gpus <= 1024 else { throw ValidationError("--gpus must be at most 1024, got \(gpus)") }
        guard grace >= 0, grace.isFinite else { throw ValidationError("--grace must be a non-negative number of seconds, got \(grace)") }
        guard !arguments.isEmpty else { throw ValidationError("give the command every rank runs after --, e.g. tandem launch --gpus 2 -- tandem train --device cuda --backend nccl") }
    }

    /// The command without the `--` separator.
    var arguments: [String] { command.first == "--" ? Array(command.dropFirst()) : command }

    func run() throws {
        if let rendezvous {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: rendezvous, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--rendezvous \(rendezvous): no such folder (expected one every rank can read and write)")
            }
        }
        // A fresh folder per job (inside --rendezvous when given), so no rank reads an earlier job's id or progress.
        let folder = try makeFolder(in: rendezvous ?? NSTemporaryDirectory())
        // Ctrl-C or a TERM to the launcher reaches every rank (each runs in a process group of its own).
        signal(SIGINT) { launchSignal = $0 }
        signal(SIGTERM) { launchSignal = $0 }
        var wanted = sigset_t()
        sigemptyset(&wanted); sigaddset(&wanted, SIGINT); sigaddset(&wanted, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &wanted, nil)   // a parent may have started us with them blocked
        var ranks: [pid_t] = []
        for rank in 0..<gpus {
            var env = ProcessInfo.processInfo.environment
            env["RANK"] = "\(rank)"; env["LOCAL_RANK"] = "\(rank)"; env["WORLD_SIZE"] = "\(gpus)"
            env["LOCAL_WORLD_SIZE"] = "\(gpus)"; env["TANDEM_RENDEZVOUS"] = folder
            do { ranks.append(try Self.spawn(arguments, environment: env)) } catch {
                for pid in ranks { kill(-pid, SIGKILL) }
                throw ValidationError("tandem launch: cannot start \(arguments[0]) for rank \(rank): \(error)")
            }
        }
        let status = Self.supervise(ranks, grace: grace)
        try? FileManager.default.removeItem(atPath: folder)
        if status != 0 { throw ExitCode(status) }
    }

    /// Starts `arguments` (looked up on PATH) in a process group of its own, so that
    /// stopping a rank stops everything it started.
    static func spawn(_ arguments: [String], environment: [String: String]) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group; no blocked signals and default handlers, whatever this process has.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none); sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, arguments[0], nil, &attributes, argv, envp)
        guard rc == 0 else { throw ValidationError(String(cString: strerror(rc))) }
        return pid
    }

    /// Waits for every rank; after the first failure, waits `grace` seconds more, then
    /// stops the rest (their whole process groups). Returns the first failed rank's status
    /// (128 + signal when killed), or 0.
    static func supervise(_ ranks: [pid_t], grace: Double) -> Int32 {
        var statuses = [Int32?](repeating: nil, count: ranks.count)
        var firstFailure: Int32?
        var deadline: Date?
        var stopping = false
        while statuses.contains(where: { $0 == nil }) {
            for (rank, pid) in ranks.enumerated() where statuses[rank] == nil {
                var raw: Int32 = 0
                guard waitpid(pid, &raw, WNOHANG) == pid else { continue }
                let signal = raw & 0x7f
                let status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
                statuses[rank] = status
                if status != 0 && firstFailure == nil && !stopping {
                    firstFailure = status
                    deadline = Date().addingTimeInterval(grace)
                    FileHandle.standardError.write(Data("tandem launch: rank \(rank) exited with status \(status); the others have \(grace) s to finish\n".utf8))
                }
            }
            if launchSignal != 0 && !stopping {
                let received = launchSignal
                FileHandle.standardError.write(Data("tandem launch: signal \(received): stopping every rank\n".utf8))
                for (rank, pid) in ranks.enumerated() where statuses[rank] == nil { kill(-pid, received) }
                firstFailure = firstFailure ?? 128 + received
                stopping = true
                deadline = Date().addingTimeInterval(2)
            } else if let d = deadline, Date() > d, !stopping {
                stopping = true
                for (rank, pid) in ranks.enumerated() where statuses[rank] == nil {
                    FileHandle.standardError.write(Data("tandem launch: stopping rank \(rank)\n".utf8))
                    kill(-pid, SIGTERM)
                }
                deadline = Date().addingTimeInterval(2)
            } else if let d = deadline, Date() > d, stopping {
                for (rank, pid) in ranks.enumerated() where statuses[rank] == nil { kill(-pid, SIGKILL) }
            }
            usleep(10_000)
        }
        return firstFailure ?? statuses.compactMap { $0 }.first { $0 != 0 } ?? 0
    }

    func makeFolder(in parent: String) throws -> String {
        var template = Array((parent as NSString).appendingPathComponent("tandem-rendezvous-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ValidationError("tandem launch: cannot make a rendezvous folder in \(parent) (\(String(cString: strerror(errno))))")
        }
        return String(cString: made)
    }
}

/// The signal the launcher received (0: none), set by its handlers.
nonisolated(unsafe) var launchSignal: Int32 = 0

extension LaunchCommand {
}
