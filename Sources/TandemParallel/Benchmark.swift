import TandemCore
import TandemNN
import TandemOptim
import TandemModels
import TandemCollectives

// MARK: - Training-step benchmark

/// Times the training step (forward, backward, update) of a reference workload on
/// synthetic data, as `bench/torch_bench.py` does: four batches made up front, SGD
/// (learning rate 0.01, momentum 0.9), `warmup` untimed steps, then `steps` timed ones.
public struct Benchmark {
    public var workload: ReferenceModel
    public var batch: Int
    public var steps: Int
    public var warmup: Int
    public var clock: any TimeSource = MonotonicClock()
    /// Threads of this process, or this process as one rank of an MPI job (`workers` is then MPI's size).
    public var backend: Backend = .threads

    public init(workload: ReferenceModel, batch: Int, steps: Int, warmup: Int) {
        self.workload = workload
        self.batch = batch
        self.steps = steps
        self.warmup = warmup
    }

    /// `workers` ranks as threads of this process, each with its own replica and
    /// synthetic batches (seeded by rank), gradients averaged by DDP over the threads
    /// backend. One worker takes the same path with nothing to average (DDP over one rank
    /// has no buckets and no hooks).
    public func run(workers: Int = 1, bucketBytes: Int = 25 << 20, compression: GradientCompression = .none,
                    shardOptimizer: Bool = false) throws -> RunResult {
        try measure(workers: workers, bucketBytes: bucketBytes, compression: compression, shardOptimizer: shardOptimizer).result
    }

    /// A run's result with every rank's spans and collectives, for traces.
    public struct Measurement: Sendable, Codable {
        public var result: RunResult
        public var spans: [[Span]]
        public var collectives: [[CollectiveRecord]]
        /// Each rank's clock against rank 0's (see `ClockAlignment`); add the offset to a
        /// rank's times to put them on rank 0's clock.
        public var clocks: [ClockAlignment] = []

        public init(result: RunResult, spans: [[Span]] = [], collectives: [[CollectiveRecord]] = [], clocks: [ClockAlignment] = []) {
            self.result = result; self.spans = spans; self.collectives = collectives; self.clocks = clocks
        }
    }

