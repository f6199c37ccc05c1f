import ArgumentParser
import Foundation
import TandemCollectives
import TandemCore
import TandemData
import TandemModels
import TandemOptim
import TandemParallel

/// What a finished run tells the user (rank 0's view, plus every rank's step time).
struct Outcome: Sendable, Codable {
    var params = 0
    var stepsRun = 0
    var seconds = 0.0
    var loss: Float = .nan
    var stepMilliseconds: [Double] = []
    var perRankStepMilliseconds: [Double] = []
    var spans = StepSpans()
    var evaluation: Evaluation?
    struct Evaluation: Sendable, Codable { var loss: Double; var accuracy: Double? }
}

/// One `train` invocation: the distributed (DDP) and classic (DP) drivers.
struct Run: @unchecked Sendable {
    // Safe: only immutable settings and the Sendable-by-contract recipe are shared with ranks.
    let command: Train
    let recipe: TrainingData
    let batch: Int
    let steps: Int
    let schedule: LearningRateSchedule

    func progressLine(step: Int, loss: Float, samplesPerSecond: Double, secondsLeft: Double, slowest: (rank: Int, ms: Double)?) {
        guard !command.quiet else { return }
        var line = String(format: "step %d/%d  loss %.4f  %.0f samples/s", step, steps, loss, samplesPerSecond)
        // Under MPI this process sees only its own rank's step times, so no slowest rank is named.
        if let slowest, command.workers > 1, command.launch.resolved == .threads { line += String(format: "  %d workers, slowest rank %d at %.1f ms/step", command.workers, slowest.rank, slowest.ms) }
        else if command.workers > 1 { line += String(format: "  %d processes (mpi)", command.workers) }
        line += String(format: "  %.0fs left", secondsLeft)
        printError(line)
    }

    // MARK: DistributedDataParallel over threads

    func distributed() throws -> Outcome {
        let c = command
        let strategy = DistributedSampler.Strategy(rawValue: c.shard)!
        let compression = GradientCompression(rawValue: c.compress)!
        let board = ProgressBoard(workers: c.workers)
        let outcomes = try Launch.run(backend: c.launch.resolved, workers: c.workers, timeout: c.timeout, verifyCalls: c.debugCollectives) { rank, group in
            let model = recipe.makeModel()
            if let path = c.`init` { try model.loadWeights(from: path) }
            let worker = try Worker(model: model, group: group, optimizer: try c.makeOptimizer(),
                                    bucketBytes: bucketByteCount(c.bucketMB) ?? 25 << 20, compression: compression, shardOptimizer: c.shardsOptimizer)
            worker.clipNorm = c.clipNorm
            var drawn = 0
            if c.resume, let dir = c.checkpointDir {
                let record = try Checkpoint.resume(from: dir, model: model, optimizer: worker.optimizer, settings: c.checkpointSettings)
                try worker.loadOptimizerState()
                drawn = c.resharded(record, rank: rank)
            }
            // Every rank takes part (a sharded optimizer gathers its state); rank 0 writes.
            func checkpoint(drawn: Int) throws {
                guard let dir = c.checkpointDir else { return }
                try worker.gatherOptimizerState()
                defer { worker.releaseGatheredState() }
                if rank == 0 {
                    try Checkpoint(step: worker.optimizer.step, batchesDrawn: drawn, workers: c.workers, settings: c.checkpointSettings)
                        .write(model: model, optimizer: worker.optimizer, to: dir)
                }
            }
            let stream = try recipe.stream(rank: rank, worldSize: c.workers, strategy: strategy, batch: batch, drawn: drawn, prefetch: c.prefetch)
            let clock = MonotonicClock()
            let start = clock.now()
            var lastPrint = start, stepsRun = 0
            while worker.optimizer.step < steps {
                worker.optimizer.optimizer.learningRate = schedule.rate(base: c.lr, step: worker.optimizer.step, warmup: c.warmupSteps)
                let loss = try worker.step(microBatches: c.accumulate, nextBatch: stream.next)
                stepsRun += 1
                let step = worker.optimizer.step
                board.post(rank: rank, milliseconds: 1000 * worker.spans.steps.last!)
                if c.verifyEvery > 0 && step % c.verifyEvery == 0 { try worker.ddp.verifyReplicas() }
                if let every = c.checkpointEvery, step % every == 0 || step == steps { try checkpoint(drawn: stream.drawn) }
                let now = clock.now()
                if rank == 0 && (now - lastPrint >= 1 || step == steps) {
                    lastPrint = now
                    let rate = Double(batch * c.accumulate * c.workers * stepsRun) / (now - start)
                    progressLine(step: step, loss: loss, samplesPerSecond: rate,
                                 secondsLeft: Double(steps - step) * (now - start) / Double(stepsRun), slowest: board.slowest())
                }
            }
            let seconds = clock.now() - start
            try worker.ddp.verifyReplicas()
            var outcome = Outcome(params: model.parameterCount, stepsRun: stepsRun, seconds: seconds, loss: worker.spans.losses.last ?? .nan,
                                  stepMilliseconds: worker.spans.steps.map { 1000 * $0 }, spans: worker.spans)
            if rank == 0 { try requireFiniteLoss(worker.spans.losses.last) }
            if c.checkpointEvery == nil { try checkpoint(drawn: stream.drawn) }
            if rank == 0 {
                outcome.evaluation = evaluate(model)
                if let save = c.save { try model.saveWeights(to: save, metadata: ["model": c.model.rawValue, "steps": "\(steps)"]) }
            }
            return outcome
        }
        var outcome = outcomes[0]
        outcome.seconds = outcomes.map(\.seconds).max() ?? outcome.seconds
        outcome.perRankStepMilliseconds = outcomes.map { $0.stepMilliseconds.reduce(0, +) / Double(max($0.stepMilliseconds.count, 1)) }
        return outcome
    }

