import TandemCore
import TandemNN
import TandemOptim
import TandemModels
import TandemCollectives

// MARK: - One rank's training step

/// Where one rank's step time went, summed over steps (seconds).
public struct StepSpans: Sendable {
    public var data = 0.0, forward = 0.0, backward = 0.0, communication = 0.0, optimizer = 0.0
    public var steps: [Double] = []
    public var losses: [Float] = []

    public init() {}
}

/// A rank's replica, its `DistributedDataParallel` wrapper and optimizer: one step is K
/// micro-batches of forward and backward (the first K−1 without communication), then
/// wait for the averaged gradients, clip, and update.
public final class Worker {
    public let model: any Model
    public let ddp: DistributedDataParallel
    public let optimizer: OptimizerState
    public var clipNorm: Float?
    public var clock: any TimeSource = MonotonicClock()
    public var spans = StepSpans()
    let tape = Tape()

    public init(model: any Model, group: any ProcessGroup, optimizer: any Optimizer, bucketBytes: Int = 25 << 20,
                compression: GradientCompression = .none) throws {
        self.model = model
        ddp = try DistributedDataParallel(model, group: group, bucketBytes: bucketBytes, compression: compression)
        self.optimizer = OptimizerState(optimizer)
    }

    /// One optimizer step over `microBatches` drawn from `nextBatch`; returns the mean loss
    /// of this rank's micro-batches.
    @discardableResult
    public func step(microBatches: Int = 1, nextBatch: () throws -> Batch) throws -> Float {
        let start = clock.now()
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
        }
        let t4 = clock.now()
        try ddp.synchronize()
        let t5 = clock.now()
        if let clipNorm { clipGradientNorm(model.parameters, maxNorm: clipNorm) }
        optimizer.apply(to: model.namedParameters)
        let t6 = clock.now()
        spans.communication += t5 - t4
        spans.optimizer += t6 - t5
        spans.steps.append(t6 - start)
        spans.losses.append(lossSum)
        return lossSum
    }
}
