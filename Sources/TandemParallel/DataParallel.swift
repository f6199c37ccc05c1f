import Foundation
import TandemCore
import TandemNN
import TandemOptim
import TandemModels

// MARK: - The classic single-process DataParallel

/// PyTorch's `nn.DataParallel` form: one process, a master model on the first device and a
/// replica on each other one. Each step copies the master's weights to the replicas,
/// scatters the batch, runs forward and backward on every device at once, gathers the
/// gradients onto the master (weighted by chunk size, so they equal the whole batch's),
/// and updates the master alone.
///
/// Kept because users know it and because it shows what the all-reduce form fixes: the
/// gather and the update are serial on one device, and the weights travel every step.
public final class DataParallel {
    public let master: any Model
    public let replicas: [any Model]
    public var devices: Int { replicas.count + 1 }
    let tapes: [Tape]

    /// - Parameter makeModel: builds one copy of the model (called once per device).
    public init(devices: Int, makeModel: () -> any Model) {
        precondition(devices >= 1, "DataParallel needs at least one device")
        master = makeModel()
        replicas = (1..<devices).map { _ in makeModel() }
        tapes = (0..<devices).map { _ in Tape() }
    }

    /// Forward and backward of `batch` split over the devices; afterwards the master's
    /// parameters hold the whole batch's mean gradient. Returns the whole batch's mean loss.
    public func forwardBackward(_ batch: Batch) -> Float {
        let models = [master] + replicas
        for replica in replicas {
            for (m, r) in zip(master.parameters, replica.parameters) { r.value.pointer.update(from: m.value.pointer, count: m.count) }
        }
        let chunks = DataParallel.scatter(batch, into: devices)
        let losses = LossBox(count: devices)
        let work: (Int) -> Void = { d in
            guard d < chunks.count else { return }
            let model = models[d], tape = self.tapes[d]
            let loss = tape.record { model.loss(chunks[d].batch) }
            model.zeroGradients()
            tape.backward(loss)
            losses.set(d, loss.item)
        }
        UncheckedSendable(work).run(devices)
        // Gather: master gradient = Σ (n_d / n) · gradient_d.
        let total = Float(batch.size)
        for p in master.parameters { if let g = p.gradient { Kernels.scale(g.pointer, by: Float(chunks[0].batch.size) / total, count: g.count) } }
        for (d, replica) in replicas.enumerated() where d + 1 < chunks.count {
            let weight = Float(chunks[d + 1].batch.size) / total
            for (m, r) in zip(master.parameters, replica.parameters) {
                guard let g = r.gradient else { continue }
                if m.gradient == nil { m.gradient = Tensor(zeros: m.shape) }
                Kernels.axpy(weight, g.pointer, m.gradient!.pointer, count: g.count)
            }
        }
        return zip(chunks, losses.values).reduce(0) { $0 + $1.1 * Float($1.0.batch.size) / total }
    }

    struct Chunk: @unchecked Sendable {
        // Safe: each chunk is read by exactly one device thread.
        let batch: Batch
    }

    /// Splits a batch along its first dimension into at most `parts` nearly equal chunks.
    static func scatter(_ batch: Batch, into parts: Int) -> [Chunk] {
        let n = batch.size
        let used = min(parts, max(n, 1))
        return (0..<used).map { d in
            let lo = d * n / used, hi = (d + 1) * n / used
            let inputs = batch.inputs.slice(axis: 0, lo..<hi)
            switch batch.targets {
            case .classes(let labels):
                let perSample = labels.count / max(n, 1)
                return Chunk(batch: Batch(inputs: inputs, targets: .classes(Array(labels[(lo * perSample)..<(hi * perSample)]))))
            case .values(let values):
                return Chunk(batch: Batch(inputs: inputs, targets: .values(values.slice(axis: 0, lo..<hi))))
            }
        }
    }

    final class LossBox: @unchecked Sendable {
        // Safe: each device writes only its own index, and reads happen after all threads joined.
        var values: [Float]
        init(count: Int) { values = Array(repeating: 0, count: count) }
        func set(_ i: Int, _ v: Float) { values[i] = v }
    }
}

/// Runs a closure over 0..<n on as many threads as there are devices and waits for all.
struct UncheckedSendable: @unchecked Sendable {
    // Safe: the closure touches per-index state only (one model and tape per index).
    let body: (Int) -> Void
    init(_ body: @escaping (Int) -> Void) { self.body = body }
    func run(_ n: Int) {
        if n == 1 { body(0); return }
        let group = DispatchGroup()
        for i in 1..<n {
            group.enter()
            let thread = Thread { self.body(i); group.leave() }
            thread.stackSize = 16 << 20
            thread.start()
        }
        body(0)
        group.wait()
    }
}