    /// As `run(workers:)`, keeping every timed interval of every rank (`recordEvents`).
    ///
    /// With `independent`, each rank trains its replica alone (a one-rank group: no
    /// gradient averaging, no communication) while the others do the same, meeting them at
    /// a barrier where gradients would be averaged: the host's contention probe. The ranks
    /// stay in phase as in data-parallel training, so the probe sees what lock-step costs
    /// without communication — forward passes and optimizer updates competing for memory
    /// bandwidth at the same moments, and every step waiting for the slowest replica. Its
    /// result's backend is ``independentBackend``.
    ///
    /// With `shardOptimizer`, each rank updates its 1/N of the weights (``ShardedOptimizer``).
    public func measure(workers: Int, bucketBytes: Int = 25 << 20, compression: GradientCompression = .none,
                        recordEvents: Bool = false, independent: Bool = false, shardOptimizer: Bool = false) throws -> Measurement {
        let (workload, batch, steps, warmup, clock) = (self.workload, self.batch, self.steps, self.warmup, self.clock)
        Storage.resetPeak()
        let perRank = try Launch.run(backend: backend, workers: workers) { rank, group in
            let model = workload.make(seed: 0)
            let own: any ProcessGroup = independent ? ThreadWorld(size: 1).group(rank: 0) : group
            let worker = try Worker(model: model, group: own, optimizer: try SGD(learningRate: 0.01, momentum: 0.9),
                                    bucketBytes: bucketBytes, compression: compression, shardOptimizer: shardOptimizer)
            if independent { worker.lockstep = group }
            var generator = SeededGenerator(seed: UInt64(rank))
            let batches = (0..<4).map { _ in workload.syntheticBatch(size: batch, generator: &generator) }
            var i = 0
            for _ in 0..<warmup { try worker.step { defer { i += 1 }; return batches[i % 4] } }
            let alignment = try ClockAlignment.estimate(group: group, now: clock.now)
            try group.barrier().wait()
            worker.spans = StepSpans(recording: recordEvents)
            let busyBefore = group.busySeconds
            let logBefore = group.collectiveLog.count
            let start = clock.now()
            for _ in 0..<steps { try worker.step { defer { i += 1 }; return batches[i % 4] } }
            let wall = clock.now() - start
            return RankTiming(spans: worker.spans, clock: alignment, wall: wall, busy: group.busySeconds - busyBefore,
                              collectives: recordEvents ? Array(group.collectiveLog.dropFirst(logBefore)) : [],
                              collectiveCount: max(0, group.collectiveLog.count - logBefore), params: model.parameterCount,
                              flops: 3 * model.forwardFLOPsPerSample * Double(batch), bytes: worker.ddp.bytesPerStep,
                              optimizerBytes: worker.optimizerStateBytes)
        }
        let wall = perRank.map(\.wall).max() ?? 0
        let workers = perRank.count
        // Ranks sharing this process's memory counter: all of them on threads, one under MPI.
        let processRanks = backend == .mpi ? 1 : workers
        let n = Double(max(steps, 1))
        let mean = { (f: (StepSpans) -> Double) in 1000 * perRank.map { f($0.spans) }.reduce(0, +) / Double(workers) / n }
        let stepTimes = perRank[0].spans.steps.map { 1000 * $0 }
        let commSeconds = perRank.map(\.spans.communication).reduce(0, +) / Double(workers)
        let bytes = perRank[0].bytes
        let paramBytes = perRank[0].params * 4
        var result = RunResult(
            model: workload.rawValue, params: perRank[0].params, backend: independent ? Self.independentBackend : workers > 1 || backend == .mpi ? backend.rawValue : "none",
            device_name: cpuName(),
            workers: workers, batch_per_worker: batch, global_batch: batch * workers, steps: steps, warmup: warmup,
            seconds: wall, samples_per_s: Double(batch * workers * steps) / wall, step_ms: .init(stepTimes),
            breakdown_ms: .init(data: mean { $0.data }, forward: mean { $0.forward }, backward: mean { $0.backward },
                                comm_exposed: mean { $0.communication }, optimizer: mean { $0.optimizer }),
            memory: .init(peak_bytes: Storage.peakBytes / processRanks, params: paramBytes, grads: paramBytes, optimizer: perRank[0].optimizerBytes,
                          activations: max(0, Storage.peakBytes / processRanks - 2 * paramBytes - perRank[0].optimizerBytes)),
            loss: Double(perRank[0].spans.losses.last ?? .nan), flops_per_step: perRank[0].flops * Double(workers))
        result.per_rank_step_ms = perRank.map { 1000 * $0.spans.steps.reduce(0, +) / n }
        result.per_rank_steps_ms = perRank.map { $0.spans.steps.map { 1000 * $0 } }
        result.per_rank_compute_ms = perRank.map { 1000 * ($0.spans.forward + $0.spans.backward) / n }
        let cost = InstrumentationCost.measure(clock: clock)
        let collectivesPerStep = Double(perRank[0].collectiveCount) / n
        let perStep = cost.perStep(microBatches: 1, recording: recordEvents, collectives: Int(collectivesPerStep.rounded(.up)))
        result.instrumentation_overhead = result.step_ms.median > 0 ? perStep / (result.step_ms.median / 1000) : nil
        if workers > 1 && !independent {
            let busy = perRank.map(\.busy).reduce(0, +) / Double(workers)
            let overlap = busy > 0 ? min(1, max(0, 1 - commSeconds / busy)) : 0
            let algbw = busy > 0 ? Double(bytes) * n / busy / 1e9 : 0
            result.comm = .init(bytes_per_step: bytes, algbw_gbps: algbw, busbw_gbps: algbw * 2 * Double(workers - 1) / Double(workers), overlap: overlap)
        }
        if workers > 1 && !independent { result.optimizer_sharded = shardOptimizer }
        result.clock_uncertainty_us = 1e6 * (perRank.map(\.clock.uncertainty).max() ?? 0)
        return Measurement(result: result, spans: perRank.map(\.spans.events), collectives: perRank.map(\.collectives),
                           clocks: perRank.map(\.clock))
    }

    /// The backend name of a run of independent replicas (the contention probe).
    public static let independentBackend = "independent"

    struct RankTiming: Sendable, Codable {
        var spans: StepSpans
        var clock: ClockAlignment
        var wall: Double
        var busy: Double
        var collectives: [CollectiveRecord]
        var collectiveCount: Int
        var params: Int
        var flops: Double
        var bytes: Int
        var optimizerBytes: Int
    }
}
