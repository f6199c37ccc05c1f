import Foundation
import TandemCollectives
import TandemCore
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel
import Testing

// MARK: - The root suite

/// Every test of this target, run one at a time: the ranks of each test are threads that
/// already compete for the cores, and the timeout tests measure seconds, which a
/// neighbouring test's threads would stretch.
@Suite(.serialized) struct ParallelTests {}

// MARK: - Closeness

/// How far apart two values may be: `|actual − expected| ≤ absolute + relative · |expected|`.
struct Tolerance: Sendable, CustomStringConvertible {
    var relative: Double
    var absolute: Double

    static let exact = Tolerance(relative: 0, absolute: 0)
    /// A few float32 rounding steps, compounded over a few optimizer steps.
    static let float = Tolerance(relative: 1e-5, absolute: 1e-6)

    var description: String { "rtol \(relative), atol \(absolute)" }

    func allows(_ actual: Double, _ expected: Double) -> Bool {
        if actual.isNaN || expected.isNaN { return false }
        if actual == expected { return true }
        return abs(actual - expected) <= absolute + relative * abs(expected)
    }
}

/// Records an issue at the caller's line unless `actual` and `expected` hold the same number
/// of tensors, each with the same count, and every value within `tolerance` (bit-for-bit
/// with `.exact`). Counts are compared before any value. Returns whether they matched.
@discardableResult
func expectClose(
    _ actual: [[Float]], _ expected: [[Float]], _ tolerance: Tolerance, _ what: @autoclosure () -> String,
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    guard actual.count == expected.count else {
        Issue.record("\(what()): \(actual.count) tensors, expected \(expected.count)", sourceLocation: sourceLocation)
        return false
    }
    var failures = 0, total = 0
    var worst: (tensor: Int, index: Int, excess: Double)?
    for (t, (a, e)) in zip(actual, expected).enumerated() {
        guard a.count == e.count else {
            Issue.record("\(what()): tensor \(t) holds \(a.count) values, expected \(e.count)", sourceLocation: sourceLocation)
            return false
        }
        total += a.count
        for i in a.indices {
            let x = Double(a[i]), y = Double(e[i])
            let same = tolerance.relative == 0 && tolerance.absolute == 0 ? a[i].bitPattern == e[i].bitPattern : tolerance.allows(x, y)
            guard !same else { continue }
            failures += 1
            let excess = x.isNaN || y.isNaN ? .infinity : abs(x - y) - (tolerance.absolute + tolerance.relative * abs(y))
            if worst == nil || excess > worst!.excess { worst = (t, i, excess) }
        }
    }
    guard let worst else { return true }
    let a = actual[worst.tensor][worst.index], e = expected[worst.tensor][worst.index]
    let bound = tolerance == .exact ? "bit equality" : tolerance.description
    let delta = abs(Double(a) - Double(e))
    let message = "\(what()): \(failures) of \(total) values differ beyond \(bound); worst in tensor \(worst.tensor) at \(worst.index): \(a) vs expected \(e) (|Δ| = \(delta))"
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    return false
}

extension Tolerance: Equatable {}

/// The largest `|a − b| / max(|b|, floor)` over all values (for reporting how close is close).
func maxRelativeError(_ a: [[Float]], _ b: [[Float]], floor: Double = 1e-3) -> Double {
    var worst = 0.0
    for (x, y) in zip(a, b) {
        for (p, q) in zip(x, y) { worst = max(worst, abs(Double(p) - Double(q)) / max(abs(Double(q)), floor)) }
    }
    return worst
}

// MARK: - Running ranks on threads

/// A value behind a lock, shared by rank threads.
final class Locked<Value>: @unchecked Sendable {
    // Safe: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
    var current: Value { withLock { $0 } }
}