    func evaluate(_ model: any Model) -> Outcome.Evaluation? {
        let batches = recipe.evalBatches()
        guard !batches.isEmpty else { return nil }
        let (loss, accuracy) = Evaluation.run(model, batches)
        return .init(loss: loss, accuracy: accuracy)
    }

    // MARK: Classic DataParallel

    func dataParallel() throws -> Outcome {
        let c = command
        let dp = DataParallel(devices: c.workers, makeModel: recipe.makeModel)
        if let path = c.`init` { try dp.master.loadWeights(from: path) }
        let optimizer = OptimizerState(try c.makeOptimizer())
        var drawn = 0
        if c.resume, let dir = c.checkpointDir {
            drawn = c.resharded(try Checkpoint.resume(from: dir, model: dp.master, optimizer: optimizer, settings: c.checkpointSettings), rank: 0)
        }
        // One process reads the global batch (workers × batch) and scatters it.
        let stream = try recipe.stream(rank: 0, worldSize: 1, strategy: .block, batch: batch * c.workers, drawn: drawn, prefetch: c.prefetch)
        let clock = MonotonicClock()
        var spans = StepSpans()
        let start = clock.now()
        var lastPrint = start, stepsRun = 0
        while optimizer.step < steps {
            let t0 = clock.now()
            var loss: Float = 0
            for k in 0..<c.accumulate {
                let b = try stream.next()
                let t1 = clock.now()
                let before = k == 0 ? nil : dp.master.parameters.map { $0.gradient?.copy() }
                loss += dp.forwardBackward(b) / Float(c.accumulate)
                if let before {
                    for (p, g) in zip(dp.master.parameters, before) { if let g, let pg = p.gradient { Kernels.addInPlace(pg.pointer, g.pointer, count: g.count) } }
                }
                spans.data += t1 - t0
            }
            if c.accumulate > 1 { for p in dp.master.parameters { if let g = p.gradient { Kernels.scale(g.pointer, by: 1 / Float(c.accumulate), count: g.count) } } }
            let t2 = clock.now()
            if let clip = c.clipNorm { clipGradientNorm(dp.master.parameters, maxNorm: clip) }
            optimizer.optimizer.learningRate = schedule.rate(base: c.lr, step: optimizer.step, warmup: c.warmupSteps)
            optimizer.apply(to: dp.master.namedParameters)
            let t3 = clock.now()
            spans.backward += t2 - t0 - spans.data
            spans.optimizer += t3 - t2
            spans.steps.append(t3 - t0)
            spans.losses.append(loss)
            stepsRun += 1
            if let dir = c.checkpointDir, let every = c.checkpointEvery, optimizer.step % every == 0 || optimizer.step == steps {
                try Checkpoint(step: optimizer.step, batchesDrawn: stream.drawn, workers: c.workers, settings: c.checkpointSettings)
                    .write(model: dp.master, optimizer: optimizer, to: dir)
            }
            if t3 - lastPrint >= 1 || optimizer.step == steps {
                lastPrint = t3
                progressLine(step: optimizer.step, loss: loss, samplesPerSecond: Double(batch * c.workers * c.accumulate * stepsRun) / (t3 - start),
                             secondsLeft: Double(steps - optimizer.step) * (t3 - start) / Double(stepsRun), slowest: nil)
            }
        }
        try requireFiniteLoss(spans.losses.last)
        if let dir = c.checkpointDir, c.checkpointEvery == nil {
            try Checkpoint(step: optimizer.step, batchesDrawn: stream.drawn, workers: c.workers, settings: c.checkpointSettings)
                .write(model: dp.master, optimizer: optimizer, to: dir)
        }
        if let save = c.save { try dp.master.saveWeights(to: save, metadata: ["model": c.model.rawValue, "steps": "\(steps)"]) }
        return Outcome(params: dp.master.parameterCount, stepsRun: stepsRun, seconds: clock.now() - start, loss: spans.losses.last ?? .nan,
                       stepMilliseconds: spans.steps.map { 1000 * $0 }, perRankStepMilliseconds: [], spans: spans, evaluation: evaluate(dp.master))
    }
}

/// The latest step time of every rank, for the one-line progress summary.
final class ProgressBoard: @unchecked Sendable {
    // Safe: `latest` is guarded by `lock`.
    private let lock = NSLock()
    private var latest: [Double]
    init(workers: Int) { latest = Array(repeating: 0, count: workers) }
    func post(rank: Int, milliseconds: Double) { lock.lock(); latest[rank] = milliseconds; lock.unlock() }
    func slowest() -> (rank: Int, ms: Double)? {
        lock.lock(); defer { lock.unlock() }
        guard let i = latest.indices.max(by: { latest[$0] < latest[$1] }) else { return nil }
        return (i, latest[i])
    }
}

/// A diverged run fails before its final checkpoint and `--save`, so no good file is
/// overwritten with NaN weights.
func requireFiniteLoss(_ loss: Float?) throws {
    if let loss, !loss.isFinite {
        throw ValidationError("training diverged: the loss is \(loss), expected a finite loss; try a lower --lr or --clip-norm")
    }
}
