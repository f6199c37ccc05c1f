#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemNN
import TandemModels

/// `gpt` on the GPU: token + position embedding, pre-LayerNorm blocks (causal multi-head
/// attention; a GELU MLP), final LayerNorm, output projection, and softmax cross-entropy with
/// the gradient made in the same pass (in place over the logits).
///
/// Attention, two ways. In bf16 and fp16 with 64-wide heads (and T a multiple of 16) it is
/// the fused kernels of ``FlashAttention``: one launch forward from the projected qkv rows to
/// the merged heads, one backward from the merged heads' gradient to qkv's, nothing of size
/// T × T in memory (at B 16, T 256, 8 heads, 6 layers the GEMM path spent ~0.8 ms of a 2.9 ms
/// bf16 step in attention). Otherwise, or with `TANDEM_GPU_ATTENTION=gemm`, heads are split
/// into their own tensors and attention is batched cuBLAS GEMMs around a causal softmax kernel,
/// with the probabilities stored for backward.
///
/// The residual stream stays fp32 (as under PyTorch's autocast, where LayerNorm and the
/// residual additions run in fp32); LayerNorm outputs, projections, attention scores and MLP
/// activations are in the step's activation type.
final class GPTNetwork: GPUNetwork {
    let B: Int, T: Int, C: Int, H: Int, V: Int, L: Int
    var N: Int { B * T }
    let io: InputBuffers
    /// Parameter indices (into the trainer's flat buffer) by name.
    let index: [String: Int]
    /// The weights whose gradient is one GEMM's output (``GPUTrainer/weightGradientGEMM(parameter:transA:transB:m:n:k:a:lda:b:ldb:ldc:biasGradient:)``),
    /// by the end of their names.
    static let gemmWeights = [".att.in_proj_weight", ".att.out_proj.weight", ".mlp.0.weight", ".mlp.2.weight", "out.weight"]
    // Saved activations, one per block unless noted.
    var residual: [DevicePointer] = []   // L + 1, fp32 [N, C]
    var mid: [DevicePointer] = []        // fp32 [N, C]
    var ln1: [DevicePointer] = [], ln2: [DevicePointer] = []          // D [N, C]
    var stats1: [DevicePointer] = [], stats2: [DevicePointer] = []    // fp32 mean [N] then rstd [N]
    var qkv: [DevicePointer] = []                    // D [N, 3C]: [B, T, 3, H, hd]
    var merged: [DevicePointer] = []                 // D [N, C]: attention's output, heads merged
    /// Whether attention runs as the fused kernels (else batched GEMMs and a softmax).
    let fusedAttention: Bool
    let updateGroups: [[Int]]
    var lse: [DevicePointer] = []                    // fused: fp32 [B·H, T], each query row's log-sum-exp
    var rowDots: DevicePointer = 0                   // fused: fp32 [B·H, T], backward's dO·O of each query row (one layer's)
    var q: [DevicePointer] = [], k: [DevicePointer] = [], v: [DevicePointer] = []  // GEMM path: D [B, H, T, hd]
    var probabilities: [DevicePointer] = []          // GEMM path: D [B·H, T, T]
    var preGELU: [DevicePointer] = [], postGELU: [DevicePointer] = []  // D [N, 4C]; preGELU ends as GELU'(z) (bias_gelu)
    let lnFinal: DevicePointer, statsFinal: DevicePointer, logits: DevicePointer, losses: DevicePointer
    /// The cross-entropy's partial column sums of dlogits (fp32, `headPartialRows` rows of V, one a block): the head
    /// bias's gradient, finished beside the head's weight gradient. 0 when the loss kernel does not hold a row of V in
    /// registers (``GPUTrainer/crossEntropyHoldsRows(cols:)``): the head's weight-gradient GEMM then forms it.
    let headPartials: DevicePointer, headPartialRows: Int
    // Backward temporaries.
    /// The residual gradient in fp32, and in the activation type (written by every LayerNorm backward beside it): two
    /// copies, the block's (its input's and output's gradient) and the mid one's, so that a weight gradient on the side
    /// stream may still read one while the main stream writes the other. In fp32 with weight gradients on the main
    /// stream, the fp32 gradient itself serves.
    let dResidual: DevicePointer, dCasts: (block: DevicePointer, mid: DevicePointer)
    /// fp32 partial column sums of each LayerNorm backward (2L + 1: the final one, then ln2 and ln1 of each block).
    let lnPartials: [DevicePointer]
    let dWide: DevicePointer, dNarrow: DevicePointer, dQKV: DevicePointer
    /// The GEMM path's attention gradients (0 with fused attention): per head D [B, H, T, hd], scores D [B·H, T, T].
    let dHeads: DevicePointer, dq: DevicePointer, dk: DevicePointer, dv: DevicePointer, dScores: DevicePointer
    let tmp: DevicePointer
    let precision: GPUPrecision

