import TandemCore
import TandemNN
import TandemModels

/// `cnn` on the GPU: three 3×3 convolutions (padding 1), 2×2 max-pools, global average pool, a
/// linear classifier and the fused softmax cross-entropy.
///
/// Two ways to convolve, chosen once in ``prepare(_:)``:
/// - **cuDNN** (when the library is there): forward, input gradient and filter gradient through
///   ``CuDNNConvolution`` on NCHW tensors, with bias + ReLU in place on cuDNN's output and, in
///   backward, the ReLU mask fused with the bias gradient's per-channel sums.
/// - **im2col + cuBLAS**: im2col and one GEMM per convolution, bias + ReLU fused with the change
///   from the GEMM's channel-major layout back to NCHW; backward is the adjoint of each piece
///   (ReLU mask + layout change, row sums for the bias, two GEMMs, col2im).
final class CNNNetwork: GPUNetwork {
    struct Conv {
        let weight: Int, cin: Int, cout: Int, h: Int, w: Int
        var col: DevicePointer = 0, gemmOut: DevicePointer = 0, out: DevicePointer = 0, dcol: DevicePointer = 0
        /// This convolution's input (NCHW): the image batch, or the previous max-pool's output.
        var x: DevicePointer = 0
        var dnn: CuDNNConvolution?
    }
    let B: Int, classes: Int
    let io: InputBuffers
    let input: DevicePointer
    var convs: [Conv] = []
    var pooled: [DevicePointer] = [], argmax: [DevicePointer] = []
    let features: DevicePointer, logits: DevicePointer, dlogits: DevicePointer, losses: DevicePointer
    let dFeatures: DevicePointer
    /// Gradients with respect to each conv's NCHW output and each pool's output (reused).
    var dOut: [DevicePointer] = [], dPooled: [DevicePointer] = []
    let head: Int
    let precision: GPUPrecision
    /// cuDNN's shared workspace and, in 16-bit steps, the filter gradient before its cast to fp32.
    var dnnWorkspace: DevicePointer = 0, dnnFilterGradient: DevicePointer = 0
    private(set) var engine = "im2col + cuBLAS"

    init(model: any Model, gpu: CUDAContext, batch: Int, precision: GPUPrecision) throws {
        guard let cnn = model as? CNN else { throw CUDAError.unsupported("the CNN engine needs a CNN model") }
        B = batch
        classes = cnn.classes
        self.precision = precision
        let e = precision.bytes
        io = try InputBuffers(gpu: gpu, inputCount: B * cnn.channels * cnn.height * cnn.width, targetCount: B, classTargets: true)
        func act(_ n: Int) throws -> DevicePointer { try gpu.allocate(bytes: e * n, category: .activations) }
        input = e == 4 ? io.inputs : try act(io.inputCount)
        let chans = [cnn.channels] + cnn.widths
        let sizes = [(cnn.height, cnn.width), (cnn.height / 2, cnn.width / 2), (cnn.height / 4, cnn.width / 4)]
        for i in 0..<3 {
            var c = Conv(weight: 2 * i, cin: chans[i], cout: chans[i + 1], h: sizes[i].0, w: sizes[i].1)
            let hw = c.h * c.w
            c.out = try act(B * c.cout * hw)
            c.x = i == 0 ? input : pooled[i - 1]
            convs.append(c)
            dOut.append(try act(B * c.cout * hw))
            if i < 2 {
                pooled.append(try act(B * c.cout * hw / 4))
                argmax.append(try gpu.allocate(bytes: B * c.cout * hw / 4, category: .activations))
                dPooled.append(try act(B * c.cout * hw / 4))
            }
        }
        head = 6
        features = try act(B * chans[3]); dFeatures = try act(B * chans[3])
        logits = try act(B * classes); dlogits = try act(B * classes)
        losses = try gpu.allocate(bytes: 4 * B, category: .activations)
    }

