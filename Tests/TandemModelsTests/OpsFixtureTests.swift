import TandemCore
import TandemFormats
import TandemModels
import TandemNN
import Testing

// MARK: - Single operations against PyTorch

/// `ops.safetensors`: each op's output and its gradients for `Σ y ⊙ gy`.
@Suite("Operations against PyTorch fixtures")
struct OpsFixtureTests {
    static let tolerance: Float = 1e-4

    /// Runs `body` on tracked copies of `inputs`, back-propagates `seed`, and returns the
    /// output and each input's gradient.
    static func run(_ inputs: [Tensor], seed: Tensor?, _ body: ([Tensor]) -> Tensor) throws -> (y: Tensor, grads: [Tensor]) {
        let parameters = inputs.map { Parameter($0) }
        let tape = Tape()
        let y = tape.record { body(parameters.map(\.variable)) }
        tape.backward(y, seed: seed)
        return (y, try parameters.map { try #require($0.gradient) })
    }

    @Test("gelu (exact erf form)")
    func gelu() throws {
        let f = try Fixture("ops")
        expectNear(try f.tensor("gelu.x").gelu(), try f.tensor("gelu.y"), tolerance: 1e-6, "gelu")
    }

    @Test("layerNorm forward and gradients")
    func layerNorm() throws {
        let f = try Fixture("ops")
        let (y, g) = try Self.run([f.tensor("layernorm.x"), f.tensor("layernorm.weight"), f.tensor("layernorm.bias")],
                                  seed: f.tensor("layernorm.gy")) { Tensor.layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }
        expectNear(y, try f.tensor("layernorm.y"), tolerance: Self.tolerance, "y")
        for (grad, name) in zip(g, ["x", "weight", "bias"]) {
            expectNear(grad, try f.tensor("layernorm.grad_\(name)"), tolerance: Self.tolerance, "grad \(name)")
        }
    }

    @Test("conv2d stride 2 padding 1 forward and gradients")
    func conv() throws {
        let f = try Fixture("ops")
        let (y, g) = try Self.run([f.tensor("conv.x"), f.tensor("conv.weight"), f.tensor("conv.bias")], seed: f.tensor("conv.gy")) {
            Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
        }
        expectNear(y, try f.tensor("conv.y"), tolerance: Self.tolerance, "y")
        for (grad, name) in zip(g, ["x", "weight", "bias"]) {
            expectNear(grad, try f.tensor("conv.grad_\(name)"), tolerance: Self.tolerance, "grad \(name)")
        }
    }

    @Test("maxPool2d forward and gradient")
    func maxPool() throws {
        let f = try Fixture("ops")
        let (y, g) = try Self.run([f.tensor("maxpool.x")], seed: f.tensor("maxpool.gy")) { $0[0].maxPool2d(kernel: 2, stride: 2) }
        expectNear(y, try f.tensor("maxpool.y"), tolerance: 0, "y")
        expectNear(g[0], try f.tensor("maxpool.grad_x"), tolerance: 0, "grad x")
    }

    @Test("crossEntropy loss and gradient")
    func crossEntropy() throws {
        let f = try Fixture("ops")
        let labels = try f.labels("ce.target")
        let (loss, g) = try Self.run([f.tensor("ce.logits")], seed: nil) { Tensor.crossEntropy(logits: $0[0], labels: labels) }
        expectNear([loss.item], shape: [], [try f.scalar("ce.loss")], shape: [], tolerance: Self.tolerance, "loss")
        expectNear(g[0], try f.tensor("ce.grad"), tolerance: Self.tolerance, "grad")
    }

    @Test("CausalSelfAttention with PyTorch's MultiheadAttention weights")
    func attention() throws {
        let f = try Fixture("ops")
        var generator = SeededGenerator(seed: 1)
        let layer = CausalSelfAttention(dimensions: 16, heads: 4, generator: &generator)
        let weights = try f.group("attn").filter { layer.namedParameters.map(\.name).contains($0.key) }
        try layer.load(stateDict: weights)
        let x = Parameter(try f.tensor("attn.x"))
        let tape = Tape()
        let y = tape.record { layer(x.variable) }
        tape.backward(y, seed: try f.tensor("attn.gy"))
        expectNear(y, try f.tensor("attn.y"), tolerance: Self.tolerance, "y")
        expectNear(try #require(x.gradient), try f.tensor("attn.grad_x"), tolerance: Self.tolerance, "grad x")
        for (name, parameter) in layer.namedParameters {
            expectNear(try #require(parameter.gradient), try f.tensor("attn.grad_\(name)"), tolerance: Self.tolerance, "grad \(name)")
        }
    }

    @Test("LSTM layer with PyTorch's nn.LSTM weights")
    func lstm() throws {
        let f = try Fixture("ops")
        var generator = SeededGenerator(seed: 1)
        let layer = LSTM(inputSize: 4, hiddenSize: 6, layers: 1, generator: &generator)
        try layer.load(stateDict: f.group("lstm").filter { layer.namedParameters.map(\.name).contains($0.key) })
        let x = Parameter(try f.tensor("lstm.x"))
        let tape = Tape()
        let y = tape.record { layer(x.variable) }
        tape.backward(y, seed: try f.tensor("lstm.gy"))
        expectNear(y, try f.tensor("lstm.y"), tolerance: Self.tolerance, "y")
        // h_n [1, B, H] is the last step of y.
        let last = y.detached.slice(axis: 1, 2..<3).reshaped([1, 2, 6])
        expectNear(last, try f.tensor("lstm.h_n"), tolerance: Self.tolerance, "h_n")
        expectNear(try #require(x.gradient), try f.tensor("lstm.grad_x"), tolerance: Self.tolerance, "grad x")
        for (name, parameter) in layer.namedParameters {
            expectNear(try #require(parameter.gradient), try f.tensor("lstm.grad_\(name)"), tolerance: Self.tolerance, "grad \(name)")
        }
    }
}