    init(model: any Model, gpu: CUDAContext, batch: Int, precision: GPUPrecision) throws {
        guard let gpt = model as? GPT else { throw CUDAError.unsupported("the GPT engine needs a GPT model") }
        B = batch; T = gpt.context; C = gpt.dimensions; V = gpt.vocabulary; L = gpt.blocks.count
        H = gpt.blocks.first?.att.heads ?? 1
        self.precision = precision
        guard C <= 512, C % 4 == 0, C % H == 0 else {
            throw CUDAError.unsupported("the GPU GPT supports widths up to 512, multiples of 4, split evenly over heads")
        }
        var index: [String: Int] = [:]
        for (i, p) in gpt.namedParameters.enumerated() { index[p.name] = i }
        self.index = index
        updateGroups = Self.updateGroups(names: gpt.namedParameters.map(\.name), blocks: L)
        let fused = Self.fusesAttention(gpt, precision)
        fusedAttention = fused
        let N = B * T, e = precision.bytes
        io = try InputBuffers(gpu: gpu, inputCount: N, targetCount: N, classTargets: true, integerInputs: true)
        func f32(_ count: Int) throws -> DevicePointer { try gpu.allocate(bytes: 4 * count, category: .activations) }
        func act(_ count: Int) throws -> DevicePointer { try gpu.allocate(bytes: e * count, category: .activations) }
        residual.append(try f32(N * C))
        for _ in 0..<L {
            residual.append(try f32(N * C)); mid.append(try f32(N * C))
            ln1.append(try act(N * C)); ln2.append(try act(N * C))
            stats1.append(try f32(2 * N)); stats2.append(try f32(2 * N))
            qkv.append(try act(3 * N * C)); merged.append(try act(N * C))
            if fused {
                lse.append(try f32(B * H * T))
            } else {
                q.append(try act(N * C)); k.append(try act(N * C)); v.append(try act(N * C))
                probabilities.append(try act(B * H * T * T))
            }
            preGELU.append(try act(4 * N * C)); postGELU.append(try act(4 * N * C))
        }
        if fused { rowDots = try f32(B * H * T) }
        lnFinal = try act(N * C); statsFinal = try f32(2 * N); logits = try act(N * V); losses = try f32(N)
        let sums = GPUTrainer.crossEntropyHoldsRows(cols: V)
        headPartialRows = sums ? try GPUTrainer.crossEntropyGrid(gpu, precision, rows: N, cols: V).blocks : 0
        headPartials = sums ? try f32(headPartialRows * V) : 0
        dResidual = try f32(N * C)
        let partialFloats = LayerNormBackward.partialRows(rows: N) * 3 * gpt.dimensions
        lnPartials = try (0...2 * gpt.blocks.count).map { _ in try f32(partialFloats) }
        dCasts = (try act(N * C), try act(N * C))
        dWide = try act(4 * N * C); dNarrow = try act(N * C); dQKV = try act(3 * N * C)
        dHeads = fused ? 0 : try act(N * C)
        dq = fused ? 0 : try act(N * C); dk = fused ? 0 : try act(N * C); dv = fused ? 0 : try act(N * C)
        dScores = fused ? 0 : try act(B * H * T * T)
        tmp = try act(N * C)
    }

    func p(_ name: String) -> Int { index[name]! }

