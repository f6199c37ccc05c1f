import TandemCore

// MARK: - Dataset

/// An in-memory table of samples: a feature array per sample and, optionally, what each
/// sample is labelled with.
///
/// Features are stored row-major, one row of `featuresPerSample` values per sample, so a
/// batch is a gather of whole rows. Every initialiser validates its input and throws a
/// `DataError` naming `source`; a `Dataset` that exists is consistent.
///
/// ```swift
/// let digits = try Dataset.load(path: "datasets/digits")     // 1797 samples of [8, 8], 10 classes
/// let (train, eval) = try digits.split(evalFraction: 0.2, seed: 0)
/// let batch = train.batch(indices: [0, 1, 2])               // inputs [3, 8, 8], labels [3]
/// ```
public struct Dataset: Sendable, Equatable, CustomStringConvertible {
    /// What the samples are labelled with.
    public enum Target: Sendable, Equatable {
        /// Unlabelled samples (for prediction).
        case none
        /// Class ids, `shape` of them per sample: `[]` for one class per sample, `[T]` for
        /// one per token of a sequence. Stored sample after sample.
        case classes([Int32], shape: [Int])
        /// Real-valued regression targets, `shape` of them per sample, stored sample after sample.
        case values([Float], shape: [Int])
    }

    /// How `load(path:targetKind:)` reads the label array or column.
    public enum TargetKind: String, Sendable, CaseIterable {
        /// Integer labels are classes and floating ones are regression values (a CSV column
        /// is classes when every value is a whole number ≥ 0).
        case automatic
        /// Class ids; floating labels must be whole numbers.
        case classes
        /// Regression values, even when stored as integers.
        case values
    }

    /// Every sample's features, row-major: sample `i` is `features[i * featuresPerSample ..< (i + 1) * featuresPerSample]`.
    public let features: [Float]
    /// The shape of one sample, `[8, 8]` for the digits images.
    public let sampleShape: [Int]
    /// The labels or regression targets.
    public let target: Target
    /// Where the samples came from (a path), used in error messages.
    public let source: String
    /// Number of samples.
    public let count: Int
    /// Number of features in one sample, the product of `sampleShape` (at least 1).
    public let featuresPerSample: Int
    /// Number of classes, one more than the largest label; 0 without class labels.
    public let numClasses: Int

    // MARK: - Creating

    /// A data set of `features` in rows of `sampleShape`, labelled by `target`.
    ///
    /// - Throws: `DataError` when `sampleShape` is empty of features, `features` is not a
    ///   whole number of samples, a value is not finite, the labels do not match the
    ///   sample count, or a label is negative.
    public init(features: [Float], sampleShape: [Int], target: Target = .none, source: String = "dataset") throws {
        func fail(_ message: String) -> DataError { DataError(source: source, message: message) }
        guard let perSample = Self.elementCount(sampleShape), perSample >= 1 else {
            throw fail("sample shape \(sampleShape) holds no features, expected positive extents")
        }
        guard features.count % perSample == 0 else {
            throw fail(
                "\(features.count) feature values are not a whole number of samples of shape \(sampleShape) (\(perSample) each)")
        }
        let count = features.count / perSample
        if let bad = features.firstIndex(where: { !$0.isFinite }) {
            throw fail(
                "feature \(bad % perSample) of sample \(bad / perSample) is \(features[bad]), expected finite values")
        }

        var numClasses = 0
        switch target {
        case .none:
            break
        case .classes(let labels, let shape):
            let perLabel = try Self.checkTargetCount(labels.count, shape: shape, samples: count, what: "label", fail)
            if let bad = labels.firstIndex(where: { $0 < 0 }) {
                throw fail("label \(labels[bad]) of sample \(bad / perLabel) is negative, expected class ids ≥ 0")
            }
            numClasses = labels.max().map { Int($0) + 1 } ?? 0
        case .values(let values, let shape):
            let perValue = try Self.checkTargetCount(values.count, shape: shape, samples: count, what: "target", fail)
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw fail("target \(bad % perValue) of sample \(bad / perValue) is \(values[bad]), expected finite values")
            }
        }

