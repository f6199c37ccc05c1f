import TandemCore
import TandemNN
import TandemModels

/// `lstm` on the GPU: a multi-layer LSTM (PyTorch's gate order i, f, g, o and two biases) over
/// time-major sequences, a linear head on the last step, mean squared error.
///
/// Three ways to run the recurrence, chosen once in ``prepare(_:)`` by timing each in a replayed graph:
/// - **cuDNN** (when the library is there): the whole sequence of every layer in one
///   `cudnnRNNForward` and two backward calls (``CuDNNLSTM``), reading Tandem's parameters in
///   place when cuDNN's weight layout matches them (it does for PyTorch's order), copying otherwise.
/// - **Step by step**: per layer, the input projections of all steps are one GEMM; each step adds
///   `h·W_hhᵀ` (one GEMM with β = 1) and runs the fused cell. Backward walks the steps in reverse
///   with the fused cell backward and one GEMM for the recurrent gradient per step, then gets
///   `W_ih`, `W_hh` and the input gradient with one GEMM each over all steps.
/// - **Step by step, layers side by side** (two layers): the same kernels with layer 1 on a second
///   stream a few steps behind layer 0 (GPUNetwork+LSTMPipelined.swift).
/// - **Whole-sequence kernels** (hidden size 128 or 256): as step by step, but all steps of a layer's
///   forward, and of its backward, are one launch that keeps `W_hh` in registers
///   (Kernels+LSTMSequence.swift, GPUNetwork+LSTMSequence.swift); the blocks that share batch rows
///   meet at a counter in global memory after each step.
final class LSTMNetwork: GPUNetwork {
    struct Layer {
        let wih: Int, whh: Int, bih: Int, bhh: Int, input: Int
        var x: DevicePointer = 0        // time-major input [T, B, input] (D); layer 0's is the transposed batch
        var gates: DevicePointer = 0    // [T, B, 4H] (D), activated in place
        var c: DevicePointer = 0        // [T, B, H] fp32
        var h: DevicePointer = 0        // [T, B, H] (D)
    }
    let B: Int, T: Int, H: Int, outputs: Int
    let io: InputBuffers
    var layers: [Layer] = []
    let head: Int
    let prediction: DevicePointer, dPrediction: DevicePointer, losses: DevicePointer
    /// The step-by-step path's buffers (allocated only when cuDNN is not used).
    var dLast: DevicePointer = 0, dGates: DevicePointer = 0, dhNext: DevicePointer = 0, dc: DevicePointer = 0, dSequence: DevicePointer = 0
    var dGatesTop: DevicePointer = 0, dhNextTop: DevicePointer = 0, dcTop: DevicePointer = 0
    /// When not 0, the step-by-step path runs the two layers side by side, layer 1 this many steps behind
    /// layer 0 (GPUNetwork+LSTMPipelined.swift).
    var chunk = 0
    /// When set, the step-by-step path runs each layer's recurrence as one whole-sequence launch per
    /// direction (GPUNetwork+LSTMSequence.swift).
    var sequence: SequenceKernels?
    /// The whole-sequence kernels' step counters: one per row block, for each layer and direction.
    var sync: DevicePointer = 0
    let precision: GPUPrecision
    /// The cuDNN path, when in use.
    var cudnn: CuDNNPath?
    var engine = "step by step: one GEMM + one fused cell kernel per step"

    /// cuDNN's LSTM and the buffers around it.
    struct CuDNNPath {
        let lstm: CuDNNLSTM
        /// The top layer's outputs [T, B, H] and their gradient (zero except the last step, which the head writes).
        let y: DevicePointer, dy: DevicePointer
        /// The input gradient cuDNN insists on writing (unused: the input is data).
        let dx: DevicePointer
        /// Weight space and its gradient: Tandem's own parameters when the layouts match (`aliased`), else copies.
        let weights: DevicePointer, weightGradients: DevicePointer
        let aliased: Bool
        /// (Tandem flat element offset, cuDNN byte offset, element count) of each piece, for the copies.
        let pieces: [(tandem: Int, cudnn: Int, count: Int)]
    }

