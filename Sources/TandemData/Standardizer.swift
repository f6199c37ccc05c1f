// MARK: - Standardisation

/// Per-feature standardisation: subtracts each feature's mean and divides by its standard
/// deviation, both measured on the training set, so every feature has mean 0 and
/// standard deviation 1 there.
///
/// Fit on the training split only and apply the same statistics to evaluation data
/// (fitting on everything would leak the evaluation set into training). A feature that is
/// constant in training (the blank border pixels of the digits) keeps a divisor of 1, so
/// it becomes 0 rather than infinite.
///
/// ```swift
/// let (train, eval) = try Dataset.load(path: "datasets/digits").split(evalFraction: 0.2, seed: 0)
/// let standardizer = try Standardizer(fitting: train)
/// let trainInputs = try standardizer.apply(to: train)
/// let evalInputs = try standardizer.apply(to: eval)
/// ```
public struct Standardizer: Sendable, Equatable, Codable {
    /// Each feature's training mean, one per position of a sample (`featuresPerSample` of them).
    public let mean: [Float]
    /// Each feature's divisor: its training standard deviation, or 1 where that is below `epsilon`.
    public let scale: [Float]

    public init(mean: [Float], scale: [Float]) {
        precondition(mean.count == scale.count, "a standardizer needs one scale per mean, got \(scale.count) for \(mean.count)")
        self.mean = mean
        self.scale = scale
    }

    /// Measures every feature of `dataset` (population statistics, accumulated in `Double`).
    ///
    /// - Parameter epsilon: standard deviations at or below this count as constant features.
    /// - Throws: `DataError` for an empty data set.
    public init(fitting dataset: Dataset, epsilon: Double = 1e-8) throws {
        guard dataset.count > 0 else {
            throw DataError(source: dataset.source, message: "no samples to standardise from, expected at least 1")
        }
        let width = dataset.featuresPerSample
        var sum = [Double](repeating: 0, count: width)
        for (index, value) in dataset.features.enumerated() { sum[index % width] += Double(value) }
        let mean = sum.map { $0 / Double(dataset.count) }
        var squares = [Double](repeating: 0, count: width)
        for (index, value) in dataset.features.enumerated() {
            let deviation = Double(value) - mean[index % width]
            squares[index % width] += deviation * deviation
        }
        let deviation = squares.map { ($0 / Double(dataset.count)).squareRoot() }
        self.init(
            mean: mean.map { Float($0) },
            scale: deviation.map { $0 > epsilon ? Float($0) : 1 })
    }

    /// Reads a saved standardizer, checking that it has one scale per mean.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let mean = try container.decode([Float].self, forKey: .mean)
        let scale = try container.decode([Float].self, forKey: .scale)
        guard mean.count == scale.count, scale.allSatisfy({ $0.isFinite && $0 > 0 }), mean.allSatisfy(\.isFinite) else {
            throw DecodingError.dataCorruptedError(
                forKey: .scale, in: container,
                debugDescription: "\(scale.count) scales for \(mean.count) means, expected one finite positive scale per finite mean")
        }
        self.init(mean: mean, scale: scale)
    }

    /// Number of features per sample it was fitted on.
    public var featureCount: Int { mean.count }

    /// `dataset` with every feature standardised; labels and targets unchanged.
    ///
    /// - Throws: `DataError` when the samples have a different number of features than
    ///   the data set this was fitted on.
    public func apply(to dataset: Dataset) throws -> Dataset {
        guard dataset.featuresPerSample == featureCount else {
            throw DataError(
                source: dataset.source,
                message: "samples have \(dataset.featuresPerSample) features, expected \(featureCount) as in the data the standardizer was fitted on")
        }
        var features = dataset.features
        apply(to: &features)
        if let bad = features.firstIndex(where: { !$0.isFinite }) {
            throw DataError(
                source: dataset.source,
                message: "feature \(bad % featureCount) of sample \(bad / featureCount) overflows when standardised, expected values within Float range")
        }
        return Dataset(
            unchecked: features, sampleShape: dataset.sampleShape, target: dataset.target, source: dataset.source,
            featuresPerSample: dataset.featuresPerSample, numClasses: dataset.numClasses)
    }

    /// Standardises `features` in place: rows of `featureCount` values.
    ///
    /// - Precondition: `features.count` is a multiple of `featureCount`.
    public func apply(to features: inout [Float]) {
        let width = featureCount
        precondition(width > 0 && features.count % width == 0, "\(features.count) values are not rows of \(width) features")
        features.withUnsafeMutableBufferPointer { values in
            for start in stride(from: 0, to: values.count, by: width) {
                for j in 0..<width { values[start + j] = (values[start + j] - mean[j]) / scale[j] }
            }
        }
    }
}