    /// The embeddings with block 0 (read first), then each block's parameters, then the final LayerNorm and the head
    /// (``GPUNetwork/updateGroups``), as indices into `names`, the model's parameter names.
    static func updateGroups(names: [String], blocks L: Int) -> [[Int]] {
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        func block(_ l: Int) -> [Int] { names.indices.filter { names[$0].hasPrefix("blocks.\(l).") } }
        let head = ["ln.weight", "ln.bias", "out.weight", "out.bias"].compactMap { index[$0] }
        return [["emb.weight", "pos"].compactMap { index[$0] } + block(0)] + (1..<max(L, 1)).map(block) + [head]
    }

    var canSplitForward: Bool { Self.canSplitForward(fused: fusedAttention, batch: B) }

    /// Whether attention runs as the fused kernels for `gpt` in `precision` (``FlashAttention``; `TANDEM_GPU_ATTENTION=gemm`
    /// turns them off).
    static func fusesAttention(_ gpt: GPT, _ precision: GPUPrecision) -> Bool {
        let gemmForced = getenv("TANDEM_GPU_ATTENTION").map { String(cString: $0) == "gemm" } ?? false
        let heads = gpt.blocks.first?.att.heads ?? 1
        return !gemmForced && FlashAttention.supports(precision, headSize: gpt.dimensions / heads, context: gpt.context)
    }

    /// Whether the forward can run in two halves (``GPUNetwork/canSplitForward``): the fused attention takes whole
    /// sequences at any offset, the GEMM path only the whole batch; the halves need an even batch.
    static func canSplitForward(fused: Bool, batch: Int) -> Bool { fused && batch % 2 == 0 }

    var engine: String { fusedAttention ? "Tandem kernels (fused attention) + cuBLAS" : "Tandem kernels + cuBLAS" }

    /// The embedding of `rows` (whole sequences) into residual[0] and its LayerNorm, the first block's ln1, with their stats.
    func embeddingLayerNorm(_ t: GPUTrainer, rows r: Range<Int>) throws {
        let ln = p("blocks.0.ln1.weight")
        try t.gpu.launch("embedding_layernorm_fwd" + precision.suffix, grid: ((r.count + 7) / 8, 1, 1), block: (256, 1, 1),
                         [.pointer(io.inputs + rowOffset(r, 4)), .pointer(t.weight(p("emb.weight"))), .pointer(t.weight(p("pos"))),
                          .pointer(residual[0] + rowOffset(r, 4 * C)), .pointer(t.weight(ln)), .pointer(t.weight(ln + 1)),
                          .pointer(ln1[0] + rowOffset(r, precision.bytes * C)), .pointer(stats1[0] + rowOffset(r, 4)),
                          .pointer(stats1[0] + DevicePointer(4 * N) + rowOffset(r, 4)), .int(Int32(r.count)), .int(Int32(T)), .int(Int32(C))])
    }

    /// The byte offset of the first of `rows` in a row-major buffer of `rowBytes` a row.
    func rowOffset(_ rows: Range<Int>, _ rowBytes: Int) -> DevicePointer { DevicePointer(rows.lowerBound * rowBytes) }

    /// `residual_add` then `layerNorm` in one pass: out = x + y + the parameter `bias` (fp32, the residual stream kept for
    /// backward), and its LayerNorm (parameters `weight`, `weight + 1`) into `y` with its stats, for `rows` of them.
    func residualLayerNorm(_ t: GPUTrainer, x: DevicePointer, add: DevicePointer, bias: Int, out: DevicePointer,
                           weight: Int, y: DevicePointer, stats: DevicePointer, rows r: Range<Int>) throws {
        let e = precision.bytes
        try t.gpu.launch("residual_layernorm_fwd" + precision.suffix, grid: ((r.count + 7) / 8, 1, 1), block: (256, 1, 1),
                         [.pointer(x + rowOffset(r, 4 * C)), .pointer(add + rowOffset(r, e * C)), .pointer(t.weight(bias)),
                          .pointer(out + rowOffset(r, 4 * C)), .pointer(t.weight(weight)), .pointer(t.weight(weight + 1)),
                          .pointer(y + rowOffset(r, e * C)), .pointer(stats + rowOffset(r, 4)),
                          .pointer(stats + DevicePointer(4 * N) + rowOffset(r, 4)), .int(Int32(r.count)), .int(Int32(C))])
    }

