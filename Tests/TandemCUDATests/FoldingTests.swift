import Testing
import TandemModels
@testable import TandemCUDA

/// Which weights a GPU step may fold the momentum into (``GPUTrainer/foldableWeights(_:_:)``) and which heads take the
/// fused launch (``GPUTrainer/fusesHead(classes:inputs:)``): decided from names and shapes, so checked here without a GPU.
@Suite("GPU step: folded momentum and the fused head")
struct FoldingTests {
    func foldable(_ w: ReferenceModel) -> [(name: String, count: Int)] {
        let named = w.make(seed: 0).namedParameters
        let folded = GPUTrainer.foldableWeights(w, named.map(\.name))
        return named.indices.filter { folded.contains($0) }.map { (named[$0].name, named[$0].parameter.count) }
    }

    @Test("gpt folds exactly its Linear weights: four a block and the head, no bias, LayerNorm or embedding")
    func gpt() {
        let weights = foldable(.gpt)
        let plain = weights.filter { $0.name.contains("bias") || $0.name.contains("ln") || $0.name.hasPrefix("emb") || $0.name == "pos" }
        let total = weights.reduce(0) { $0 + $1.count }
        let expected: Int = 6 * 3_145_728 + 4_194_304   // 6 × (512·1536 + 512·512 + 512·2048 + 2048·512) + 512·8192
        #expect(weights.count == 25)
        #expect(plain.isEmpty)
        #expect(total == expected)
    }

    @Test("mlp and mlp-wide fold every layer's weight; cnn and lstm fold nothing")
    func others() {
        let wide = foldable(.mlpWide).reduce(0) { $0 + $1.count }
        let expected: Int = 1024 * 4096 + 2 * 4096 * 4096 + 4096 * 10
        #expect(foldable(.mlp).count == 3)
        #expect(wide == expected)
        #expect(foldable(.cnn).isEmpty)
        #expect(foldable(.lstm).isEmpty)
    }

    @Test("the flat layout: aligned slices that tile the buffer, the scattered weights from scatteredFrom up to foldFrom, the foldable ones after, nothing else there",
          arguments: ReferenceModel.allCases)
    func layout(_ w: ReferenceModel) {
        let named = w.make(seed: 0).namedParameters
        let names = named.map(\.name), counts = named.map(\.parameter.count)
        let (offsets, ends, total, scatteredFrom, foldFrom) = GPUTrainer.layout(w, names: names, counts: counts)
        let folded = GPUTrainer.foldableWeights(w, names), scattered = GPUTrainer.scatteredWeights(w, names)
        let slices = names.indices.sorted { offsets[$0] < offsets[$1] }
        var next = 0, tiled = true
        for i in slices {
            tiled = tiled && offsets[i] == next && offsets[i] % 64 == 0 && ends[i] - offsets[i] >= counts[i] && ends[i] - offsets[i] < counts[i] + 64
            next = ends[i]
        }
        let misplaced = names.indices.filter {
            folded.contains($0) != (offsets[$0] >= foldFrom) || scattered.contains($0) != (scatteredFrom..<foldFrom).contains(offsets[$0])
        }
        #expect(tiled && next == total)
        #expect(misplaced.isEmpty)
        #expect(folded.isEmpty == (foldFrom == total))
        #expect(scattered.isEmpty == (scatteredFrom == foldFrom))
        #expect(scattered.map { names[$0] } == (w == .gpt ? ["emb.weight"] : []))
    }

    @Test("the fused head takes at most 16 classes over rows of whole 16-byte vectors, and as many rows as it has tickets for",
          arguments: [
              (10, 4096, 256, true), (16, 1024, 33, true), (3, 64, 4, true), (17, 4096, 256, false), (8192, 512, 256, false),
              (10, 100, 256, false), (10, 512, 16_380, true), (10, 512, 16_381, false), (10, 512, 20_000, false),
          ])
    func head(classes: Int, inputs: Int, rows: Int, fused: Bool) {
        #expect(GPUTrainer.fusesHead(classes: classes, inputs: inputs, rows: rows) == fused)
    }

    @Test("the head's blocks: 128 threads of eight inputs, split along k past 1024 inputs, at least 64 threads",
          arguments: [(4096, 128, 4), (1024, 128, 1), (1032, 128, 2), (512, 64, 1), (784, 128, 1), (64, 64, 1)])
    func headLayout(inputs: Int, threads: Int, splits: Int) {
        let layout = GPUTrainer.headLayout(inputs: inputs)
        #expect(layout.threads == threads && layout.splits == splits)
        #expect(layout.threads * layout.splits * 8 >= inputs)
    }
}

/// The update groups a step may leave to the next step's forward (``GPUNetwork/updateGroups``): decided from names, so
/// checked here without a GPU.
@Suite("GPU step: updates deferred into the next forward")
struct DeferralTests {
    @Test("gpt's groups: the embeddings with block 0, each later block, the final LayerNorm with the head; every parameter once")
    func gptGroups() {
        let names = ReferenceModel.gpt.make(seed: 0).namedParameters.map(\.name)
        let groups = GPTNetwork.updateGroups(names: names, blocks: 6)
        let flat = groups.joined()
        #expect(groups.count == 7)
        #expect(Set(flat) == Set(names.indices) && flat.count == names.count)
        #expect(Set(groups[0].map { names[$0] }) == Set(["pos", "emb.weight"] + names.filter { $0.hasPrefix("blocks.0.") }))
        #expect(groups[1...5].enumerated().allSatisfy { l, group in group.count == 12 && group.allSatisfy { names[$0].hasPrefix("blocks.\(l + 1).") } })
        #expect(Set(groups[6].map { names[$0] }) == ["ln.weight", "ln.bias", "out.weight", "out.bias"])
    }

    @Test("TANDEM_DEFER_UPDATES=1 defers updates under every schedule, with the optimizer beside too")
    func schedules() {
        func names(_ env: [String: String]) -> [String] {
            GPUTrainer.Schedule.allowed(environment: { env.merging(["TANDEM_SPLIT_FORWARD": "0"]) { a, _ in a }[$0] }).map(\.description)
        }
        let all = ", updates deferred into the next forward"
        #expect(names(["TANDEM_DEFER_UPDATES": "1"]) == ["one stream" + all, "optimizer beside" + all, "weight gradients beside" + all,
                                                         "weight gradients and optimizer beside" + all])
        #expect(names(["TANDEM_DEFER_UPDATES": "1", "TANDEM_GPU_WGRAD_STREAM": "1", "TANDEM_OVERLAP_OPTIMIZER": "0"]) == ["weight gradients beside" + all])
        #expect(names(["TANDEM_DEFER_UPDATES": "0"]) == ["one stream", "optimizer beside", "weight gradients beside", "weight gradients and optimizer beside"])
    }
}
