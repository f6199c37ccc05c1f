import TandemCore

// MARK: - Linear

/// `y = x·Wᵀ + b`, initialised as PyTorch's `nn.Linear` (uniform ±1/√in).
public final class Linear: Layer {
    public let weight: Parameter
    public let bias: Parameter?

    public init(inputDimensions: Int, outputDimensions: Int, bias: Bool = true, generator: inout SeededGenerator) {
        let bound = 1 / Float(inputDimensions).squareRoot()
        weight = Parameter(.uniform([outputDimensions, inputDimensions], low: -bound, high: bound, generator: &generator))
        self.bias = bias ? Parameter(.uniform([outputDimensions], low: -bound, high: bound, generator: &generator)) : nil
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        .linear(x, weight: weight.variable, bias: bias?.variable)
    }
}

// MARK: - Convolution and pooling

/// 2-D convolution, initialised as PyTorch's `nn.Conv2d` (uniform ±1/√(C·k·k)).
public final class Conv2d: Layer {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int, padding: Int

    public init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, generator: inout SeededGenerator) {
        let bound = 1 / Float(inputChannels * kernelSize * kernelSize).squareRoot()
        weight = Parameter(.uniform([outputChannels, inputChannels, kernelSize, kernelSize], low: -bound, high: bound, generator: &generator))
        self.bias = bias ? Parameter(.uniform([outputChannels], low: -bound, high: bound, generator: &generator)) : nil
        self.stride = stride
        self.padding = padding
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        .conv2d(x, weight: weight.variable, bias: bias?.variable, stride: stride, padding: padding)
    }
}

public final class MaxPool2d: Layer {
    public let kernelSize: Int, stride: Int
    public init(kernelSize: Int, stride: Int? = nil) { self.kernelSize = kernelSize; self.stride = stride ?? kernelSize }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.maxPool2d(kernel: kernelSize, stride: stride) }
}

/// `[N, C, H, W]` → `[N, C]` (PyTorch's `AdaptiveAvgPool2d(1)` followed by `Flatten`).
public final class GlobalAveragePool: Layer {
    public init() {}
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.globalAveragePool() }
}

public final class Flatten: Layer {
    public init() {}
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.reshaped([x.shape[0], -1]) }
}

// MARK: - Activations

public final class ReLU: Layer {
    public init() {}
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.relu() }
}

/// GELU with the exact error function (PyTorch's default).
public final class GELU: Layer {
    public init() {}
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.gelu() }
}

/// Inverted dropout with its own seeded generator; the identity when not training.
public final class Dropout: Layer {
    public let probability: Float
    public var isTraining = true
    public var generator: SeededGenerator
    public init(probability: Float, seed: UInt64) {
        precondition(probability >= 0 && probability < 1, "dropout probability must be in [0, 1)")
        self.probability = probability
        generator = SeededGenerator(seed: seed)
    }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
    public func callAsFunction(_ x: Tensor) -> Tensor { isTraining ? x.dropout(probability, generator: &generator) : x }
}

// MARK: - Normalisation and embedding

public final class LayerNorm: Layer {
    public let weight: Parameter, bias: Parameter
    public let eps: Float
    public init(dimensions: Int, eps: Float = 1e-5) {
        weight = Parameter(Tensor(repeating: 1, shape: [dimensions]))
        bias = Parameter(Tensor(zeros: [dimensions]))
        self.eps = eps
    }
    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }
    public func callAsFunction(_ x: Tensor) -> Tensor { .layerNorm(x, weight: weight.variable, bias: bias.variable, eps: eps) }
}

/// A lookup table `[count, dimensions]`, initialised N(0, 1) as PyTorch's `nn.Embedding`.
public final class Embedding: Module {
    public let weight: Parameter
    public init(count: Int, dimensions: Int, generator: inout SeededGenerator) {
        weight = Parameter(.normal([count, dimensions], generator: &generator))
    }
    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }
    public func callAsFunction(_ indices: [Int32], shape: [Int]) -> Tensor {
        .embedding(weight.variable, indices: indices, shape: shape)
    }
}
