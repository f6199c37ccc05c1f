import ArgumentParser
import Foundation
import TandemCore
import TandemData
import TandemModels

/// What a `train` run learns from: how to build the model, and each rank's stream of
/// batches — synthetic, or a data file split into training and held-out parts (features
/// standardised on the training part) and sharded over the ranks.
///
/// `@unchecked Sendable`: immutable after `init`; ranks only read it to make their own
/// models and streams.
final class TrainingData: @unchecked Sendable {
    let name: ReferenceModel
    let dataset: Dataset?
    let held: Dataset?
    let hidden: [Int]?
    let seed: UInt64
    let evalFraction: Double
    let source: String

    init(data: String, model name: ReferenceModel, hidden: [Int]?, evalFraction: Double, seed: UInt64) throws {
        self.name = name
        self.hidden = hidden
        self.seed = seed
        self.evalFraction = evalFraction
        source = data
        guard data != "synthetic" else { dataset = nil; held = nil; return }
        var train = try Dataset.load(path: data)
        var held: Dataset?
        if evalFraction > 0 { (train, held) = try train.split(evalFraction: evalFraction, seed: seed) }
        let standardizer = try Standardizer(fitting: train)
        dataset = try standardizer.apply(to: train)
        self.held = try held.map { try standardizer.apply(to: $0) }
        try check(name, train)
    }

    private func check(_ name: ReferenceModel, _ d: Dataset) throws {
        let shape = d.sampleShape
        if d.numClasses > 0 && (name == .mlp || name == .cnn) {
            guard d.targetShape?.reduce(1, *) == 1 else {
                throw ValidationError("\(source): \(name.rawValue) needs one class id per sample, found labels shaped \(d.targetShape ?? []) per sample")
            }
            guard d.numClasses <= 100_000 else {
                throw ValidationError("\(source): the largest class id is \(d.numClasses - 1), expected class ids 0..<classes with fewer than 100000 classes")
            }
        }
        switch name {
        case .mlp where d.numClasses == 0:
            throw ValidationError("\(source): mlp needs class labels (integer y), found real-valued targets")
        case .cnn where d.numClasses == 0 || !(shape.count == 2 || shape.count == 3) || shape.suffix(2).contains { $0 < 4 }:
            throw ValidationError("\(source): cnn needs class labels and images shaped [H, W] or [C, H, W] of at least 4×4, found \(shape)")
        case .lstm where shape.count != 2 || d.numClasses > 0:
            throw ValidationError("\(source): lstm needs sequences shaped [T, features] and real-valued targets, found \(shape)")
        case .mlpWide, .gpt:
            throw ValidationError("--data \(source): \(name.rawValue) trains on synthetic data only; use mlp, cnn or lstm with a data file")
        default: break
        }
    }

    /// A fresh model, the same on every call.
    func makeModel() -> any Model {
        var g = SeededGenerator(seed: seed)
        guard let d = dataset else {
            if name == .mlp, let hidden { return MLP(dimensions: [784] + hidden + [10], generator: &g) }
            return name.make(seed: seed)
        }
        let shape = d.sampleShape
        switch name {
        case .cnn:
            let (c, h, w) = shape.count == 2 ? (1, shape[0], shape[1]) : (shape[0], shape[1], shape[2])
            return CNN(channels: c, classes: d.numClasses, height: h, width: w, generator: &g)
        case .lstm:
            return LSTMRegressor(inputSize: shape[1], hiddenSize: 256, layers: 2, outputSize: d.targetShape!.reduce(1, *),
                                 steps: shape[0], generator: &g)
        default:
            return MLP(dimensions: [d.featuresPerSample] + (hidden ?? [1024, 1024]) + [d.numClasses], generator: &g)
        }
    }

    /// Optimizer steps in one epoch of `worldSize` ranks each drawing `batch` samples `accumulate` times a step.
    func stepsPerEpoch(batch: Int, worldSize: Int, accumulate: Int) -> Int {
        guard let d = dataset else { return 1 }
        return max(1, d.count / max(batch * worldSize * accumulate, 1))
    }

    /// The held-out set in batches (empty without `--eval-fraction`).
    func evalBatches() -> [Batch] {
        if let held {
            return stride(from: 0, to: held.count, by: 256).map { convert(held.batch(indices: Array($0..<min($0 + 256, held.count)))) }
        }
        guard evalFraction > 0 else { return [] }
        var g = SeededGenerator(seed: seed &+ 0x5EED)
        return [name.syntheticBatch(size: 256, generator: &g)]
    }

