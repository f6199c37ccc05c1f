import TandemCore
import TandemNN

// MARK: - Batches and objectives

/// What a model is trained to predict.
public enum Targets {
    /// Class ids, one per output row (cross-entropy).
    case classes([Int32])
    /// Real-valued targets shaped like the output (mean squared error).
    case values(Tensor)

    public var count: Int {
        switch self {
        case .classes(let c): c.count
        case .values(let v): v.count
        }
    }
}

/// One batch: inputs (token ids are carried as exact floats) and targets.
public struct Batch {
    public var inputs: Tensor
    public var targets: Targets
    public init(inputs: Tensor, targets: Targets) { self.inputs = inputs; self.targets = targets }
    public var size: Int { inputs.shape.first ?? 0 }
}

/// A trainable network with its loss.
public protocol Model: Module {
    /// Outputs for `inputs`: logits `[rows, classes]` or predictions.
    func forward(_ inputs: Tensor) -> Tensor
    /// Forward FLOPs for one sample (multiply–adds count two); backward is taken as twice this.
    var forwardFLOPsPerSample: Double { get }
}

extension Model {
    /// The mean loss of `batch`: cross-entropy for classes, mean squared error for values.
    public func loss(_ batch: Batch) -> Tensor {
        let output = forward(batch.inputs)
        switch batch.targets {
        case .classes(let labels): return .crossEntropy(logits: output.reshaped([-1, output.shape.last!]), labels: labels)
        case .values(let values): return .meanSquaredError(output, values)
        }
    }
}

// MARK: - Token ids
extension Tensor {
    /// The elements as Int32 (for token ids carried as floats).
    public var int32s: [Int32] { buffer.map { Int32($0) } }
}