    init(model: any Model, gpu: CUDAContext, batch: Int, precision: GPUPrecision) throws {
        guard let lstm = model as? LSTMRegressor else { throw CUDAError.unsupported("the LSTM engine needs an LSTM model") }
        B = batch; T = lstm.steps; H = lstm.rnn.hiddenSize; outputs = lstm.head.weight.shape[0]
        self.precision = precision
        let e = precision.bytes
        var index: [String: Int] = [:]
        for (i, p) in lstm.namedParameters.enumerated() { index[p.name] = i }
        io = try InputBuffers(gpu: gpu, inputCount: B * T * lstm.rnn.inputSize, targetCount: B * outputs, classTargets: false)
        func act(_ n: Int) throws -> DevicePointer { try gpu.allocate(bytes: e * n, category: .activations) }
        for l in 0..<lstm.rnn.layerCount {
            let input = l == 0 ? lstm.rnn.inputSize : H
            var layer = Layer(wih: index["rnn.weight_ih_l\(l)"]!, whh: index["rnn.weight_hh_l\(l)"]!, bih: index["rnn.bias_ih_l\(l)"]!,
                              bhh: index["rnn.bias_hh_l\(l)"]!, input: input)
            if l == 0 { layer.x = try act(T * B * input) }
            layers.append(layer)
        }
        head = index["head.weight"]!
        prediction = try act(B * outputs); dPrediction = try act(B * outputs)
        losses = try gpu.allocate(bytes: 4 * B * outputs, category: .activations)
    }

    /// When set, ``prepare(_:)`` offers only the way of this ``Recurrence/name`` (the self-test checks each one).
    nonisolated(unsafe) static var only: String?

    /// The ways to run the recurrence ``prepare(_:)`` chooses from.
    enum Recurrence {
        /// `pipelined(chunk)`: layer 1 runs `chunk` steps behind layer 0.
        /// `sequence(kernels)`: each layer's steps in one launch per direction; `pipelinedSequence(chunk, kernels)`:
        /// the layers side by side, each chunk of steps one launch.
        case serial, pipelined(Int), sequence(SequenceKernels), pipelinedSequence(Int, SequenceKernels), cudnn(CuDNNPath)
        var name: String {
            switch self {
            case .serial: "step by step"
            case .sequence(let kernels): kernels.name
            case .pipelinedSequence(let chunk, let kernels): "\(kernels.name), layers side by side (\(chunk)-step chunks)"
            case .pipelined(let chunk): "step by step, layers side by side (\(chunk)-step chunks)"
            case .cudnn(let p): "cuDNN \(p.lstm.algorithm)"
            }
        }
    }

    func use(_ r: Recurrence) {
        switch r {
        case .serial: (cudnn, chunk, sequence) = (nil, 0, nil)
        case .pipelined(let steps): (cudnn, chunk, sequence) = (nil, steps, nil)
        case .sequence(let kernels): (cudnn, chunk, sequence) = (nil, 0, kernels)
        case .pipelinedSequence(let steps, let kernels): (cudnn, chunk, sequence) = (nil, steps, kernels)
        case .cudnn(let p): (cudnn, chunk, sequence) = (p, 0, nil)
        }
    }

