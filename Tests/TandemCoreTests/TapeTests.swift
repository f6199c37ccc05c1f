import TandemCore
import TandemNN
import Testing

// MARK: - Tape semantics

/// Watches the gradient hooks of named parameters during backward passes.
final class HookLog {
    /// (name, the gradient as it was when the hook ran), in call order.
    var calls: [(name: String, gradient: [Float])] = []

    init(_ parameters: [(name: String, parameter: Parameter)]) {
        for (name, parameter) in parameters {
            parameter.onGradientReady = { [unowned self] p in
                self.calls.append((name, p.gradient?.scalars ?? []))
            }
        }
    }

    var names: [String] { calls.map(\.name) }
}

@Suite("Tape")
struct TapeTests {
    /// 5 → 8 → 6 → 3 with ReLU, names "0.weight" … "4.bias".
    static func mlp(seed: UInt64 = 1) -> Sequential {
        var g = SeededGenerator(seed: seed)
        return Sequential([
            Linear(inputDimensions: 5, outputDimensions: 8, generator: &g), ReLU(),
            Linear(inputDimensions: 8, outputDimensions: 6, generator: &g), ReLU(),
            Linear(inputDimensions: 6, outputDimensions: 3, generator: &g),
        ])
    }

    static func input(seed: UInt64 = 2) -> (x: Tensor, labels: [Int32]) {
        var g = SeededGenerator(seed: seed)
        return (.normal([4, 5], generator: &g), [0, 2, 1, 2])
    }

    static func backward(_ model: Sequential, _ x: Tensor, _ labels: [Int32]) {
        let tape = Tape()
        let loss = tape.record { Tensor.crossEntropy(logits: model(x), labels: labels) }
        tape.backward(loss)
    }

    @Test("onGradientReady fires once per parameter, with the final gradient, in reverse order of first use")
    func hooks() throws {
        let model = Self.mlp()
        let (x, labels) = Self.input()
        let log = HookLog(model.namedParameters)
        Self.backward(model, x, labels)

        let names = model.namedParameters.map(\.name)
        #expect(names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"])
        // Forward reads weight then bias of each layer, so backward finishes them in reverse.
        #expect(log.names == names.reversed())
        #expect(Set(log.names).count == log.names.count, "a hook fired twice: \(log.names)")
        for (name, atHook) in log.calls {
            let parameter = try #require(model.namedParameters.first { $0.name == name }?.parameter)
            let final = try #require(parameter.gradient, "\(name) has no gradient")
            expectClose(atHook, shape: [atHook.count], final.scalars, shape: [final.count], .exact, "\(name) at its hook")
        }
    }

    @Test("a hook sees the gradient complete when its parameter is used twice, far apart")
    func hookWithSharedWeight() throws {
        var g = SeededGenerator(seed: 3)
        let w = Parameter(.normal([4, 4], generator: &g)), v = Parameter(.normal([4, 4], generator: &g))
        let x = Tensor.normal([2, 4], generator: &g)
        let log = HookLog([("w", w), ("v", v)])
        let tape = Tape()
        // w is used first and last, v in between.
        let loss = tape.record {
            let h = Tensor.linear(x, weight: w.variable, bias: nil).tanh()
            let k = Tensor.linear(h, weight: v.variable, bias: nil).tanh()
            return Tensor.linear(k, weight: w.variable, bias: nil).sum()
        }
        tape.backward(loss)
        #expect(log.names == ["v", "w"])
        let final = try #require(w.gradient)
        #expect(log.calls.last?.gradient == final.scalars)
    }

    @Test("a weight used twice gets the sum of both uses' gradients")
    func sharedWeightSums() throws {
        var g = SeededGenerator(seed: 4)
        let w = Tensor.normal([3, 4], generator: &g)
        let x1 = Tensor.normal([2, 4], generator: &g), x2 = Tensor.normal([5, 4], generator: &g)
        func gradient(_ body: (Tensor) -> Tensor) throws -> Tensor {
            let p = Parameter(w)
            var calls = 0
            p.onGradientReady = { _ in calls += 1 }
            let tape = Tape()
            let loss = tape.record { body(p.variable) }
            tape.backward(loss)
            #expect(calls == 1)
            return try #require(p.gradient)
        }
        let first = try gradient { Tensor.linear(x1, weight: $0, bias: nil).tanh().sum() }
        let second = try gradient { Tensor.linear(x2, weight: $0, bias: nil).squared().sum() }
        let both = try gradient { Tensor.linear(x1, weight: $0, bias: nil).tanh().sum() + Tensor.linear(x2, weight: $0, bias: nil).squared().sum() }
        expectClose(both, Tensor(zip(first.scalars, second.scalars).map(+), shape: w.shape), .float, "shared gradient")
    }

