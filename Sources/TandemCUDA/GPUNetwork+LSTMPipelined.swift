/// The step-by-step path of a two-layer ``LSTMNetwork`` with the layers running side by side.
///
/// One step of one layer is a `[B, H] × [H, 4H]` GEMM and a cell: a few dozen blocks, far from
/// filling the GPU, and each waits for the one before. Layer 1's step `t` needs only layer 0's
/// step `t`, so layer 0 runs on the main stream and layer 1 on the side stream, `chunk` steps
/// behind (``chunk``, chosen by timing): the two dependent chains overlap instead of following each other. Layer 1's input
/// projection is one GEMM per chunk of steps. Backward is the mirror image: layer 1 goes first on
/// the side stream, its input gradient for a chunk of steps is one GEMM, and layer 0 follows a
/// chunk behind on the main stream. Weight and bias gradients are whole-sequence GEMMs at the end,
/// as in the serial path. In a captured graph the events between the streams become edges.
extension LSTMNetwork {
    func forwardBackwardPipelined(_ t: GPUTrainer) throws {
        precondition(layers.count == 2, "the pipelined LSTM takes two layers")
        let s = precision.suffix, e = precision.bytes, gpu = t.gpu
        func i32(_ v: Int) -> KernelArgument { .int(Int32(v)) }
        let G = 4 * H
        let (bottom, top) = (layers[0], layers[1])
        try t.elementwise("batch_to_time" + s, count: io.inputCount, [.pointer(io.inputs), .pointer(bottom.x), i32(B), i32(T), i32(bottom.input)])
        try t.gemm(transA: false, transB: true, m: T * B, n: G, k: bottom.input, a: bottom.x, lda: bottom.input, b: t.operand(bottom.wih), ldb: bottom.input,
                   c: bottom.gates, ldc: G)
        for c0 in stride(from: 0, to: T, by: chunk) {
            let c1 = min(T, c0 + chunk)
            try forwardSteps(t, bottom, 0, c0, c1)
            try gpu.onSideStream {   // after layer 0's steps c0..<c1
                try t.gemm(transA: false, transB: true, m: (c1 - c0) * B, n: G, k: H, a: at(bottom.h, c0, H, bytes: e), lda: H,
                           b: t.operand(top.wih), ldb: H, c: at(top.gates, c0, G, bytes: e), ldc: G)
                try forwardSteps(t, top, 1, c0, c1)
            }
        }
        try gpu.joinSideStream()
        let last = at(top.h, T - 1, H, bytes: e)
        try headAndLoss(t, last: last)
        try t.smallGemmTN(a: dPrediction, b: last, c: t.gradient(head), m: outputs, n: H, k: B)
        try t.gemm(transA: false, transB: false, m: B, n: H, k: outputs, a: dPrediction, lda: outputs, b: t.operand(head), ldb: H, c: dLast, ldc: H)
        // Backward: each layer has its own running state gradients (dh from the next step, dc) and gate gradients.
        for p in [dhNext, dc, dhNextTop, dcTop] { try gpu.fill(p, words: B * H, pattern: 0) }
        try gpu.sideWaitsForMain()   // the head's gradient and the zeroed state gradients
        for c1 in stride(from: T, to: 0, by: -chunk) {
            let c0 = max(0, c1 - chunk)
            try gpu.onSideStream(waitForMain: false) {
                try backwardSteps(t, top, 1, c0, c1, dLast: dLast, dSequence: 0, dGates: dGatesTop, dhNext: dhNextTop, dc: dcTop)
                // Layer 0's output gradient for these steps: one GEMM through W_ih of layer 1.
                try t.gemm(transA: false, transB: false, m: (c1 - c0) * B, n: H, k: G, a: at(dGatesTop, c0, G, bytes: e), lda: G,
                           b: t.operand(top.wih), ldb: H, c: at(dSequence, c0, H, bytes: e), ldc: H)
            }
            if c0 == 0 {
                // The top layer is done: its weight gradients run on the side stream beside layer 0's last chunk.
                try gpu.onSideStream(waitForMain: false) { try weightGradients(t, top, dGatesTop, copyOnMain: false) }
            }
            try gpu.joinSideStream()   // the main stream waits for this chunk (and, after the last, the top layer's gradients)
            try backwardSteps(t, bottom, 0, c0, c1, dLast: 0, dSequence: dSequence, dGates: dGates, dhNext: dhNext, dc: dc)
        }
        try weightGradients(t, bottom, dGates, copyOnMain: true)
        try gpu.copy(t.gradient(top.bih), to: t.gradient(top.bhh), bytes: 4 * G)
    }

    /// A layer's weight and bias gradients from its gate gradients over every step. Both bias gradients are the
    /// column sums of the gate gradients, the first made with the input weights' gradient (in its GEMM where
    /// cuBLASLt can); the copy into the second goes on the main stream (copies are queued there).
    private func weightGradients(_ t: GPUTrainer, _ layer: Layer, _ dG: DevicePointer, copyOnMain: Bool) throws {
        let e = precision.bytes, G = 4 * H
        try t.gemm(transA: true, transB: false, m: G, n: H, k: (T - 1) * B, a: dG + DevicePointer(e * B * G), lda: G, b: layer.h, ldb: H,
                   c: t.gradient(layer.whh), ldc: H, cF32: true)
        try t.gemmBias(transA: true, transB: false, m: G, n: layer.input, k: T * B, a: dG, lda: G, b: layer.x, ldb: layer.input,
                       c: t.gradient(layer.wih), ldc: layer.input, cF32: true, bias: .gradient(t.gradient(layer.bih)))
        if copyOnMain { try t.gpu.copy(t.gradient(layer.bih), to: t.gradient(layer.bhh), bytes: 4 * G) }
    }
}
