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
func wireType(_ compress: String) -> DType? { compress == "bf16" ? .bfloat16 : nil }

/// `--bucket-mb` and `--compress` of `bench` and `train`: the bucket size in range, the payload one the backends know,
/// and on the GPU (`onGPU`) only bf16 and only between NCCL ranks (`nccl`).
func checkGradientOptions(bucketMB: Double?, compress: String, onGPU: Bool, nccl: Bool) throws {
    if let bucketMB, !(bucketMB.isFinite && bucketMB > 0 && bucketMB <= 1_048_576) {
        throw ValidationError("--bucket-mb must be a number in (0, 1048576], got \(bucketMB)")
    }
    guard GradientCompression(rawValue: compress) != nil else { throw ValidationError("--compress must be none, bf16 or fp16, got '\(compress)'") }
    guard onGPU && compress != "none" else { return }
    if !nccl { throw ValidationError("--compress narrows the gradients between ranks: with --device cuda it needs --backend nccl") }
    if compress == "fp16" {
        throw ValidationError("--compress fp16 is for the CPU backends: between GPUs an fp16 value past 65504 would reach the weights as infinity; use --compress bf16")
    }
}

/// Positive integers from the command line.
func requirePositive(_ value: Int, _ flag: String) throws {
    guard value > 0 else { throw ValidationError("\(flag) must be a positive integer, got \(value)") }
}
