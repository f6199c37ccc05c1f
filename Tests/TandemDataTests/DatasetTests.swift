import Foundation
import TandemCore
import TandemData
import Testing

// MARK: - Creating and gathering

@Suite("Dataset")
struct DatasetTests {
    @Test("a batch gathers whole rows into [n] + sampleShape, in the order asked")
    func batchGathers() throws {
        let data = try numberedDataset(count: 5)
        #expect(data.count == 5 && data.featuresPerSample == 6 && data.numClasses == 3)
        let batch = data.batch(indices: [3, 0, 3])
        #expect(batch.inputs.shape == [3, 2, 3])
        #expect(batch.inputs.scalars == [300, 301, 302, 303, 304, 305, 0, 1, 2, 3, 4, 5, 300, 301, 302, 303, 304, 305])
        #expect(batch.labels == [0, 0, 0])
        #expect(batch.targets == nil)
        #expect(batch.indices == [3, 0, 3] && batch.size == 3)
        let empty = data.batch(indices: [])
        #expect(empty.inputs.shape == [0, 2, 3] && empty.labels == [])
    }

    @Test("regression targets and per-token labels are gathered with their samples")
    func batchTargets() throws {
        let values = try Dataset(
            features: [1, 2, 3, 4, 5, 6], sampleShape: [2], targets: [10, 11, 20, 21, 30, 31], targetShape: [2])
        let batch = values.batch(indices: [2, 1])
        #expect(batch.inputs.shape == [2, 2] && batch.inputs.scalars == [5, 6, 3, 4])
        #expect(batch.targets?.shape == [2, 2] && batch.targets?.scalars == [30, 31, 20, 21])
        #expect(batch.labels == nil && values.numClasses == 0 && values.targetShape == [2])

        let tokens = try Dataset(
            features: [0, 1, 2, 3, 4, 5], sampleShape: [3], target: .classes([1, 2, 3, 4, 5, 6], shape: [3]))
        let tokenBatch = tokens.batch(indices: [1])
        #expect(tokenBatch.labels == [4, 5, 6] && tokens.numClasses == 7)

        let unlabelled = try Dataset(features: [1, 2], sampleShape: [1])
        #expect(unlabelled.batch(indices: [1]).labels == nil && unlabelled.batch(indices: [1]).targets == nil)
    }

    @Test("subset keeps features and labels together")
    func subset() throws {
        let data = try numberedDataset(count: 6)
        let part = data.subset(indices: [5, 1])
        #expect(sampleIDs(part) == [5, 1] && part.labels == [2, 1] && part.numClasses == 3)
        #expect(part.batch(indices: [0]).inputs.scalars == data.batch(indices: [5]).inputs.scalars)
    }

    @Test("inconsistent in-memory data is a thrown error")
    func invalidInit() {
        expectDataError("not a whole number of samples") { _ = try Dataset(features: [1, 2, 3], sampleShape: [2]) }
        expectDataError("holds no features") { _ = try Dataset(features: [], sampleShape: [0]) }
        expectDataError("feature 1 of sample 1", "finite") {
            _ = try Dataset(features: [1, 2, 3, .nan], sampleShape: [2], labels: [0, 1])
        }
        expectDataError("3 labels for 2 samples") { _ = try Dataset(features: [1, 2], sampleShape: [1], labels: [0, 1, 2]) }
        expectDataError("label -2 of sample 1", "negative") {
            _ = try Dataset(features: [1, 2], sampleShape: [1], labels: [0, -2])
        }
        expectDataError("target 0 of sample 0", "finite") {
            _ = try Dataset(features: [1], sampleShape: [1], targets: [.infinity], targetShape: [])
        }
    }
}

// MARK: - Splitting

/// One labelled split of the sweep.
struct SplitCase: CustomTestStringConvertible, Sendable {
    var count: Int
    var fraction: Double
    var testDescription: String { "count=\(count) evalFraction=\(fraction)" }

    static let all: [SplitCase] = [2, 3, 10, 100, 1797].flatMap { count in
        [0, 0.001, 0.1, 0.2, 0.5, 0.9].map { SplitCase(count: count, fraction: $0) }
    }
    var expectedEval: Int { fraction > 0 ? max(1, Int((fraction * Double(count)).rounded())) : 0 }
}

