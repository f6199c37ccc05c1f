import TandemCore
import Testing

// MARK: - Finite-difference gradient check

/// The outcome of comparing the tape's gradients of `L = Σ op(x) ⊙ R` (R a fixed random
/// tensor) with central differences.
struct GradientReport: CustomStringConvertible {
    /// One line per input whose gradient is off.
    var failures: [String] = []
    /// The largest |numeric gradient| seen: a check of all-zero gradients proves nothing.
    var largestNumeric: Double = 0
    var passes: Bool { failures.isEmpty }
    var description: String { failures.isEmpty ? "ok" : failures.joined(separator: "; ") }
}

/// Checks every input's gradient of `op`.
///
/// The analytic gradient comes from `Tape.backward(out, seed: R)`, which is the gradient of
/// `Σ out ⊙ R` without going through `*` and `sum` (those get their own checks). The numeric
/// one is `(L(x + h) − L(x − h)) / 2h` per element with `L` accumulated in Double and `h` the
/// step actually taken in float32. Element-wise the two must agree within
/// `absolute + relative · |numeric|`.
func checkGradients(
    _ inputs: [Tensor], epsilon: Float = 1e-2, tolerance: Tolerance = Tolerance(relative: 1e-2, absolute: 1e-3),
    seed: UInt64 = 0x5EED, _ op: ([Tensor]) -> Tensor
) -> GradientReport {
    let inputs = inputs.map { $0.copy() }
    var generator = SeededGenerator(seed: seed)
    let plain = op(inputs)
    let weights = Tensor.normal(plain.shape, generator: &generator)

    // Analytic, through the tape.
    let parameters = inputs.map { Parameter($0) }
    let tape = Tape()
    let out = tape.record { op(parameters.map(\.variable)) }
    var report = GradientReport()
    guard out.isTracked else {
        report.failures.append("the output is not tracked by the tape")
        return report
    }
    tape.backward(out, seed: weights)
    let analytic = parameters.map { $0.gradient?.scalars ?? [Float](repeating: 0, count: $0.count) }

    // Numeric, one element at a time (the parameters share these storages: they are read no more).
    func loss() -> Double {
        let y = op(inputs)
        precondition(y.shape == weights.shape, "the op's output shape changed")
        var total = 0.0
        for i in 0..<y.count { total += Double(y.pointer[i]) * Double(weights.pointer[i]) }
        return total
    }
    for (index, x) in inputs.enumerated() {
        var numeric = [Float](repeating: 0, count: x.count)
        for j in 0..<x.count {
            let original = x.pointer[j]
            let up = original + epsilon, down = original - epsilon
            x.pointer[j] = up
            let lossUp = loss()
            x.pointer[j] = down
            let lossDown = loss()
            x.pointer[j] = original
            let value = (lossUp - lossDown) / (Double(up) - Double(down))
            numeric[j] = Float(value)
            report.largestNumeric = max(report.largestNumeric, abs(value))
        }
        if let failure = closenessFailure(actual: analytic[index], shape: x.shape, expected: numeric, shape: x.shape,
                                          tolerance: tolerance) {
            report.failures.append("input \(index) \(x.shape): analytic vs numeric: \(failure)")
        }
    }
    return report
}

// MARK: - The checker catches wrong gradients

/// `x²` whose backward is scaled by `factor` (1 is right).
func squareWithGradient(scaledBy factor: Float, _ x: Tensor) -> Tensor {
    let out = x.map { $0 * $0 }
    return Tape.track(out, inputs: [x]) { g, _ in
        let dx = Tensor(uninitializedShape: x.shape)
        for i in 0..<x.count { dx.pointer[i] = factor * 2 * x.pointer[i] * g.pointer[i] }
        return [dx]
    }
}

@Suite("Gradient checker")
struct GradientCheckerTests {
    @Test("accepts a right gradient")
    func acceptsRight() {
        var g = SeededGenerator(seed: 1)
        let report = checkGradients([.normal([3, 4], generator: &g)]) { squareWithGradient(scaledBy: 1, $0[0]) }
        #expect(report.passes, "\(report)")
        #expect(report.largestNumeric > 0.1)
    }

    @Test("rejects a gradient that is off by a factor", arguments: [2, -1, 0.5, 1.05] as [Float])
    func rejectsWrong(factor: Float) {
        var g = SeededGenerator(seed: 1)
        let report = checkGradients([.normal([3, 4], generator: &g)]) { squareWithGradient(scaledBy: factor, $0[0]) }
        #expect(!report.passes, "a gradient scaled by \(factor) slipped through")
    }

    @Test("rejects a gradient that never reaches the input")
    func rejectsMissing() {
        var g = SeededGenerator(seed: 1)
        let report = checkGradients([.normal([3, 4], generator: &g)]) { x in
            Tape.track(x[0].map { $0 * 3 }, inputs: [x[0]]) { _, _ in [nil] }
        }
        #expect(!report.passes)
    }
}
