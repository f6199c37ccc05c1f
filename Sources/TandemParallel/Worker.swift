import TandemCore
import TandemNN
import TandemOptim
import TandemModels
import TandemCollectives

// MARK: - One rank's training step

/// One timed interval of a rank's step, on the monotonic clock (seconds).
public struct Span: Sendable, Equatable, Codable {
    public var name: String
    public var start: Double
    public var duration: Double
    public init(name: String, start: Double, duration: Double) { self.name = name; self.start = start; self.duration = duration }
}

/// Where one rank's step time went, summed over steps (seconds), and, when asked for,
/// every interval itself (for traces).
public struct StepSpans: Sendable, Codable {
    public var data = 0.0, forward = 0.0, backward = 0.0, communication = 0.0, optimizer = 0.0
    public var steps: [Double] = []
    public var losses: [Float] = []
    /// Every interval, kept only while `recording` is true.
    public var events: [Span] = []
    public var recording = false

    public init(recording: Bool = false) { self.recording = recording }

    mutating func add(_ name: String, _ start: Double, _ end: Double) {
        if recording { events.append(Span(name: name, start: start, duration: end - start)) }
    }
}

/// A rank's replica, its `DistributedDataParallel` wrapper and optimizer: one step is K
/// micro-batches of forward and backward (the first K−1 without communication), then
/// wait for the averaged gradients, clip, and update — or, with a sharded optimizer
/// (``ShardedOptimizer``), reduce-scatter, clip and update this rank's shard, all-gather.
public final class Worker {
    public let model: any Model
    public let ddp: DistributedDataParallel
    /// The update rule and step count (and, unsharded, the state).
    public let optimizer: OptimizerState
    /// The sharded step, when the worker was made with `shardOptimizer`.
    public let sharded: ShardedOptimizer?
    public var clipNorm: Float?
    /// Ranks to meet (a barrier) where gradients are synchronised, without exchanging
    /// them: replicas that train alone but in lock-step, as the host's contention probe.
    public var lockstep: (any ProcessGroup)?
    public var clock: any TimeSource = MonotonicClock()
    public var spans = StepSpans()
    let tape = Tape()

    public init(model: any Model, group: any ProcessGroup, optimizer: any Optimizer, bucketBytes: Int = 25 << 20,
                compression: GradientCompression = .none, shardOptimizer: Bool = false) throws {
        self.model = model
        ddp = try DistributedDataParallel(model, group: group, bucketBytes: bucketBytes, compression: compression)
        self.optimizer = OptimizerState(optimizer)
        sharded = shardOptimizer ? try ShardedOptimizer(state: self.optimizer, ddp: ddp) : nil
    }

    /// Bytes of optimizer state this rank holds.
    public var optimizerStateBytes: Int {
        sharded?.stateBytes ?? optimizer.slots.values.reduce(0) { $0 + $1.reduce(0) { $0 + 4 * $1.count } }
    }

    // MARK: Checkpoints

    /// Collective when sharded (every rank calls it at the same step): makes `optimizer.slots`
    /// hold the full state, for `Checkpoint.write`. Nothing to do unsharded.
    public func gatherOptimizerState() throws { try sharded?.gatherState() }

    /// Frees what ``gatherOptimizerState()`` gathered (sharded only).
    public func releaseGatheredState() { sharded?.releaseGatheredState() }

    /// After `Checkpoint.resume` filled `optimizer.slots` with a full state: takes this rank's
    /// slices of it (sharded only).
    public func loadOptimizerState() throws { try sharded?.loadState() }

    /// One optimizer step over `microBatches` drawn from `nextBatch`; returns the mean loss
    /// of this rank's micro-batches.
    @discardableResult
    public func step(microBatches: Int = 1, nextBatch: () throws -> Batch) throws -> Float {
        let start = clock.now()
        sharded?.clipNorm = clipNorm
        model.zeroGradients()
        var lossSum: Float = 0
        for k in 0..<microBatches {
            let t0 = clock.now()
            let batch = try nextBatch()
            let t1 = clock.now()
            var loss = tape.record { model.loss(batch) }
            if microBatches > 1 { loss = tape.record { loss * (1 / Float(microBatches)) } }
            let t2 = clock.now()
            if k < microBatches - 1 { ddp.withoutSync { tape.backward(loss) } } else { tape.backward(loss) }
            let t3 = clock.now()
            lossSum += loss.item
            spans.data += t1 - t0; spans.forward += t2 - t1; spans.backward += t3 - t2
            spans.add("data", t0, t1); spans.add("forward", t1, t2); spans.add("backward", t2, t3)
        }
        let t4 = clock.now()
        try ddp.synchronize()
        try lockstep?.barrier().wait()
        let t5 = clock.now()
        if let sharded {
            try sharded.step()
        } else {
            if let clipNorm { clipGradientNorm(model.parameters, maxNorm: clipNorm) }
            optimizer.apply(to: model.namedParameters)
        }
        let t6 = clock.now()
        spans.communication += t5 - t4
        spans.optimizer += t6 - t5
        spans.add("wait for gradients", t4, t5); spans.add("optimizer", t5, t6)
        spans.steps.append(t6 - start)
        spans.losses.append(lossSum)
        return lossSum
    }
}
