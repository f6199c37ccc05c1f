import ArgumentParser
import TandemCore
import TandemModels
import TandemParallel
import TandemScale
import TandemFormats
import TandemCUDA

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the training step of a reference workload on synthetic data (as bench/torch_bench.py).")

    @Option(help: "Workload: \(ReferenceModel.allValueStrings.joined(separator: ", ")).") var model: ReferenceModel = .mlp
    @Option(help: "Workers (threads of this process).") var workers = 1
    @Option(help: "Batch per worker (default: the CPU batch of WORKLOADS.md).") var batch: Int?
    @Option(help: "Timed steps.") var steps = 20
    @Option(help: "Untimed warm-up steps.") var warmup = 3
    @Option(name: .customLong("bucket-mb"), help: "Gradient bucket size in MB (several workers or NCCL ranks; default 25, with --device cuda TANDEM_NCCL_BUCKET_MB or 25).") var bucketMB: Double?
    @Option(help: "Gradient payload on the wire: none, bf16 or fp16 (workers > 1).") var compress = "none"
    @Flag(name: .customLong("shard-optimizer"), inversion: .prefixedNo,
          help: "Each worker updates only its 1/N of the weights and keeps 1/N of the optimizer state (ZeRO stage 1): reduce-scatter, update, all-gather. Default: on with several worker threads and --compress none.")
    var shardOptimizer: Bool?
    @Flag(name: .customLong("lockstep-replicas"),
          help: "The machine's ceiling for synchronous data parallelism: each worker trains its own replica, no gradient is exchanged, and the workers only meet at a barrier every step (the result's backend is \"independent\").")
    var lockstepReplicas = false
    @Option(help: "Also write every rank's spans and collectives here as a Chrome trace (opens in Perfetto).") var trace: String?
    @Flag(help: "Print one JSON result line.") var json = false
    @Option(help: "cpu, or cuda (one GPU).") var device: ComputeDevice = .cpu
    @Option(help: "On the GPU: fp32 (true fp32), tf32, bf16 or fp16 (dynamic loss scaling).") var precision: GPUPrecision = .fp32
    @Flag(help: "On the GPU: capture the whole step in one CUDA graph after the warm-up and replay it.") var graph = false
    @Flag(help: "On the GPU: time every kernel and GEMM of a few eager steps and print them, largest first.") var profile = false
    @Flag(help: "With --profile: also print the last eager step's launches in queue order, with start, duration and stream.") var timeline = false
    @OptionGroup var launch: BackendOptions
    @OptionGroup var measurementOptions: MeasurementOptions

    func validate() throws {
        try requirePositive(workers, "--workers")
        try requirePositive(steps, "--steps")
        if let batch { try requirePositive(batch, "--batch") }
        try checkGradientOptions(bucketMB: bucketMB, compress: compress, onGPU: device == .cuda, nccl: launch.isNCCL)
        guard warmup >= 0 else { throw ValidationError("--warmup must be ≥ 0, got \(warmup)") }
        if timeline && !profile { throw ValidationError("--timeline prints the launches of --profile's eager steps: add --profile") }
        if shardOptimizer == true && device == .cuda { throw ValidationError("--shard-optimizer shards the CPU workers' update; the GPU step has its own") }
        if lockstepReplicas && (device == .cuda || trace != nil || shardOptimizer == true || compress != "none") {
            throw ValidationError("--lockstep-replicas runs worker threads on the CPU that exchange nothing: leave out --device cuda, --trace, --shard-optimizer and --compress")
        }
    }

    mutating func run() throws {
        if launch.isNCCL && device != .cuda { throw ValidationError("--backend nccl runs between GPUs: add --device cuda") }
        workers = try launch.prepare(workers: workers)
        if device == .cuda { try runOnGPU(); return }
        if let warning = BLAS.warning { printError(warning) }
        try TrainingData(data: "synthetic", model: model, hidden: nil, evalFraction: 0, seed: 0)
            .requireMemory(batch: batch ?? model.cpuBatch, replicas: workers)
        var benchmark = Benchmark(workload: model, batch: batch ?? model.cpuBatch, steps: steps, warmup: warmup)
        benchmark.backend = launch.resolved
        let compression = GradientCompression(rawValue: compress)!
        let bucketBytes = bucketByteCount(bucketMB) ?? 25 << 20
        // Sharded by default where it was measured faster: several worker threads, uncompressed gradients.
        let sharded = shardOptimizer ?? (workers > 1 && launch.resolved == .threads && compression == .none)
        if measurementOptions.measurementOut != nil {
            return try measurementOptions.write(benchmark.measure(workers: workers, bucketBytes: bucketBytes, compression: compression,
                                                                  recordEvents: measurementOptions.recordEvents, shardOptimizer: sharded))
        }
        let result: RunResult
        if lockstepReplicas {
            guard launch.resolved == .threads else { throw ValidationError("--lockstep-replicas runs worker threads of this process: use --backend threads") }
            result = try benchmark.measure(workers: workers, independent: true).result
        } else if let trace {
            let measurement = try benchmark.measure(workers: workers, bucketBytes: bucketBytes, compression: compression, recordEvents: true,
                                                    shardOptimizer: sharded)
            if Launch.isPrimary { try FileIO.writeAtomically(Array(ChromeTrace.render(Analysis.events(measurement)).utf8), to: trace) }
            result = measurement.result
        } else {
            result = try benchmark.run(workers: workers, bucketBytes: bucketBytes, compression: compression, shardOptimizer: sharded)
        }
        guard Launch.isPrimary else { return }
        if json { try printJSON(result); return }
        print("\(result.model): \(String(format: "%.1f", result.samples_per_s)) samples/s, step median \(String(format: "%.2f", result.step_ms.median)) ms, loss \(result.loss)")
    }
}
