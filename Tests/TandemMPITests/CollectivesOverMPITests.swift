import Foundation
import Testing

// MARK: - Collectives and training over MPI, against closed forms and the threads backend

/// (implementation, processes) pairs: Open MPI for 1 to 4 processes (oversubscribed on this
/// machine's cores), MPICH for 2 and 4.
let worlds: [(Implementation, Int)] = Implementation.installed.flatMap { i in
    (i.name == "Open MPI" ? [1, 2, 3, 4] : [2, 4]).map { (i, $0) }
}

@Suite(.serialized) struct CollectivesOverMPITests {
    /// Every collective, sizes 0, 1, uneven, large; sum/average/max; fp32/bf16/fp16.
    /// Large all-reduces take the direct path (ranks of one host reduce in each other's
    /// memory: in place in the mapped heaps, or through the kernel's copies with
    /// TANDEM_MPI_HEAP=0) unless TANDEM_MPI_DIRECT=0; all three are checked.
    @Test(arguments: worlds)
    func collectivesAreCorrect(_ implementation: Implementation, _ n: Int) throws {
        let settings: [[String: String]] = n > 1
            ? [["TANDEM_MPI_DIRECT": "require", "TANDEM_MPI_HEAP": "require"], ["TANDEM_MPI_DIRECT": "require", "TANDEM_MPI_HEAP": "0"], ["TANDEM_MPI_DIRECT": "0"]]
            : [[:]]
        for environment in settings {
            let run = try mpirun(implementation, n, ["comm", "--backend", "mpi", "--verify"], environment: environment, timeout: 120)
            #expect(run.status == 0 && !run.timedOut, "\(environment): \(run)")
            #expect(run.output.contains("collectives correct on \(n) rank\(n == 1 ? "" : "s") (mpi backend)"), "\(environment): \(run)")
        }
    }

    /// The same training run gives bit-identical weights over MPI and over threads: same
    /// data shards, same reduction order. Large layers take the rank-order all-reduce; the
    /// small-bucket run takes the tree; bf16 compression rounds as the threads backend does.
    @Test(arguments: Implementation.installed, [2, 4])
    func sameWeightsAsThreads(_ implementation: Implementation, _ n: Int) throws {
        let tandem = try Tools.requireTandem()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let digits = Tools.root.appendingPathComponent("datasets/digits").path
        // Small buckets pick one round or two by size (4–8 KB: two under Open MPI; 10–40 KB:
        // two under MPICH): the tree order either way.
        let configurations: [(String, [String], [String: String])] = [
            // 256×128 and 64×256 weights: gradients of 64 KB and more, in the heaps.
            ("rank order, direct, in the heaps", ["--hidden", "256,128", "--shard", "cyclic"], ["TANDEM_MPI_DIRECT": "require", "TANDEM_MPI_HEAP": "require"]),
            ("rank order, direct, kernel copies", ["--hidden", "256,128", "--shard", "cyclic"], ["TANDEM_MPI_DIRECT": "require", "TANDEM_MPI_HEAP": "0"]),
            ("rank order, messages", ["--hidden", "128,96", "--shard", "cyclic"], ["TANDEM_MPI_DIRECT": "0"]),
            ("rank order, bf16, direct", ["--hidden", "128,96", "--compress", "bf16"], ["TANDEM_MPI_DIRECT": "require"]),
            ("tree order, bf16", ["--hidden", "32,32", "--bucket-mb", "0.004", "--compress", "bf16"], [:]),
            ("tree order, 6 KB buckets", ["--hidden", "32,32", "--bucket-mb", "0.006"], [:]),
            ("tree order, 30 KB buckets", ["--hidden", "64,64", "--bucket-mb", "0.03"], [:]),
        ]
        for (label, extra, environment) in configurations {
            let common = ["train", "--model", "mlp", "--data", digits, "--steps", "12", "--batch", "8", "--lr", "0.05", "--quiet"] + extra
            let threads = try runCommand([tandem] + common + ["--workers", "\(n)", "--save", scratch.file("threads.safetensors")])
            #expect(threads.status == 0, "\(threads)")
            let mpi = try mpirun(implementation, n, common + ["--backend", "mpi", "--save", scratch.file("mpi.safetensors")], environment: environment)
            #expect(mpi.status == 0, "\(mpi)")
            let a = try Data(contentsOf: URL(fileURLWithPath: scratch.file("threads.safetensors")))
            let b = try Data(contentsOf: URL(fileURLWithPath: scratch.file("mpi.safetensors")))
            #expect(a.count > 1000)
            #expect(a == b, "\(label), \(n) ranks over \(implementation): the weights differ from the threads backend's")
            // Only rank 0 reports.
            #expect(mpi.lines("trained mlp").count == 1, "\(mpi)")
        }
    }