    /// Chooses how to run the recurrence by timing one step's forward and backward of each way (Tandem's
    /// own kernels one layer after the other or side by side, and every cuDNN algorithm that accepts the
    /// shape) captured in a CUDA graph and replayed, as the benchmark runs it; keeps the fastest and gives
    /// the others' buffers back.
    func prepare(_ t: GPUTrainer) throws {
        let gpu = t.gpu
        try allocateStepwise(gpu)
        var notes: [String] = []
        var options: [Recurrence] = [.serial] + (layers.count == 2 ? [4, 8, 16].filter { $0 < T }.map { .pipelined($0) } : [])
        let sequenced = try sequenceOptions(gpu, notes: &notes)
        options += sequenced.map { .sequence($0.kernels) }
        if layers.count == 2 {
            options += [8, 16].filter { $0 < T }.flatMap { chunk in sequenced.filter(\.twice).map { .pipelinedSequence(chunk, $0.kernels) } }
        }
        var candidates: [CuDNNPath] = []
        if let dnn = gpu.dnnForTrainers {
            candidates = makeCuDNNPaths(t, dnn, notes: &notes)
            options += candidates.map { .cudnn($0) }
        } else if let why = gpu.dnnUnavailable {
            notes.append("no cuDNN: \(why)")
        }
        if let only = Self.only { options = options.filter { $0.name.hasPrefix(only) }.prefix(1).map { $0 } }
        try io.fillForTiming(gpu: gpu)
        var best: (option: Recurrence, ms: Double)?
        for option in options {
            use(option)
            do {
                gpu.resetOrdering()
                try forwardBackward(t)   // eager first: libraries load their kernels here
                try gpu.synchronize()
                gpu.resetOrdering()
                let graph = try gpu.capture { try forwardBackward(t) }
                let ms = try gpu.replayTime(graph, replays: 5)
                notes.append("\(option.name) \(Double(Int(ms * 1000)) / 1000) ms")
                if best == nil || ms < best!.ms { best = (option, ms) }
            } catch let error {
                try? gpu.synchronize()
                notes.append("\(option.name): \(error)")
            }
        }
        guard let best else { throw CUDAError.unsupported("no way to run the LSTM worked: \(notes.joined(separator: "; "))") }
        use(best.option)
        gpu.resetOrdering()
        for c in candidates where c.lstm !== cudnn?.lstm { c.lstm.release() }
        let timed = "graph-timed forward + backward: " + notes.joined(separator: "; ")
        if let chosen = cudnn {
            freeStepwise(gpu)
            engine = "cuDNN LSTM, \(chosen.lstm.algorithm) algorithm, weights \(chosen.aliased ? "read in place" : "copied") (\(timed))"
        } else if sequence != nil {
            engine = "\(best.option.name): one launch per layer and direction, W_hh in registers (\(timed))"
        } else {
            engine = "\(best.option.name): one GEMM + one fused cell kernel per step (\(timed))"
        }
    }

    private func freeStepwise(_ gpu: CUDAContext) {
        for l in layers.indices {
            for p in [layers[l].gates, layers[l].c, layers[l].h] { gpu.free(p) }
            layers[l].gates = 0; layers[l].c = 0; layers[l].h = 0
            if l > 0 { layers[l].x = 0 }
        }
        for p in [dLast, dGates, dhNext, dc, dSequence, dGatesTop, dhNextTop, dcTop, sync] { gpu.free(p) }
        (dLast, dGates, dhNext, dc, dSequence, sync) = (0, 0, 0, 0, 0, 0)
        (dGatesTop, dhNextTop, dcTop) = (0, 0, 0)
    }

    private func allocateStepwise(_ gpu: CUDAContext) throws {
        let e = precision.bytes
        func act(_ n: Int) throws -> DevicePointer { try gpu.allocate(bytes: e * n, category: .activations) }
        for l in layers.indices {
            if l > 0 { layers[l].x = layers[l - 1].h }
            layers[l].gates = try act(T * B * 4 * H)
            layers[l].c = try gpu.allocate(bytes: 4 * T * B * H, category: .activations)
            layers[l].h = try act(T * B * H)
        }
        dLast = try act(B * H)
        dGates = try act(T * B * 4 * H)
        dhNext = try gpu.allocate(bytes: 4 * B * H, category: .activations)
        dc = try gpu.allocate(bytes: 4 * B * H, category: .activations)
        dSequence = try act(T * B * H)
        // The pipelined path's second set: the top layer's gate and state gradients.
        dGatesTop = try act(T * B * 4 * H)
        dhNextTop = try gpu.allocate(bytes: 4 * B * H, category: .activations)
        dcTop = try gpu.allocate(bytes: 4 * B * H, category: .activations)
        sync = try gpu.allocate(bytes: 4 * counterWords, category: .activations)
    }

