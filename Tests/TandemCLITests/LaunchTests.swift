import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

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

    @Test("a TERM to the launcher reaches every rank and everything the ranks started")
    func signalForwarding() throws {
        let binary = try CLI.requireBinary()
        let marker = "tandem-launch-signal-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = binary
        // Each rank starts a grandchild (sleep) that must die too.
        p.arguments = ["launch", "--gpus", "2", "--", "sh", "-c", "sleep 120 & echo \(marker); wait"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(500_000)
        let start = Date()
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGTERM, "status \(p.terminationStatus)")
        #expect(Date().timeIntervalSince(start) < 10)
        usleep(200_000)
        // No `sleep 120` of this test is left.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/sh")
        ps.arguments = ["-c", "ps -eo args | grep -c '^sleep 120$' || true"]
        let psOut = Pipe()
        ps.standardOutput = psOut
        try ps.run()
        ps.waitUntilExit()
        let left = String(decoding: psOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(left == "0", "sleep processes left: \(left)")
    }

    @Test("a program that does not exist fails the job with a non-zero status")
    func unknownProgram() throws {
        let r = try CLI.run(["launch", "--gpus", "2", "--", "tandem-no-such-program-xyz"])
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
    }
}

// MARK: - --backend nccl without a GPU

@Suite("--backend nccl on a host without GPUs")
struct NCCLCLITests {
    static let hasGPU = FileManager.default.fileExists(atPath: "/dev/nvidiactl")

    @Test("nccl needs --device cuda", arguments: [["bench", "--backend", "nccl"], ["train", "--backend", "nccl", "--steps", "1"]])
    func needsCUDA(arguments: [String]) throws {
        let r = try CLI.run(arguments)
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
        #expect(r.stderr.contains("--backend nccl runs between GPUs: add --device cuda"), "\(r)")
    }

    @Test("without a driver, every NCCL entry point says what is missing and what to install",
          .enabled(if: !hasGPU, "this host has a GPU"),
          arguments: [["bench", "--backend", "nccl", "--device", "cuda"], ["comm", "--backend", "nccl"],
                      ["train", "--backend", "nccl", "--device", "cuda", "--steps", "1"]])
    func noDriver(arguments: [String]) throws {
        let r = try CLI.run(arguments)
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
        #expect(r.stderr.contains("--backend nccl: rank 0 cannot open GPU 0: the CUDA driver"), "\(r)")
        #expect(r.stderr.contains("Install the NVIDIA driver"), "\(r)")
    }

    @Test("scale: nccl's options are checked before any work", arguments: [
        (["scale", "--backend", "nccl", "--precision", "fp8"], "--precision must be fp32, tf32, bf16 or fp16"),
        (["scale", "--backend", "threads", "--graph"], "--precision and --graph apply to --backend nccl"),
        (["scale", "--backend", "gloo"], "--backend must be threads, mpi or nccl"),
    ])
    func scaleOptions(arguments: [String], message: String) throws {
        let r = try CLI.run(arguments + ["--out", NSTemporaryDirectory() + "tandem-nccl-scale-\(UUID().uuidString)"])
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
        #expect(r.stderr.contains(message), "\(r)")
    }
}
