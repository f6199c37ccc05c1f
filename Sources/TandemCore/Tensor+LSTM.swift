#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - One LSTM layer

extension Tensor {
    /// One LSTM layer over a batch-first sequence, from zero initial state, as one layer
    /// of PyTorch's `nn.LSTM`: gates in the order i, f, g, o; two bias vectors.
    ///
    /// `x` `[B, T, I]`, `weightIH` `[4H, I]`, `weightHH` `[4H, H]`, biases `[4H]`;
    /// returns every hidden state, `[B, T, H]`. The input projection of all T steps is one
    /// GEMM; each step adds one `[B, H]·[H, 4H]` GEMM; backward mirrors that, with the
    /// weight gradients summed over all steps in one GEMM each.
    ///
    /// - Complexity: 2·B·T·4H·(I + H) FLOPs forward, twice that backward.
    public static func lstm(_ x: Tensor, weightIH: Tensor, weightHH: Tensor, biasIH: Tensor, biasHH: Tensor) -> Tensor {
        let b = x.shape[0], t = x.shape[1], i = x.shape[2], h = weightHH.shape[1], g4 = 4 * h
        precondition(x.rank == 3 && weightIH.shape == [g4, i] && weightHH.shape == [g4, h] && biasIH.count == g4 && biasHH.count == g4,
                     "lstm: input \(x.shape) with weights \(weightIH.shape), \(weightHH.shape) do not fit")
        // Time-major copies: row (step, sample).
        let xt = Tensor(uninitializedShape: [t, b, i])
        Tensor.permute(x.pointer, shape: [b, t, i], order: [1, 0, 2], into: xt.pointer)
        let gates = Tensor(uninitializedShape: [t, b, g4])   // activated i, f, g, o per step
        let cells = Tensor(uninitializedShape: [t, b, h])
        let cellTanh = Tensor(uninitializedShape: [t, b, h])
        let hidden = Tensor(uninitializedShape: [t, b, h])
        for r in 0..<(t * b) {
            let row = gates.pointer + r * g4
            for j in 0..<g4 { row[j] = biasIH.pointer[j] + biasHH.pointer[j] }
        }
        Kernels.gemm(transB: true, m: t * b, n: g4, k: i, a: xt.pointer, b: weightIH.pointer, beta: 1, c: gates.pointer)
        for s in 0..<t {
            let gs = gates.pointer + s * b * g4
            if s > 0 {
                Kernels.gemm(transB: true, m: b, n: g4, k: h, a: hidden.pointer + (s - 1) * b * h, b: weightHH.pointer, beta: 1, c: gs)
            }
            for n in 0..<b {
                let gr = gs + n * g4
                Kernels.sigmoidInPlace(gr, count: 2 * h)         // i, f
                Kernels.tanhInPlace(gr + 2 * h, count: h)         // g
                Kernels.sigmoidInPlace(gr + 3 * h, count: h)      // o
                let row = (s * b + n) * h
                let c = cells.pointer + row, tc = cellTanh.pointer + row, hy = hidden.pointer + row
                if s > 0 {
                    Kernels.lstmCell(gates: gr, previousCell: cells.pointer + row - b * h, cell: c, count: h)
                } else {
                    Kernels.lstmCell(gates: gr, previousCell: nil, cell: c, count: h)
                }
                tc.update(from: c, count: h)
                Kernels.tanhInPlace(tc, count: h)
                Kernels.multiply(gr + 3 * h, tc, into: hy, count: h)
            }
        }
        let out = Tensor(uninitializedShape: [b, t, h])
        Tensor.permute(hidden.pointer, shape: [t, b, h], order: [1, 0, 2], into: out.pointer)

        return Tape.track(out, inputs: [x, weightIH, weightHH, biasIH, biasHH]) { g, needs in
            let gt = Tensor(uninitializedShape: [t, b, h])
            Tensor.permute(g.pointer, shape: [b, t, h], order: [1, 0, 2], into: gt.pointer)
            let dgates = Tensor(uninitializedShape: [t, b, g4])   // gradients of the pre-activations
            let dh = Tensor(zeros: [b, h]), dc = Tensor(zeros: [b, h]), zeros = Tensor(zeros: [h])
            for s in stride(from: t - 1, through: 0, by: -1) {
                if s < t - 1 {
                    // dh ← dGates[s+1]·W_hh
                    Kernels.gemm(m: b, n: h, k: g4, a: dgates.pointer + (s + 1) * b * g4, b: weightHH.pointer, c: dh.pointer)
                }
                for n in 0..<b {
                    let row = (s * b + n) * h
                    let gr = gates.pointer + (s * b + n) * g4, dg = dgates.pointer + (s * b + n) * g4
                    let tcr = cellTanh.pointer + row, gy = gt.pointer + row
                    let cPrev: UnsafePointer<Float> = s > 0 ? UnsafePointer(cells.pointer + row - b * h) : UnsafePointer(zeros.pointer)
                    let dhr = dh.pointer + n * h, dcr = dc.pointer + n * h
                    for j in 0..<h {
                        let ig = gr[j], fg = gr[h + j], gg = gr[2 * h + j], og = gr[3 * h + j]
                        let tc = tcr[j]
                        let dhv = dhr[j] + gy[j]
                        let dcv = dcr[j] + dhv * og * (1 - tc * tc)
                        dg[j] = dcv * gg * ig * (1 - ig)
                        dg[h + j] = dcv * cPrev[j] * fg * (1 - fg)
                        dg[2 * h + j] = dcv * ig * (1 - gg * gg)
                        dg[3 * h + j] = dhv * tc * og * (1 - og)
                        dcr[j] = dcv * fg
                    }
                }
            }
            var grads: [Tensor?] = [nil, nil, nil, nil, nil]
            if needs[0] {
                let dxt = Tensor(uninitializedShape: [t, b, i])
                Kernels.gemm(m: t * b, n: i, k: g4, a: dgates.pointer, b: weightIH.pointer, c: dxt.pointer)
                let dx = Tensor(uninitializedShape: x.shape)
                Tensor.permute(dxt.pointer, shape: [t, b, i], order: [1, 0, 2], into: dx.pointer)
                grads[0] = dx
            }
            if needs[1] {
                let dw = Tensor(uninitializedShape: weightIH.shape)
                Kernels.gemm(transA: true, m: g4, n: i, k: t * b, a: dgates.pointer, b: xt.pointer, c: dw.pointer)
                grads[1] = dw
            }
            if needs[2] {
                let dw = Tensor(zeros: weightHH.shape)
                if t > 1 {
                    Kernels.gemm(transA: true, m: g4, n: h, k: (t - 1) * b, a: dgates.pointer + b * g4, b: hidden.pointer, c: dw.pointer)
                }
                grads[2] = dw
            }
            if needs[3] || needs[4] {
                let db = dgates.detached.reshaped([t * b, g4]).sum(axis: 0)
                grads[3] = needs[3] ? db : nil
                grads[4] = needs[4] ? db.copy() : nil
            }
            return grads
        }
    }
}
