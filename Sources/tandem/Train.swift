import ArgumentParser
import Foundation
import TandemCore
import TandemData
import TandemModels
import TandemOptim
import TandemParallel

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on synthetic data or a data file, on one worker.",
        discussion: """
            DATA is `synthetic`, an .npz with arrays x and y, a .csv (numeric columns, the label in \
            a column named label or y, else the last), a .safetensors with x and y, or a directory with \
            images.npy and labels.npy (such as datasets/digits). On real data, mlp sizes its first and \
            last layers from the data; cnn reads [H, W] or [C, H, W] samples.
            """)

    @Option(help: "Model: \(ReferenceModel.allValueStrings.joined(separator: ", ")).") var model: ReferenceModel = .mlp
    @Option(help: "synthetic, FILE.npz, FILE.csv, FILE.safetensors or a directory.") var data = "synthetic"
    @Option(help: "Batch size (default: the CPU batch of WORKLOADS.md).") var batch: Int?
    @Option(help: "Optimizer steps (default 100 on synthetic data).") var steps: Int?
    @Option(help: "Epochs over the training split (instead of --steps).") var epochs: Int?
    @Option(help: "sgd or adamw.") var optimizer = "sgd"
    @Option(help: "Learning rate.") var lr: Float = 0.01
    @Option(help: "SGD momentum.") var momentum: Float = 0.9
    @Flag(help: "Nesterov momentum (SGD).") var nesterov = false
    @Option(name: .customLong("weight-decay"), help: "Weight decay (L2 for SGD, decoupled for AdamW).") var weightDecay: Float = 0
    @Option(name: .customLong("warmup-steps"), help: "Linear learning-rate warm-up steps.") var warmupSteps = 0
    @Option(help: "Learning-rate schedule after warm-up: constant, cosine, step:EVERY:FACTOR.") var schedule = "constant"
    @Option(name: .customLong("clip-norm"), help: "Clip gradients to this global L2 norm.") var clipNorm: Float?
    @Option(help: "Hidden widths of mlp, e.g. 128,128 (default: the reference 1024,1024).") var hidden: String?
    @Option(help: "Seed for weights, data order and synthetic data.") var seed: UInt64 = 0
    @Option(help: "Start from these weights (safetensors, PyTorch state_dict names).") var `init`: String?
    @Option(help: "Write the trained weights here (safetensors, atomically).") var save: String?
    @Option(name: .customLong("eval-fraction"), help: "Hold out this fraction of the data and report loss (and accuracy).") var evalFraction = 0.0
    @Flag(help: "Print one JSON result line (WORKLOADS.md schema plus eval_loss, accuracy).") var json = false
    @Flag(help: "No progress line.") var quiet = false

    func validate() throws {
        if let batch { try requirePositive(batch, "--batch") }
        if let steps { try requirePositive(steps, "--steps") }
        if let epochs { try requirePositive(epochs, "--epochs") }
        if steps != nil && epochs != nil { throw ValidationError("give --steps or --epochs, not both") }
        guard lr.isFinite && lr >= 0 else { throw ValidationError("--lr must be a finite number ≥ 0, got \(lr)") }
        guard evalFraction >= 0 && evalFraction < 1 else { throw ValidationError("--eval-fraction must be in [0, 1), got \(evalFraction)") }
        guard ["sgd", "adamw"].contains(optimizer) else { throw ValidationError("--optimizer must be sgd or adamw, got '\(optimizer)'") }
        guard warmupSteps >= 0 else { throw ValidationError("--warmup-steps must be ≥ 0, got \(warmupSteps)") }
        if let clipNorm, !(clipNorm.isFinite && clipNorm > 0) { throw ValidationError("--clip-norm must be a finite number > 0, got \(clipNorm)") }
        _ = try parsedHidden()
        _ = try parsedSchedule(steps: 1)
    }

    func parsedHidden() throws -> [Int]? {
        guard let hidden else { return nil }
        let widths = hidden.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !widths.isEmpty, widths.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--hidden must be positive integers separated by commas, like 128,128; got '\(hidden)'")
        }
        return widths.map { $0! }
    }

    func parsedSchedule(steps: Int) throws -> LearningRateSchedule {
        let parts = schedule.split(separator: ":").map(String.init)
        switch parts.first {
        case "constant" where parts.count == 1: return .constant
        case "cosine" where parts.count == 1: return .cosine(steps: max(steps - warmupSteps, 1), minimum: 0)
        case "step" where parts.count == 3:
            if let every = Int(parts[1]), every > 0, let factor = Float(parts[2]), factor > 0, factor.isFinite {
                return .step(every: every, factor: factor)
            }
        default: break
        }
        throw ValidationError("--schedule must be constant, cosine or step:EVERY:FACTOR (like step:100:0.5), got '\(schedule)'")
    }

    func makeOptimizer() throws -> any Optimizer {
        do {
            return optimizer == "adamw"
                ? try AdamW(learningRate: lr, weightDecay: weightDecay)
                : try SGD(learningRate: lr, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        } catch { throw ValidationError(error.description) }
    }

    func run() throws {
        if let warning = BLAS.warning { printError(warning) }
        let source = try TrainingData(data: data, model: model, hidden: try parsedHidden(), batch: batch,
                                      evalFraction: evalFraction, seed: seed)
        let network = source.model
        if let path = `init` { try network.loadWeights(from: path) }
        let totalSteps = steps ?? epochs.map { $0 * source.batchesPerEpoch } ?? source.defaultSteps
        var options = TrainingOptions(steps: totalSteps, learningRate: lr)
        options.warmupSteps = warmupSteps
        options.schedule = try parsedSchedule(steps: totalSteps)
        options.clipNorm = clipNorm
        let trainer = Trainer(model: network, optimizer: try makeOptimizer(), options: options)
        if !quiet {
            trainer.progress = { step, loss, rate, left in
                printError(String(format: "step %d/%d  loss %.4f  %.0f samples/s  %.0fs left", step, totalSteps, loss, rate, left))
            }
        }
        let report = try trainer.train(nextBatch: source.nextBatch)
        if let last = report.losses.last, !last.isFinite {  // before --save, so no good checkpoint is overwritten
            throw ValidationError("training diverged: the loss is \(last) after \(totalSteps) steps, expected a finite loss; try a lower --lr or --clip-norm")
        }
        let evaluation = source.evalBatches.isEmpty ? nil : trainer.evaluate(source.evalBatches)
        if let save { try network.saveWeights(to: save, metadata: ["model": model.rawValue, "steps": "\(totalSteps)"]) }

        let samples = Double(source.batchSize * totalSteps)
        var result = RunResult(
            model: model.rawValue, params: network.parameterCount, backend: "none", device_name: cpuName(),
            workers: 1, batch_per_worker: source.batchSize, global_batch: source.batchSize, steps: totalSteps, warmup: 0,
            seconds: report.seconds, samples_per_s: samples / max(report.seconds, 1e-9), step_ms: .init(report.stepMilliseconds),
            loss: Double(report.losses.last ?? .nan))
        let n = Double(max(totalSteps, 1))
        result.breakdown_ms = .init(data: 1000 * report.dataSeconds / n, forward: 1000 * report.forwardSeconds / n,
                                    backward: 1000 * report.backwardSeconds / n, comm_exposed: 0, optimizer: 1000 * report.optimizerSeconds / n)
        result.eval_loss = evaluation?.loss
        result.accuracy = evaluation?.accuracy
        if json { try printJSON(result); return }
        var line = String(format: "trained %@ for %d steps in %.1fs: loss %.4f", model.rawValue, totalSteps, report.seconds, result.loss)
        if let e = evaluation {
            line += String(format: ", held-out loss %.4f", e.loss)
            if let a = e.accuracy { line += String(format: ", accuracy %.2f%%", 100 * a) }
        }
        print(line)
    }
}