    // MARK: Pieces every path shares

    /// Where step `step` of a time-major [T, B, width] buffer of `bytes`-wide values starts.
    func at(_ p: DevicePointer, _ step: Int, _ width: Int, bytes: Int) -> DevicePointer { p + DevicePointer(bytes * step * B * width) }

    /// One forward step of `layer` on Tandem's kernels: the recurrent GEMM into its gates (after
    /// step 0), then the fused cell.
    func cell(_ t: GPUTrainer, _ layer: Layer, _ step: Int) throws {
        let s = precision.suffix, e = precision.bytes, G = 4 * H
        let g = at(layer.gates, step, G, bytes: e)
        if step > 0 {
            try t.gemm(transA: false, transB: true, m: B, n: G, k: H, a: at(layer.h, step - 1, H, bytes: e), lda: H, b: t.operand(layer.whh), ldb: H,
                       c: g, ldc: G, beta: 1)
        }
        try t.elementwise("lstm_cell" + s, count: B * H, [.pointer(g), .pointer(t.weight(layer.bih)), .pointer(t.weight(layer.bhh)),
                                                       .pointer(step > 0 ? at(layer.c, step - 1, H, bytes: 4) : 0), .pointer(at(layer.c, step, H, bytes: 4)),
                                                       .pointer(at(layer.h, step, H, bytes: e)), .int(Int32(B)), .int(Int32(H))])
    }

    /// One backward step of `layer`: the cell's gradients into `dGates`' step, then the recurrent
    /// GEMM that carries the state gradient `dhNext` to the step before.
    func cellBackward(_ t: GPUTrainer, _ layer: Layer, _ step: Int, dhOut: DevicePointer, dGates: DevicePointer,
                      dhNext: DevicePointer, dc: DevicePointer) throws {
        let s = precision.suffix, e = precision.bytes, G = 4 * H
        let dg = at(dGates, step, G, bytes: e)
        try t.elementwise("lstm_cell_bwd" + s, count: B * H, [.pointer(at(layer.gates, step, G, bytes: e)), .pointer(at(layer.c, step, H, bytes: 4)),
                                                           .pointer(step > 0 ? at(layer.c, step - 1, H, bytes: 4) : 0), .pointer(dhOut),
                                                           .pointer(dhNext), .pointer(dc), .pointer(dg), .int(Int32(B)), .int(Int32(H))])
        if step > 0 {
            try t.gemm(transA: false, transB: false, m: B, n: H, k: G, a: dg, lda: G, b: t.operand(layer.whh), ldb: H, c: dhNext, ldc: H, cF32: true)
        }
    }

    /// The head on the last step's output `last`, the loss and its gradient, and the head's bias
    /// gradient; each path then takes the head's weight and input gradients into its own layout.
    func headAndLoss(_ t: GPUTrainer, last: DevicePointer) throws {
        let s = precision.suffix
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        try t.gemm(transA: false, transB: true, m: B, n: outputs, k: H, a: last, lda: H, b: t.operand(head), ldb: H, c: prediction, ldc: outputs)
        try t.elementwise("bias_act" + s, count: B * outputs, [.pointer(prediction), .pointer(t.weight(head + 1)), i32(B), i32(outputs), i32(0)])
        let n = B * outputs
        try t.elementwise("mse" + s, count: n, [.pointer(prediction), .pointer(io.targets), .pointer(dPrediction), .pointer(losses), .long(Int64(n)),
                                                .float(1 / Float(n)), .pointer(t.state)])
        try t.gpu.launch("sum_scaled", grid: (1, 1, 1), block: (1024, 1, 1), [.pointer(losses), .long(Int64(n)), .float(1 / Float(n)), .pointer(t.lossValue)])
        try t.activationBackward(dy: dPrediction, ref: dPrediction, act: 0, rows: B, cols: outputs, biasGradient: t.gradient(head + 1))
    }

