import TandemCore

// MARK: - LSTM

/// A multi-layer, batch-first LSTM from zero state, with PyTorch's parameter names and
/// layout (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, …; gates i, f, g, o)
/// and initialisation (uniform ±1/√hidden).
public final class LSTM: Layer {
    public let inputSize: Int, hiddenSize: Int, layerCount: Int
    /// Per layer: weight_ih, weight_hh, bias_ih, bias_hh.
    public let weights: [[Parameter]]

    public init(inputSize: Int, hiddenSize: Int, layers: Int = 1, generator: inout SeededGenerator) {
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        layerCount = layers
        let bound = 1 / Float(hiddenSize).squareRoot()
        weights = (0..<layers).map { l in
            [[4 * hiddenSize, l == 0 ? inputSize : hiddenSize], [4 * hiddenSize, hiddenSize], [4 * hiddenSize], [4 * hiddenSize]].map {
                Parameter(.uniform($0, low: -bound, high: bound, generator: &generator))
            }
        }
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        weights.enumerated().flatMap { l, w in
            zip(["weight_ih_l\(l)", "weight_hh_l\(l)", "bias_ih_l\(l)", "bias_hh_l\(l)"], w).map { (name: $0, parameter: $1) }
        }
    }

    /// `[B, T, inputSize]` → every hidden state of the last layer, `[B, T, hiddenSize]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        weights.reduce(x) { h, w in
            .lstm(h, weightIH: w[0].variable, weightHH: w[1].variable, biasIH: w[2].variable, biasHH: w[3].variable)
        }
    }
}

// MARK: - Causal self-attention

/// Multi-head self-attention with a causal mask, in the layout of PyTorch's
/// `nn.MultiheadAttention` (`in_proj_weight` `[3D, D]` holding q, k, v; `in_proj_bias`;
/// `out_proj.weight`, `out_proj.bias`) and its initialisation (Xavier-uniform in-projection,
/// zero biases).
public final class CausalSelfAttention: Layer {
    public let heads: Int
    public let inProjectionWeight: Parameter, inProjectionBias: Parameter
    public let outProjection: Linear

    public init(dimensions: Int, heads: Int, generator: inout SeededGenerator) {
        precondition(dimensions % heads == 0, "\(dimensions) dimensions do not split into \(heads) heads")
        self.heads = heads
        let bound = (6 / Float(dimensions + 3 * dimensions)).squareRoot()
        inProjectionWeight = Parameter(.uniform([3 * dimensions, dimensions], low: -bound, high: bound, generator: &generator))
        inProjectionBias = Parameter(Tensor(zeros: [3 * dimensions]))
        outProjection = Linear(inputDimensions: dimensions, outputDimensions: dimensions, generator: &generator)
        outProjection.bias!.value = Tensor(zeros: [dimensions])
    }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        [("in_proj_weight", inProjectionWeight), ("in_proj_bias", inProjectionBias)] + prefixed("out_proj", outProjection)
    }

    /// `[B, T, D]` → `[B, T, D]`; position i attends to positions ≤ i.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let qkv = Tensor.linear(x, weight: inProjectionWeight.variable, bias: inProjectionBias.variable)
        return outProjection(.causalAttention(qkv, heads: heads))
    }
}
