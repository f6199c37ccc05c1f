#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The cuDNN path of ``LSTMNetwork``: setting it up once, and one step.
extension LSTMNetwork {
    // MARK: - Set-up

    /// cuDNN's LSTM for every algorithm that accepts this shape and precision (`TANDEM_CUDNN_RNN_ALGO`:
    /// standard, static or dynamic, to offer only one), sharing the output buffers and the weight layout.
    /// Why each one that is missing was refused goes to `notes`.
    func makeCuDNNPaths(_ t: GPUTrainer, _ dnn: CuDNN, notes: inout [String]) -> [CuDNNPath] {
        let gpu = t.gpu, e = precision.bytes, input = layers[0].input
        var algorithms: [CuDNN.RNNAlgorithm] = [.standard, .persistStatic, .persistDynamic]
        if let forced = getenv("TANDEM_CUDNN_RNN_ALGO").map({ String(cString: $0) }) {
            let names: [String: CuDNN.RNNAlgorithm] = ["standard": .standard, "static": .persistStatic, "dynamic": .persistDynamic]
            algorithms = names[forced].map { [$0] } ?? []
            if algorithms.isEmpty { notes.append("TANDEM_CUDNN_RNN_ALGO=\(forced): expected standard, static or dynamic") }
        }
        var paths: [CuDNNPath] = []
        var shared: (y: DevicePointer, dy: DevicePointer, dx: DevicePointer)?
        var layout: (weights: DevicePointer, gradients: DevicePointer, aliased: Bool, pieces: [(tandem: Int, cudnn: Int, count: Int)], bytes: Int)?
        for algorithm in algorithms {
            do {
                let lstm = try CuDNNLSTM(gpu: gpu, dnn: dnn, precision: precision, algorithm: algorithm, batch: B, steps: T,
                                         inputSize: input, hidden: H, layers: layers.count)
                if layout == nil {
                    do {
                        let l = try weightLayout(t, lstm)
                        layout = (l.weights, l.gradients, l.aliased, l.pieces, lstm.weightSpaceBytes)
                    } catch let error { lstm.release(); throw error }
                }
                guard let layout, lstm.weightSpaceBytes == layout.bytes else {
                    lstm.release()
                    notes.append("\(algorithm): a different weight space"); continue
                }
                if shared == nil {
                    let y = try gpu.allocate(bytes: e * T * B * H, category: .activations), dy = try gpu.allocate(bytes: e * T * B * H, category: .activations)
                    shared = (y, dy, try gpu.allocate(bytes: e * T * B * input, category: .activations))
                    try gpu.fill(dy, words: T * B * H * e / 4, pattern: 0)
                }
                paths.append(CuDNNPath(lstm: lstm, y: shared!.y, dy: shared!.dy, dx: shared!.dx, weights: layout.weights,
                                       weightGradients: layout.gradients, aliased: layout.aliased, pieces: layout.pieces))
            } catch let error {
                notes.append("\(algorithm): \(error)")
            }
        }
        if let layout, !layout.aliased {
            // Say why cuDNN's layout differs from Tandem's (its offsets against the parameters' own, in elements).
            let base = layers.map { t.offsets[$0.wih] }.min()!
            let first = layout.pieces.first { $0.cudnn != e * ($0.tandem - base) }
            notes.append("weights copied: weight space \(layout.bytes) bytes; first difference: Tandem element \(first.map { $0.tandem - base } ?? -1), "
                         + "cuDNN element \(first.map { $0.cudnn / e } ?? -1)")
        }
        return paths
    }

