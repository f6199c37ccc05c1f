import TandemCore
import Testing

// MARK: - Cases

/// One differentiable operation to check: its inputs (shapes and how their values are
/// drawn) and the operation itself. Labelled by `name` in the test report.
struct GradientCase: Sendable, CustomTestStringConvertible {
    var name: String
    var inputs: [(shape: [Int], values: InputValues)]
    var epsilon: Float = 1e-2
    var tolerance = Tolerance(relative: 1e-2, absolute: 1e-3)
    var op: @Sendable ([Tensor]) -> Tensor

    init(_ name: String, _ inputs: [(shape: [Int], values: InputValues)], epsilon: Float = 1e-2,
         tolerance: Tolerance = Tolerance(relative: 1e-2, absolute: 1e-3), _ op: @escaping @Sendable ([Tensor]) -> Tensor) {
        self.name = name
        self.inputs = inputs
        self.epsilon = epsilon
        self.tolerance = tolerance
        self.op = op
    }

    /// Inputs drawn N(0, 1).
    init(_ name: String, _ shapes: [Int]..., op: @escaping @Sendable ([Tensor]) -> Tensor) {
        self.init(name, shapes.map { ($0, InputValues.normal) }, op)
    }

    var testDescription: String { name }

    func run(seed: UInt64 = 42, sourceLocation: SourceLocation = #_sourceLocation) {
        var g = SeededGenerator(seed: seed)
        let values = inputs.map { $0.values.make($0.shape, &g) }
        let report = checkGradients(values, epsilon: epsilon, tolerance: tolerance, op)
        #expect(report.passes, "\(name): \(report)", sourceLocation: sourceLocation)
        // Gradients of all zeros would pass trivially; every case here has real ones.
        #expect(report.largestNumeric > 10 * tolerance.absolute, "\(name): gradients too small to test", sourceLocation: sourceLocation)
    }
}

let positive = InputValues.uniform(0.5, 2)

extension GradientCase {
    static let arithmetic: [GradientCase] = [
        GradientCase("[3,4] + [3,4]", [3, 4], [3, 4]) { $0[0] + $0[1] },
        GradientCase("[3,4] + [4]", [3, 4], [4]) { $0[0] + $0[1] },
        GradientCase("[4] + [3,4]", [4], [3, 4]) { $0[0] + $0[1] },
        GradientCase("[2,1,3] + [4,1]", [2, 1, 3], [4, 1]) { $0[0] + $0[1] },
        GradientCase("[3,4] + scalar tensor", [3, 4], []) { $0[0] + $0[1] },
        GradientCase("x + x", [3, 4]) { $0[0] + $0[0] },
        GradientCase("[3,4] - [3,4]", [3, 4], [3, 4]) { $0[0] - $0[1] },
        GradientCase("[3,4] - [4]", [3, 4], [4]) { $0[0] - $0[1] },
        GradientCase("[4,1] - [2,1,3]", [4, 1], [2, 1, 3]) { $0[0] - $0[1] },
        GradientCase("[3,4] * [3,4]", [3, 4], [3, 4]) { $0[0] * $0[1] },
        GradientCase("[3,4] * [4]", [3, 4], [4]) { $0[0] * $0[1] },
        GradientCase("[2,1,3] * [4,1]", [2, 1, 3], [4, 1]) { $0[0] * $0[1] },
        GradientCase("[4,1] * [2,1,3]", [4, 1], [2, 1, 3]) { $0[0] * $0[1] },
        GradientCase("scalar tensor * [3,4]", [], [3, 4]) { $0[0] * $0[1] },
        GradientCase("x * x", [3, 4]) { $0[0] * $0[0] },
        // `+` hands one gradient tensor to both inputs; v then receives a second one.
        GradientCase("(exp x + tanh x) + tanh x", [3, 4]) { x in
            let u = x[0].exp(), v = x[0].tanh()
            return (u + v) + v
        },
        GradientCase("residual x + tanh(x·W)", [3, 4], [4, 4]) { $0[0] + Tensor.matmul($0[0], $0[1]).tanh() },
        GradientCase("[3,4] / [3,4]", [([3, 4], .normal), ([3, 4], positive)]) { $0[0] / $0[1] },
        GradientCase("[3,4] / [4]", [([3, 4], .normal), ([4], positive)]) { $0[0] / $0[1] },
        GradientCase("[2,1,3] / [4,1]", [([2, 1, 3], .normal), ([4, 1], positive)]) { $0[0] / $0[1] },
        GradientCase("[4,1] / [2,1,3]", [([4, 1], .normal), ([2, 1, 3], positive)]) { $0[0] / $0[1] },
        GradientCase("[3,4] / scalar tensor", [([3, 4], .normal), ([], positive)]) { $0[0] / $0[1] },
        GradientCase("x + 0.5", [3, 4]) { $0[0] + 0.5 },
        GradientCase("x - 2", [3, 4]) { $0[0] - 2 },
        GradientCase("x * 3", [3, 4]) { $0[0] * 3 },
        GradientCase("3 * x", [3, 4]) { 3 * $0[0] },
        GradientCase("x / 4", [3, 4]) { $0[0] / 4 },
        GradientCase("-x", [3, 4]) { -$0[0] },
    ]

