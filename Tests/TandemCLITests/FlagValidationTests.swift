import Foundation
import Testing

// MARK: - Bad command-line values

/// One bad invocation: the flags that differ from a small valid run, and the words its error must contain.
struct BadFlags: Sendable, CustomTestStringConvertible {
    var command: String
    var flags: [String]
    var words: [String]

    init(_ flags: [String], mentions words: [String], command: String = "train") {
        self.command = command
        self.flags = flags
        self.words = words
    }

    var testDescription: String { "\(command) \(flags.joined(separator: " "))" }

    /// The flags of a small valid run with these flags in place of the defaults.
    var arguments: [String] {
        let given = Set(flags.map { $0.split(separator: "=").first.map(String.init) ?? $0 })
        var defaults: [(String, String)] =
            command == "train"
            ? [("--model", "mlp"), ("--hidden", "8"), ("--batch", "4"), ("--steps", "1")]
            : [("--model", "mlp"), ("--batch", "4"), ("--steps", "1"), ("--warmup", "0")]
        defaults.removeAll { given.contains($0.0) }
        var arguments = [command] + defaults.flatMap { [$0.0, $0.1] } + flags
        if command == "train" { arguments.append("--quiet") }
        return arguments
    }
}

@Suite struct FlagValidationTests {
    static let cases: [BadFlags] = [
        BadFlags(["--model", "resnet"], mentions: ["resnet", "--model", "mlp"]),
        BadFlags(["--batch", "0"], mentions: ["--batch", "positive", "0"]),
        // ArgumentParser reads "-3" as a flag, so the value is reported missing.
        BadFlags(["--batch", "-3"], mentions: ["--batch"]),
        BadFlags(["--batch=-3"], mentions: ["--batch", "positive", "-3"]),
        BadFlags(["--lr", "-0.1"], mentions: ["--lr"]),
        BadFlags(["--lr=-0.1"], mentions: ["--lr", "-0.1"]),
        BadFlags(["--lr", "nan"], mentions: ["--lr", "finite", "nan"]),
        BadFlags(["--lr", "inf"], mentions: ["--lr", "finite"]),
        BadFlags(["--eval-fraction", "1.5"], mentions: ["--eval-fraction", "1.5"]),
        BadFlags(["--steps", "0"], mentions: ["--steps", "positive", "0"]),
        BadFlags(["--epochs", "0"], mentions: ["--epochs", "positive"]),
        BadFlags(["--steps", "2", "--epochs", "2"], mentions: ["--steps", "--epochs"]),
        BadFlags(["--optimizer", "rmsprop"], mentions: ["--optimizer", "rmsprop", "sgd", "adamw"]),
        BadFlags(["--hidden", "12,x"], mentions: ["--hidden", "12,x"]),
        BadFlags(["--hidden", "0"], mentions: ["--hidden", "positive"]),
        BadFlags(["--schedule", "step:0:0.5"], mentions: ["--schedule", "step:0:0.5"]),
        BadFlags(["--schedule", "linear"], mentions: ["--schedule", "linear"]),
        BadFlags(["--clip-norm", "-1"], mentions: ["--clip-norm"]),
        BadFlags(["--clip-norm=-1"], mentions: ["--clip-norm", "-1"]),
        BadFlags(["--clip-norm", "0"], mentions: ["--clip-norm", "> 0"]),
        BadFlags(["--warmup-steps=-1"], mentions: ["--warmup-steps"]),
        BadFlags(["--steps", "many"], mentions: ["--steps", "many"]),
        // Sizes no machine can hold are refused rather than trapping in the allocator.
        BadFlags(["--hidden", "99999999999"], mentions: ["--hidden", "memory"]),
        BadFlags(["--batch", "99999999999"], mentions: ["--batch", "memory"]),
        BadFlags(["--model", "gpt", "--batch", "99999999999"], mentions: ["--batch", "memory"]),
        BadFlags(["--hidden", "99999999,9999999", "--data", "\(CLI.repositoryRoot.path)/datasets/digits"], mentions: ["--hidden", "memory"]),
        BadFlags(["--model", "mlp-wide", "--data", "\(CLI.repositoryRoot.path)/datasets/digits"], mentions: ["synthetic"]),
        BadFlags(["--model", "resnet"], mentions: ["resnet", "--model"], command: "bench"),
        BadFlags(["--steps", "0"], mentions: ["--steps", "positive"], command: "bench"),
        BadFlags(["--batch", "0"], mentions: ["--batch", "positive"], command: "bench"),
        BadFlags(["--warmup=-1"], mentions: ["--warmup"], command: "bench"),
        BadFlags(["--workers", "0"], mentions: ["--workers", "positive"], command: "bench"),
        BadFlags(["--timeline"], mentions: ["--timeline", "--profile"], command: "bench"),
    ]

    @Test(arguments: cases)
    func refused(_ bad: BadFlags) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try expectRefusal(bad.arguments, in: directory, mentions: bad.words)
    }

    /// `bench` with a batch no machine can hold is refused (this used to trap in the allocator).
    @Test(arguments: ["mlp", "gpt"])
    func benchWithAbsurdBatch(model: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try expectRefusal(["bench", "--model", model, "--batch", "99999999999", "--steps", "1"], in: directory,
                          mentions: ["--batch", "memory"])
    }

    @Test func unknownSubcommand() throws {
        let outcome = try CLI.run(["fly"])
        expectCleanFailure(outcome, mentions: ["fly"])
    }
}
