import TandemCore
import TandemNN
import TandemModels

/// `cnn` on the GPU: three 3×3 convolutions (padding 1) as im2col + one cuBLAS GEMM each, bias +
/// ReLU fused with the change from the GEMM's channel-major layout back to NCHW, 2×2 max-pools,
/// global average pool, a linear classifier and the fused softmax cross-entropy. Backward is the
/// adjoint of each piece: ReLU mask + layout change, row sums for the bias, two GEMMs, col2im.
final class CNNNetwork: GPUNetwork {
    struct Conv {
        let weight: Int, cin: Int, cout: Int, h: Int, w: Int
        var col: DevicePointer = 0, gemmOut: DevicePointer = 0, out: DevicePointer = 0, dcol: DevicePointer = 0
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
            c.col = try act(c.cin * 9 * B * hw)
            c.gemmOut = try act(c.cout * B * hw)
            c.out = try act(B * c.cout * hw)
            c.dcol = i == 0 ? 0 : try act(c.cin * 9 * B * hw)
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

    func load(_ batch: Batch, gpu: CUDAContext) throws { try io.load(batch, gpu: gpu) }
    func stage(_ batch: Batch, gpu: CUDAContext) throws -> StagedBatch { try io.stage(batch, gpu: gpu) }
    func load(staged: StagedBatch, gpu: CUDAContext) throws { try io.load(staged: staged, gpu: gpu) }

    func forwardBackward(_ t: GPUTrainer) throws {
        let s = precision.suffix
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        if input != io.inputs {
            try t.elementwise("cast_from_f32" + s, count: io.inputCount, [.pointer(io.inputs), .pointer(input), .long(Int64(io.inputCount))])
        }
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
        let last = convs[2]
        let planes = B * last.cout, hw3 = last.h * last.w
        try t.gpu.launch("avgpool" + s, grid: ((planes + 7) / 8, 1, 1), block: (256, 1, 1), [.pointer(last.out), .pointer(features), i32(planes), i32(hw3)])
        try t.gemm(transA: false, transB: true, m: B, n: classes, k: last.cout, a: features, lda: last.cout, b: t.operand(head), ldb: last.cout, c: logits, ldc: classes)
        try t.crossEntropy(logits: logits, bias: t.weight(head + 1), labels: io.targets, dlogits: dlogits, losses: losses, rows: B, cols: classes)
        // Backward: the classifier and the global average pool.
        try t.activationBackward(dy: dlogits, ref: dlogits, act: 0, rows: B, cols: classes, biasGradient: t.gradient(head + 1))
        try t.gemm(transA: true, transB: false, m: classes, n: last.cout, k: B, a: dlogits, lda: classes, b: features, ldb: last.cout, c: t.gradient(head), ldc: last.cout, cF32: true)
        try t.gemm(transA: false, transB: false, m: B, n: last.cout, k: classes, a: dlogits, lda: classes, b: t.operand(head), ldb: last.cout, c: dFeatures, ldc: last.cout)
        try t.elementwise("avgpool_bwd" + s, count: planes * hw3, [.pointer(dFeatures), .pointer(dOut[2]), i32(planes), i32(hw3)])
        for i in stride(from: 2, through: 0, by: -1) {
            let c = convs[i]
            let hw = c.h * c.w, n = B * hw
            // ReLU mask and NCHW → [cout, B·hw] into the GEMM output buffer (free by now).
            try t.gpu.launchPlanes("conv_out_bwd" + s, pixels: hw, planes: c.cout, images: B, [.pointer(dOut[i]), .pointer(c.out), .pointer(c.gemmOut), i32(B), i32(c.cout), i32(hw)])
            let chunks = max(1, min(64, n / 2048, t.scratchFloats / max(c.cout, 1)))
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
}