        self.features = features
        self.sampleShape = sampleShape
        self.target = target
        self.source = source
        self.count = count
        self.featuresPerSample = perSample
        self.numClasses = numClasses
    }

    /// A classification data set: one class id per sample.
    public init(features: [Float], sampleShape: [Int], labels: [Int32], source: String = "dataset") throws {
        try self.init(features: features, sampleShape: sampleShape, target: .classes(labels, shape: []), source: source)
    }

    /// A regression data set: `targetShape` real values per sample.
    public init(
        features: [Float], sampleShape: [Int], targets: [Float], targetShape: [Int], source: String = "dataset"
    ) throws {
        try self.init(
            features: features, sampleShape: sampleShape, target: .values(targets, shape: targetShape), source: source)
    }

    /// Validated memberwise copy for transformations that keep the data consistent.
    init(
        unchecked features: [Float], sampleShape: [Int], target: Target, source: String,
        featuresPerSample: Int, numClasses: Int
    ) {
        self.features = features
        self.sampleShape = sampleShape
        self.target = target
        self.source = source
        self.count = features.count / featuresPerSample
        self.featuresPerSample = featuresPerSample
        self.numClasses = numClasses
    }

    // MARK: - Reading

    /// The class ids, `labelsPerSample` per sample, or `nil` when the samples are not classes.
    public var labels: [Int32]? {
        if case .classes(let labels, _) = target { return labels }
        return nil
    }

    /// The regression targets, row-major, or `nil` when the samples have none.
    public var targets: [Float]? {
        if case .values(let values, _) = target { return values }
        return nil
    }

    /// The shape of one sample's labels or targets (`[]` for one per sample), `nil` when unlabelled.
    public var targetShape: [Int]? {
        switch target {
        case .none: nil
        case .classes(_, let shape), .values(_, let shape): shape
        }
    }

    /// Labels or target values per sample: the product of `targetShape`, 0 when unlabelled.
    var targetsPerSample: Int { targetShape.flatMap(Self.elementCount) ?? 0 }

    /// The samples at `indices`, in that order (repeats allowed), as a new data set.
    ///
    /// - Precondition: every index is in `0..<count`.
    public func subset(indices: [Int]) -> Dataset {
        let perTarget = targetsPerSample
        let gathered: Target
        switch target {
        case .none: gathered = .none
        case .classes(let labels, let shape): gathered = .classes(gather(labels, indices, perTarget), shape: shape)
        case .values(let values, let shape): gathered = .values(gather(values, indices, perTarget), shape: shape)
        }
        return Dataset(
            unchecked: gather(features, indices, featuresPerSample), sampleShape: sampleShape, target: gathered,
            source: source, featuresPerSample: featuresPerSample, numClasses: numClasses)
    }

    public var description: String {
        let what: String
        switch target {
        case .none: what = "unlabelled"
        case .classes(_, let shape): what = "\(numClasses) classes" + (shape.isEmpty ? "" : " per \(shape)")
        case .values(_, let shape): what = "targets of \(shape)"
        }
        return "Dataset(\(count) samples of \(sampleShape), \(what), from \(source))"
    }

    // MARK: - Helpers

    /// The product of `shape`, or `nil` for a negative extent or overflow.
    static func elementCount(_ shape: [Int]) -> Int? {
        var product = 1
        for extent in shape {
            guard extent >= 0 else { return nil }
            let (next, overflow) = product.multipliedReportingOverflow(by: extent)
            if overflow { return nil }
            product = next
        }
        return product
    }

    private static func checkTargetCount(
        _ total: Int, shape: [Int], samples: Int, what: String, _ fail: (String) -> DataError
    ) throws -> Int {
        guard let per = elementCount(shape), per >= 1 else {
            throw fail("\(what) shape \(shape) holds no values, expected positive extents")
        }
        guard total == samples * per else {
            throw fail("\(total) \(what)s for \(samples) samples, expected \(per) per sample (\(samples * per))")
        }
        return per
    }
}

/// Rows `indices` of `values`, `width` elements each, concatenated.
func gather<Element>(_ values: [Element], _ indices: [Int], _ width: Int) -> [Element] {
    let rows = values.count / Swift.max(width, 1)
    var out: [Element] = []
    out.reserveCapacity(indices.count * width)
    for index in indices {
        precondition(index >= 0 && index < rows, "sample index \(index) is outside 0..<\(rows)")
        out.append(contentsOf: values[(index * width)..<((index + 1) * width)])
    }
    return out
}