    /// dx (accumulated into dResidual, and its copy dCast) on the main stream; the weight and bias gradients and, with
    /// `biasGradient`, the column sums of the new dx (the gradient of the bias added to the residual stream just before
    /// this LayerNorm) finished beside it from the launch's partial rows in `partials` (one buffer per LayerNorm, so
    /// nothing overwrites them before the finishing launch reads them).
    func layerNormBackward(_ t: GPUTrainer, dy: DevicePointer, x: DevicePointer, weight: Int, stats: DevicePointer, accumulate: Bool,
                           cast dCast: DevicePointer, partials: DevicePointer, biasGradient: DevicePointer?) throws {
        let chunks = try LayerNormBackward.launch(t.gpu, precision, dy: dy, x: x, weight: t.weight(weight), stats: stats, dx: dResidual,
                                                  dxCast: dCast == dResidual ? 0 : dCast, partial: partials, rows: N, cols: C,
                                                  accumulate: accumulate, sums: biasGradient != nil)
        _ = try t.weightGradient {
            try LayerNormBackward.finish(t.gpu, partial: partials, chunks: chunks, cols: C, dw: t.gradient(weight), db: t.gradient(weight + 1),
                                         ds: biasGradient)
        }
    }

    /// qkv [B, T, 3, H, hd] ↔ q, k, v [B, H, T, hd]: 16 bytes a thread when a head row is a multiple of 16 bytes.
    func splitHeads(_ t: GPUTrainer, _ qkv: DevicePointer, _ q: DevicePointer, _ k: DevicePointer, _ v: DevicePointer, backward: Bool) throws {
        let hd = C / H, rowBytes = hd * precision.bytes
        if rowBytes % 16 == 0 {
            let hdv = rowBytes / 16
            try t.elementwise("split_heads_vec", count: B * T * H * hdv, [.pointer(qkv), .pointer(q), .pointer(k), .pointer(v),
                                                                        .int(Int32(B)), .int(Int32(T)), .int(Int32(H)), .int(Int32(hdv)), .int(backward ? 1 : 0)])
        } else {
            try t.elementwise("split_heads" + precision.suffix, count: N * C, [.pointer(qkv), .pointer(q), .pointer(k), .pointer(v),
                                                                             .int(Int32(B)), .int(Int32(T)), .int(Int32(H)), .int(Int32(hd)), .int(backward ? 1 : 0)])
        }
    }

    /// o [B, H, T, hd] ↔ y [B, T, H·hd].
    func mergeHeads(_ t: GPUTrainer, _ o: DevicePointer, _ y: DevicePointer, backward: Bool) throws {
        let hd = C / H, rowBytes = hd * precision.bytes
        if rowBytes % 16 == 0 {
            let hdv = rowBytes / 16
            try t.elementwise("merge_heads_vec", count: B * T * H * hdv, [.pointer(o), .pointer(y), .int(Int32(B)), .int(Int32(T)), .int(Int32(H)),
                                                                        .int(Int32(hdv)), .int(backward ? 1 : 0)])
        } else {
            try t.elementwise("merge_heads" + precision.suffix, count: N * C, [.pointer(o), .pointer(y), .int(Int32(B)), .int(Int32(T)), .int(Int32(H)),
                                                                             .int(Int32(hd)), .int(backward ? 1 : 0)])
        }
    }

