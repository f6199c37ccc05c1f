import ArgumentParser
import Foundation
import TandemMPI
import TandemParallel

// MARK: - --backend threads|mpi

/// The `--backend` option of train, bench and comm.
struct BackendOptions: ParsableArguments {
    @Option(help: """
        threads (ranks are threads of this process), mpi (this process is one rank of a job \
        started by mpirun or srun) or nccl (with --device cuda: one process per GPU, started by \
        tandem launch or mpirun). Default: mpi when an MPI launcher started several processes, else threads.
        """)
    var backend: String?

    func validate() throws {
        if let backend, Backend(rawValue: backend) == nil && backend != "nccl" {
            throw ValidationError("--backend must be threads, mpi or nccl (with --device cuda), got '\(backend)'")
        }
    }

    /// NCCL between GPUs (one process per GPU; see `tandem launch`), for --device cuda.
    var isNCCL: Bool { backend == "nccl" }

    /// The backend asked for, or the one the environment implies (the CPU side of an NCCL job runs on threads).
    var resolved: Backend {
        if isNCCL { return .threads }
        if let backend { return Backend(rawValue: backend)! }
        return LaunchEnvironment.current()?.wantsMPI == true ? .mpi : .threads
    }

    /// The number of ranks: `workers` on threads; on MPI, the job's size (MPI is started
    /// here, and its view checked against the launcher's; `--workers` is not used).
    func prepare(workers: Int) throws -> Int {
        guard !isNCCL else { return workers }
        guard resolved == .mpi else { return workers }
        let world: MPIWorld
        do { world = try MPIWorld.shared() } catch {
            throw ValidationError("--backend mpi: \(error)")
        }
        if let launcher = LaunchEnvironment.current() {
            do { try launcher.check(rank: world.rank, size: world.size, library: world.library.path) } catch {
                throw ValidationError("--backend mpi: \(error)")
            }
        }
        return world.size
    }
}

// MARK: - Doctor's MPI section

enum MPIDoctor {
    /// Which MPI library would be used, its family and version, or what to install.
    static func report() -> [String] {
        var lines: [String] = []
        do {
            let library = try MPILibrary.shared()
            lines.append("MPI: \(library.path) (\(library.family.rawValue)): \(library.version)")
        } catch {
            lines.append("MPI: not found — --backend mpi is unavailable. \(MPILibrary.installHint.prefix(1).uppercased() + MPILibrary.installHint.dropFirst())")
        }
        if let override = ProcessInfo.processInfo.environment["TANDEM_MPI"] { lines.append("  TANDEM_MPI=\(override)") }
        if let launcher = LaunchEnvironment.current() {
            lines.append("  launched by \(launcher.source): rank \(launcher.rank) of \(launcher.size)" + (launcher.localRank.map { ", local rank \($0)" } ?? ""))
        }
        for name in ["mpirun.openmpi", "mpirun.mpich", "mpirun", "srun"] {
            if let path = findExecutable(name) { lines.append("  launcher: \(path)") }
        }
        return lines
    }

    static func findExecutable(_ name: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}
