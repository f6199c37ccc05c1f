import Foundation
import TandemCollectives
import TandemCore

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Last words when the launcher ends the job

/// When one rank dies, the launcher may tear the job down (`SIGTERM`, then `SIGKILL`) before the
/// survivors' own timeouts fire — under load it is often faster than they are. Then a survivor
/// says why it stopped, naming the ranks its collective in flight was still waiting for, instead
/// of vanishing silently: "rank 0: stopped by the MPI launcher (SIGTERM) during all-reduce #741,
/// still waiting for rank 1 (it probably failed)".
///
/// The signal handler only writes a byte to a pipe (async-signal-safe); a thread blocked on the
/// pipe reads the watchdogs' state under their locks, prints, and exits with 128 + SIGTERM.
enum MPITermination {
    nonisolated(unsafe) private static var pipeWrite: Int32 = -1
    private static let lock = NSLock()
    nonisolated(unsafe) private static var watchdogs: [Weak] = []   // guarded by `lock`
    nonisolated(unsafe) private static var installed = false         // guarded by `lock`

    private struct Weak { weak var watchdog: MPIWatchdog? }

    /// Catches SIGTERM for rank `rank` of a job of several processes (once per process).
    static func install(rank: Int) {
        lock.lock(); defer { lock.unlock() }
        guard !installed else { return }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        installed = true
        pipeWrite = fds[1]
        let reader = fds[0]
        let thread = Thread { report(reader: reader, rank: rank) }
        thread.name = "tandem-mpi-termination"
        thread.stackSize = 1 << 20
        thread.start()
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            var byte: UInt8 = 1
            _ = write(MPITermination.pipeWrite, &byte, 1)
        }
        sigemptyset(&action.sa_mask)
        sigaction(SIGTERM, &action, nil)
        // A parent may have started this process with SIGTERM blocked (the mask is inherited).
        var term = sigset_t()
        sigemptyset(&term); sigaddset(&term, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &term, nil)
    }

    /// Makes `watchdog`'s collective in flight part of the report.
    static func register(_ watchdog: MPIWatchdog) {
        lock.lock(); watchdogs = watchdogs.filter { $0.watchdog != nil } + [Weak(watchdog: watchdog)]; lock.unlock()
    }

    private static func report(reader: Int32, rank: Int) {
        var byte: UInt8 = 0
        while read(reader, &byte, 1) != 1 {
            if errno != EINTR { return }
        }
        lock.lock(); let live = watchdogs.compactMap(\.watchdog); lock.unlock()
        var text = "tandem: rank \(rank): stopped by the MPI launcher (SIGTERM)"
        if let (operation, sequence, missing) = live.lazy.compactMap({ $0.inFlight() }).first {
            text += " during \(operation) #\(sequence)"
            if !missing.isEmpty {
                let ranks = missing.map(String.init).joined(separator: ", ")
                text += ", still waiting for rank\(missing.count == 1 ? "" : "s") \(ranks) (\(missing.count == 1 ? "it" : "they") probably failed)"
            }
        } else {
            text += ": another rank probably failed"
        }
        FileHandle.standardError.write(Data((text + "\n").utf8))
        fflush(nil)
        _exit(128 + SIGTERM)
    }
}
