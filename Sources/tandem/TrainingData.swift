import ArgumentParser
import Foundation
import TandemCore
import TandemData
import TandemModels

/// The model and the batches of a `train` run: synthetic, or from a file split into
/// training and held-out parts (features standardised on the training part).
final class TrainingData {
    let model: any Model
    let batchSize: Int
    let batchesPerEpoch: Int
    let defaultSteps: Int
    let evalBatches: [Batch]
    let nextBatch: () throws -> Batch

    init(data: String, model name: ReferenceModel, hidden: [Int]?, batch: Int?, evalFraction: Double, seed: UInt64) throws {
        batchSize = batch ?? name.cpuBatch
        if data == "synthetic" {
            var probe = SeededGenerator(seed: 0)
            let perSample = name.syntheticBatch(size: 1, generator: &probe).inputs.count
            try requireMemory(parameters: name == .mlp ? mlpParameters([784] + (hidden ?? []) + [10]) : 0,
                              batchFloats: Double(batchSize) * Double(perSample), "--batch \(batchSize)" + (name == .mlp && hidden != nil ? " with --hidden" : ""))
            var network: any Model = name.make(seed: seed)
            if name == .mlp, let hidden {
                var g = SeededGenerator(seed: seed)
                network = MLP(dimensions: [784] + hidden + [10], generator: &g)
            }
            model = network
            var generator = SeededGenerator(seed: seed &+ 1)
            let size = batchSize
            nextBatch = { name.syntheticBatch(size: size, generator: &generator) }
            let held = Int((Double(batchSize) * 4 * evalFraction).rounded(.up))
            evalBatches = held > 0 ? [name.syntheticBatch(size: held, generator: &generator)] : []
            batchesPerEpoch = 1
            defaultSteps = 100
            return
        }
        var dataset = try Dataset.load(path: data)
        var held: Dataset?
        if evalFraction > 0 { (dataset, held) = try dataset.split(evalFraction: evalFraction, seed: seed) }
        let standardizer = try Standardizer(fitting: dataset)
        dataset = try standardizer.apply(to: dataset)
        held = try held.map { try standardizer.apply(to: $0) }

        var g = SeededGenerator(seed: seed)
        let shape = dataset.sampleShape
        if dataset.numClasses > 0 && (name == .mlp || name == .cnn) {
            guard dataset.targetShape?.reduce(1, *) == 1 else {
                throw ValidationError("\(data): \(name.rawValue) needs one class id per sample, found labels shaped \(dataset.targetShape ?? []) per sample")
            }
            guard dataset.numClasses <= 100_000 else {
                throw ValidationError("\(data): the largest class id is \(dataset.numClasses - 1), expected class ids 0..<classes with fewer than 100000 classes")
            }
        }
        switch name {
        case .mlp:
            guard dataset.numClasses > 0 else { throw ValidationError("\(data): mlp needs class labels (integer y), found real-valued targets") }
            try requireMemory(parameters: mlpParameters([dataset.featuresPerSample] + (hidden ?? [1024, 1024]) + [dataset.numClasses]),
                              batchFloats: 0, "--hidden")
            model = MLP(dimensions: [dataset.featuresPerSample] + (hidden ?? [1024, 1024]) + [dataset.numClasses], generator: &g)
        case .cnn:
            guard dataset.numClasses > 0, shape.count == 2 || shape.count == 3 else {
                throw ValidationError("\(data): cnn needs class labels and samples shaped [H, W] or [C, H, W], found \(shape)")
            }
            let (c, h, w) = shape.count == 2 ? (1, shape[0], shape[1]) : (shape[0], shape[1], shape[2])
            guard h >= 4 && w >= 4 else { throw ValidationError("\(data): cnn needs images of at least 4×4, found \(h)×\(w)") }
            model = CNN(channels: c, classes: dataset.numClasses, height: h, width: w, generator: &g)
        case .lstm:
            guard shape.count == 2, let targetShape = dataset.targetShape, dataset.numClasses == 0 else {
                throw ValidationError("\(data): lstm needs sequences shaped [T, features] and real-valued targets, found \(shape)")
            }
            model = LSTMRegressor(inputSize: shape[1], hiddenSize: 256, layers: 2, outputSize: targetShape.reduce(1, *), steps: shape[0], generator: &g)
        case .mlpWide, .gpt:
            throw ValidationError("--data \(data): \(name.rawValue) trains on synthetic data only; use mlp, cnn or lstm with a data file")
        }
        let imageShape: [Int]? = name == .cnn && shape.count == 2 ? [1] + shape : nil
        func convert(_ b: DataBatch) -> Batch {
            var inputs = b.inputs
            if let imageShape { inputs = inputs.reshaped([b.size] + imageShape) }
            if let labels = b.labels { return Batch(inputs: inputs, targets: .classes(labels)) }
            return Batch(inputs: inputs, targets: .values(b.targets!.reshaped([b.size, -1])))
        }
        let loader = try DataLoader(dataset: dataset, batchSize: batchSize, shuffle: true, seed: seed, dropLast: dataset.count >= batchSize)
        batchesPerEpoch = max(loader.batchesPerEpoch, 1)
        defaultSteps = 10 * batchesPerEpoch
        evalBatches = held.map { h in
            stride(from: 0, to: h.count, by: 256).map { convert(h.batch(indices: Array($0..<min($0 + 256, h.count)))) }
        } ?? []
        var epoch = 0
        var current = loader.epoch(0)
        nextBatch = {
            while true {
                if let b = current.next() { return convert(b) }
                epoch += 1
                current = loader.epoch(epoch)
            }
        }
    }
}

/// Parameters of an MLP with these layer widths, counted in `Double` so that no width overflows.
func mlpParameters(_ widths: [Int]) -> Double {
    zip(widths, widths.dropFirst()).reduce(0) { $0 + (Double($1.0) + 1) * Double($1.1) }
}

/// Refuses sizes whose float32 weights (with gradients and two optimizer moments) and input
/// batch could never fit in this machine's memory, which would otherwise trap in the allocator.
func requireMemory(parameters: Double, batchFloats: Double, _ what: String) throws {
    let bytes = 4 * (4 * parameters + batchFloats)
    let memory = Double(ProcessInfo.processInfo.physicalMemory)
    guard bytes <= memory else {
        throw ValidationError(String(format: "%@: the model and batch need at least %.3g GB, more than this machine's %.3g GB of memory",
                                     what, bytes / 1e9, memory / 1e9))
    }
}
