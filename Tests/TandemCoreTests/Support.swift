import TandemCore
import Testing

// MARK: - Closeness

/// How far apart two arrays may be: element by element,
/// `|actual − expected| ≤ absolute + relative · |expected|`.
struct Tolerance: Sendable, CustomStringConvertible {
    var relative: Double
    var absolute: Double

    static let exact = Tolerance(relative: 0, absolute: 0)
    /// A few float32 rounding steps.
    static let float = Tolerance(relative: 1e-5, absolute: 1e-6)

    var description: String { "rtol \(relative), atol \(absolute)" }

    func allows(_ actual: Double, _ expected: Double) -> Bool {
        if actual.isNaN || expected.isNaN { return actual.isNaN && expected.isNaN }
        if actual == expected { return true }  // equal infinities
        return abs(actual - expected) <= absolute + relative * abs(expected)
    }
}

/// Why `actual` is not close to `expected`, or nil when it is. Shapes and counts are
/// compared before any value, so a wrong layout is reported as such rather than as a
/// cascade of wrong numbers.
func closenessFailure(
    actual: [Float], shape actualShape: [Int], expected: [Float], shape expectedShape: [Int], tolerance: Tolerance
) -> String? {
    if actualShape != expectedShape { return "shape \(actualShape) differs from expected \(expectedShape)" }
    if actual.count != expected.count { return "\(actual.count) values differ from the \(expected.count) expected" }
    var failures = 0
    var worst: (index: Int, excess: Double)?
    for i in actual.indices {
        let a = Double(actual[i]), e = Double(expected[i])
        guard !tolerance.allows(a, e) else { continue }
        failures += 1
        let excess = a.isNaN || e.isNaN ? .infinity : abs(a - e) - (tolerance.absolute + tolerance.relative * abs(e))
        if worst == nil || excess > worst!.excess { worst = (i, excess) }
    }
    guard let worst else { return nil }
    let a = actual[worst.index], e = expected[worst.index]
    return "\(failures) of \(actual.count) values differ beyond \(tolerance); worst at \(position(worst.index, in: expectedShape)): "
        + "\(a) vs expected \(e) (|Δ| = \(abs(Double(a) - Double(e))))"
}

/// A flat index as a multi-index of `shape`, for messages.
func position(_ flat: Int, in shape: [Int]) -> String {
    var rest = flat
    var index = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
        index[d] = rest % shape[d]
        rest /= shape[d]
    }
    return "\(index)"
}

/// Records an issue (at the caller's line) unless `actual` matches `expected` in shape,
/// count and every value within `tolerance`. Returns whether it did.
@discardableResult
func expectClose(
    _ actual: [Float], shape actualShape: [Int], _ expected: [Float], shape expectedShape: [Int],
    _ tolerance: Tolerance = .float, _ what: String = "values", sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    guard let failure = closenessFailure(
        actual: actual, shape: actualShape, expected: expected, shape: expectedShape, tolerance: tolerance)
    else { return true }
    Issue.record("\(what): \(failure)", sourceLocation: sourceLocation)
    return false
}

@discardableResult
func expectClose(
    _ actual: Tensor, _ expected: Tensor, _ tolerance: Tolerance = .float, _ what: String = "tensor",
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    expectClose(actual.scalars, shape: actual.shape, expected.scalars, shape: expected.shape, tolerance, what,
                sourceLocation: sourceLocation)
}

@discardableResult
func expectClose(
    _ actual: Tensor, _ expected: [Float], shape: [Int], _ tolerance: Tolerance = .float, _ what: String = "tensor",
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    expectClose(actual.scalars, shape: actual.shape, expected, shape: shape, tolerance, what, sourceLocation: sourceLocation)
}

// MARK: - Random inputs

extension SeededGenerator {
    /// `count` uniform values in `range`.
    mutating func uniforms(_ count: Int, in range: ClosedRange<Float>) -> [Float] {
        (0..<count).map { _ in range.lowerBound + (range.upperBound - range.lowerBound) * nextUniform() }
    }
}

/// How a test input's values are drawn.
enum InputValues: Sendable {
    /// N(0, 1).
    case normal
    /// Uniform in `[low, high]`.
    case uniform(Float, Float)
    /// Uniform magnitude in [0.1, 1.5] with a random sign: at least 0.1 from a kink at 0.
    case awayFromZero
    /// A random permutation of 0, 0.1, 0.2, …, shifted to centre on 0: no ties, and
    /// neighbours far apart compared with a finite-difference step.
    case distinct

    func make(_ shape: [Int], _ g: inout SeededGenerator) -> Tensor {
        let n = Tensor.count(of: shape)
        switch self {
        case .normal: return .normal(shape, generator: &g)
        case .uniform(let low, let high): return .uniform(shape, low: low, high: high, generator: &g)
        case .awayFromZero:
            return Tensor((0..<n).map { _ in (g.nextUniform() < 0.5 ? -1 : 1) * (0.1 + 1.4 * g.nextUniform()) }, shape: shape)
        case .distinct:
            let values = (0..<n).map { Float($0) * 0.1 - Float(n) * 0.05 }.shuffled(using: &g)
            return Tensor(values, shape: shape)
        }
    }
}
