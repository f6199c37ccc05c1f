import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `srun` for real: ranks started by Slurm's own launcher — PMIx for Open MPI, PMI-2 for MPICH —
/// on a Slurm cluster this host belongs to (`scripts/slurm_local.sh` makes a one-node one on a
/// Debian host). Skipped, saying so, where `sinfo` finds no idle node (CI has no Slurm).
@Suite(.serialized) struct SlurmTests {
    /// One way to start the ranks: the MPI library and the `srun --mpi` plugin that wires it up.
    struct Launch: CustomStringConvertible, Sendable {
        var mpi: String
        var plugin: String
        var library: String
        var description: String { "\(mpi) through srun --mpi=\(plugin)" }
    }

    static let launches = [Launch(mpi: "Open MPI", plugin: "pmix", library: "libmpi.so.40"),
                           Launch(mpi: "MPICH", plugin: "pmi2", library: "libmpich.so.12")]

    /// Why these tests cannot run here, or nil.
    static let unavailable: String? = {
        guard Tools.find("srun") != nil, Tools.find("sinfo") != nil else { return "no srun here" }
        guard let run = try? runCommand(["sinfo", "-h", "-o", "%t"], timeout: 10), run.status == 0, run.output.contains("idle") else {
            return "no idle Slurm node (sinfo)"
        }
        return nil
    }()

    func skipped(_ launch: Launch) -> Bool {
        let why = Self.unavailable ?? (dlopen(launch.library, RTLD_NOW | RTLD_LOCAL) == nil ? "\(launch.library) is not installed" : nil)
        if let why { print("Slurm tests (\(launch)): skipped — \(why); scripts/slurm_local.sh makes a one-node cluster") }
        return why != nil
    }

    static let training = ["train", "--model", "mlp", "--data", Tools.root.appendingPathComponent("datasets/digits").path,
                           "--hidden", "64,64", "--batch", "16"]

    /// Two ranks under srun train the same weights, bit for bit, as two worker threads; only rank 0 reports.
    @Test(arguments: launches) func sameWeightsAsThreads(_ launch: Launch) throws {
        if skipped(launch) { return }
        let tandem = try Tools.requireTandem()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let srun = try runCommand(["srun", "-n", "2", "--mpi=\(launch.plugin)", tandem] + Self.training
                                  + ["--steps", "30", "--backend", "mpi", "--save", scratch.file("srun.safetensors")],
                                  environment: ["TANDEM_MPI": launch.library], timeout: 180)
        #expect(srun.status == 0, "\(srun)")
        #expect(srun.lines("trained mlp for 30 steps on 2 workers").count == 1, "\(srun)")
        let threads = try runCommand([tandem] + Self.training + ["--steps", "30", "--workers", "2", "--save", scratch.file("threads.safetensors")],
                                     timeout: 180)
        #expect(threads.status == 0, "\(threads)")
        let a = FileManager.default.contents(atPath: scratch.file("srun.safetensors"))
        let b = FileManager.default.contents(atPath: scratch.file("threads.safetensors"))
        #expect(a != nil && a == b, "the weights trained under srun differ from the threads backend's")
    }

    /// A rank that stalls (SIGSTOP) under srun: rank 0 names it within the timeout instead of hanging.
    @Test(arguments: launches) func stalledRankIsNamed(_ launch: Launch) throws {
        if skipped(launch) { return }
        let tandem = try Tools.requireTandem()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let job = try Background(["env", "TANDEM_MPI=\(launch.library)", "srun", "-n", "2", "--mpi=\(launch.plugin)", tandem] + Self.training
                                 + ["--steps", "1000000", "--backend", "mpi", "--timeout", "3"], log: scratch.file("srun.log"))
        defer { job.stop() }
        let started = waitFor(60) { job.output.contains("step ") }
        try #require(started != nil, "the job did not start: \(job.output.suffix(800))")
        let (rank1, jobID) = try #require(Self.rankProcess(1, of: tandem), "no process of rank 1 found")
        kill(rank1, SIGSTOP)
        defer {
            // Killing srun alone would leave the step holding the node's CPUs for the next case.
            kill(rank1, SIGCONT)
            _ = try? runCommand(["scancel", jobID], timeout: 10)
            _ = waitFor(30) { (try? runCommand(["squeue", "-h", "-j", jobID], timeout: 10))?.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ?? true }
        }
        let reported = waitFor(20) { job.output.contains("timed out after 3.0 s: rank 1 did not arrive") }
        #expect(reported != nil, "\(job.output.suffix(800))")
        if let reported { #expect(reported < 3 + 7, "the report came \(reported) s after the stop") }
    }

    /// The process of `tandem` that Slurm started as `rank`, and its job's id.
    static func rankProcess(_ rank: Int, of tandem: String) -> (pid: pid_t, job: String)? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = pid_t(entry),
                  let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8), command.hasPrefix(tandem + "\0"),
                  let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains("SLURM_PROCID=\(rank)"), let job = variables.first(where: { $0.hasPrefix("SLURM_JOB_ID=") }) {
                return (pid, String(job.dropFirst("SLURM_JOB_ID=".count)))
            }
        }
        return nil
    }
}
