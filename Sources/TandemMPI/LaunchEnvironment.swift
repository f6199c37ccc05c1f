import Foundation

// MARK: - What the launcher says about this process

/// Rank, size and local rank as launchers set them in the environment: Open MPI's
/// `mpirun` (`OMPI_COMM_WORLD_*`), MPICH's Hydra and PMI launchers (`PMI_RANK`, `PMI_SIZE`,
/// `MPI_LOCALRANKID`), Slurm's `srun` (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`,
/// in a job step only: not in an `sbatch` script's own process) and
/// torchrun (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`). Used to tell that MPI is wanted, and to
/// check the MPI library agrees with the launcher that started the process.
public struct LaunchEnvironment: Sendable, Equatable {
    /// Which variables the values came from (`Open MPI`, `PMI`, `Slurm`, `torchrun`).
    public var source: String
    public var rank: Int
    public var size: Int
    public var localRank: Int?

    /// The launcher's view, or nil when no launcher set one. An MPI launcher's variables win
    /// over Slurm's (an `mpirun` inside an allocation), and both over torchrun's.
    public static func current(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> LaunchEnvironment? {
        func int(_ key: String) -> Int? { environment[key].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
        if let rank = int("OMPI_COMM_WORLD_RANK"), let size = int("OMPI_COMM_WORLD_SIZE") {
            return .init(source: "Open MPI", rank: rank, size: size, localRank: int("OMPI_COMM_WORLD_LOCAL_RANK"))
        }
        if let rank = int("PMI_RANK"), let size = int("PMI_SIZE") {
            return .init(source: "PMI", rank: rank, size: size, localRank: int("MPI_LOCALRANKID"))
        }
        // Slurm's variables describe a task only inside a job step (`srun`), which sets
        // SLURM_STEP_ID. A batch script itself (`sbatch`) also sees SLURM_PROCID=0 and
        // SLURM_NTASKS=N, but it is one process, not rank 0 of N: it is no MPI job.
        if (int("SLURM_STEP_ID") ?? int("SLURM_STEPID")) != nil,
           let rank = int("SLURM_PROCID"), let size = int("SLURM_STEP_NUM_TASKS") ?? int("SLURM_NTASKS") {
            return .init(source: "Slurm", rank: rank, size: size, localRank: int("SLURM_LOCALID"))
        }
        if let rank = int("RANK"), let size = int("WORLD_SIZE") {
            return .init(source: "torchrun", rank: rank, size: size, localRank: int("LOCAL_RANK"))
        }
        return nil
    }

    /// True when an MPI launcher (or `srun`) started this process as one of several.
    public var wantsMPI: Bool { source != "torchrun" && size > 1 }

    /// Checks the MPI library's rank and size against the launcher's; a mismatch almost
    /// always means the library is not the launcher's (say `mpirun.mpich` with Open MPI's
    /// library: every process starts as a world of one).
    public func check(rank mpiRank: Int, size mpiSize: Int, library: String) throws(MPIError) {
        guard mpiRank != rank || mpiSize != size else { return }
        throw .call("MPI_Init_thread", code: 0, message: """
            the launcher (\(source)) started this process as rank \(rank) of \(size), but the MPI library \(library) \
            reports rank \(mpiRank) of \(mpiSize): the library is not the launcher's (use the mpirun that comes with \
            it, or set TANDEM_MPI to the launcher's library)
            """)
    }
}
