import Foundation
import Testing
@testable import TandemMPI

// MARK: - The library: search, families, constants, launch environment

@Suite struct MPILibraryTests {
    /// `tandem doctor` names the library, its family and version, for each installed one.
    @Test(arguments: Implementation.installed)
    func doctorReportsLibrary(_ implementation: Implementation) throws {
        let run = try runCommand([try Tools.requireTandem(), "doctor"], environment: ["TANDEM_MPI": implementation.library])
        #expect(run.status == 0, "\(run)")
        let line = try #require(run.lines("MPI:").first, "\(run)")
        let family = implementation.name == "Open MPI" ? "(Open MPI)" : "(MPICH family)"
        #expect(line.contains(family), "\(line)")
        #expect(line.contains(implementation.name == "Open MPI" ? "Open MPI v" : "MPICH Version"), "\(line)")
        #expect(line.contains("/"), "no path in \(line)")
    }

    /// Without any MPI library, `--backend mpi` is one clear error saying what to install.
    @Test func missingLibraryIsAClearError() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let run = try runCommand([try Tools.requireTandem(), "train", "--backend", "mpi", "--model", "mlp", "--steps", "1", "--save", scratch.file("w.safetensors")],
                                 environment: ["TANDEM_MPI": "/nonexistent/libmpi.so"], timeout: 60)
        #expect(run.status != 0 && !run.timedOut, "\(run)")
        #expect(run.output.contains("no MPI library found"), "\(run)")
        #expect(run.output.contains("apt-get install openmpi-bin libopenmpi3"), "\(run)")
        #expect(!FileManager.default.fileExists(atPath: scratch.file("w.safetensors")), "a failed run wrote weights")
        let doctor = try runCommand([try Tools.requireTandem(), "doctor"], environment: ["TANDEM_MPI": "/nonexistent/libmpi.so"])
        #expect(doctor.status == 0 && doctor.output.contains("MPI: not found"), "\(doctor)")
    }

    /// The MPICH family's constants are those of the installed `mpi.h` (checked where the
    /// header is installed: libmpich-dev).
    @Test func mpichConstantsMatchHeader() throws {
        let header = "/usr/include/x86_64-linux-gnu/mpich/mpi.h"
        guard let text = try? String(contentsOfFile: header, encoding: .utf8) else {
            print("MPI tests: \(header) is not installed (libmpich-dev); the constants are not checked against it")
            return
        }
        guard let handle = dlopen("libmpich.so.12", RTLD_NOW | RTLD_GLOBAL) else { return }
        let constants = try MPIConstants(family: .mpich, handle: handle)
        func defined(_ name: String) -> UInt? {
            for line in text.split(separator: "\n") where line.hasPrefix("#define \(name) ") || line.hasPrefix("#define \(name)\t") {
                if let range = line.range(of: "0x[0-9a-fA-F]+", options: .regularExpression) { return UInt(line[range].dropFirst(2), radix: 16) }
            }
            return nil
        }
        #expect(defined("MPI_COMM_WORLD") == constants.commWorld)
        #expect(defined("MPI_BYTE") == constants.byte)
        #expect(defined("MPI_FLOAT") == constants.float)
        #expect(defined("MPI_SUM") == constants.sum)
        #expect(defined("MPI_MAX") == constants.max)
        #expect(defined("MPI_ERRORS_RETURN") == constants.errorsReturn)
        #expect(text.contains("#define MPI_ANY_SOURCE \t(-2)") || text.contains("#define MPI_ANY_SOURCE (-2)"))
        #expect(text.contains("#define MPI_THREAD_SERIALIZED 2"))
    }

    /// Open MPI's handles are its exported globals.
    @Test func openMPIHandlesAreGlobals() throws {
        guard let handle = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL) else { return }
        let constants = try MPIConstants(family: .openMPI, handle: handle)
        #expect(constants.commWorld == UInt(bitPattern: dlsym(handle, "ompi_mpi_comm_world")))
        #expect(constants.float == UInt(bitPattern: dlsym(handle, "ompi_mpi_float")))
        #expect(constants.sum == UInt(bitPattern: dlsym(handle, "ompi_mpi_op_sum")))
        #expect(constants.commWorld != constants.float && constants.float != 0)
    }

    @Test func launchEnvironment() throws {
        let ompi = LaunchEnvironment.current(["OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0", "SLURM_PROCID": "9", "SLURM_NTASKS": "16"])
        #expect(ompi == LaunchEnvironment(source: "Open MPI", rank: 2, size: 4, localRank: 0))
        #expect(ompi?.wantsMPI == true)
        #expect(LaunchEnvironment.current(["PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"]) == LaunchEnvironment(source: "PMI", rank: 1, size: 2, localRank: 1))
        #expect(LaunchEnvironment.current(["SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0"])?.source == "Slurm")
        let torch = LaunchEnvironment.current(["RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"])
        #expect(torch?.source == "torchrun" && torch?.wantsMPI == false)
        #expect(LaunchEnvironment.current([:]) == nil)
        #expect(LaunchEnvironment.current(["OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"])?.wantsMPI == false)
        let launcher = LaunchEnvironment(source: "PMI", rank: 1, size: 2, localRank: nil)
        #expect(throws: MPIError.self) { try launcher.check(rank: 0, size: 1, library: "libmpi.so.40") }
        try launcher.check(rank: 1, size: 2, library: "libmpich.so.12")
    }

    /// Inside an `srun` step the step's task count is the size; a plain `sbatch` script (Slurm's
    /// job variables, no step) is one process, not an MPI job, and falls back to nothing.
    @Test func slurmCountsOnlyInsideAStep() {
        let batch = ["SLURM_JOB_ID": "41", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_NNODES": "2"]
        #expect(LaunchEnvironment.current(batch) == nil, "an sbatch script's own process is not rank 0 of 4")
        var step = batch
        step["SLURM_STEP_ID"] = "0"; step["SLURM_PROCID"] = "3"; step["SLURM_STEP_NUM_TASKS"] = "2"; step["SLURM_LOCALID"] = "1"
        let launched = LaunchEnvironment.current(step)
        #expect(launched == LaunchEnvironment(source: "Slurm", rank: 3, size: 2, localRank: 1), "srun -n 2 inside a 4-task allocation")
        #expect(launched?.wantsMPI == true)
        var old = batch
        old["SLURM_STEPID"] = "1"   // the older spelling
        #expect(LaunchEnvironment.current(old)?.size == 4)
        // torchrun inside an sbatch script: torchrun's variables, not Slurm's.
        var torch = batch
        torch["RANK"] = "1"; torch["WORLD_SIZE"] = "2"
        #expect(LaunchEnvironment.current(torch)?.source == "torchrun")
    }

    /// Launched by one implementation's mpirun with the other's library, every process would
    /// be a world of one; the run stops with an error saying so instead.
    @Test func launcherAndLibraryMismatchIsAnError() throws {
        guard Implementation.installed.count == 2 else { return }
        var wrong = Implementation.mpich
        wrong.library = Implementation.openMPI.library
        let run = try mpirun(wrong, 2, ["train", "--backend", "mpi", "--model", "mlp", "--steps", "1", "--quiet"], timeout: 60)
        #expect(run.status != 0 && !run.timedOut, "\(run)")
        #expect(run.output.contains("the library is not the launcher's"), "\(run)")
    }
}