    /// bench and comm run under mpirun, rank 0 printing one result with every rank's data.
    @Test func benchAndCommUnderMPI() throws {
        guard let implementation = Implementation.installed.first else { return }
        let bench = try mpirun(implementation, 2, ["bench", "--backend", "mpi", "--model", "mlp", "--batch", "8", "--steps", "3", "--warmup", "1", "--json"])
        #expect(bench.status == 0, "\(bench)")
        let line = try #require(bench.lines("{").first, "\(bench)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(result["backend"] as? String == "mpi")
        #expect(result["workers"] as? Int == 2)
        #expect((result["per_rank_steps_ms"] as? [[Double]])?.map(\.count) == [3, 3], "every rank's steps reach rank 0: \(line)")
        #expect(bench.lines("{").count == 1, "only rank 0 prints: \(bench)")
        let comm = try mpirun(implementation, 2, ["comm", "--backend", "mpi", "--compare-library", "--min-bytes", "4096", "--max-bytes", "65536", "--iterations", "3"])
        #expect(comm.status == 0, "\(comm)")
        #expect(comm.output.contains("against the MPI library's MPI_Allreduce"), "\(comm)")
        #expect(comm.lines("        4096").count == 1 && comm.lines("       65536").count == 1, "\(comm)")
    }
}

// MARK: - scale --backend mpi

@Suite struct ScaleOverMPITests {
    /// A sweep whose configurations run as mpirun jobs: every configuration's result is an
    /// MPI run with every rank's steps, and the report is written.
    @Test func scaleRunsEachConfigurationAsAnMPIJob() throws {
        guard let implementation = Implementation.installed.first else { return }
        let scratch = try Scratch()
        defer { scratch.remove() }
        let run = try runCommand([try Tools.requireTandem(), "scale", "--backend", "mpi", "--model", "mlp", "--workers", "1,2", "--steps", "2",
                                  "--warmup", "0", "--repeats", "1", "--batch", "4", "--out", scratch.path, "--quiet"],
                                 environment: ["TANDEM_MPI": implementation.library], timeout: 300)
        #expect(run.status == 0, "\(run)")
        let lines = try String(contentsOfFile: scratch.file("results.jsonl"), encoding: .utf8).split(separator: "\n")
        let results = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(results.map { $0["workers"] as? Int } == [1, 2], "\(lines)")
        #expect(results.allSatisfy { $0["backend"] as? String == "mpi" }, "\(lines)")
        #expect(results.map { ($0["per_rank_steps_ms"] as? [[Double]])?.count } == [1, 2], "\(lines)")
        #expect(FileManager.default.fileExists(atPath: scratch.file("report.html")))
    }
}

// MARK: - Resuming on another number of ranks

@Suite struct ResumeOverMPITests {
    /// A checkpoint written by two threads resumes under MPI on three processes (the data
    /// re-sharded), and that one on one thread; each run continues from the step it stopped at.
    @Test func resumeOnADifferentNumberOfRanks() throws {
        guard let implementation = Implementation.installed.first else { return }
        let tandem = try Tools.requireTandem()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let digits = Tools.root.appendingPathComponent("datasets/digits").path
        let common = ["train", "--model", "mlp", "--data", digits, "--hidden", "32", "--batch", "8", "--checkpoint-dir", scratch.file("ckpt")]
        let first = try runCommand([tandem] + common + ["--workers", "2", "--steps", "5", "--quiet"])
        #expect(first.status == 0, "\(first)")
        let second = try mpirun(implementation, 3, common + ["--backend", "mpi", "--steps", "9", "--resume", "--save", scratch.file("w.safetensors")])
        #expect(second.status == 0, "\(second)")
        #expect(second.output.contains("resuming a checkpoint of 2 workers on 3"), "\(second)")
        #expect(second.output.contains("step 9/9"), "\(second)")
        #expect(!second.output.contains("step 5/9"), "the resumed run repeated step 5: \(second)")
        let third = try runCommand([tandem] + common + ["--workers", "1", "--steps", "11", "--resume"])
        #expect(third.status == 0, "\(third)")
        #expect(third.output.contains("resuming a checkpoint of 3 workers on 1"), "\(third)")
        #expect(third.output.contains("trained mlp for 11 steps"), "\(third)")
    }
}