/// Runs `body` once per rank of `world`, each on its own thread with its own group, and
/// waits for all of them; returns each rank's outcome (value or error) in rank order.
func runRanks<R: Sendable>(_ world: ThreadWorld, _ body: @escaping @Sendable (ThreadGroup) throws -> R) -> [Result<R, any Error>] {
    let results = Locked([Result<R, any Error>?](repeating: nil, count: world.size))
    let done = DispatchGroup()
    for rank in 0..<world.size {
        done.enter()
        let thread = Thread {
            defer { done.leave() }
            let group = world.group(rank: rank)
            let outcome = Result { try body(group) }
            results.withLock { $0[rank] = outcome }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    done.wait()
    return results.current.map { $0! }
}

/// Every rank's value, or a test failure naming the first rank that threw.
func values<R>(_ results: [Result<R, any Error>], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [R] {
    try results.enumerated().map { rank, result in
        switch result {
        case .success(let v): return v
        case .failure(let e):
            Issue.record("\(what): rank \(rank) threw \(e)", sourceLocation: sourceLocation)
            throw e
        }
    }
}

/// Failed checks noted on rank threads (where Swift Testing cannot tell which test is
/// running), reported on the test's own thread by `report()`.
final class Problems: Sendable {
    private let notes = Locked<[String]>([])
    func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { let m = message(); notes.withLock { $0.append(m) } }
    }
    func report(sourceLocation: SourceLocation = #_sourceLocation) {
        for note in notes.current { Issue.record(Comment(rawValue: note), sourceLocation: sourceLocation) }
    }
}

/// Seconds on the monotonic clock.
func now() -> Double { MonotonicClock().now() }

// MARK: - Collective buffers owned by one rank

/// `count` elements of `dtype` (float32, bfloat16 or float16) that a rank owns and hands to
/// collectives; at least one element is allocated so an empty buffer still has an address.
final class RankBuffer {
    let count: Int
    let dtype: DType
    private let floats: UnsafeMutablePointer<Float>?
    private let halves: UnsafeMutablePointer<UInt16>?

    init(_ values: [Float], dtype: DType = .float32) {
        let count = values.count
        self.count = count
        self.dtype = dtype
        if dtype == .float32 {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            values.withUnsafeBufferPointer { if let base = $0.baseAddress { p.update(from: base, count: count) } }
            floats = p; halves = nil
        } else {
            let p = UnsafeMutablePointer<UInt16>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            values.withUnsafeBufferPointer { v in
                var i = 0
                if dtype == .bfloat16 { while i < count { p[i] = HalfConversion.bfloat16Bits(v[i]); i += 1 } }
                else { while i < count { p[i] = HalfConversion.float16Bits(v[i]); i += 1 } }
            }
            halves = p; floats = nil
        }
    }

    convenience init(zeros count: Int, dtype: DType = .float32) { self.init([Float](repeating: 0, count: count), dtype: dtype) }

    deinit { floats?.deallocate(); halves?.deallocate() }

    var collective: CollectiveBuffer {
        if let floats { return CollectiveBuffer(floats, count: count) }
        return CollectiveBuffer(halves!, count: count, dtype: dtype)
    }

    var values: [Float] {
        if let floats { return Array(UnsafeBufferPointer(start: floats, count: count)) }
        let h = halves!, n = count, bf = dtype == .bfloat16
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            var i = 0
            if bf { while i < n { out[i] = HalfConversion.float(bfloat16: h[i]); i += 1 } }
            else { while i < n { out[i] = HalfConversion.float(float16: h[i]); i += 1 } }
            initialized = n
        }
    }

    /// The value `v` becomes when stored as `dtype`.
    static func rounded(_ v: Float, _ dtype: DType) -> Float { dtype == .float32 ? v : value(bits(v, dtype), dtype) }

    static func bits(_ v: Float, _ dtype: DType) -> UInt16 {
        dtype == .bfloat16 ? HalfConversion.bfloat16Bits(v) : HalfConversion.float16Bits(v)
    }

    static func value(_ bits: UInt16, _ dtype: DType) -> Float {
        dtype == .bfloat16 ? HalfConversion.float(bfloat16: bits) : HalfConversion.float(float16: bits)
    }
}

// MARK: - Small reference workloads

/// The four reference model families at test size, with a synthetic data set each.
enum Workload: String, CaseIterable, Sendable, CustomStringConvertible {
    case mlp, cnn, lstm, gpt

    var description: String { rawValue }

    /// The model; every call with the same seed gives the same weights.
    func make(seed: UInt64) -> any Model {
        var g = SeededGenerator(seed: seed)
        switch self {
        case .mlp: return MLP(dimensions: [12, 16, 10], generator: &g)
        case .cnn: return CNN(channels: 1, widths: [4, 6, 8], classes: 3, height: 8, width: 8, generator: &g)
        case .lstm: return LSTMRegressor(inputSize: 3, hiddenSize: 5, layers: 2, outputSize: 2, steps: 4, generator: &g)
        case .gpt: return GPT(vocabulary: 17, dimensions: 8, heads: 2, layers: 1, context: 6, generator: &g)
        }
    }

    /// `count` random samples shaped for the model, from `seed`.
    func dataset(count: Int, seed: UInt64 = 99) throws -> Dataset {
        var g = SeededGenerator(seed: seed)
        func normals(_ n: Int) -> [Float] { (0..<n).map { _ in g.nextNormal() } }
        func classes(_ n: Int, _ k: Int) -> [Int32] { (0..<n).map { _ in Int32(g.next() % UInt64(k)) } }
        switch self {
        case .mlp:
            return try Dataset(features: normals(count * 12), sampleShape: [12], labels: classes(count, 10), source: "mlp-data")
        case .cnn:
            return try Dataset(features: normals(count * 64), sampleShape: [1, 8, 8], labels: classes(count, 3), source: "cnn-data")
        case .lstm:
            return try Dataset(features: normals(count * 12), sampleShape: [4, 3], targets: normals(count * 2), targetShape: [2],
                               source: "lstm-data")
        case .gpt:
            let tokens = classes(count * 6, 17).map(Float.init)
            return try Dataset(features: tokens, sampleShape: [6], target: .classes(classes(count * 6, 17), shape: [6]),
                               source: "gpt-data")
        }
    }

    /// A loader batch as the model's batch.
    func batch(_ b: DataBatch) -> Batch {
        if let labels = b.labels { return Batch(inputs: b.inputs, targets: .classes(labels)) }
        return Batch(inputs: b.inputs, targets: .values(b.targets!))
    }
}

/// The optimizers the equivalence and resume tests use.
enum OptimizerKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case sgd, adamw
    var description: String { rawValue }
    func make() throws -> any Optimizer {
        switch self {
        case .sgd: try SGD(learningRate: 0.1, momentum: 0.9)
        case .adamw: try AdamW(learningRate: 0.01, weightDecay: 0.1)
        }
    }
}