    func prepare(_ t: GPUTrainer) throws {
        let gpu = t.gpu
        if let dnn = gpu.dnnForTrainers {
            do {
                for i in convs.indices {
                    let c = convs[i]
                    convs[i].dnn = try CuDNNConvolution(gpu: gpu, dnn: dnn, precision: precision, batch: B, cin: c.cin, cout: c.cout, h: c.h, w: c.w,
                                                        kernel: 3, x: c.x, y: c.out, dy: dOut[i], dx: i > 0 ? dPooled[i - 1] : nil)
                }
                let plans = convs.compactMap(\.dnn)
                dnnWorkspace = try gpu.allocate(bytes: max(256, plans.map(\.workspaceBytes).max() ?? 0), category: .workspace)
                if precision.usesShadow {
                    dnnFilterGradient = try gpu.allocate(bytes: precision.bytes * (plans.map(\.filterCount).max() ?? 0), category: .gradients)
                }
                engine = "cuDNN convolutions: " + plans.enumerated().map { "conv\($0.offset + 1) \($0.element.summary)" }.joined(separator: "; ")
                return
            } catch let error {
                for i in convs.indices { convs[i].dnn = nil }
                engine = "im2col + cuBLAS (cuDNN refused: \(error))"
            }
        } else if let why = gpu.dnnUnavailable {
            engine = "im2col + cuBLAS (no cuDNN: \(why))"
        }
        let e = precision.bytes
        for i in convs.indices {
            let hw = convs[i].h * convs[i].w, cin = convs[i].cin, cout = convs[i].cout
            convs[i].col = try gpu.allocate(bytes: e * cin * 9 * B * hw, category: .activations)
            convs[i].gemmOut = try gpu.allocate(bytes: e * cout * B * hw, category: .activations)
            convs[i].dcol = i == 0 ? 0 : try gpu.allocate(bytes: e * cin * 9 * B * hw, category: .activations)
        }
    }

    func forwardBackward(_ t: GPUTrainer) throws {
        let s = precision.suffix
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        if input != io.inputs {
            try t.elementwise("cast_from_f32" + s, count: io.inputCount, [.pointer(io.inputs), .pointer(input), .long(Int64(io.inputCount))])
        }
        if convs[0].dnn != nil { return try forwardBackwardCuDNN(t) }
        var x = input
        for (i, c) in convs.enumerated() {
            let hw = c.h * c.w
            try t.gpu.launchPlanes("im2col" + s, pixels: hw, planes: c.cin * 9, images: B, [.pointer(x), .pointer(c.col), i32(B), i32(c.cin), i32(c.h), i32(c.w), i32(3), i32(1)])
            try t.gemm(transA: false, transB: false, m: c.cout, n: B * hw, k: c.cin * 9, a: t.operand(c.weight), lda: c.cin * 9,
                       b: c.col, ldb: B * hw, c: c.gemmOut, ldc: B * hw)
            try t.gpu.launchPlanes("conv_out" + s, pixels: hw, planes: c.cout, images: B, [.pointer(c.gemmOut), .pointer(t.weight(c.weight + 1)), .pointer(c.out), i32(B), i32(c.cout), i32(hw)])
            if i < 2 {
                try t.elementwise("maxpool" + s, count: B * c.cout * hw / 4, [.pointer(c.out), .pointer(pooled[i]), .pointer(argmax[i]), i32(B * c.cout), i32(c.h), i32(c.w)])
                x = pooled[i]
            }
        }
        try classifier(t)
        for i in stride(from: 2, through: 0, by: -1) {
            let c = convs[i]
            let hw = c.h * c.w, n = B * hw
            // ReLU mask and NCHW → [cout, B·hw] into the GEMM output buffer (free by now).
            try t.gpu.launchPlanes("conv_out_bwd" + s, pixels: hw, planes: c.cout, images: B, [.pointer(dOut[i]), .pointer(c.out), .pointer(c.gemmOut), i32(B), i32(c.cout), i32(hw)])
            let chunks = max(1, min(64, n / 2048, GPUTrainer.scratchFloats / max(c.cout, 1)))
            try t.gpu.launch("row_sums_partial" + s, grid: (c.cout, chunks, 1), block: (256, 1, 1), [.pointer(c.gemmOut), .pointer(t.scratch), i32(c.cout), i32(n)])
            try t.sumPartials(chunks: chunks, cols: c.cout, into: t.gradient(c.weight + 1))
            try t.gemm(transA: false, transB: true, m: c.cout, n: c.cin * 9, k: n, a: c.gemmOut, lda: n, b: c.col, ldb: n,
                       c: t.gradient(c.weight), ldc: c.cin * 9, cF32: true)
            if i > 0 {
                try t.gemm(transA: true, transB: false, m: c.cin * 9, n: n, k: c.cout, a: t.operand(c.weight), lda: c.cin * 9, b: c.gemmOut, ldb: n,
                           c: c.dcol, ldc: n)
                try t.gpu.launchPlanes("col2im" + s, pixels: hw, planes: c.cin, images: B, [.pointer(c.dcol), .pointer(dPooled[i - 1]), i32(B), i32(c.cin), i32(c.h), i32(c.w), i32(3), i32(1)])
                let prev = convs[i - 1]
                try t.elementwise("maxpool_bwd" + s, count: B * prev.cout * prev.h * prev.w,
                                  [.pointer(dPooled[i - 1]), .pointer(argmax[i - 1]), .pointer(dOut[i - 1]), i32(B * prev.cout), i32(prev.h), i32(prev.w)])
            }
        }
    }

