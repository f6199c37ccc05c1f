import Foundation
import TandemCore
import TandemFormats
import Testing

// MARK: - Runs that must work

@Suite struct WorkingRunTests {
    static let digits = CLI.repositoryRoot.appendingPathComponent("datasets/digits").path

    /// The one JSON object that `--json` prints on stdout.
    static func jsonLine(_ outcome: CLI.Outcome, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let lines = outcome.stdout.split(whereSeparator: \.isNewline).filter { !$0.allSatisfy(\.isWhitespace) }
        try #require(lines.count == 1, "expected one JSON line on stdout: \(outcome)", sourceLocation: sourceLocation)
        let object = try JSONSerialization.jsonObject(with: Data(lines[0].utf8))
        return try #require(object as? [String: Any], "stdout is not a JSON object: \(outcome)", sourceLocation: sourceLocation)
    }

    static func number(_ object: [String: Any], _ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }

    static func expectSuccess(_ outcome: CLI.Outcome, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(outcome.exitedNormally, "\(outcome)", sourceLocation: sourceLocation)
        #expect(outcome.status == 0, "\(outcome)", sourceLocation: sourceLocation)
    }

    @Test func trainsDigitsToHighAccuracy() throws {
        let outcome = try CLI.run(
            ["train", "--model", "mlp", "--data", Self.digits, "--eval-fraction", "0.2", "--hidden", "64", "--epochs", "5",
             "--json", "--quiet"], timeout: 600)
        Self.expectSuccess(outcome)
        let result = try Self.jsonLine(outcome)
        for key in ["engine", "model", "params", "workers", "samples_per_s", "step_ms", "loss", "eval_loss", "accuracy"] {
            #expect(result[key] != nil, "no '\(key)' in \(result)")
        }
        #expect(result["engine"] as? String == "tandem")
        #expect(result["model"] as? String == "mlp")
        #expect(Self.number(result, "params") == Double(64 * 64 + 64 + 10 * 64 + 10))
        #expect(Self.number(result, "workers") == 1)
        #expect((Self.number(result, "samples_per_s") ?? 0) > 0)
        #expect((Self.number(result, "loss") ?? .nan).isFinite)
        let stepMilliseconds = try #require(result["step_ms"] as? [String: Any])
        #expect(Set(stepMilliseconds.keys).isSuperset(of: ["mean", "median", "p10", "p90"]))
        let accuracy = try #require(Self.number(result, "accuracy"))
        #expect(accuracy >= 0.9, "held-out accuracy \(accuracy)")
        #expect(accuracy <= 1)
        #expect(!outcome.stderr.lowercased().contains("error"), "\(outcome)")
    }

    @Test func saveThenInit() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = directory.path("first.safetensors")
        let common = ["train", "--model", "mlp", "--data", Self.digits, "--hidden", "64", "--quiet", "--json"]
        let trained = try CLI.run(common + ["--epochs", "1", "--save", first], timeout: 600)
        Self.expectSuccess(trained)

        // The saved file is plain safetensors with PyTorch state_dict names.
        let (tensors, metadata) = try Safetensors.read(path: first)
        #expect(Set(tensors.keys) == ["0.weight", "0.bias", "2.weight", "2.bias"])
        #expect(tensors["0.weight"]?.shape == [64, 64])
        #expect(tensors["0.bias"]?.shape == [64])
        #expect(tensors["2.weight"]?.shape == [10, 64])
        #expect(tensors["2.bias"]?.shape == [10])
        #expect(tensors.values.allSatisfy { $0.dtype == .float32 && $0.floats().allSatisfy(\.isFinite) })
        #expect(metadata["model"] == "mlp")
        #expect(!FileManager.default.fileExists(atPath: first + ".tmp-0"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.url.path).sorted() == ["first.safetensors"])

        // Starting from it works; with a learning rate of 0 the weights come back unchanged,
        // which shows they were really loaded.
        let second = directory.path("second.safetensors")
        let resumed = try CLI.run(common + ["--init", first, "--steps", "1", "--lr", "0", "--save", second], timeout: 600)
        Self.expectSuccess(resumed)
        _ = try Self.jsonLine(resumed)
        let reloaded = try Safetensors.read(path: second).tensors
        #expect(reloaded == tensors)

        // And saving over the file it started from is fine too.
        let again = try CLI.run(common + ["--init", first, "--steps", "1", "--save", first], timeout: 600)
        Self.expectSuccess(again)
        #expect(Set(try Safetensors.read(path: first).tensors.keys) == ["0.weight", "0.bias", "2.weight", "2.bias"])
    }

    @Test func doctor() throws {
        let outcome = try CLI.run(["doctor"])
        Self.expectSuccess(outcome)
        #expect(outcome.stdout.contains("BLAS"), "\(outcome)")
    }

    @Test func bench() throws {
        let outcome = try CLI.run(["bench", "--model", "mlp", "--steps", "2", "--warmup", "1", "--json"], timeout: 600)
        Self.expectSuccess(outcome)
        let result = try Self.jsonLine(outcome)
        #expect(result["engine"] as? String == "tandem")
        #expect(result["model"] as? String == "mlp")
        #expect((Self.number(result, "samples_per_s") ?? 0) > 0, "\(result)")
        #expect(Self.number(result, "steps") == 2)
    }

    /// `--lockstep-replicas`: the workers train their own replicas and only meet at a barrier (no gradient
    /// crosses): the result says so, and flags that would need an exchange are refused.
    @Test func benchLockstepReplicas() throws {
        let outcome = try CLI.run(["bench", "--model", "mlp", "--workers", "2", "--steps", "2", "--warmup", "1", "--lockstep-replicas", "--json"],
                                  timeout: 600)
        Self.expectSuccess(outcome)
        let result = try Self.jsonLine(outcome)
        #expect(result["backend"] as? String == "independent", "\(result)")
        #expect(Self.number(result, "workers") == 2)
        #expect((Self.number(result, "samples_per_s") ?? 0) > 0, "\(result)")
        let refused = try CLI.run(["bench", "--model", "mlp", "--workers", "2", "--lockstep-replicas", "--compress", "bf16"])
        #expect(refused.status != 0 && refused.stderr.contains("--lockstep-replicas"), "\(refused)")
    }

    @Test func version() throws {
        let outcome = try CLI.run(["--version"])
        Self.expectSuccess(outcome)
        #expect(!outcome.stdout.isEmpty)
    }
}
