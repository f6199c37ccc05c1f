import Foundation
import TandemCore
import TandemFormats
import Testing

// MARK: - The `tandem` binary, when it was built

/// The `tandem` executable that `swift build --build-tests` puts beside the test bundle, or nil.
let tandemBinary: URL? = {
    var directories: [URL] = []
    if let first = CommandLine.arguments.first { directories.append(URL(fileURLWithPath: first).deletingLastPathComponent()) }
    for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
        directories.append(bundle.bundleURL.deletingLastPathComponent())
    }
    directories.append(Bundle.main.bundleURL)
    let found = directories.flatMap { [$0, $0.deletingLastPathComponent()] }
        .map { $0.appendingPathComponent("tandem") }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    return found
}()

/// Runs `tandem` with `arguments`; returns the exit status and what it printed.
func runTandem(_ binary: URL, _ arguments: [String], timeout: Double = 120) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let collected = Locked(Data())
    let reader = Thread {
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        collected.withLock { $0 = data }
    }
    reader.start()
    let deadline = Date(timeIntervalSinceNow: timeout)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    while reader.isExecuting { Thread.sleep(forTimeInterval: 0.01) }
    Thread.sleep(forTimeInterval: 0.01)
    return (process.terminationStatus, String(decoding: collected.current, as: UTF8.self))
}

extension ParallelTests {
    @Suite("CLI checkpoint and resume") struct CLIResume {
        struct Variant: Sendable, CustomStringConvertible {
            var extra: [String]
            var description: String { extra.isEmpty ? "synthetic, sgd" : extra.joined(separator: " ") }
        }

        @Test("tandem train to 6 with checkpoints, --resume to 10 == straight to 10, bit for bit", .enabled(if: tandemBinary != nil, "tandem was not built beside the tests"), arguments: [
            Variant(extra: []),
            Variant(extra: ["--optimizer", "adamw", "--lr", "0.003", "--accumulate", "2", "--shard", "cyclic"]),
            Variant(extra: ["--mode", "dp", "--accumulate", "2"]),
            Variant(extra: ["--data", "TABLE", "--shard", "hash", "--eval-fraction", "0.2"]),
            Variant(extra: ["--data", "TABLE", "--mode", "dp"]),
        ])
        func resume(_ v: Variant) throws {
            let binary = try #require(tandemBinary)
            let dir = try ScratchDirectory("cli")
            defer { dir.remove() }
            // A small CSV table (5 features, 3 classes, 53 rows: epochs end mid-run and unevenly).
            let table = dir.file("table.csv")
            var g = SeededGenerator(seed: 4)
            let rows = (0..<53).map { _ in (0..<5).map { _ in String(format: "%.4f", g.nextNormal()) }.joined(separator: ",") + ",\(g.next() % 3)" }
            try ("a,b,c,d,e,label\n" + rows.joined(separator: "\n") + "\n").write(toFile: table, atomically: true, encoding: .utf8)
            let extra = v.extra.map { $0 == "TABLE" ? table : $0 }
            let common = ["train", "--model", "mlp", "--workers", "2", "--hidden", "16", "--batch", "4", "--quiet", "--timeout", "60"]
                + (extra.contains("--data") ? [] : ["--data", "synthetic"]) + extra
            let checkpoints = dir.file("checkpoints")
            let first = try runTandem(binary, common + ["--steps", "6", "--checkpoint-dir", checkpoints, "--checkpoint-every", "3"])
            try #require(first.status == 0, "first run: \(first.output)")
            let record = try Safetensors.read(path: (checkpoints as NSString).appendingPathComponent("checkpoint.safetensors"))
            #expect(record.metadata["step"] == "6", "checkpoint after the first run: \(record.metadata)")
            let resumed = try runTandem(binary, common + ["--steps", "10", "--checkpoint-dir", checkpoints, "--resume", "--save", dir.file("resumed.safetensors")])
            try #require(resumed.status == 0, "resumed run: \(resumed.output)")
            let straight = try runTandem(binary, common + ["--steps", "10", "--save", dir.file("straight.safetensors")])
            try #require(straight.status == 0, "straight run: \(straight.output)")
            let a = try Safetensors.read(path: dir.file("resumed.safetensors")).tensors
            let b = try Safetensors.read(path: dir.file("straight.safetensors")).tensors
            #expect(a.keys.sorted() == b.keys.sorted() && !a.isEmpty, "\(v): tensors \(a.keys.sorted()) vs \(b.keys.sorted())")
            for name in b.keys.sorted() {
                #expect(a[name] == b[name], "\(v): tensor \(name) differs between the resumed and the straight run")
            }
            let early = try Safetensors.read(path: (checkpoints as NSString).appendingPathComponent("checkpoint.safetensors"))
            #expect(early.metadata["step"] == "10", "the resumed run's final checkpoint: \(early.metadata)")

            // Resuming with other settings is refused, naming the setting.
            let refused = try runTandem(binary, common.map { $0 == "4" ? "8" : $0 } + ["--steps", "12", "--checkpoint-dir", checkpoints, "--resume"])
            #expect(refused.status != 0, "resume with another batch size succeeded: \(refused.output)")
            #expect(refused.output.contains("batch"), "\(refused.output)")
        }
    }
}
