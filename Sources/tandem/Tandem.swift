import ArgumentParser
import Foundation
import TandemCore
import TandemModels
import TandemParallel

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Data-parallel training of neural networks, and measurements of how it scales.",
        version: Tandem.version,
        subcommands: [Train.self, Bench.self, Comm.self, Scale.self, Predict.self, Compare.self, Doctor.self, SelfTestCommand.self, LaunchCommand.self])
}

/// Prints a result as one JSON line.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension ReferenceModel: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

/// `--bucket-mb` in bytes, at least one; nil when the flag was not given (the CPU backends then take 25 MiB, the GPU
/// trainer `TANDEM_NCCL_BUCKET_MB` or 25 MiB).
func bucketByteCount(_ megabytes: Double?) -> Int? { megabytes.map { max(1, Int($0 * 1_048_576)) } }

/// `--compress` as the GPU trainer's gradient type between ranks (``GPUTrainer/compressGradients(to:)``): nil for none.
func wireType(_ compress: String) -> DType? { ["bf16": .bfloat16, "fp16": .float16][compress] }

/// Positive integers from the command line.
func requirePositive(_ value: Int, _ flag: String) throws {
    guard value > 0 else { throw ValidationError("\(flag) must be a positive integer, got \(value)") }
}
