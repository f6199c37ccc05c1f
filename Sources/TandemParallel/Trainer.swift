import TandemCore
import TandemNN
import TandemOptim
import TandemModels

// MARK: - Single-worker training loop

/// Settings of one training run.
public struct TrainingOptions: Sendable {
    public var steps: Int
    public var learningRate: Float
    public var warmupSteps = 0
    public var schedule = LearningRateSchedule.constant
    public var clipNorm: Float?
    /// Print a progress line every this many seconds (0: never).
    public var progressInterval = 1.0
    public init(steps: Int, learningRate: Float) { self.steps = steps; self.learningRate = learningRate }
}

/// What a finished run measured.
public struct TrainingReport: Sendable {
    public var stepMilliseconds: [Double] = []
    public var losses: [Float] = []
    public var seconds = 0.0
    public var dataSeconds = 0.0, forwardSeconds = 0.0, backwardSeconds = 0.0, optimizerSeconds = 0.0
}

/// Forward, backward, (clip,) update — on the calling thread.
public final class Trainer {
    public let model: any Model
    public let optimizer: OptimizerState
    public var options: TrainingOptions
    public var clock: any TimeSource = MonotonicClock()
    /// Called with (step, loss, samples/s, seconds left) about every `progressInterval`.
    public var progress: ((Int, Float, Double, Double) -> Void)?
    let tape = Tape()

    public init(model: any Model, optimizer: any Optimizer, options: TrainingOptions) {
        self.model = model
        self.optimizer = OptimizerState(optimizer)
        self.options = options
    }

    /// Runs `options.steps` steps from `optimizer.step`, drawing batches from `nextBatch`.
    public func train(nextBatch: () throws -> Batch) rethrows -> TrainingReport {
        var report = TrainingReport()
        let named = model.namedParameters
        let parameters = named.map(\.parameter)
        let start = clock.now()
        var lastPrint = start, samples = 0
        while optimizer.step < options.steps {
            let t0 = clock.now()
            let batch = try nextBatch()
            let t1 = clock.now()
            let loss = tape.record { model.loss(batch) }
            let t2 = clock.now()
            model.zeroGradients()
            tape.backward(loss)
            let t3 = clock.now()
            if let clip = options.clipNorm { clipGradientNorm(parameters, maxNorm: clip) }
            optimizer.optimizer.learningRate = options.schedule.rate(base: options.learningRate, step: optimizer.step, warmup: options.warmupSteps)
            optimizer.apply(to: named)
            let t4 = clock.now()
            report.dataSeconds += t1 - t0; report.forwardSeconds += t2 - t1
            report.backwardSeconds += t3 - t2; report.optimizerSeconds += t4 - t3
            report.stepMilliseconds.append(1000 * (t4 - t0))
            report.losses.append(loss.item)
            samples += batch.size
            if let progress, options.progressInterval > 0, t4 - lastPrint >= options.progressInterval || optimizer.step == options.steps {
                lastPrint = t4
                let rate = Double(samples) / max(t4 - start, 1e-9)
                let left = Double(options.steps - optimizer.step) * (t4 - start) / Double(max(report.losses.count, 1))
                progress(optimizer.step, loss.item, rate, left)
            }
        }
        report.seconds = clock.now() - start
        return report
    }

    /// Mean loss and accuracy (classifiers) over `batches`, without recording.
    public func evaluate(_ batches: [Batch]) -> (loss: Double, accuracy: Double?) { Evaluation.run(model, batches) }
}

// MARK: - Evaluation

public enum Evaluation {
    /// Mean loss and accuracy (classifiers) of `model` over `batches`, without recording.
    public static func run(_ model: any Model, _ batches: [Batch]) -> (loss: Double, accuracy: Double?) {
        var lossSum = 0.0, rows = 0, correct = 0, classified = 0
        for batch in batches {
            let output = model.forward(batch.inputs)
            switch batch.targets {
            case .classes(let labels):
                let logits = output.reshaped([-1, output.shape.last!])
                lossSum += Double(Tensor.crossEntropy(logits: logits, labels: labels).item) * Double(labels.count)
                rows += labels.count
                let c = logits.shape[1]
                for (r, label) in labels.enumerated() {
                    let row = logits.pointer + r * c
                    var best = 0
                    for j in 1..<c where row[j] > row[best] { best = j }
                    if best == Int(label) { correct += 1 }
                }
                classified += labels.count
            case .values(let values):
                lossSum += Double(Tensor.meanSquaredError(output, values).item) * Double(batch.size)
                rows += batch.size
            }
        }
        return (lossSum / Double(max(rows, 1)), classified > 0 ? Double(correct) / Double(classified) : nil)
    }
}
