import ArgumentParser
import Foundation
import TandemModels
import TandemCUDA

/// `tandem selftest --device cuda`: every GPU op against its CPU twin, a training step of each
/// model against the CPU step, graph replay against eager, fp16 loss scaling and the
/// out-of-memory error; a table, and a non-zero exit on any failure.
struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check every GPU operation and training step against its CPU twin (exits non-zero on any failure).")

    @Option(help: "Device to test (cuda).") var device: ComputeDevice = .cuda
    @Option(help: "Models whose training step is checked, comma-separated (default: those the GPU engine trains).")
    var models = "mlp,mlp-wide,cnn,lstm,gpt"
    @Option(help: "Seed of the random inputs.") var seed: UInt64 = 1

    func run() throws {
        guard device == .cuda else { throw ValidationError("selftest checks the GPU: --device cuda") }
        var chosen: [ReferenceModel] = []
        for name in models.split(separator: ",") {
            guard let m = ReferenceModel(rawValue: String(name)) else { throw ValidationError("--models: unknown model '\(name)'") }
            chosen.append(m)
        }
        let gpu = try openGPU()
        print("GPU: \(gpu.device.name) (\(gpu.device.architecture)); kernels ready in \(String(format: "%.2f", gpu.compileSeconds)) s")
        print(pad("check", 58) + pad("precision", 10) + pad("error", 12) + pad("tolerance", 11) + "result")
        let test = GPUSelfTest(gpu: gpu, seed: seed)
        test.report = { c in
            print(pad(c.name, 58) + pad(c.precision, 10) + pad(String(format: "%.2e", c.error), 12) + pad(String(format: "%.0e", c.tolerance), 11)
                  + (c.passed ? "ok" : "FAIL") + (c.note.isEmpty || c.passed && !c.name.contains("loss") ? "" : "  " + c.note))
            fflush(nil)
        }
        do { try test.runAll(models: chosen) } catch let error {
            print("selftest stopped: \(error)")
            throw ExitCode(2)
        }
        let failed = test.failures.count
        print("\(test.cases.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }

    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
}