    @Test("gradients accumulate across backward passes until zeroGradient")
    func accumulation() throws {
        let model = Self.mlp()
        let (x, labels) = Self.input()
        Self.backward(model, x, labels)
        let once = try model.parameters.map { try #require($0.gradient).copy() }
        let log = HookLog(model.namedParameters)
        Self.backward(model, x, labels)
        #expect(log.calls.count == once.count, "hooks fire on every backward")
        for ((name, p), g1) in zip(model.namedParameters, once) {
            let twice = try #require(p.gradient)
            expectClose(twice, Tensor(g1.scalars.map { 2 * $0 }, shape: g1.shape), .float, name)
            // At its hook in the second pass the parameter already held the sum.
            let atHook = try #require(log.calls.first { $0.name == name }).gradient
            #expect(atHook == twice.scalars, "\(name): hook ran before this pass's gradient was added")
        }
        model.zeroGradients()
        #expect(model.parameters.allSatisfy { $0.gradient == nil })
        Self.backward(model, x, labels)
        for (p, g1) in zip(model.parameters, once) { expectClose(try #require(p.gradient), g1, .exact) }
    }

    @Test("parameters handed the same gradient tensor do not share its storage")
    func noSharedGradientStorage() throws {
        let p = Parameter(Tensor([1, 2, 3], shape: [3])), q = Parameter(Tensor([4, 5, 6], shape: [3]))
        let tape = Tape()
        // `+` passes its output gradient to both inputs.
        tape.backward(tape.record { (p.variable + q.variable).sum() })
        expectClose(try #require(p.gradient), [1, 1, 1], shape: [3], .exact)
        expectClose(try #require(q.gradient), [1, 1, 1], shape: [3], .exact)
        // A second pass that reaches only p must leave q's gradient alone.
        tape.backward(tape.record { p.variable.squared().sum() })
        expectClose(try #require(p.gradient), [3, 5, 7], shape: [3], .exact, "p")
        expectClose(try #require(q.gradient), [1, 1, 1], shape: [3], .exact, "q")
    }

    @Test("backward does not adopt or change the caller's seed")
    func seedUntouched() throws {
        let p = Parameter(Tensor([1, 2], shape: [2]))
        let seed = Tensor([0.5, -1], shape: [2])
        let tape = Tape()
        for _ in 0..<2 {
            let y = tape.record { p.variable }  // the leaf itself
            tape.backward(y, seed: seed)
        }
        expectClose(try #require(p.gradient), [1, -2], shape: [2], .exact, "gradient")
        expectClose(seed, [0.5, -1], shape: [2], .exact, "seed")
    }

    @Test("parameters the loss does not use get no gradient and no hook")
    func unusedParameter() {
        var g = SeededGenerator(seed: 6)
        let used = Parameter(.normal([3], generator: &g)), unused = Parameter(.normal([3], generator: &g))
        let log = HookLog([("used", used), ("unused", unused)])
        let tape = Tape()
        let loss = tape.record { () -> Tensor in
            _ = unused.variable.exp()  // recorded, but the loss does not depend on it
            return used.variable.squared().sum()
        }
        tape.backward(loss)
        #expect(log.names == ["used"])
        #expect(unused.gradient == nil)
        expectClose(used.gradient!, used.value * 2, .float)
    }

    @Test("backward clears the tape; untracked values are not recorded")
    func clearing() {
        let p = Parameter(Tensor([1, 2, 3], shape: [3]))
        let tape = Tape()
        let loss = tape.record { () -> Tensor in
            _ = Tensor([1], shape: [1]).exp()  // no tracked input: no node
            return (p.variable * p.variable).sum()
        }
        #expect(tape.count == 3, "leaf, product and sum")
        tape.backward(loss)
        #expect(tape.count == 0)
        #expect(Tape.current == nil)
        expectClose(p.gradient!, [2, 4, 6], shape: [3], .exact)
        // Outside recording, operations are plain.
        #expect(!(p.variable * p.variable).isTracked)
    }
}
