import TandemCore

// MARK: - Batches

/// One batch of samples, ready for a model: the inputs as a tensor `[n] + sampleShape` and
/// the class ids or regression targets of the same samples.
///
/// `TandemModels.Batch` is built from it by the caller (this module sits below the models):
///
/// ```swift
/// let batch = Batch(inputs: data.inputs,
///                   targets: data.labels.map { .classes($0) } ?? .values(data.targets!))
/// ```
public struct DataBatch {
    /// The samples' features, shape `[n] + sampleShape`.
    public var inputs: Tensor
    /// Class ids, `n × labelsPerSample` of them in sample order; `nil` unless the data set has classes.
    public var labels: [Int32]?
    /// Regression targets, shape `[n] + targetShape`; `nil` unless the data set has values.
    public var targets: Tensor?
    /// The data set indices of the samples, in batch order.
    public var indices: [Int]

    public init(inputs: Tensor, labels: [Int32]?, targets: Tensor?, indices: [Int]) {
        self.inputs = inputs
        self.labels = labels
        self.targets = targets
        self.indices = indices
    }

    /// Number of samples.
    public var size: Int { indices.count }
}

// MARK: - Prepared batches

/// A batch as plain buffers, so that it can cross from the loader's thread to the
/// consumer's (`Tensor` is not `Sendable`; its `Storage` is, and is handed over whole).
struct PreparedBatch: Sendable {
    var indices: [Int]
    var inputs: Storage
    var inputShape: [Int]
    var labels: [Int32]?
    var targets: Storage?
    var targetShape: [Int]

    /// The tensors, on the consumer's thread.
    var batch: DataBatch {
        DataBatch(
            inputs: Tensor(shape: inputShape, storage: inputs),
            labels: labels,
            targets: targets.map { Tensor(shape: targetShape, storage: $0) },
            indices: indices)
    }
}

extension Dataset {
    /// Gathers the samples at `indices` (in that order, repeats allowed) into one batch.
    ///
    /// - Precondition: every index is in `0..<count`.
    /// - Complexity: O(indices.count × featuresPerSample).
    public func batch(indices: [Int]) -> DataBatch {
        prepare(indices: indices).batch
    }

    /// The buffers of `batch(indices:)`; safe to call from any thread.
    func prepare(indices: [Int]) -> PreparedBatch {
        let n = indices.count
        let inputs = Storage(count: n * featuresPerSample)
        copyRows(features, width: featuresPerSample, indices: indices, into: inputs.pointer)
        var labels: [Int32]?
        var targets: Storage?
        var targetShape: [Int] = []
        switch target {
        case .none:
            break
        case .classes(let all, _):
            labels = gather(all, indices, targetsPerSample)
        case .values(let all, let shape):
            let storage = Storage(count: n * targetsPerSample)
            copyRows(all, width: targetsPerSample, indices: indices, into: storage.pointer)
            targets = storage
            targetShape = [n] + shape
        }
        return PreparedBatch(
            indices: indices, inputs: inputs, inputShape: [n] + sampleShape,
            labels: labels, targets: targets, targetShape: targetShape)
    }

    private func copyRows(_ values: [Float], width: Int, indices: [Int], into destination: UnsafeMutablePointer<Float>) {
        let rows = count
        values.withUnsafeBufferPointer { source in
            for (row, index) in indices.enumerated() {
                precondition(index >= 0 && index < rows, "sample index \(index) is outside 0..<\(rows)")
                (destination + row * width).update(from: source.baseAddress! + index * width, count: width)
            }
        }
    }
}