    static let unary: [GradientCase] = [
        GradientCase("relu", [([4, 5], .awayFromZero)]) { $0[0].relu() },
        GradientCase("exp", [([4, 5], .uniform(-2, 2))]) { $0[0].exp() },
        GradientCase("log", [([4, 5], positive)]) { $0[0].log() },
        GradientCase("tanh", [4, 5]) { $0[0].tanh() },
        GradientCase("sigmoid", [([4, 5], .uniform(-4, 4))]) { $0[0].sigmoid() },
        GradientCase("sqrt", [([4, 5], positive)]) { $0[0].sqrt() },
        GradientCase("squared", [4, 5]) { $0[0].squared() },
        GradientCase("gelu", [([4, 5], .uniform(-3, 3))]) { $0[0].gelu() },
    ]

    static let reductions: [GradientCase] = [
        GradientCase("sum()", [3, 4, 2]) { $0[0].sum() },
        GradientCase("mean()", [3, 4, 2]) { $0[0].mean() },
    ] + (0..<3).flatMap { axis in
        [false, true].map { keep in
            GradientCase("sum(axis: \(axis), keepingDimension: \(keep))", [2, 3, 4]) { $0[0].sum(axis: axis, keepingDimension: keep) }
        } + [false, true].map { keep in
            GradientCase("mean(axis: \(axis), keepingDimension: \(keep))", [2, 3, 4]) { $0[0].mean(axis: axis, keepingDimension: keep) }
        }
    }

    static let shapes: [GradientCase] = [
        GradientCase("reshaped([4, 6])", [2, 3, 4]) { $0[0].reshaped([4, 6]) },
        GradientCase("reshaped([-1, 2])", [2, 3, 4]) { $0[0].reshaped([-1, 2]) },
        GradientCase("permuted([2, 0, 1])", [2, 3, 4]) { $0[0].permuted([2, 0, 1]) },
        GradientCase("permuted([1, 0, 2])", [2, 3, 4]) { $0[0].permuted([1, 0, 2]) },
        GradientCase("permuted([3, 1, 0, 2])", [2, 3, 2, 3]) { $0[0].permuted([3, 1, 0, 2]) },
        GradientCase("transposed() 2-D", [3, 5]) { $0[0].transposed() },
        GradientCase("transposed() 3-D", [2, 3, 5]) { $0[0].transposed() },
        GradientCase("slice(axis: 0, 1..<3)", [4, 3, 2]) { $0[0].slice(axis: 0, 1..<3) },
        GradientCase("slice(axis: 1, 1..<2)", [4, 3, 2]) { $0[0].slice(axis: 1, 1..<2) },
        GradientCase("slice(axis: 2, 0..<1)", [4, 3, 2]) { $0[0].slice(axis: 2, 0..<1) },
        GradientCase("concatenate axis 0", [1, 3, 2], [2, 3, 2], [3, 3, 2]) { .concatenate($0, axis: 0) },
        GradientCase("concatenate axis 1", [2, 1, 2], [2, 3, 2], [2, 2, 2]) { .concatenate($0, axis: 1) },
        GradientCase("concatenate axis 2", [2, 3, 3], [2, 3, 1]) { .concatenate($0, axis: 2) },
        GradientCase("concatenate x with itself", [2, 3]) { .concatenate([$0[0], $0[0]], axis: 1) },
    ]

