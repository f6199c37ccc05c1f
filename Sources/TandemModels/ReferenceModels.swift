import TandemCore
import TandemNN

// MARK: - mlp, mlp-wide

/// Linear layers with ReLU between them, named as `nn.Sequential` ("0", "2", …).
public final class MLP: Model {
    public let dimensions: [Int]
    public let body: Sequential

    public init(dimensions: [Int], generator: inout SeededGenerator) {
        precondition(dimensions.count >= 2 && dimensions.allSatisfy { $0 > 0 }, "an MLP needs at least two positive widths")
        self.dimensions = dimensions
        var layers: [any Layer] = []
        for i in 0..<(dimensions.count - 1) {
            if i > 0 { layers.append(ReLU()) }
            layers.append(Linear(inputDimensions: dimensions[i], outputDimensions: dimensions[i + 1], generator: &generator))
        }
        body = Sequential(layers)
    }

    public var namedParameters: [(name: String, parameter: Parameter)] { body.namedParameters }
    public func forward(_ inputs: Tensor) -> Tensor { body(inputs.reshaped([inputs.shape[0], -1])) }
    public var forwardFLOPsPerSample: Double {
        zip(dimensions, dimensions.dropFirst()).reduce(0) { $0 + 2 * Double($1.0 * $1.1) }
    }
}

// MARK: - cnn

/// Three 3×3 convolutions (32, 64, 128 channels by default) with ReLU, two 2×2 max-pools,
/// a global average pool and a linear classifier, named as the reference `nn.Sequential`.
public final class CNN: Model {
    public let body: Sequential
    public let channels: Int, widths: [Int], classes: Int, height: Int, width: Int

    public init(channels: Int = 3, widths: [Int] = [32, 64, 128], classes: Int = 10, height: Int = 32, width: Int = 32,
                generator: inout SeededGenerator) {
        precondition(widths.count == 3, "the reference CNN has three convolutions")
        self.channels = channels
        self.widths = widths
        self.classes = classes
        self.height = height
        self.width = width
        func conv(_ i: Int, _ o: Int) -> Conv2d {
            Conv2d(inputChannels: i, outputChannels: o, kernelSize: 3, padding: 1, generator: &generator)
        }
        body = Sequential([
            conv(channels, widths[0]), ReLU(), MaxPool2d(kernelSize: 2),
            conv(widths[0], widths[1]), ReLU(), MaxPool2d(kernelSize: 2),
            conv(widths[1], widths[2]), ReLU(),
            GlobalAveragePool(), Flatten(),
            Linear(inputDimensions: widths[2], outputDimensions: classes, generator: &generator),
        ])
    }

    public var namedParameters: [(name: String, parameter: Parameter)] { body.namedParameters }
    public func forward(_ inputs: Tensor) -> Tensor { body(inputs) }
    public var forwardFLOPsPerSample: Double {
        let p1 = Double(height * width), p2 = Double((height / 2) * (width / 2)), p3 = Double((height / 4) * (width / 4))
        let w = widths.map(Double.init), c = Double(channels)
        return 2 * (p1 * w[0] * c * 9 + p2 * w[1] * w[0] * 9 + p3 * w[2] * w[1] * 9 + w[2] * Double(classes))
    }
}

// MARK: - lstm

/// A batch-first multi-layer LSTM (`rnn`) and a linear head (`head`) on the last step.
public final class LSTMRegressor: Model {
    public let rnn: LSTM
    public let head: Linear
    public let steps: Int

    public init(inputSize: Int = 32, hiddenSize: Int = 256, layers: Int = 2, outputSize: Int = 32, steps: Int = 64,
                generator: inout SeededGenerator) {
        rnn = LSTM(inputSize: inputSize, hiddenSize: hiddenSize, layers: layers, generator: &generator)
        head = Linear(inputDimensions: hiddenSize, outputDimensions: outputSize, generator: &generator)
        self.steps = steps
    }

    public var namedParameters: [(name: String, parameter: Parameter)] { prefixed("rnn", rnn) + prefixed("head", head) }

    public func forward(_ inputs: Tensor) -> Tensor {
        let hidden = rnn(inputs)
        let last = hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]).reshaped([hidden.shape[0], rnn.hiddenSize])
        return head(last)
    }

    public var forwardFLOPsPerSample: Double {
        let h = Double(rnn.hiddenSize)
        let perStep = 2 * 4 * h * (Double(rnn.inputSize) + h) + Double(rnn.layerCount - 1) * 2 * 4 * h * (h + h)
        return Double(steps) * perStep + 2 * h * Double(head.weight.shape[0])
    }
}

// MARK: - gpt

/// One pre-LayerNorm transformer block: `x + att(ln1(x))`, then `x + mlp(ln2(x))`.
public final class TransformerBlock: Layer {
    public let ln1: LayerNorm, att: CausalSelfAttention, ln2: LayerNorm, mlp: Sequential

