import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Failures end the job with an error naming the rank, on every survivor

/// Each fault is injected into rank 1 of 3 at its 5th all-reduce (`TANDEM_MPI_FAULT`), in
/// a training run whose collective timeout is 3 s. Open MPI's `mpirun` ends a job the
/// moment one process dies (its message names the rank); with `--enable-recovery` the
/// survivors run on to their own timeout, which is what the kill test checks. The other
/// faults leave every process alive, so the job ends by the survivors' `MPI_Abort`, non-zero.
@Suite(.serialized) struct FaultTests {
    static let timeout = 3.0

    func train(_ fault: String, debug: Bool = false, recovery: Bool = false) throws -> Run? {
        guard Implementation.installed.contains(where: { $0.name == "Open MPI" }) else { return nil }
        let digits = Tools.root.appendingPathComponent("datasets/digits").path
        var arguments = ["train", "--backend", "mpi", "--model", "mlp", "--data", digits, "--hidden", "64,64", "--steps", "200",
                         "--batch", "16", "--quiet", "--timeout", "\(Self.timeout)"]
        if debug { arguments.append("--debug-collectives") }
        return try mpirun(.openMPI, 3, arguments, environment: ["TANDEM_MPI_FAULT": fault], launcherFlags: recovery ? ["--enable-recovery"] : [], timeout: 60)
    }