    static let losses: [GradientCase] = [
        GradientCase("softmax [3,5]", [3, 5]) { $0[0].softmax() },
        GradientCase("softmax [2,3,4]", [2, 3, 4]) { $0[0].softmax() },
        GradientCase("crossEntropy [4,5]", [4, 5]) { .crossEntropy(logits: $0[0], labels: [0, 4, 2, 2]) },
        GradientCase("crossEntropy [2,3,4]", [2, 3, 4]) { .crossEntropy(logits: $0[0], labels: [3, 0, 1, 1, 2, 3]) },
        GradientCase("meanSquaredError", [3, 4], [3, 4]) { .meanSquaredError($0[0], $0[1]) },
    ]

    static let products: [GradientCase] = [
        GradientCase("linear with bias", [3, 4], [5, 4], [5]) { .linear($0[0], weight: $0[1], bias: $0[2]) },
        GradientCase("linear without bias", [3, 4], [5, 4]) { .linear($0[0], weight: $0[1], bias: nil) },
        GradientCase("linear 3-D input", [2, 3, 4], [5, 4], [5]) { .linear($0[0], weight: $0[1], bias: $0[2]) },
        GradientCase("matmul [3,4]·[4,5]", [3, 4], [4, 5]) { .matmul($0[0], $0[1]) },
        GradientCase("matmul [2,3,4]·[2,4,5]", [2, 3, 4], [2, 4, 5]) { .matmul($0[0], $0[1]) },
        GradientCase("matmul [2,2,3,4]·[2,2,4,1]", [2, 2, 3, 4], [2, 2, 4, 1]) { .matmul($0[0], $0[1]) },
        GradientCase("matmul [2,3,4]·shared [4,5]", [2, 3, 4], [4, 5]) { .matmul($0[0], $0[1]) },
        GradientCase("matmul x·xᵀ", [3, 4]) { .matmul($0[0], $0[0].transposed()) },
    ]

    static let layers: [GradientCase] = [
        GradientCase("layerNorm [3,6]", [3, 6], [6], [6]) { .layerNorm($0[0], weight: $0[1], bias: $0[2]) },
        GradientCase("layerNorm [2,3,5]", [2, 3, 5], [5], [5]) { .layerNorm($0[0], weight: $0[1], bias: $0[2]) },
        GradientCase("embedding, repeated indices", [5, 3]) { .embedding($0[0], indices: [0, 2, 2, 4, 0, 2], shape: [2, 3]) },
        GradientCase("globalAveragePool", [2, 3, 4, 5]) { $0[0].globalAveragePool() },
    ] + convolutions + pools + attention + recurrent + [
        GradientCase("dropout p = 0.3, fixed seed", [4, 6]) { x in
            var g = SeededGenerator(seed: 7)
            return x[0].dropout(0.3, generator: &g)
        },
    ]

    /// (stride, padding, input [N, C, H, W], kernel height × width)
    static let convolutions: [GradientCase] = ([
        (1, 0, [2, 3, 5, 6], (3, 3)), (1, 1, [2, 3, 5, 6], (3, 3)), (2, 0, [2, 3, 7, 6], (3, 3)),
        (2, 1, [2, 3, 7, 6], (3, 3)), (1, 1, [1, 2, 5, 4], (3, 2)), (2, 1, [2, 2, 6, 7], (2, 3)),
    ] as [(Int, Int, [Int], (Int, Int))]).flatMap { (stride: Int, padding: Int, x: [Int], k: (Int, Int)) in
        let w = [4, x[1], k.0, k.1]
        return [
            GradientCase("conv2d stride \(stride) padding \(padding) x \(x) w \(w)", x, w, [4]) {
                .conv2d($0[0], weight: $0[1], bias: $0[2], stride: stride, padding: padding)
            },
        ] + (stride == 2 && padding == 1 && k == (3, 3) ? [
            GradientCase("conv2d without bias stride \(stride) padding \(padding) x \(x) w \(w)", x, w) {
                .conv2d($0[0], weight: $0[1], bias: nil, stride: stride, padding: padding)
            },
        ] : [])
    }

    static let pools: [GradientCase] = [
        GradientCase("maxPool2d kernel 2", [([2, 2, 4, 6], .distinct)]) { $0[0].maxPool2d(kernel: 2) },
        GradientCase("maxPool2d kernel 2, odd size", [([1, 2, 5, 7], .distinct)]) { $0[0].maxPool2d(kernel: 2) },
        GradientCase("maxPool2d kernel 3 stride 2 (overlapping)", [([1, 2, 7, 5], .distinct)]) { $0[0].maxPool2d(kernel: 3, stride: 2) },
        GradientCase("maxPool2d kernel 2 stride 1", [([1, 1, 4, 4], .distinct)]) { $0[0].maxPool2d(kernel: 2, stride: 1) },
    ]