    public init(dimensions: Int, heads: Int, generator: inout SeededGenerator) {
        ln1 = LayerNorm(dimensions: dimensions)
        att = CausalSelfAttention(dimensions: dimensions, heads: heads, generator: &generator)
        ln2 = LayerNorm(dimensions: dimensions)
        mlp = Sequential([
            Linear(inputDimensions: dimensions, outputDimensions: 4 * dimensions, generator: &generator), GELU(),
            Linear(inputDimensions: 4 * dimensions, outputDimensions: dimensions, generator: &generator),
        ])
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        prefixed("ln1", ln1) + prefixed("att", att) + prefixed("ln2", ln2) + prefixed("mlp", mlp)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = x + att(ln1(x))
        return h + mlp(ln2(h))
    }
}

/// A decoder-only transformer: token embedding plus learned positions, pre-LN blocks,
/// final LayerNorm and an untied output projection, named as the reference module.
public final class GPT: Model {
    public let vocabulary: Int, dimensions: Int, context: Int
    public let pos: Parameter
    public let emb: Embedding
    public let blocks: [TransformerBlock]
    public let ln: LayerNorm
    public let out: Linear

    public init(vocabulary: Int = 8192, dimensions: Int = 512, heads: Int = 8, layers: Int = 6, context: Int = 256,
                generator: inout SeededGenerator) {
        self.vocabulary = vocabulary
        self.dimensions = dimensions
        self.context = context
        emb = Embedding(count: vocabulary, dimensions: dimensions, generator: &generator)
        pos = Parameter(Tensor(zeros: [context, dimensions]))
        blocks = (0..<layers).map { _ in TransformerBlock(dimensions: dimensions, heads: heads, generator: &generator) }
        ln = LayerNorm(dimensions: dimensions)
        out = Linear(inputDimensions: dimensions, outputDimensions: vocabulary, generator: &generator)
    }

    /// PyTorch's order: the module's own parameter (`pos`) first, then its children.
    public var namedParameters: [(name: String, parameter: Parameter)] {
        [("pos", pos)] + prefixed("emb", emb)
            + blocks.enumerated().flatMap { prefixed("blocks.\($0.offset)", $0.element) }
            + prefixed("ln", ln) + prefixed("out", out)
    }

    /// Token ids `[B, T]` (as floats) → logits `[B, T, vocabulary]`.
    public func forward(_ inputs: Tensor) -> Tensor {
        let b = inputs.shape[0], t = inputs.shape[1]
        precondition(t <= context, "sequence of \(t) tokens is longer than the context of \(context)")
        let positions = t == context ? pos.variable : pos.variable.slice(axis: 0, 0..<t)
        var x = emb(inputs.int32s, shape: [b, t]) + positions
        for block in blocks { x = block(x) }
        return out(ln(x))
    }

    public var forwardFLOPsPerSample: Double {
        let d = Double(dimensions), t = Double(context), l = Double(blocks.count)
        let perToken = l * (2 * 12 * d * d) + 2 * d * Double(vocabulary)
        let attention = l * 2 * 2 * t * t * d
        return t * perToken + attention
    }
}

// MARK: - Registry

/// The reference workloads of WORKLOADS.md by name.
public enum ReferenceModel: String, CaseIterable, Sendable {
    case mlp, mlpWide = "mlp-wide", cnn, lstm, gpt

    /// The full-size model, initialised from `seed`.
    public func make(seed: UInt64) -> any Model {
        var g = SeededGenerator(seed: seed)
        switch self {
        case .mlp: return MLP(dimensions: [784, 1024, 1024, 10], generator: &g)
        case .mlpWide: return MLP(dimensions: [1024, 4096, 4096, 4096, 10], generator: &g)
        case .cnn: return CNN(generator: &g)
        case .lstm: return LSTMRegressor(generator: &g)
        case .gpt: return GPT(generator: &g)
        }
    }

    /// Batch per worker on a CPU (WORKLOADS.md).
    public var cpuBatch: Int {
        switch self {
        case .lstm: 32
        case .gpt: 4
        default: 64
        }
    }

    /// A synthetic batch as WORKLOADS.md describes: N(0, 1) inputs (uniform tokens), uniform targets.
    public func syntheticBatch(size: Int, generator: inout SeededGenerator) -> Batch {
        func classes(_ n: Int, _ k: Int) -> [Int32] { (0..<n).map { _ in Int32(generator.next() % UInt64(k)) } }
        switch self {
        case .mlp: return Batch(inputs: .normal([size, 784], generator: &generator), targets: .classes(classes(size, 10)))
        case .mlpWide: return Batch(inputs: .normal([size, 1024], generator: &generator), targets: .classes(classes(size, 10)))
        case .cnn: return Batch(inputs: .normal([size, 3, 32, 32], generator: &generator), targets: .classes(classes(size, 10)))
        case .lstm: return Batch(inputs: .normal([size, 64, 32], generator: &generator), targets: .values(.normal([size, 32], generator: &generator)))
        case .gpt:
            let tokens = classes(size * 256, 8192).map(Float.init)
            return Batch(inputs: Tensor(tokens, shape: [size, 256]), targets: .classes(classes(size * 256, 8192)))
        }
    }
}
