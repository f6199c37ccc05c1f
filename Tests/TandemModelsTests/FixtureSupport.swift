import Foundation
import TandemCore
import TandemFormats
import TandemModels
import TandemNN
import Testing

// MARK: - Closeness against PyTorch

/// Tandem's float32 results may differ from PyTorch's by summation order only, so they are
/// compared on the scale of the reference: `max |a − b| ≤ tolerance · max(1, max |b|)`.
/// (Per-element relative error would flag every element that is a near-cancelling sum.)
/// Shape and count are checked before any value.
@discardableResult
func expectNear(
    _ actual: [Float], shape actualShape: [Int], _ expected: [Float], shape expectedShape: [Int],
    tolerance: Float = 1e-4, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    guard actualShape == expectedShape else {
        Issue.record("\(what): shape \(actualShape) differs from expected \(expectedShape)", sourceLocation: sourceLocation)
        return false
    }
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values differ from the \(expected.count) expected", sourceLocation: sourceLocation)
        return false
    }
    let scale = max(1, expected.reduce(0) { max($0, abs($1)) })
    var worst = (index: -1, error: Float(0))
    for i in actual.indices {
        let error = abs(actual[i] - expected[i])
        if !(error <= worst.error) { worst = (i, error.isNaN ? .infinity : error) }
    }
    guard worst.error > tolerance * scale else { return true }
    Issue.record(
        "\(what): max |Δ| \(worst.error) > \(tolerance) · \(scale) at flat index \(worst.index): \(actual[worst.index]) vs expected \(expected[worst.index])",
        sourceLocation: sourceLocation)
    return false
}

@discardableResult
func expectNear(
    _ actual: Tensor, _ expected: Tensor, tolerance: Float = 1e-4, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    expectNear(actual.scalars, shape: actual.shape, expected.scalars, shape: expected.shape, tolerance: tolerance, what,
               sourceLocation: sourceLocation)
}

/// The largest |a − b| relative to `max(1, max |b|)` (for reports).
func scaledError(_ actual: Tensor, _ expected: Tensor) -> Float {
    let scale = max(1, expected.scalars.reduce(0) { max($0, abs($1)) })
    return zip(actual.scalars, expected.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
}

// MARK: - Fixtures

/// One `Fixtures/<name>.safetensors` file written by `scripts/make_fixtures.py`.
struct Fixture {
    let name: String
    let tensors: [String: HostArray]
    let metadata: [String: String]

    static func directory() throws -> URL {
        try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "the Fixtures resource folder is missing")
    }

    init(_ name: String) throws {
        self.name = name
        let path = try Fixture.directory().appendingPathComponent("\(name).safetensors").path
        (tensors, metadata) = try Safetensors.read(path: path)
    }

    func array(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> HostArray {
        try #require(tensors[key], "\(name).safetensors has no tensor '\(key)'", sourceLocation: sourceLocation)
    }

    /// The tensor `key` as float32 (integers converted).
    func tensor(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Tensor {
        let a = try array(key, sourceLocation: sourceLocation)
        return Tensor(a.floats(), shape: a.shape)
    }

    /// A one-element tensor (`loss [1]`) as a scalar.
    func scalar(_ key: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Float {
        let a = try array(key, sourceLocation: sourceLocation)
        try #require(a.count == 1, "\(key) has shape \(a.shape), expected one element", sourceLocation: sourceLocation)
        return a.floats()[0]
    }

    func labels(_ key: String) throws -> [Int32] {
        try array(key).ints(source: "\(name).safetensors:\(key)").map { Int32($0) }
    }

    /// Names under `prefix.` with the prefix removed, mapped to their tensors.
    func group(_ prefix: String) throws -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for key in tensors.keys where key.hasPrefix(prefix + ".") {
            result[String(key.dropFirst(prefix.count + 1))] = try tensor(key)
        }
        return result
    }
}

// MARK: - Models at the fixtures' sizes

struct FixtureError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// `__metadata__["config"]` of a model fixture (make_fixtures.py's CONFIGS).
struct FixtureConfig: Decodable {
    var batch: Int
    var dims: [Int]?
    var channels: [Int]?, classes: Int?, spatial: Int?
    var input: Int?, hidden: Int?, layers: Int?, out: Int?, steps: Int?
    var vocab: Int?, d: Int?, heads: Int?, T: Int?
}

extension Fixture {
    func config() throws -> FixtureConfig {
        let text = try #require(metadata["config"], "\(name).safetensors has no config metadata")
        return try JSONDecoder().decode(FixtureConfig.self, from: Data(text.utf8))
    }

    /// The Tandem model for this fixture's architecture and config, with random weights.
    func makeModel() throws -> any Model {
        let c = try config()
        var g = SeededGenerator(seed: 99)
        switch name {
        case "mlp", "mlp-wide":
            return MLP(dimensions: try #require(c.dims), generator: &g)
        case "cnn":
            let ch = try #require(c.channels), spatial = try #require(c.spatial)
            return CNN(channels: ch[0], widths: Array(ch.dropFirst()), classes: try #require(c.classes), height: spatial, width: spatial,
                       generator: &g)
        case "lstm":
            return LSTMRegressor(inputSize: try #require(c.input), hiddenSize: try #require(c.hidden), layers: try #require(c.layers),
                                 outputSize: try #require(c.out), steps: try #require(c.steps), generator: &g)
        case "gpt":
            return GPT(vocabulary: try #require(c.vocab), dimensions: try #require(c.d), heads: try #require(c.heads),
                       layers: try #require(c.layers), context: try #require(c.T), generator: &g)
        default:
            throw FixtureError(message: "no Tandem model for fixture \(name)")
        }
    }

    /// The model with the fixture's initial weights (`param.*`).
    func loadedModel() throws -> any Model {
        let model = try makeModel()
        try model.load(stateDict: group("param"))
        return model
    }

    /// `x` and `y` as a Tandem batch: class ids for cross-entropy, values for the LSTM's MSE.
    func batch() throws -> Batch {
        let x = try tensor("x")
        let y = try array("y")
        if y.dtype.isFloatingPoint { return Batch(inputs: x, targets: .values(try tensor("y"))) }
        return Batch(inputs: x, targets: .classes(try labels("y")))
    }
}

extension Model {
    /// Forward and backward on a fresh tape; returns the loss.
    func lossAndGradients(_ batch: Batch) -> Float {
        let tape = Tape()
        let loss = tape.record { self.loss(batch) }
        tape.backward(loss)
        return loss.item
    }
}