    /// The order in which the trainer lays the parameters out: every recurrent weight matrix (layer by layer,
    /// `weight_ih` before `weight_hh`), then every bias, then the rest. cuDNN 9's weight space has this order
    /// (measured on the H200: its layer-0 biases come after layer 1's matrices), so cuDNN can read the
    /// parameters and write the fp32 gradients in place; ``weightLayout(_:_:)`` checks it and copies otherwise.
    static func placement(_ names: [String]) -> [Int] {
        let matrices = names.indices.filter { names[$0].hasPrefix("rnn.weight_") }
        let biases = names.indices.filter { names[$0].hasPrefix("rnn.bias_") }
        let rest = names.indices.filter { !names[$0].hasPrefix("rnn.weight_") && !names[$0].hasPrefix("rnn.bias_") }
        return matrices + biases + rest
    }

    func forwardBackward(_ t: GPUTrainer) throws {
        if let cudnn { return try forwardBackward(t, cudnn) }
        if sequence != nil { try t.gpu.fill(sync, words: counterWords, pattern: 0) }
        if chunk > 0 { return try forwardBackwardPipelined(t) }
        let s = precision.suffix, e = precision.bytes
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        let G = 4 * H
        try t.elementwise("batch_to_time" + s, count: io.inputCount, [.pointer(io.inputs), .pointer(layers[0].x), i32(B), i32(T), i32(layers[0].input)])
        for (l, layer) in layers.enumerated() {
            try t.gemm(transA: false, transB: true, m: T * B, n: G, k: layer.input, a: layer.x, lda: layer.input, b: t.operand(layer.wih), ldb: layer.input,
                       c: layer.gates, ldc: G)
            try forwardSteps(t, layer, l, 0, T)
        }
        let top = layers[layers.count - 1]
        let last = at(top.h, T - 1, H, bytes: e)
        try headAndLoss(t, last: last)
        try t.smallGemmTN(a: dPrediction, b: last, c: t.gradient(head), m: outputs, n: H, k: B)
        try t.gemm(transA: false, transB: false, m: B, n: H, k: outputs, a: dPrediction, lda: outputs, b: t.operand(head), ldb: H, c: dLast, ldc: H)
        for (l, layer) in layers.enumerated().reversed() {
            let isTop = l == layers.count - 1
            try t.gpu.fill(dhNext, words: B * H, pattern: 0)
            try t.gpu.fill(dc, words: B * H, pattern: 0)
            try backwardSteps(t, layer, l, 0, T, dLast: isTop ? dLast : 0, dSequence: isTop ? 0 : dSequence, dGates: dGates, dhNext: dhNext, dc: dc)
            try t.gemm(transA: true, transB: false, m: G, n: H, k: (T - 1) * B, a: at(dGates, 1, G, bytes: e), lda: G, b: layer.h, ldb: H,
                       c: t.gradient(layer.whh), ldc: H, cF32: true)
            // Both bias gradients are the column sums of the gate gradients over every step: the first made with
            // the input weights' gradient (in its GEMM where cuBLASLt can), the second a copy.
            try t.gemmBias(transA: true, transB: false, m: G, n: layer.input, k: T * B, a: dGates, lda: G, b: layer.x, ldb: layer.input,
                           c: t.gradient(layer.wih), ldc: layer.input, cF32: true, bias: .gradient(t.gradient(layer.bih)))
            try t.gpu.copy(t.gradient(layer.bih), to: t.gradient(layer.bhh), bytes: 4 * G)
            if l > 0 {
                try t.gemm(transA: false, transB: false, m: T * B, n: layer.input, k: G, a: dGates, lda: G, b: t.operand(layer.wih), ldb: layer.input,
                           c: dSequence, ldc: layer.input)
            }
        }
    }
}