    func forwardBackward(_ t: GPUTrainer) throws {
        let s = precision.suffix
        let hd = C / H, scale = 1 / Float(hd).squareRoot()
        let BH = B * H
        // Each residual add also computes the LayerNorm that follows it (residualLayerNorm): ln2 inside a block, and at its
        // end the LayerNorm of residual[l + 1] (the next block's ln1, or the final one); the embedding, the first block's ln1.
        func normOf(residual l: Int) -> (weight: Int, y: DevicePointer, stats: DevicePointer) {
            l < L ? (p("blocks.\(l).ln1.weight"), ln1[l], stats1[l]) : (p("ln.weight"), lnFinal, statsFinal)
        }
        // The blocks for rows `r` (whole sequences), on the current stream.
        func blocks(_ r: Range<Int>) throws {
            precondition(fusedAttention || r == 0..<N, "the GEMM attention path runs on the whole batch")
            let e = precision.bytes, n = r.count
            func act(_ ptr: DevicePointer, _ width: Int) -> DevicePointer { ptr + rowOffset(r, e * width) }
            try embeddingLayerNorm(t, rows: r)
            for l in 0..<L {
                let pre = "blocks.\(l)."
                let wIn = p(pre + "att.in_proj_weight")
                // qkv = ln1 · Wᵀ + b: the bias added in the GEMM's epilogue (cuBLASLt), or by `bias_act` after it.
                try t.gemmBias(transA: false, transB: true, m: n, n: 3 * C, k: C, a: act(ln1[l], C), lda: C, b: t.operand(wIn), ldb: C,
                               c: act(qkv[l], 3 * C), ldc: 3 * C, bias: .add(parameter: wIn + 1))
                if fusedAttention {
                    try FlashAttention.forward(t.gpu, precision, qkv: act(qkv[l], 3 * C), out: act(merged[l], C), lse: lse[l] + rowOffset(r, 4 * H),
                                               B: n / T, T: T, H: H, scale: scale)
                } else {
                    try splitHeads(t, qkv[l], q[l], k[l], v[l], backward: false)
                    let P = probabilities[l]
                    try t.gemm(transA: false, transB: true, m: T, n: T, k: hd, a: q[l], lda: hd, b: k[l], ldb: hd, c: P, ldc: T, alpha: scale,
                               batch: BH, strides: (T * hd, T * hd, T * T))
                    try t.gpu.launch("causal_softmax" + s, grid: ((BH * T + 7) / 8, 1, 1), block: (256, 1, 1), [.pointer(P), .long(Int64(BH * T)), .int(Int32(T))])
                    try t.gemm(transA: false, transB: false, m: T, n: hd, k: T, a: P, lda: T, b: v[l], ldb: hd, c: dHeads, ldc: hd,
                               batch: BH, strides: (T * T, T * hd, T * hd))
                    try mergeHeads(t, dHeads, merged[l], backward: false)
                }
                let wOut = p(pre + "att.out_proj.weight")
                try t.gemm(transA: false, transB: true, m: n, n: C, k: C, a: act(merged[l], C), lda: C, b: t.operand(wOut), ldb: C, c: act(tmp, C), ldc: C)
                try residualLayerNorm(t, x: residual[l], add: tmp, bias: wOut + 1, out: mid[l], weight: p(pre + "ln2.weight"), y: ln2[l],
                                      stats: stats2[l], rows: r)
                let wFC = p(pre + "mlp.0.weight"), wProj = p(pre + "mlp.2.weight")
                try t.gemm(transA: false, transB: true, m: n, n: 4 * C, k: C, a: act(ln2[l], C), lda: C, b: t.operand(wFC), ldb: C,
                           c: act(preGELU[l], 4 * C), ldc: 4 * C)
                try t.elementwise("bias_gelu" + s, count: 4 * n * C, rowWidth: 4 * C, [.pointer(act(preGELU[l], 4 * C)), .pointer(t.weight(wFC + 1)),
                                                                                      .pointer(act(postGELU[l], 4 * C)), .int(Int32(n)), .int(Int32(4 * C))])
                try t.gemm(transA: false, transB: true, m: n, n: C, k: 4 * C, a: act(postGELU[l], 4 * C), lda: 4 * C, b: t.operand(wProj), ldb: 4 * C,
                           c: act(tmp, C), ldc: C)
                let next = normOf(residual: l + 1)
                try t.beforeForward(group: l + 1)   // the next block's (or the final LayerNorm's and the head's) parameters from here on
                try residualLayerNorm(t, x: mid[l], add: tmp, bias: wProj + 1, out: residual[l + 1], weight: next.weight, y: next.y,
                                      stats: next.stats, rows: r)
            }
        }
        // Split: the first half of the batch on the main stream, the second beside it on the side stream (GEMMs on half the
        // rows, and two chains of latency-bound kernels that fill each other's idle multiprocessors); joined for the head.
        if t.splitsForward {
            let half = (B / 2) * T
            try t.gpu.sideWaitsForMain()
            try blocks(0..<half)
            try t.gpu.onSideStream(waitForMain: false) { try blocks(half..<N) }
            try t.gpu.joinSideStream()
        } else {
            try blocks(0..<N)
        }
        let wHead = p("out.weight")
        try t.gemm(transA: false, transB: true, m: N, n: V, k: C, a: lnFinal, lda: C, b: t.operand(wHead), ldb: C, c: logits, ldc: V)
        // Loss and its gradient, in place over the logits, with the output bias added on the fly.
        let headChunks = try t.crossEntropy(logits: logits, bias: t.weight(wHead + 1), labels: io.targets, dlogits: logits, losses: losses,
                                            rows: N, cols: V, columnSums: headPartials == 0 ? nil : headPartials, maxBlocks: headPartialRows)

        // Backward. Weight gradients go to the side stream (GPUTrainer.weightGradient) beside the input gradients; the main
        // stream waits for the one that last read a buffer before it writes over it (`readers`, the marks of those reads).
        // In fp32 with everything on the main stream, the fp32 residual gradient is its own cast.
        let separateCasts = precision.bytes != 4 || t.weightGradientsOnSide
        let blockCast = separateCasts ? dCasts.block : dResidual, midCast = separateCasts ? dCasts.mid : dResidual
        var readers: (block: StreamMark?, mid: StreamMark?, wide: StreamMark?, qkv: StreamMark?) = (nil, nil, nil, nil)
        // The head. qkv's weight gradient dW = dyᵀ · x brings its bias gradient Σ dy (overwritten) in the same call; the
        // head's bias gradient is the sum of the cross-entropy's partial column sums; the biases added to the residual
        // stream get theirs from the LayerNorm backward after them.
        let dLogits = logits
        _ = try t.weightGradient {
            try t.weightGradientGEMM(parameter: wHead, transA: true, transB: false, m: V, n: C, k: N, a: dLogits, lda: V, b: lnFinal, ldb: C,
                                     ldc: C, biasGradient: headPartials == 0 ? t.gradient(wHead + 1) : nil)
            if headPartials != 0 { try t.sumPartials(headPartials, chunks: headChunks, cols: V, into: t.gradient(wHead + 1)) }
        }
        try t.gemm(transA: false, transB: false, m: N, n: C, k: V, a: dLogits, lda: V, b: t.operand(wHead), ldb: C, c: dNarrow, ldc: C)
        // Each LayerNorm's backward also sums its dx over the rows: the gradient of the bias added to the residual stream
        // just before it (the MLP's output bias before ln1 and the final norm, attention's before ln2).
        try layerNormBackward(t, dy: dNarrow, x: residual[L], weight: p("ln.weight"), stats: statsFinal, accumulate: false, cast: blockCast,
                              partials: lnPartials[0], biasGradient: t.gradient(p("blocks.\(L - 1).mlp.2.bias")))
        try t.parametersDone([wHead, wHead + 1, p("ln.weight"), p("ln.weight") + 1])
        for l in stride(from: L - 1, through: 0, by: -1) {
            let pre = "blocks.\(l)."
            let wFC = p(pre + "mlp.0.weight"), wProj = p(pre + "mlp.2.weight")
            // MLP branch: residual[l + 1] = mid + proj(gelu(fc(ln2(mid)))); its output's gradient is in blockCast.
            readers.block = try t.weightGradient {
                try t.weightGradientGEMM(parameter: wProj, transA: true, transB: false, m: C, n: 4 * C, k: N, a: blockCast, lda: C,
                                         b: postGELU[l], ldb: 4 * C, ldc: 4 * C)
            }
            try t.beforeOverwriting(readers.wide)
            try t.gemm(transA: false, transB: false, m: N, n: 4 * C, k: C, a: blockCast, lda: C, b: t.operand(wProj), ldb: 4 * C, c: dWide, ldc: 4 * C)
            try t.activationBackward(dy: dWide, ref: preGELU[l], act: 3, rows: N, cols: 4 * C, biasGradient: t.gradient(wFC + 1))
            readers.wide = try t.weightGradient {
                try t.weightGradientGEMM(parameter: wFC, transA: true, transB: false, m: 4 * C, n: C, k: N, a: dWide, lda: 4 * C, b: ln2[l], ldb: C,
                                         ldc: C)
            }
            try t.gemm(transA: false, transB: false, m: N, n: C, k: 4 * C, a: dWide, lda: 4 * C, b: t.operand(wFC), ldb: C, c: dNarrow, ldc: C)
            try t.beforeOverwriting(readers.mid)
            let wIn = p(pre + "att.in_proj_weight"), wOut = p(pre + "att.out_proj.weight")
            try layerNormBackward(t, dy: dNarrow, x: mid[l], weight: p(pre + "ln2.weight"), stats: stats2[l], accumulate: true, cast: midCast,
                                  partials: lnPartials[2 * l + 1], biasGradient: t.gradient(wOut + 1))
            // Attention branch: mid = x + out_proj(attention(ln1(x))); mid's gradient is in midCast.
            readers.mid = try t.weightGradient {
                try t.weightGradientGEMM(parameter: wOut, transA: true, transB: false, m: C, n: C, k: N, a: midCast, lda: C, b: merged[l], ldb: C,
                                         ldc: C)
            }
            // dNarrow: the gradient of the merged heads; attention's backward leaves qkv's in dQKV.
            try t.gemm(transA: false, transB: false, m: N, n: C, k: C, a: midCast, lda: C, b: t.operand(wOut), ldb: C, c: dNarrow, ldc: C)
            if fusedAttention {
                try t.beforeOverwriting(readers.qkv)
                try FlashAttention.backward(t.gpu, precision, qkv: qkv[l], out: merged[l], dOut: dNarrow, lse: lse[l], rowDots: rowDots, dqkv: dQKV,
                                            B: B, T: T, H: H, scale: scale)
            } else {
                try mergeHeads(t, dHeads, dNarrow, backward: true)
                let P = probabilities[l]
                try t.gemm(transA: false, transB: true, m: T, n: T, k: hd, a: dHeads, lda: hd, b: v[l], ldb: hd, c: dScores, ldc: T,
                           batch: BH, strides: (T * hd, T * hd, T * T))
                try t.gemm(transA: true, transB: false, m: T, n: hd, k: T, a: P, lda: T, b: dHeads, ldb: hd, c: dv, ldc: hd,
                           batch: BH, strides: (T * T, T * hd, T * hd))
                try t.gpu.launch("causal_softmax_bwd" + s, grid: ((BH * T + 7) / 8, 1, 1), block: (256, 1, 1),
                                 [.pointer(P), .pointer(dScores), .long(Int64(BH * T)), .int(Int32(T))])
                try t.gemm(transA: false, transB: false, m: T, n: hd, k: T, a: dScores, lda: T, b: k[l], ldb: hd, c: dq, ldc: hd, alpha: scale,
                           batch: BH, strides: (T * T, T * hd, T * hd))
                try t.gemm(transA: true, transB: false, m: T, n: hd, k: T, a: dScores, lda: T, b: q[l], ldb: hd, c: dk, ldc: hd, alpha: scale,
                           batch: BH, strides: (T * T, T * hd, T * hd))
                try t.beforeOverwriting(readers.qkv)
                try splitHeads(t, dQKV, dq, dk, dv, backward: true)
            }
            readers.qkv = try t.weightGradient {
                try t.weightGradientGEMM(parameter: wIn, transA: true, transB: false, m: 3 * C, n: C, k: N, a: dQKV, lda: 3 * C, b: ln1[l], ldb: C,
                                         ldc: C, biasGradient: t.gradient(wIn + 1))
            }
            try t.gemm(transA: false, transB: false, m: N, n: C, k: 3 * C, a: dQKV, lda: 3 * C, b: t.operand(wIn), ldb: C, c: dNarrow, ldc: C)
            try t.beforeOverwriting(readers.block)
            try layerNormBackward(t, dy: dNarrow, x: residual[l], weight: p(pre + "ln1.weight"), stats: stats1[l], accumulate: true, cast: blockCast,
                                  partials: lnPartials[2 * l + 2], biasGradient: l > 0 ? t.gradient(p("blocks.\(l - 1).mlp.2.bias")) : nil)
            try t.parametersDone(Array(p(pre + "ln1.weight")...p(pre + "mlp.2.bias")))
        }
        // Embeddings: both tables' gradients in one pass over the residual stream's first gradient, the token table's by
        // atomics into its momentum when the step folds, else into zeros (GPUTrainer.scatteredGradient). (Zeroed beside the
        // head on the side stream instead, the step measured 0.2–0.3% slower.)
        let tokenGradient = try t.scatteredGradient(p("emb.weight"))
        try t.gpu.launch("embedding_bwd", grid: ((T * C / 4 + 63) / 64, 1, 1), block: (64, 1, 1),
                         [.pointer(io.inputs), .pointer(dResidual), .pointer(t.gradient(p("pos"))), .pointer(tokenGradient),
                          .int(Int32(B)), .int(Int32(T)), .int(Int32(C))])
    }
}

