import TandemCore
import TandemFormats
import TandemModels
import TandemNN
import TandemOptim
import Testing

// MARK: - The five models against PyTorch

/// Each model at its fixture's small size: names and shapes, the loss and every gradient,
/// then two optimizer steps of SGD, Nesterov and AdamW and one clipped SGD step, all against
/// what PyTorch computed (scripts/make_fixtures.py).
@Suite("Models against PyTorch fixtures")
struct ModelFixtureTests {
    static let models = ["mlp", "mlp-wide", "cnn", "lstm", "gpt"]

    /// See `expectNear`: max |Δ| ≤ 1e-4 · max(1, max |reference|).
    static let tolerance: Float = 1e-4

    /// Elements whose gradient is zero in exact arithmetic. Adding the same vector to every
    /// key shifts all of a query's scores by the same amount, which the softmax ignores, so the
    /// key third of an attention `in_proj_bias` only ever receives rounding noise (≈1e-9 in
    /// PyTorch and here alike).
    static func structurallyZero(_ name: String, count: Int) -> Range<Int>? {
        name.hasSuffix("att.in_proj_bias") ? (count / 3)..<(2 * count / 3) : nil
    }

    @Test("parameter names and shapes are PyTorch's state_dict", arguments: models)
    func names(_ name: String) throws {
        let fixture = try Fixture(name)
        let model = try fixture.makeModel()
        let reference = try fixture.group("param")
        // The fixture's header is written with sorted keys, so PyTorch's order is lost: compare as sets.
        let own = model.namedParameters.map(\.name)
        #expect(Set(own).count == own.count, "duplicate names in \(own)")
        #expect(Set(own) == Set(reference.keys), "only in Tandem: \(Set(own).subtracting(reference.keys).sorted()); only in PyTorch: \(Set(reference.keys).subtracting(own).sorted())")
        for (parameterName, parameter) in model.namedParameters {
            guard let expected = reference[parameterName] else { continue }
            #expect(parameter.shape == expected.shape, "\(parameterName)")
        }
        #expect(String(model.parameterCount) == fixture.metadata["params"])
    }

    @Test("loss and every gradient", arguments: models)
    func gradients(_ name: String) throws {
        let fixture = try Fixture(name)
        let model = try fixture.loadedModel()
        let loss = model.lossAndGradients(try fixture.batch())
        expectNear([loss], shape: [], [try fixture.scalar("loss")], shape: [], tolerance: Self.tolerance, "\(name) loss")
        for (parameterName, parameter) in model.namedParameters {
            let gradient = try #require(parameter.gradient, "\(name) \(parameterName) has no gradient")
            let expected = try fixture.tensor("grad.\(parameterName)")
            expectNear(gradient, expected, tolerance: Self.tolerance, "\(name) grad.\(parameterName)")
            if let zero = Self.structurallyZero(parameterName, count: gradient.count) {
                let noise = zero.map { abs(gradient.scalars[$0]) }.max() ?? 0
                #expect(noise < 1e-6, "\(name) \(parameterName)[\(zero)] should be zero up to rounding, is up to \(noise)")
            }
        }
    }

    /// One of make_fixtures.py's OPTIMIZERS runs.
    struct Run: Sendable, CustomTestStringConvertible {
        var model: String
        var key: String
        var testDescription: String { "\(model) \(key)" }
    }

    static let runs = models.flatMap { m in ["sgd", "nesterov", "adamw", "clip"].map { Run(model: m, key: $0) } }

