import ArgumentParser
import Foundation
import TandemCore
import TandemData
import TandemModels
import TandemOptim
import TandemParallel
import TandemCUDA

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
    @Option(help: "Workers (threads of this process, one replica each).") var workers = 1
    @Option(help: "ddp (all-reduce, every worker updates) or dp (classic DataParallel: gather on the first worker, update there, broadcast).") var mode = "ddp"
    @Option(help: "How the data is split over workers: block, cyclic or hash.") var shard = "block"
    @Option(name: .customLong("bucket-mb"), help: "Gradient bucket size in MB (default 25; with --device cuda, TANDEM_NCCL_BUCKET_MB or 25).") var bucketMB: Double?
    @Option(help: "Micro-batches accumulated per optimizer step.") var accumulate = 1
    @Option(help: "Batches each worker's loader assembles ahead of use, on a background thread.") var prefetch = 2
    @Option(help: "Gradient payload on the wire: none, bf16 or fp16.") var compress = "none"
    @Flag(name: .customLong("shard-optimizer"), inversion: .prefixedNo,
          help: "Each worker updates only its 1/N of the weights and keeps 1/N of the optimizer state (ZeRO stage 1): reduce-scatter, update, all-gather. Checkpoints hold the full state either way. Default: on for --mode ddp with several worker threads and --compress none.")
    var shardOptimizer: Bool?
    @Option(help: "Seconds any worker waits for the others before the run fails.") var timeout = 300.0
    @Option(name: .customLong("checkpoint-dir"), help: "Write checkpoints here (and resume from here).") var checkpointDir: String?
    @Option(name: .customLong("checkpoint-every"), help: "Steps between checkpoints (default: only at the end).") var checkpointEvery: Int?
    @Flag(help: "Continue from the checkpoint in --checkpoint-dir; --steps still counts from the start.") var resume = false
    @Option(name: .customLong("verify-every"), help: "Steps between replica checksums (0: only at the end).") var verifyEvery = 0
    @Flag(name: .customLong("debug-collectives"), help: "Check every collective call matches across workers.") var debugCollectives = false
    @Flag(help: "Print one JSON result line (WORKLOADS.md schema plus eval_loss, accuracy).") var json = false
    @Flag(help: "No progress line.") var quiet = false
    @Option(help: "cpu, or cuda (one GPU).") var device: ComputeDevice = .cpu
    @Option(help: "On the GPU: fp32 (true fp32), tf32, bf16 or fp16 (dynamic loss scaling).") var precision: GPUPrecision = .fp32
    @Flag(help: "On the GPU: after three eager steps, capture the whole step in one CUDA graph and replay it.") var graph = false
    @OptionGroup var launch: BackendOptions

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
        try requirePositive(workers, "--workers")
        try requirePositive(accumulate, "--accumulate")
        guard prefetch >= 0 else { throw ValidationError("--prefetch must be ≥ 0, got \(prefetch)") }
        guard ["ddp", "dp"].contains(mode) else { throw ValidationError("--mode must be ddp or dp, got '\(mode)'") }
        guard DistributedSampler.Strategy(rawValue: shard) != nil else { throw ValidationError("--shard must be block, cyclic or hash, got '\(shard)'") }
        try checkGradientOptions(bucketMB: bucketMB, compress: compress, onGPU: device == .cuda, nccl: launch.isNCCL)
        guard timeout.isFinite && timeout > 0 && timeout <= 1e7 else { throw ValidationError("--timeout must be a number of seconds in (0, 10000000], got \(timeout)") }
        guard accumulate <= 1 << 20 else { throw ValidationError("--accumulate must be at most 1048576, got \(accumulate)") }
        if let epochs, epochs > 1 << 20 { throw ValidationError("--epochs must be at most 1048576, got \(epochs)") }
        if let checkpointEvery { try requirePositive(checkpointEvery, "--checkpoint-every") }
        if (resume || checkpointEvery != nil) && checkpointDir == nil { throw ValidationError("--resume and --checkpoint-every need --checkpoint-dir") }
        guard verifyEvery >= 0 else { throw ValidationError("--verify-every must be ≥ 0, got \(verifyEvery)") }
        if mode == "dp" && launch.resolved == .mpi { throw ValidationError("--mode dp runs in one process; use --backend threads") }
        if mode == "dp" && (compress != "none" || shard != "block") { throw ValidationError("--mode dp has no --compress or --shard: it scatters each batch in one process") }
        if shardOptimizer == true && mode == "dp" { throw ValidationError("--shard-optimizer needs --mode ddp: dp updates on the first worker only") }
        if shardOptimizer == true && device == .cuda { throw ValidationError("--shard-optimizer shards the CPU workers' update; the GPU step has its own") }
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

    /// Whether the workers shard the optimizer step: `--[no-]shard-optimizer`, else on for
    /// DDP over several worker threads with uncompressed gradients (measured faster there,
    /// docs/performance.md, "The sharded optimizer step"), off otherwise.
    var shardsOptimizer: Bool {
        shardOptimizer ?? (workers > 1 && mode == "ddp" && launch.resolved == .threads && compress == "none" && device == .cpu)
    }

    /// Settings a checkpoint must agree with to be resumed. The number of workers may differ:
    /// the data is re-sharded, continuing from the same number of samples seen.
    var checkpointSettings: [String: String] {
        ["model": model.rawValue, "data": data, "batch": "\(batch ?? model.cpuBatch)", "mode": mode,
         "optimizer": optimizer, "accumulate": "\(accumulate)", "seed": "\(seed)", "hidden": hidden ?? ""]
    }

    mutating func run() throws {
        if launch.isNCCL && device != .cuda { throw ValidationError("--backend nccl runs between GPUs: add --device cuda") }
        workers = try launch.prepare(workers: workers)
        if device == .cuda { try runOnGPU(); return }
        if let warning = BLAS.warning { printError(warning) }
        let recipe = try TrainingData(data: data, model: model, hidden: try parsedHidden(), evalFraction: evalFraction, seed: seed)
        let batchSize = batch ?? model.cpuBatch
        try recipe.requireMemory(batch: batchSize, replicas: workers)
        let totalSteps = steps ?? epochs.map { $0 * recipe.stepsPerEpoch(batch: batchSize, worldSize: workers, accumulate: accumulate) }
            ?? (recipe.dataset == nil ? 100 : 10 * recipe.stepsPerEpoch(batch: batchSize, worldSize: workers, accumulate: accumulate))
        let schedule = try parsedSchedule(steps: totalSteps)
        let run = Run(command: self, recipe: recipe, batch: batchSize, steps: totalSteps, schedule: schedule)
        let outcome = mode == "dp" ? try run.dataParallel() : try run.distributed()
        if Launch.isPrimary { try report(outcome, batchSize: batchSize, steps: totalSteps) }
    }

    func report(_ o: Outcome, batchSize: Int, steps totalSteps: Int) throws {
        let global = batchSize * workers * accumulate
        let timed = Double(max(o.stepsRun, 1))
        var result = RunResult(
            model: model.rawValue, params: o.params, backend: workers > 1 ? (mode == "dp" ? "threads-dp" : launch.resolved.rawValue) : "none",
            device_name: cpuName(), workers: workers, batch_per_worker: batchSize * accumulate, global_batch: global,
            steps: o.stepsRun, warmup: 0, seconds: o.seconds, samples_per_s: Double(global * o.stepsRun) / max(o.seconds, 1e-9),
            step_ms: .init(o.stepMilliseconds), loss: Double(o.loss))
        result.breakdown_ms = .init(data: 1000 * o.spans.data / timed, forward: 1000 * o.spans.forward / timed,
                                    backward: 1000 * o.spans.backward / timed, comm_exposed: 1000 * o.spans.communication / timed,
                                    optimizer: 1000 * o.spans.optimizer / timed)
        result.per_rank_step_ms = o.perRankStepMilliseconds
        result.eval_loss = o.evaluation?.loss
        result.accuracy = o.evaluation?.accuracy
        if json { try printJSON(result); return }
        var line = String(format: "trained %@ for %d steps on %d worker%@ in %.1fs: loss %.4f", model.rawValue, totalSteps, workers,
                          workers == 1 ? "" : "s", o.seconds, o.loss)
        if let e = o.evaluation {
            line += String(format: ", held-out loss %.4f", e.loss)
            if let a = e.accuracy { line += String(format: ", accuracy %.2f%%", 100 * a) }
        }
        print(line)
    }
}
