#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemNN
import TandemModels

/// `mlp` and `mlp-wide` on the GPU: Linear layers with ReLU between them, cross-entropy.
///
/// Forward per layer: one GEMM (`z = a·Wᵀ`) with the bias and ReLU in its epilogue, or, where cuBLASLt
/// has no such algorithm or times slower, followed by one fused bias + ReLU pass in place. A head of at
/// most 16 classes is one launch with the loss (`head_cross_entropy`), its input's gradient formed in the
/// pass that applies the ReLU mask below it; a wider one a GEMM and the softmax cross-entropy (which adds
/// its bias). Backward per
/// layer: one fused pass for the ReLU mask and the bias gradient's partial column sums, one GEMM
/// for the weight gradient (written in fp32 straight into the flat gradient buffer, or added to the
/// momentum: ``GPUTrainer/weightGradientGEMM(parameter:transA:transB:m:n:k:a:lda:b:ldb:ldc:biasGradient:)``;
/// on the side stream beside the rest of backward: ``GPUTrainer/weightGradient(last:_:)``) and one for the input
/// gradient.
final class MLPNetwork: GPUNetwork {
    let dims: [Int]
    let batch: Int
    let io: InputBuffers
    /// The input in the activation type (a cast of `io.inputs` when that is not fp32).
    let input: DevicePointer
    /// Each layer's output (after its activation) and the gradient with respect to it.
    var outputs: [DevicePointer] = []
    var gradients: [DevicePointer] = []
    let losses: DevicePointer
    /// Whether the last layer and the loss take `head_cross_entropy` (``GPUTrainer/fusesHead(classes:inputs:rows:)``), and
    /// then its dlogits in fp32, read by the mask pass below it.
    let fusedHead: Bool
    let dlogits32: DevicePointer
    /// Layer l's weight and bias (parameters 2l and 2l + 1), layer by layer.
    let updateGroups: [[Int]]
    /// `TANDEM_FUSED_HEAD=0`: the last layer as a GEMM and the loss kernel even where `head_cross_entropy` takes it.
    static let headDisabled = getenv("TANDEM_FUSED_HEAD").map { String(cString: $0) == "0" } ?? false

    init(model: any Model, gpu: CUDAContext, batch: Int, precision: GPUPrecision) throws {
        guard let mlp = model as? MLP else { throw CUDAError.unsupported("the MLP engine needs an MLP model") }
        dims = mlp.dimensions
        updateGroups = (0..<dims.count - 1).map { [2 * $0, 2 * $0 + 1] }
        self.batch = batch
        io = try InputBuffers(gpu: gpu, inputCount: batch * dims[0], targetCount: batch, classTargets: true)
        input = precision.bytes == 4 ? io.inputs : try gpu.allocate(bytes: precision.bytes * batch * dims[0], category: .activations)
        for width in dims.dropFirst() {
            outputs.append(try gpu.allocate(bytes: precision.bytes * batch * width, category: .activations))
            gradients.append(try gpu.allocate(bytes: precision.bytes * batch * width, category: .activations))
        }
        losses = try gpu.allocate(bytes: 4 * batch, category: .activations)
        let classes = dims[dims.count - 1], last = dims.count - 2
        fusedHead = last > 0 && GPUTrainer.fusesHead(classes: classes, inputs: dims[last], rows: batch) && !Self.headDisabled
        dlogits32 = fusedHead ? try gpu.allocate(bytes: 4 * batch * classes, category: .activations) : 0
    }

    func forwardBackward(_ t: GPUTrainer) throws {
        let layers = dims.count - 1
        let p = t.precision
        if input != io.inputs {
            try t.elementwise("cast_from_f32" + p.suffix, count: batch * dims[0], [.pointer(io.inputs), .pointer(input), .long(Int64(batch * dims[0]))])
        }
        // Forward: parameters are (weight, bias) per layer, in order.
        let last = layers - 1, classes = dims[layers]
        var a = input
        for l in 0..<last {
            let (i, o) = (dims[l], dims[l + 1])
            try t.beforeForward(group: l)
            try t.gemmBias(transA: false, transB: true, m: batch, n: o, k: i, a: a, lda: i, b: t.operand(2 * l), ldb: i, c: outputs[l], ldc: o,
                           bias: .add(parameter: 2 * l + 1, relu: true))
            a = outputs[l]
        }
        // The last layer and the loss: one launch when the head is narrow; else a GEMM and the loss kernel, which adds the bias.
        try t.beforeForward(group: last)
        if fusedHead {
            try t.headCrossEntropy(input: a, weight: 2 * last, labels: io.targets, dlogits: gradients[last], dlogits32: dlogits32,
                                   losses: losses, rows: batch, classes: classes, inputs: dims[last])
        } else {
            try t.gemm(transA: false, transB: true, m: batch, n: classes, k: dims[last], a: a, lda: dims[last], b: t.operand(2 * last), ldb: dims[last],
                       c: outputs[last], ldc: classes)
            try t.crossEntropy(logits: outputs[last], bias: t.weight(2 * last + 1), labels: io.targets, dlogits: gradients[last], losses: losses,
                               rows: batch, cols: classes)
        }
        // Backward.
        for l in stride(from: last, through: 0, by: -1) {
            let (i, o) = (dims[l], dims[l + 1])
            let dz = gradients[l], head = fusedHead && l == last
            // The fused head needs no mask pass; the one below it is done at the head, forming dz from the head's dlogits.
            if !(fusedHead && l >= last - 1) {
                try t.activationBackward(dy: dz, ref: outputs[l], act: l < last ? 1 : 0, rows: batch, cols: o, biasGradient: t.gradient(2 * l + 1))
            }
            let previous = l == 0 ? input : outputs[l - 1]
            // dW[o, i] = dzᵀ · a_prev, beside the rest of backward (nothing later in the step writes dz or a_prev); the fused
            // head's bias gradient Σ dz with it.
            _ = try t.weightGradient(last: l == 0) {
                try t.weightGradientGEMM(parameter: 2 * l, transA: true, transB: false, m: o, n: i, k: batch, a: dz, lda: o, b: previous, ldb: i, ldc: i,
                                         biasGradient: head ? t.gradient(2 * l + 1) : nil)
            }
            if head {
                // The layer below's dz = (dlogits · W) masked by its ReLU, with its bias gradient, before the head's
                // parameters are released to the optimizer (this reads W).
                try t.activationBackward(dy: gradients[l - 1], ref: outputs[l - 1], act: 1, rows: batch, cols: i, biasGradient: t.gradient(2 * l - 1),
                                         product: .init(dlogits: dlogits32, weight: t.operand(2 * l), classes: o))
            } else if l > 0 {
                // da_prev[batch, i] = dz · W
                try t.gemm(transA: false, transB: false, m: batch, n: i, k: o, a: dz, lda: o, b: t.operand(2 * l), ldb: i, c: gradients[l - 1], ldc: i)
            }
            try t.parametersDone([2 * l, 2 * l + 1])
        }
    }
}
