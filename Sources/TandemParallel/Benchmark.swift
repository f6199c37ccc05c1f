import TandemCore
import TandemNN
import TandemOptim
import TandemModels

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

    public init(workload: ReferenceModel, batch: Int, steps: Int, warmup: Int) {
        self.workload = workload
        self.batch = batch
        self.steps = steps
        self.warmup = warmup
    }

    /// One worker on the calling thread.
    public func run() throws -> RunResult {
        let model = workload.make(seed: 0)
        let optimizer = OptimizerState(try SGD(learningRate: 0.01, momentum: 0.9))
        var generator = SeededGenerator(seed: 0)
        let batches = (0..<4).map { _ in workload.syntheticBatch(size: batch, generator: &generator) }
        let named = model.namedParameters
        let tape = Tape()
        var phases = (forward: 0.0, backward: 0.0, optimizer: 0.0)
        var times: [Double] = []
        var loss: Float = 0
        Storage.resetPeak()
        for i in 0..<(warmup + steps) {
            let t0 = clock.now()
            let l = tape.record { model.loss(batches[i % 4]) }
            let t1 = clock.now()
            model.zeroGradients()
            tape.backward(l)
            let t2 = clock.now()
            optimizer.apply(to: named)
            let t3 = clock.now()
            loss = l.item
            if i >= warmup {
                times.append(1000 * (t3 - t0))
                phases.forward += 1000 * (t1 - t0); phases.backward += 1000 * (t2 - t1); phases.optimizer += 1000 * (t3 - t2)
            }
        }
        let seconds = times.reduce(0, +) / 1000
        let n = Double(max(steps, 1))
        let paramBytes = model.parameterCount * 4
        let flops = 3 * model.forwardFLOPsPerSample * Double(batch)
        return RunResult(
            model: workload.rawValue, params: model.parameterCount, backend: "none", device_name: cpuName(),
            workers: 1, batch_per_worker: batch, global_batch: batch, steps: steps, warmup: warmup,
            seconds: seconds, samples_per_s: Double(batch * steps) / seconds, step_ms: .init(times),
            breakdown_ms: .init(data: 0, forward: phases.forward / n, backward: phases.backward / n, comm_exposed: 0, optimizer: phases.optimizer / n),
            memory: .init(peak_bytes: Storage.peakBytes, params: paramBytes, grads: paramBytes,
                          optimizer: paramBytes, activations: max(0, Storage.peakBytes - 3 * paramBytes)),
            loss: Double(loss), flops_per_step: flops)
    }
}