    static let attention: [GradientCase] = [1, 2, 4].map { heads in
        GradientCase("causalAttention \(heads) heads [2,5,24]", [2, 5, 24]) { .causalAttention($0[0], heads: heads) }
    }

    static let recurrent: [GradientCase] = [
        GradientCase("lstm T 4, B 2, I 3, H 4", [([2, 4, 3], .normal), ([16, 3], .uniform(-0.6, 0.6)), ([16, 4], .uniform(-0.6, 0.6)),
                                                ([16], .uniform(-0.5, 0.5)), ([16], .uniform(-0.5, 0.5))]) {
            .lstm($0[0], weightIH: $0[1], weightHH: $0[2], biasIH: $0[3], biasHH: $0[4])
        },
        GradientCase("lstm T 3, B 1, I 2, H 3", [([1, 3, 2], .normal), ([12, 2], .uniform(-1, 1)), ([12, 3], .uniform(-1, 1)),
                                                ([12], .uniform(-0.5, 0.5)), ([12], .uniform(-0.5, 0.5))]) {
            .lstm($0[0], weightIH: $0[1], weightHH: $0[2], biasIH: $0[3], biasHH: $0[4])
        },
    ]
}

// MARK: - Tests

@Suite("Gradients against finite differences")
struct GradientTests {
    @Test(arguments: GradientCase.arithmetic) func arithmetic(_ c: GradientCase) { c.run() }
    @Test(arguments: GradientCase.unary) func unary(_ c: GradientCase) { c.run() }
    @Test(arguments: GradientCase.reductions) func reductions(_ c: GradientCase) { c.run() }
    @Test(arguments: GradientCase.shapes) func shapes(_ c: GradientCase) { c.run() }
    @Test(arguments: GradientCase.losses) func losses(_ c: GradientCase) { c.run() }
    @Test(arguments: GradientCase.products) func products(_ c: GradientCase) { c.run() }
    @Test(arguments: GradientCase.layers) func layers(_ c: GradientCase) { c.run() }

    @Test("the loss form Σ op(x)·R through * and sum() matches the seeded backward")
    func lossForm() throws {
        var g = SeededGenerator(seed: 3)
        let x = Tensor.normal([3, 4], generator: &g), r = Tensor.normal([3, 4], generator: &g)
        let direct = Parameter(x), viaLoss = Parameter(x)
        let tape = Tape()
        let y = tape.record { direct.variable.tanh() }
        tape.backward(y, seed: r)
        let loss = tape.record { (viaLoss.variable.tanh() * r).sum() }
        tape.backward(loss)
        expectClose(try #require(viaLoss.gradient), try #require(direct.gradient), .float)
    }

    @Test("dropout's gradient is its mask: zero where dropped, 1/(1−p) elsewhere")
    func dropoutMask() throws {
        let p: Float = 0.3
        var values = SeededGenerator(seed: 11)
        let x = Parameter(InputValues.awayFromZero.make([40, 50], &values))
        var g = SeededGenerator(seed: 7)
        let tape = Tape()
        let y = tape.record { x.variable.dropout(p, generator: &g) }
        tape.backward(y)
        // The mask the same seed draws.
        var replay = SeededGenerator(seed: 7)
        let mask = (0..<x.count).map { _ in replay.nextUniform() < p ? 0 : 1 / (1 - p) }
        #expect(g == replay, "dropout drew a different number of values than it has elements")
        let gradient = try #require(x.gradient)
        expectClose(gradient, mask, shape: x.shape, .exact, "gradient of Σ dropout(x)")
        expectClose(y, zip(x.value.scalars, mask).map { $0 * $1 }, shape: x.shape, .exact, "dropout(x)")
        let dropped = Double(mask.filter { $0 == 0 }.count) / Double(mask.count)
        #expect(abs(dropped - Double(p)) < 0.03, "dropped fraction \(dropped) for p = \(p)")
    }

    @Test("dropout with p = 0 is the identity")
    func dropoutZero() {
        var g = SeededGenerator(seed: 7)
        let x = Tensor([1, -2, 3], shape: [3])
        let before = g
        expectClose(x.dropout(0, generator: &g), x, .exact)
        #expect(g == before)
    }
}
