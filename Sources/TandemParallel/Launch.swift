import Foundation
import TandemCollectives
import TandemMPI

// MARK: - Starting ranks: threads of this process, or processes under mpirun

/// Which `ProcessGroup` implementation a job runs on.
public enum Backend: String, CaseIterable, Sendable {
    /// Ranks are threads of one process (``ThreadLauncher``).
    case threads
    /// Ranks are processes under `mpirun`/`srun`, one per process (TandemMPI).
    case mpi
}

/// Runs a rank's work on the chosen backend and hands every rank's result back.
public enum Launch {
    /// Runs `body` for every rank and returns every rank's result in rank order.
    ///
    /// - `threads`: `workers` threads of this process (``ThreadLauncher``).
    /// - `mpi`: this process is one rank (MPI's rank and size; `workers` is ignored); the
    ///   results of all processes are gathered to every one of them, so rank 0 sees every
    ///   rank's spans. When `body` throws, the error is printed by this rank, the other ranks
    ///   are told (their collectives fail naming this rank), and after a moment for them to
    ///   report, the job ends with `MPI_Abort`: a failed MPI run never returns.
    public static func run<R: Codable & Sendable>(backend: Backend, workers: Int, timeout: Double = 300, verifyCalls: Bool = false,
                                                  _ body: @escaping @Sendable (_ rank: Int, _ group: any ProcessGroup) throws -> R) throws -> [R] {
        switch backend {
        case .threads:
            return try ThreadLauncher.run(workers: workers, timeout: timeout, verifyCalls: verifyCalls) { rank, group in try body(rank, group) }
        case .mpi:
            let world = try MPIWorld.shared()
            let group = MPIGroup(world: world, timeout: timeout, verifyCalls: verifyCalls)
            do {
                let mine = try body(world.rank, group)
                return try group.allGatherCodable(mine)
            } catch {
                fail(world, error)
            }
        }
    }

    /// Rank 0 of an MPI job, or any run on threads: the process that prints and writes results.
    public static var isPrimary: Bool { (MPIWorld.initialized?.rank ?? 0) == 0 }

    /// Reports `error` on this rank, tells the others, and ends the job.
    static func fail(_ world: MPIWorld, _ error: any Error) -> Never {
        let me = world.rank
        if case .aborted(let from, let message)? = error as? CollectiveError, from != me {
            // Another rank failed first and said why; say it here too, so every survivor's log names the cause.
            printStandardError("tandem: rank \(me): stopped because rank \(from) failed: \(message)")
        } else {
            let text = "\(error)"
            printStandardError("tandem: rank \(me): error: \(text)")
            world.tellOthers(text)
        }
        // The other survivors report too before the launcher tears the job down.
        usleep(1_000_000)
        world.abortJob("tandem: rank \(me): ending the MPI job")
    }

    static func printStandardError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

extension ProcessGroup {
    /// The collectives this rank ran, on the backends that keep a log (threads, MPI).
    public var collectiveLog: [CollectiveRecord] {
        (self as? ThreadGroup)?.log ?? (self as? MPIGroup)?.log ?? []
    }
}