    /// Where each cuDNN weight piece sits among Tandem's flat parameters. When every piece's place in cuDNN's
    /// weight space equals its place among Tandem's parameters (counted from `weight_ih_l0`), cuDNN reads the
    /// parameters (or their 16-bit copy) in place and fp32 gradients land in place; otherwise both are copied.
    func weightLayout(_ t: GPUTrainer, _ lstm: CuDNNLSTM) throws
        -> (weights: DevicePointer, gradients: DevicePointer, aliased: Bool, pieces: [(tandem: Int, cudnn: Int, count: Int)]) {
        let e = precision.bytes
        var pieces: [(tandem: Int, cudnn: Int, count: Int)] = []
        for s in try lstm.segments() {
            let layer = layers[s.layer]
            let start: Int
            if s.isBias {
                start = s.id < 4 ? t.offsets[layer.bih] + s.id * H : t.offsets[layer.bhh] + (s.id - 4) * H
            } else {
                start = s.id < 4 ? t.offsets[layer.wih] + s.id * H * layer.input : t.offsets[layer.whh] + (s.id - 4) * H * H
            }
            pieces.append((start, s.offset, s.count))
        }
        guard pieces.count == 16 * layers.count else { throw CUDAError.unsupported("cuDNN reported \(pieces.count) LSTM weight pieces, expected \(16 * layers.count)") }
        let rnn = layers.flatMap { [$0.wih, $0.whh, $0.bih, $0.bhh] }
        let base = rnn.map { t.offsets[$0] }.min()!, end = rnn.map { t.ends[$0] }.max()!
        let aliased = pieces.allSatisfy { $0.cudnn == e * ($0.tandem - base) } && lstm.weightSpaceBytes <= e * (end - base)
        let gpu = t.gpu
        let first = rnn.min { t.offsets[$0] < t.offsets[$1] }!
        let weights = aliased ? t.operand(first) : try gpu.allocate(bytes: lstm.weightSpaceBytes, category: .parameters)
        // fp32 gradients alias the flat gradients; 16-bit ones are cuDNN's type, cast to fp32 after backward.
        let gradients = aliased && e == 4 ? t.gradient(first) : try gpu.allocate(bytes: lstm.weightSpaceBytes, category: .gradients)
        return (weights, gradients, aliased, pieces)
    }

    // MARK: - One step

    func forwardBackward(_ t: GPUTrainer, _ path: CuDNNPath) throws {
        let s = precision.suffix, e = precision.bytes
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        try t.elementwise("batch_to_time" + s, count: io.inputCount, [.pointer(io.inputs), .pointer(layers[0].x), i32(B), i32(T), i32(layers[0].input)])
        try recurrence(t, path, forward: true, backward: false)
        let last = path.y + DevicePointer(e * (T - 1) * B * H)
        try headAndLoss(t, last: last)
        // The head's input gradient is the last step's output gradient (every other step's stays zero).
        try t.gemm(transA: true, transB: false, m: outputs, n: H, k: B, a: dPrediction, lda: outputs, b: last, ldb: H, c: t.gradient(head), ldc: H, cF32: true)
        try t.gemm(transA: false, transB: false, m: B, n: H, k: outputs, a: dPrediction, lda: outputs, b: t.operand(head), ldb: H,
                   c: path.dy + DevicePointer(e * (T - 1) * B * H), ldc: H)
        try recurrence(t, path, forward: false, backward: true)
    }

    /// cuDNN's part of a step: weights in (when copied), forward; and/or zeroed gradients, backward, gradients out.
    func recurrence(_ t: GPUTrainer, _ path: CuDNNPath, forward: Bool, backward: Bool) throws {
        let gpu = t.gpu, e = precision.bytes
        func operand(_ offset: Int) -> DevicePointer { precision.usesShadow ? t.shadow + DevicePointer(2 * offset) : t.params + DevicePointer(4 * offset) }
        if forward {
            if !path.aliased {
                for p in path.pieces { try gpu.copy(operand(p.tandem), to: path.weights + DevicePointer(p.cudnn), bytes: e * p.count) }
            }
            try gpu.profiled("cudnn lstm forward (\(path.lstm.algorithm))") { try path.lstm.forward(x: layers[0].x, y: path.y, weights: path.weights) }
        }
        guard backward else { return }
        try gpu.fill(path.weightGradients, words: (path.lstm.weightSpaceBytes + 3) / 4, pattern: 0)
        try gpu.profiled("cudnn lstm backward (\(path.lstm.algorithm))") {
            try path.lstm.backward(x: layers[0].x, y: path.y, dy: path.dy, dx: path.dx, weights: path.weights, weightGradients: path.weightGradients)
        }
        if path.aliased && e == 4 { return }
        if path.aliased {
            let base = layers.map { t.offsets[$0.wih] }.min()!, count = path.lstm.weightSpaceBytes / e
            try t.elementwise("cast_to_f32" + precision.suffix, count: count,
                              [.pointer(path.weightGradients), .pointer(t.grads + DevicePointer(4 * base)), .long(Int64(count))])
            return
        }
        for p in path.pieces {
            let destination = t.grads + DevicePointer(4 * p.tandem), source = path.weightGradients + DevicePointer(p.cudnn)
            if e == 4 {
                try gpu.copy(source, to: destination, bytes: 4 * p.count)
            } else {
                try t.elementwise("cast_to_f32" + precision.suffix, count: p.count, [.pointer(source), .pointer(destination), .long(Int64(p.count))])
            }
        }
    }
}