    func convert(_ b: DataBatch) -> Batch {
        var inputs = b.inputs
        if name == .cnn && dataset?.sampleShape.count == 2 { inputs = inputs.reshaped([b.size, 1] + dataset!.sampleShape) }
        if let labels = b.labels { return Batch(inputs: inputs, targets: .classes(labels)) }
        return Batch(inputs: inputs, targets: .values(b.targets!.reshaped([b.size, -1])))
    }

    /// Rank `rank`'s stream of batches, positioned after `drawn` batches.
    func stream(rank: Int, worldSize: Int, strategy: DistributedSampler.Strategy, batch: Int, drawn: Int = 0, prefetch: Int = 2) throws -> BatchStream {
        try BatchStream(data: self, rank: rank, worldSize: worldSize, strategy: strategy, batch: batch, drawn: drawn, prefetch: prefetch)
    }
}

/// One rank's batches. Synthetic batch k of rank r comes from its own seed, so a stream can
/// start anywhere; file data comes from a prefetching `DataLoader` over the rank's shard.
final class BatchStream {
    let data: TrainingData
    let rank: Int, batch: Int
    let loader: DataLoader?
    private(set) var drawn: Int

    init(data: TrainingData, rank: Int, worldSize: Int, strategy: DistributedSampler.Strategy, batch: Int, drawn: Int, prefetch: Int) throws {
        self.data = data
        self.rank = rank
        self.batch = batch
        self.drawn = drawn
        if let d = data.dataset {
            guard d.count >= worldSize * batch else {
                throw ValidationError("\(data.source): \(d.count) training samples cannot fill a batch of \(batch) on each of \(worldSize) workers")
            }
            let sampler = try DistributedSampler(count: d.count, rank: rank, worldSize: worldSize, strategy: strategy,
                                                 shuffle: true, seed: data.seed, dropLast: false)
            let loader = try DataLoader(dataset: d, sampler: sampler, batchSize: batch, dropLast: true, prefetch: prefetch)
            try loader.seek(to: .init(epoch: drawn / loader.batchesPerEpoch, batch: drawn % loader.batchesPerEpoch))
            self.loader = loader
        } else {
            loader = nil
        }
    }

    func next() throws -> Batch {
        defer { drawn += 1 }
        if let loader {
            guard let b = loader.next() else { throw ValidationError("\(data.source): an epoch yielded no batch") }
            return data.convert(b)
        }
        var g = SeededGenerator(seed: data.seed &+ 0x9E37_79B9 &* UInt64(rank + 1) &+ UInt64(drawn) &* 0x2545_F491_4F6C_DD1D)
        return data.name.syntheticBatch(size: batch, generator: &g)
    }

    /// Seconds spent waiting for the loader.
    var waitSeconds: Double { loader?.waitSeconds ?? 0 }
}

extension TrainingData {
    /// Refuses a model and batch whose float32 weights (with gradients and two optimizer
    /// moments) and inputs could never fit in this machine's memory, on `replicas` workers,
    /// rather than trapping in the allocator.
    func requireMemory(batch: Int, replicas: Int) throws {
        var parameters = 0.0
        if name == .mlp {
            let widths = [dataset?.featuresPerSample ?? 784] + (hidden ?? [1024, 1024]) + [max(dataset?.numClasses ?? 10, 1)]
            parameters = zip(widths, widths.dropFirst()).reduce(0) { $0 + (Double($1.0) + 1) * Double($1.1) }
        }
        var probe = SeededGenerator(seed: 0)
        let perSample = dataset?.featuresPerSample ?? name.syntheticBatch(size: 1, generator: &probe).inputs.count
        let bytes = 4 * Double(replicas) * (4 * parameters + Double(batch) * Double(perSample))
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        guard bytes <= memory else {
            let flags = name == .mlp && hidden != nil ? "--batch \(batch) with --hidden" : "--batch \(batch)"
            throw ValidationError(String(format: "%@: the model and batch need at least %.3g GB, more than this machine's %.3g GB of memory",
                                         flags, bytes / 1e9, memory / 1e9))
        }
    }
}