    @Test("optimizer steps", arguments: runs)
    func optimizer(_ run: Run) throws {
        let fixture = try Fixture(run.model)
        let model = try fixture.loadedModel()
        let batch = try fixture.batch()
        let optimizer: any Optimizer, steps: Int
        switch run.key {
        case "sgd": (optimizer, steps) = (try SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01), 2)
        case "nesterov": (optimizer, steps) = (try SGD(learningRate: 0.1, momentum: 0.9, nesterov: true), 2)
        case "adamw": (optimizer, steps) = (try AdamW(learningRate: 0.01, weightDecay: 0.01), 2)
        default: (optimizer, steps) = (try SGD(learningRate: 0.1), 1)
        }
        let state = OptimizerState(optimizer)
        for step in 0..<steps {
            model.zeroGradients()
            let loss = model.lossAndGradients(batch)
            if step == 0 {
                expectNear([loss], shape: [], [try fixture.scalar("loss")], shape: [], tolerance: Self.tolerance, "\(run) loss 1")
            } else {
                expectNear([loss], shape: [], [try fixture.scalar("\(run.key)_loss2")], shape: [], tolerance: Self.tolerance, "\(run) loss 2")
            }
            if run.key == "clip" {
                let norm = clipGradientNorm(model.parameters, maxNorm: 0.5)
                expectNear([norm], shape: [], [try fixture.scalar("clip_total_norm")], shape: [], tolerance: Self.tolerance, "\(run) total norm")
                #expect(abs(Float(globalGradientNorm(model.parameters)) - min(norm, 0.5)) < 1e-4, "norm after clipping")
            }
            state.apply(to: model.namedParameters)
        }
        #expect(state.step == steps)
        for (parameterName, parameter) in model.namedParameters {
            let expected = try fixture.tensor("\(run.key).\(parameterName)")
            guard run.key == "adamw", let zero = Self.structurallyZero(parameterName, count: parameter.count) else {
                expectNear(parameter.value, expected, tolerance: Self.tolerance, "\(run) \(parameterName)")
                continue
            }
            // Adam divides the noise gradient by its own magnitude, so these elements move by up
            // to ±lr per step in a direction set by rounding, in PyTorch as here: compare the rest
            // exactly, and these only against Adam's step bound.
            let actual = parameter.value.scalars, reference = expected.scalars
            let kept = actual.indices.filter { !zero.contains($0) }
            expectNear(kept.map { actual[$0] }, shape: [kept.count], kept.map { reference[$0] }, shape: [kept.count],
                       tolerance: Self.tolerance, "\(run) \(parameterName) outside the key bias")
            for i in zero {
                #expect(abs(actual[i] - reference[i]) <= 2 * Float(steps) * 0.01, "\(run) \(parameterName)[\(i)] beyond Adam's step bound")
            }
        }
        if !optimizer.stateNames.isEmpty {
            #expect(Set(state.slots.keys) == Set(model.namedParameters.map(\.name)))
            #expect(state.slots.values.allSatisfy { $0.count == optimizer.stateNames.count })
        }
    }

    @Test("GPT is causal, and a prefix shorter than the context uses the first positions")
    func gptPrefix() throws {
        let fixture = try Fixture("gpt")
        let gpt = try #require(try fixture.loadedModel() as? GPT)
        let x = try fixture.tensor("x"), labels = try fixture.labels("y")
        let (b, t) = (x.shape[0], x.shape[1])
        #expect(t == gpt.context)
        let full = gpt.forward(x)
        let prefix = gpt.forward(x.slice(axis: 1, 0..<5))
        expectNear(prefix, full.slice(axis: 1, 0..<5), tolerance: 1e-5, "logits of a 5-token prefix")
        // A different token at position 6 changes nothing before it.
        let edited = x.copy()
        for row in 0..<b { edited.pointer[row * t + 6] = Float((Int(edited.pointer[row * t + 6]) + 1) % gpt.vocabulary) }
        let after = gpt.forward(edited)
        expectNear(after.slice(axis: 1, 0..<6), full.slice(axis: 1, 0..<6), tolerance: 0, "logits before the edit")
        #expect(scaledError(after.slice(axis: 1, 6..<7), full.slice(axis: 1, 6..<7)) > 1e-3, "the edit changed nothing")
        // Training on the prefix gives later positions no gradient.
        let prefixLabels = (0..<b).flatMap { row in labels[(row * t)..<(row * t + 5)] }
        _ = gpt.lossAndGradients(Batch(inputs: x.slice(axis: 1, 0..<5), targets: .classes(prefixLabels)))
        let pos = try #require(gpt.pos.gradient).scalars, d = gpt.dimensions
        #expect(pos[(5 * d)...].allSatisfy { $0 == 0 }, "positions 5..<8 got gradient")
        #expect(pos[..<(5 * d)].contains { $0 != 0 })
    }

    @Test("loading refuses weights that do not fit, and changes nothing")
    func loadRefuses() throws {
        let fixture = try Fixture("mlp")
        let model = try fixture.makeModel()
        let before = model.stateDict()
        var weights = try fixture.group("param")
        weights["0.weight"] = Tensor(zeros: [3, 3])
        #expect(throws: ModuleError.shapeMismatch(name: "0.weight", found: [3, 3], expected: [16, 20])) { try model.load(stateDict: weights) }
        weights = try fixture.group("param")
        weights["9.weight"] = Tensor(zeros: [1])
        #expect(throws: ModuleError.self) { try model.load(stateDict: weights) }
        weights = try fixture.group("param")
        weights["4.bias"] = nil
        #expect(throws: ModuleError.missingTensor(name: "4.bias")) { try model.load(stateDict: weights) }
        for (name, value) in model.stateDict() { #expect(value.scalars == before[name]?.scalars, "\(name) changed") }
    }
}