    /// Every survivor (ranks 0 and 2) printed an error that names rank 1: its own timeout,
    /// or the notice of the survivor that failed first; within the timeout plus start-up
    /// and the one-second grace for reports.
    func expectSurvivorsName(_ run: Run, _ matches: (String) -> Bool, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!run.timedOut, "the job hung: \(run)", sourceLocation: sourceLocation)
        #expect(run.seconds < Self.timeout + 20, "the job took \(run.seconds) s: \(run)", sourceLocation: sourceLocation)
        for survivor in [0, 2] {
            let reports = run.lines("tandem: rank \(survivor): ").filter(matches)
            #expect(!reports.isEmpty, "rank \(survivor) did not report \(what): \(run)", sourceLocation: sourceLocation)
        }
        #expect(!run.output.contains("Fatal error"), "\(run)", sourceLocation: sourceLocation)
    }

    /// An all-reduce that rank 1 did not arrive at: this rank's timeout after 3 s, or rank 1's
    /// own notice that it gave up elsewhere (a skipping rank times out one collective ahead).
    /// A stopped rank may finish sending one collective's messages before the stop takes
    /// hold, so the sequence number, and whether a survivor that already gave up is also
    /// named, vary.
    static func namesRank1TimingOut(_ line: String) -> Bool {
        guard line.contains("all-reduce #"), line.contains("timed out after 3.0 s: rank") || line.contains("did not arrive (it stopped") else { return false }
        // Every "rank(s) … did not arrive" in the line (a notice quotes the notifier's own).
        var rest = line[...]
        while let range = rest.range(of: #"ranks? [0-9, ]+ did not arrive"#, options: .regularExpression) {
            let ranks = rest[range].dropFirst(5).split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if ranks.contains(1) { return true }
            rest = rest[range.upperBound...]
        }
        return false
    }

    @Test func killedRankIsNamed() throws {
        // mpirun's recovery mode also makes its own exit status 0, so only the reports are checked.
        guard let run = try train("1:kill:5", recovery: true) else { return }
        expectSurvivorsName(run, Self.namesRank1TimingOut, "a timeout naming rank 1")
    }

    @Test func stoppedRankIsNamed() throws {
        guard let run = try train("1:stop:5") else { return }
        expectSurvivorsName(run, Self.namesRank1TimingOut, "a timeout naming rank 1")
        #expect(run.status != 0, "\(run)")
    }

    @Test func rankSkippingACollectiveIsNamed() throws {
        guard let run = try train("1:skip:5") else { return }
        expectSurvivorsName(run, Self.namesRank1TimingOut, "a timeout naming rank 1")
        #expect(run.status != 0, "\(run)")
    }

    /// The launcher ending the job (SIGTERM) before the survivors' timeout: a survivor says
    /// which rank its collective was still waiting for. Rank 1 is killed at its 5th all-reduce
    /// under `--enable-recovery` (the survivors wait, their timeout 30 s); once it is gone,
    /// mpirun gets SIGTERM, as from a scheduler (once its live children, the ranks, went from 3 to 2).
    @Test func launcherTerminationNamesTheMissingRank() throws {
        guard Implementation.installed.contains(where: { $0.name == "Open MPI" }), let launcher = Implementation.openMPI.launcherPath else { return }
        let tandem = try Tools.requireTandem()
        let digits = Tools.root.appendingPathComponent("datasets/digits").path
        let job = ([launcher] + Implementation.openMPI.flags + ["--enable-recovery", "--mca", "odls_base_sigkill_timeout", "5", "-np", "3", "-x", "TANDEM_MPI", "-x", "TANDEM_MPI_FAULT", tandem,
                    "train", "--backend", "mpi", "--model", "mlp", "--data", digits, "--hidden", "64,64", "--steps", "100000", "--batch", "16", "--quiet",
                    "--timeout", "30"]).map { "'\($0)'" }.joined(separator: " ")
        let script = """
            \(job) & P=$!
            live() { ps --ppid $P -o stat= | grep -vc Z; }
            for i in $(seq 600); do [ "$(live)" = 3 ] && break; sleep 0.1; done
            for i in $(seq 600); do [ "$(live)" = 2 ] && break; sleep 0.1; done
            sleep 1; kill -TERM $P; wait $P
            """
        // The test runner blocks SIGTERM, and a child inherits the mask: mpirun would never see it.
        var term = sigset_t(), saved = sigset_t()
        sigemptyset(&term); sigaddset(&term, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &term, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        let run = try runCommand(["sh", "-c", script], environment: ["TANDEM_MPI": Implementation.openMPI.library, "TANDEM_MPI_FAULT": "1:kill:5"], timeout: 90)
        #expect(!run.timedOut, "\(run)")
        // mpirun follows its SIGTERM with SIGKILL (after 1 s by default, 5 s here), so on a busy
        // machine a survivor may be killed before its report is out: at least one must have
        // reported, and every report names rank 1.
        let reports = run.lines("tandem: rank ").filter { $0.contains("stopped by the MPI launcher (SIGTERM)") }
        #expect(!reports.isEmpty, "no survivor reported: \(run)")
        for report in reports {
            #expect(report.hasPrefix("tandem: rank 0: ") || report.hasPrefix("tandem: rank 2: "), "\(report)")
            #expect(report.contains("during all-reduce #") && report.contains("still waiting for rank 1 (it probably failed)"), "\(report)")
        }
    }

    /// With --debug-collectives every rank sees every rank's call and names the odd one's count.
    @Test func mismatchedSizesAreNamed() throws {
        guard let run = try train("1:resize:5", debug: true) else { return }
        expectSurvivorsName(run, { $0.contains("collective #12 differs across ranks") }, "the mismatch")
        let report = try #require(run.lines("tandem: rank ").first { $0.contains("collective #12 differs across ranks") }, "\(run)")
        #expect(report.contains("rank 1: all-reduce(average, float32×10, float32×640, float32×64, float32×4096, float32×64, float32×4095)"), "\(report)")
        #expect(report.contains("rank 2: all-reduce(average, float32×10, float32×640, float32×64, float32×4096, float32×64, float32×4096)"), "\(report)")
        #expect(run.status != 0, "\(run)")
    }

    /// Without --debug-collectives, the receiver of the short message names its sender.
    @Test func mismatchedSizesWithoutDebugAreNamed() throws {
        guard let run = try train("1:resize:5") else { return }
        expectSurvivorsName(run, { $0.contains("all-reduce #12: rank 1 sent 16380 bytes where rank") && $0.contains("expected 16384") }, "rank 1's short message")
    }
}