/// Every parameter's values, in registration order.
func weights(_ model: any Model) -> [[Float]] { model.parameters.map { $0.value.scalars } }

/// One worker, no collectives: each step is forward and backward of the whole batch of
/// `indices`, then an optimizer step. The reference every data-parallel run must match.
func trainReference(
    _ workload: Workload, data: Dataset, steps: [[Int]], optimizer: OptimizerKind, seed: UInt64 = 0
) throws -> [[Float]] {
    let model = workload.make(seed: seed)
    let state = OptimizerState(try optimizer.make())
    let tape = Tape()
    for indices in steps {
        let batch = workload.batch(data.batch(indices: indices))
        model.zeroGradients()
        let loss = tape.record { model.loss(batch) }
        tape.backward(loss)
        state.apply(to: model.namedParameters)
    }
    return weights(model)
}

/// Thrown by a rank when its loader runs dry (which the tests treat as a failure).
struct OutOfData: Error, CustomStringConvertible {
    let rank: Int
    var description: String { "rank \(rank): the loader yielded no batch" }
}

/// The next batch of `loader` as the model's batch, recording its sample indices.
func draw(_ loader: DataLoader, _ workload: Workload, rank: Int, into drawn: inout [[Int]]) throws -> Batch {
    guard let b = loader.next() else { throw OutOfData(rank: rank) }
    drawn.append(b.indices)
    return workload.batch(b)
}
