import Foundation
import TandemCore
import TandemFormats
import Testing

// MARK: - --save

@Suite struct SaveTests {
    @Test(arguments: ["missing/w.safetensors", "missing/deeper/w.safetensors"])
    func intoMissingDirectory(_ relative: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let target = directory.path(relative)
        try expectRefusal(
            CLI.smallTrain + ["--save", target], in: directory, mentions: ["missing", "no such file"], save: false)
        #expect(!FileManager.default.fileExists(atPath: directory.path("missing")))
    }

    @Test func ontoADirectory() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(at: directory.url.appendingPathComponent("out"), withIntermediateDirectories: false)
        try expectRefusal(CLI.smallTrain + ["--save", directory.path("out")], in: directory, mentions: ["out"], save: false)
    }

    /// A run whose loss blows up to NaN fails with a message, and does not overwrite a good
    /// checkpoint with NaN weights (this used to trap in the exp kernel of a debug build).
    @Test func divergedRunKeepsTheCheckpoint() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try expectRefusal(
            ["train", "--model", "mlp", "--hidden", "8", "--batch", "4", "--steps", "5", "--lr", "1e38", "--quiet", "--json"],
            in: directory, mentions: ["diverged", "--lr"])
    }

    /// A failure before training (bad --init, bad --data, bad flag) leaves an existing file at
    /// the --save path byte-identical.
    @Test(arguments: [
        (["--init", "WEIGHTS"], ["lack"]),
        (["--init", "NOWHERE"], ["no such file"]),
        (["--data", "NOWHERE"], ["no such file"]),
        (["--lr", "nan"], ["--lr"]),
    ])
    func existingFileSurvivesAnEarlierFailure(_ flags: [String], mentions words: [String]) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let saved = directory.path("model.safetensors")
        let original = Safetensors.encode(Fixtures.smallMLPWeights(fill: 0.5), metadata: ["step": "7"])
        try directory.write("model.safetensors", original)
        var weights = Fixtures.smallMLPWeights()
        weights["2.bias"] = nil
        let partial = try directory.write("partial.safetensors", Safetensors.encode(weights))
        let flags = flags.map { $0 == "WEIGHTS" ? partial : $0 == "NOWHERE" ? directory.path("nowhere.npz") : $0 }
        try expectRefusal(CLI.smallTrain + flags + ["--save", saved], in: directory, mentions: words, save: false)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: saved))) == original)
        #expect(try Safetensors.read(path: saved).metadata == ["step": "7"])
    }
}
