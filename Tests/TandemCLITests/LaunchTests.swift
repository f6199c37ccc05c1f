import Foundation
import Testing

// MARK: - tandem launch

@Suite("tandem launch")
struct LaunchTests {
    @Test("every rank runs the command with RANK, LOCAL_RANK, WORLD_SIZE and one shared rendezvous folder")
    func environment() throws {
        let r = try CLI.run(["launch", "--gpus", "3", "--", "sh", "-c", "echo rank=$RANK local=$LOCAL_RANK size=$WORLD_SIZE dir=$TANDEM_RENDEZVOUS"])
        #expect(r.status == 0, "\(r)")
        let lines = r.stdout.split(separator: "\n").map(String.init).sorted()
        #expect(lines.count == 3, "\(r)")
        for (i, line) in lines.enumerated() { #expect(line.hasPrefix("rank=\(i) local=\(i) size=3 dir="), "\(line)") }
        let folders = Set(lines.map { $0.components(separatedBy: "dir=").last! })
        #expect(folders.count == 1, "\(folders)")
        // The folder it made is removed when the job ends.
        #expect(!FileManager.default.fileExists(atPath: folders.first!))
    }

    @Test("a failed rank's status ends the job; the others are stopped after the grace period")
    func failure() throws {
        let start = Date()
        let r = try CLI.run(["launch", "--gpus", "3", "--grace", "0.5", "--", "sh", "-c", "if [ $RANK = 2 ]; then exit 7; fi; sleep 60"], timeout: 30)
        #expect(r.status == 7, "\(r)")
        #expect(r.stderr.contains("rank 2 exited with status 7"), "\(r)")
        #expect(r.stderr.contains("stopping rank 0") && r.stderr.contains("stopping rank 1"), "\(r)")
        #expect(Date().timeIntervalSince(start) < 20)
    }

    @Test("bad input: no command, zero GPUs, a missing folder, an unknown program", arguments: [
        (["launch", "--gpus", "2"], "give the command every rank runs after --"),
        (["launch", "--gpus", "0", "--", "true"], "--gpus must be a positive integer"),
        (["launch", "--gpus", "2", "--grace=-1", "--", "true"], "--grace must be a non-negative number"),
        (["launch", "--gpus", "1", "--rendezvous", "/nonexistent/tandem", "--", "true"], "no such folder"),
    ])
    func badInput(arguments: [String], message: String) throws {
        let r = try CLI.run(arguments)
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
        #expect(r.stderr.contains(message), "\(r)")
    }

    @Test("a program that does not exist fails the job with a non-zero status")
    func unknownProgram() throws {
        let r = try CLI.run(["launch", "--gpus", "2", "--", "tandem-no-such-program-xyz"])
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
    }
}