    /// Global average pool, the linear classifier, the loss, and their backward down to the last convolution's output gradient.
    func classifier(_ t: GPUTrainer) throws {
        let s = precision.suffix
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        let last = convs[2]
        let planes = B * last.cout, hw3 = last.h * last.w
        try t.gpu.launch("avgpool" + s, grid: ((planes + 7) / 8, 1, 1), block: (256, 1, 1), [.pointer(last.out), .pointer(features), i32(planes), i32(hw3)])
        try t.gemm(transA: false, transB: true, m: B, n: classes, k: last.cout, a: features, lda: last.cout, b: t.operand(head), ldb: last.cout, c: logits, ldc: classes)
        try t.crossEntropy(logits: logits, bias: t.weight(head + 1), labels: io.targets, dlogits: dlogits, losses: losses, rows: B, cols: classes)
        // Backward: the classifier and the global average pool.
        try t.activationBackward(dy: dlogits, ref: dlogits, act: 0, rows: B, cols: classes, biasGradient: t.gradient(head + 1))
        try t.smallGemmTN(a: dlogits, b: features, c: t.gradient(head), m: classes, n: last.cout, k: B)
        try t.gemm(transA: false, transB: false, m: B, n: last.cout, k: classes, a: dlogits, lda: classes, b: t.operand(head), ldb: last.cout, c: dFeatures, ldc: last.cout)
        try t.elementwise("avgpool_bwd" + s, count: planes * hw3, [.pointer(dFeatures), .pointer(dOut[2]), i32(planes), i32(hw3)])
    }

    // MARK: - The cuDNN path

    func forwardBackwardCuDNN(_ t: GPUTrainer) throws {
        let s = precision.suffix
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        for (i, c) in convs.enumerated() {
            let hw = c.h * c.w
            try t.gpu.profiled("cudnn conv\(i + 1) forward") { try c.dnn!.forward(x: c.x, w: t.operand(c.weight), y: c.out, workspace: dnnWorkspace) }
            if i < 2 {
                // Bias, ReLU and the max-pool in one pass; `out` keeps the pre-activation, which nothing reads again.
                try t.elementwise("bias_relu_maxpool" + s, count: B * c.cout * hw / 4,
                                  [.pointer(c.out), .pointer(t.weight(c.weight + 1)), .pointer(pooled[i]), .pointer(argmax[i]), i32(B * c.cout), i32(c.cout), i32(c.h), i32(c.w)])
            } else {
                try t.gpu.launchPlanes("bias_relu_nchw" + s, pixels: hw, planes: c.cout, images: B, [.pointer(c.out), .pointer(t.weight(c.weight + 1)), i32(c.cout), i32(hw)])
            }
        }
        try classifier(t)
        for i in stride(from: 2, through: 0, by: -1) {
            let c = convs[i], dnn = c.dnn!
            let hw = c.h * c.w
            // The ReLU mask (and, before a pool, the pool's backward) with the bias gradient's per-channel partial sums,
            // in one pass; ~2048 blocks.
            let chunks = max(1, min(B, 2048 / c.cout, GPUTrainer.scratchFloats / max(c.cout, 1)))
            if i < 2 {
                try t.gpu.launch("maxpool_relu_bwd_sums" + s, grid: (c.cout, chunks, 1), block: (256, 1, 1),
                                 [.pointer(dPooled[i]), .pointer(pooled[i]), .pointer(argmax[i]), .pointer(dOut[i]), .pointer(t.scratch),
                                  i32(B), i32(c.cout), i32(c.h), i32(c.w)])
            } else {
                try t.gpu.launch("relu_bwd_channel_sums" + s, grid: (c.cout, chunks, 1), block: (256, 1, 1),
                                 [.pointer(dOut[i]), .pointer(c.out), .pointer(t.scratch), i32(B), i32(c.cout), i32(hw)])
            }
            try t.sumPartials(chunks: chunks, cols: c.cout, into: t.gradient(c.weight + 1))
            if precision.usesShadow {
                try t.gpu.profiled("cudnn conv\(i + 1) filter gradient") { try dnn.backwardFilter(x: c.x, dy: dOut[i], dw: dnnFilterGradient, workspace: dnnWorkspace) }
                try t.elementwise("cast_to_f32" + s, count: dnn.filterCount, [.pointer(dnnFilterGradient), .pointer(t.gradient(c.weight)), .long(Int64(dnn.filterCount))])
            } else {
                try t.gpu.profiled("cudnn conv\(i + 1) filter gradient") { try dnn.backwardFilter(x: c.x, dy: dOut[i], dw: t.gradient(c.weight), workspace: dnnWorkspace) }
            }
            if i > 0 {
                // The input gradient is the previous pool's output gradient; the fused kernel above (next turn) takes it from there.
                try t.gpu.profiled("cudnn conv\(i + 1) input gradient") { try dnn.backwardData(w: t.operand(c.weight), dy: dOut[i], dx: dPooled[i - 1], workspace: dnnWorkspace) }
            }
        }
    }
}