@Suite("Dataset.split")
struct SplitTests {
    @Test("train and eval partition the samples, deterministically", arguments: SplitCase.all)
    func partition(_ c: SplitCase) throws {
        let data = try numberedDataset(count: c.count)
        guard c.expectedEval < c.count else {
            expectDataError("no training samples") { _ = try data.split(evalFraction: c.fraction, seed: 1) }
            return
        }
        let (train, eval) = try data.split(evalFraction: c.fraction, seed: 1)
        #expect(eval.count == c.expectedEval && train.count == c.count - c.expectedEval)
        let trainIDs = sampleIDs(train), evalIDs = sampleIDs(eval)
        #expect(Set(trainIDs).isDisjoint(with: evalIDs), "a sample is in both parts")
        #expect((trainIDs + evalIDs).sorted() == Array(0..<c.count), "the parts do not cover the samples")
        #expect(trainIDs == trainIDs.sorted() && evalIDs == evalIDs.sorted(), "a part is not in original order")
        #expect(train.labels == trainIDs.map { Int32($0 % 3) }, "labels did not follow their samples")

        let again = try data.split(evalFraction: c.fraction, seed: 1)
        #expect(again.train == train && again.eval == eval, "the same seed gave another split")
        if c.count >= 100 && c.fraction >= 0.1 {
            #expect(try data.split(evalFraction: c.fraction, seed: 2).eval != eval, "another seed gave the same split")
        }
    }

    @Test("fractions outside [0, 1) and an empty data set are errors")
    func badFractions() throws {
        let data = try numberedDataset(count: 10)
        for bad in [1, 1.5, -0.1, .nan, .infinity] {
            expectDataError("evaluation fraction", "[0, 1)") { _ = try data.split(evalFraction: bad, seed: 0) }
        }
        expectDataError("no training samples") { _ = try numberedDataset(count: 1).split(evalFraction: 0.01, seed: 0) }
        expectDataError("no training samples") { _ = try numberedDataset(count: 0).split(evalFraction: 0, seed: 0) }
    }
}

// MARK: - Standardising

@Suite("Standardizer")
struct StandardizerTests {
    @Test("training features get mean 0 and standard deviation 1; constant ones become 0")
    func standardises() throws {
        var generator = SeededGenerator(seed: 3)
        let rows = 200
        var features: [Float] = []
        for _ in 0..<rows { features += [5 + 3 * generator.nextNormal(), 7, -100 + 0.01 * generator.nextNormal()] }
        let data = try Dataset(features: features, sampleShape: [3], labels: Array(repeating: 0, count: rows))
        let (train, eval) = try data.split(evalFraction: 0.25, seed: 0)
        let standardizer = try Standardizer(fitting: train)
        #expect(standardizer.scale[1] == 1, "a constant feature must keep divisor 1")
        let scaled = try standardizer.apply(to: train)
        for column in 0..<3 {
            let values = stride(from: column, to: scaled.features.count, by: 3).map { Double(scaled.features[$0]) }
            let mean = values.reduce(0, +) / Double(values.count)
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
            #expect(abs(mean) < 1e-4, "column \(column) mean \(mean)")
            #expect(column == 1 ? std == 0 : abs(std - 1) < 1e-3, "column \(column) std \(std)")
        }
        #expect(scaled.labels == train.labels && scaled.sampleShape == train.sampleShape)

        // Evaluation data uses the training statistics, not its own.
        let scaledEval = try standardizer.apply(to: eval)
        let expected = (eval.features[0] - standardizer.mean[0]) / standardizer.scale[0]
        #expect(scaledEval.features[0] == expected)
        #expect(try Standardizer(fitting: eval) != standardizer)
    }

    @Test("mismatched widths, empty data and corrupt saved statistics are errors")
    func errors() throws {
        let standardizer = try Standardizer(fitting: try numberedDataset(count: 4))
        expectDataError("3 features", "expected 6") {
            _ = try standardizer.apply(to: try Dataset(features: [1, 2, 3], sampleShape: [3]))
        }
        expectDataError("no samples") { _ = try Standardizer(fitting: try numberedDataset(count: 0)) }

        let json = try JSONEncoder().encode(standardizer)
        #expect(try JSONDecoder().decode(Standardizer.self, from: json) == standardizer)
        let corrupt = Data(#"{"mean":[1,2],"scale":[1]}"#.utf8)
        #expect(throws: DecodingError.self) { _ = try JSONDecoder().decode(Standardizer.self, from: corrupt) }
    }
}
