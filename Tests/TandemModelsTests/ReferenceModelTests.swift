import TandemCore
import TandemModels
import TandemNN
import Testing

// MARK: - The full-size reference models

@Suite("Reference models at full size")
struct ReferenceModelTests {
    /// `sum(p.numel() for p in model.parameters())` of torch_bench.py's models.
    static let parameterCounts: [ReferenceModel: Int] = [
        .mlp: 1_863_690, .mlpWide: 37_801_994, .cnn: 94_538, .lstm: 831_520, .gpt: 27_443_200,
    ]

    /// torch_bench.py's `state_dict()` keys, in PyTorch's order (a module's own parameters
    /// before its children's, children in registration order).
    static let stateDictNames: [ReferenceModel: [String]] = [
        .mlp: ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"],
        .mlpWide: ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias"],
        .cnn: ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias", "10.weight", "10.bias"],
        .lstm: (0..<2).flatMap { l in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map { "rnn.\($0)_l\(l)" } } + ["head.weight", "head.bias"],
        .gpt: ["pos", "emb.weight"]
            + (0..<6).flatMap { b in
                ["ln1.weight", "ln1.bias", "att.in_proj_weight", "att.in_proj_bias", "att.out_proj.weight", "att.out_proj.bias",
                 "ln2.weight", "ln2.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"].map { "blocks.\(b).\($0)" }
            }
            + ["ln.weight", "ln.bias", "out.weight", "out.bias"],
    ]

    /// Spot checks of shapes.
    static let shapes: [ReferenceModel: [String: [Int]]] = [
        .mlp: ["0.weight": [1024, 784], "4.bias": [10]],
        .mlpWide: ["0.weight": [4096, 1024], "6.weight": [10, 4096]],
        .cnn: ["0.weight": [32, 3, 3, 3], "6.weight": [128, 64, 3, 3], "10.weight": [10, 128]],
        .lstm: ["rnn.weight_ih_l0": [1024, 32], "rnn.weight_ih_l1": [1024, 256], "rnn.weight_hh_l1": [1024, 256], "head.bias": [32]],
        .gpt: ["pos": [256, 512], "emb.weight": [8192, 512], "blocks.0.att.in_proj_weight": [1536, 512],
               "blocks.5.mlp.2.bias": [512], "blocks.3.mlp.0.weight": [2048, 512], "out.weight": [8192, 512]],
    ]

    @Test("parameter count, state_dict names and shapes", arguments: ReferenceModel.allCases)
    func fullSize(_ reference: ReferenceModel) throws {
        let model = reference.make(seed: 0)
        #expect(model.parameterCount == Self.parameterCounts[reference])
        #expect(model.namedParameters.map(\.name) == Self.stateDictNames[reference])
        let byName = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter.shape) })
        for (name, shape) in try #require(Self.shapes[reference]) {
            #expect(byName[name] == shape, "\(name)")
        }
    }

    @Test("the same seed gives the same weights", arguments: [ReferenceModel.cnn, .lstm])
    func seeded(_ reference: ReferenceModel) {
        let a = reference.make(seed: 3).namedParameters, b = reference.make(seed: 3).namedParameters
        let c = reference.make(seed: 4).namedParameters
        #expect(zip(a, b).allSatisfy { $0.parameter.value.scalars == $1.parameter.value.scalars })
        #expect(!zip(a, c).allSatisfy { $0.parameter.value.scalars == $1.parameter.value.scalars })
    }
}