/// LayerNorm backward in two launches (`layernorm_bwd`, `layernorm_bwd_finish` of ``KernelSource``): dx, with one row of
/// column partial sums a block, then the column sums from those rows: the weight's and bias's gradients and, when
/// asked, Σ dx. The second launch may go beside what reads dx next, so the reduction's tail is off that path.
enum LayerNormBackward {
    /// Threads a block: 32 · `LNB_WARPS` of the kernel.
    static let threads = 256

    /// The most rows of partial sums a launch over `rows` rows writes (`(2 + sums)·cols` floats each).
    static func partialRows(rows: Int) -> Int { max(1, min((rows + 15) / 16, 1024)) }

    /// dx (+)= the LayerNorm's input gradient (`stats`: mean [rows] then rstd [rows]), also into `dxCast` in the
    /// activation type when not 0, and the partial rows; returns how many partial rows it wrote (`blocks`, else as many
    /// blocks as the GPU holds at once, at least 16 rows each).
    static func launch(_ gpu: CUDAContext, _ precision: GPUPrecision, dy: DevicePointer, x: DevicePointer, weight: DevicePointer,
                       stats: DevicePointer, dx: DevicePointer, dxCast: DevicePointer, partial: DevicePointer, rows: Int, cols: Int,
                       accumulate: Bool, sums: Bool, blocks wanted: Int? = nil) throws -> Int {
        let name = "layernorm_bwd" + precision.suffix
        let blocks = try wanted ?? min(gpu.residentBlocks(name, threads: threads), partialRows(rows: rows))
        try gpu.launch(name, grid: (blocks, 1, 1), block: (threads, 1, 1),
                       [.pointer(dy), .pointer(x), .pointer(weight), .pointer(stats), .pointer(stats + DevicePointer(4 * rows)),
                        .pointer(dx), .pointer(dxCast), .pointer(partial), .int(Int32(rows)), .int(Int32(cols)), .int(accumulate ? 1 : 0),
                        .int(sums ? 1 : 0)])
        return blocks
    }

    /// dw, db (and ds when not nil) = the column sums of `chunks` partial rows, written over.
    static func finish(_ gpu: CUDAContext, partial: DevicePointer, chunks: Int, cols: Int, dw: DevicePointer, db: DevicePointer,
                       ds: DevicePointer?) throws {
        let width = (ds == nil ? 2 : 3) * cols
        try gpu.launch("layernorm_bwd_finish", grid: ((width + 31) / 32, 1, 1), block: (32, GPUTrainer.columnLanes, 1),
                       [.pointer(partial), .int(Int32(chunks)), .int(Int32(cols)), .pointer(dw), .pointer(db), .pointer(ds ?? 0)])
    }
}
