#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Causal multi-head attention core

extension Tensor {
    /// Rows per block of the causal attention: block i only meets keys of blocks ≤ i.
    static let attentionBlock = 64

    /// Scaled dot-product attention with a causal mask, reading queries, keys and values
    /// from one packed projection `qkv` `[B, T, 3·D]` (PyTorch's in-projection order
    /// q, k, v) and returning the heads merged back to `[B, T, D]`.
    ///
    /// Per batch and head: S = Q·Kᵀ/√d, P = softmax over keys j ≤ i, O = P·V. Query rows go
    /// in blocks that only multiply the keys they may see, so the masked half of the
    /// products is mostly skipped; the GEMMs read Q, K, V in place through leading
    /// dimensions, so nothing is copied.
    ///
    /// - Complexity: about 2·B·T²·D FLOPs forward (4·B·T²·D without the causal blocking),
    ///   twice that backward; B·H·T² floats kept for backward.
    public static func causalAttention(_ qkv: Tensor, heads: Int) -> Tensor {
        precondition(qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0, "causalAttention: \(qkv.shape) is not [B, T, 3·D] with D divisible by \(heads) heads")
        let b = qkv.shape[0], t = qkv.shape[1], d = qkv.shape[2] / 3, hd = d / heads
        let scale = 1 / Float(hd).squareRoot()
        let blocks = stride(from: 0, to: t, by: attentionBlock).map { ($0, Swift.min($0 + attentionBlock, t)) }
        let probabilities = Tensor(uninitializedShape: [b, heads, t, t])
        let out = Tensor(uninitializedShape: [b, t, d])
        for bi in 0..<b {
            for h in 0..<heads {
                let q = qkv.pointer + bi * t * 3 * d + h * hd, k = q + d, v = q + 2 * d
                let p = probabilities.pointer + (bi * heads + h) * t * t
                let o = out.pointer + bi * t * d + h * hd
                for (r0, r1) in blocks {
                    // Rows r0..<r1 see keys 0..<r1.
                    Kernels.gemm(transB: true, m: r1 - r0, n: r1, k: hd, alpha: scale, a: q + r0 * 3 * d, lda: 3 * d,
                                 b: k, ldb: 3 * d, c: p + r0 * t, ldc: t)
                    for i in r0..<r1 {
                        let row = p + i * t
                        Kernels.softmaxRow(row, row, count: i + 1)
                        (row + i + 1).initialize(repeating: 0, count: t - i - 1)
                    }
                    Kernels.gemm(m: r1 - r0, n: hd, k: r1, a: p + r0 * t, lda: t, b: v, ldb: 3 * d, c: o + r0 * d, ldc: d)
                }
            }
        }
        return Tape.track(out, inputs: [qkv]) { g, _ in
            let dqkv = Tensor(zeros: qkv.shape)
            let dp = Tensor(uninitializedShape: [t, t])
            for bi in 0..<b {
                for h in 0..<heads {
                    let q = qkv.pointer + bi * t * 3 * d + h * hd, k = q + d, v = q + 2 * d
                    let dq = dqkv.pointer + bi * t * 3 * d + h * hd, dk = dq + d, dv = dq + 2 * d
                    let go = g.pointer + bi * t * d + h * hd
                    let p = probabilities.pointer + (bi * heads + h) * t * t
                    for (r0, r1) in blocks {
                        let rows = r1 - r0
                        let pb = p + r0 * t, dpb = dp.pointer + r0 * t, gob = go + r0 * d
                        // dV[0..<r1] += Pᵀ·dO, dP = dO·Vᵀ (both over the keys these rows see)
                        Kernels.gemm(transA: true, m: r1, n: hd, k: rows, a: pb, lda: t, b: gob, ldb: d, beta: 1, c: dv, ldc: 3 * d)
                        Kernels.gemm(transB: true, m: rows, n: r1, k: hd, a: gob, lda: d, b: v, ldb: 3 * d, c: dpb, ldc: t)
                        // dS = P ⊙ (dP − rowsum(dP ⊙ P)), times the scale
                        for i in r0..<r1 {
                            let pr = p + i * t, dr = dp.pointer + i * t
                            var dot: Float = 0
                            for j in 0...i { dot += pr[j] * dr[j] }
                            for j in 0...i { dr[j] = scale * pr[j] * (dr[j] - dot) }
                            (dr + i + 1).initialize(repeating: 0, count: r1 - i - 1)
                        }
                        // dQ[r0..<r1] = dS·K, dK[0..<r1] += dSᵀ·Q
                        Kernels.gemm(m: rows, n: hd, k: r1, a: dpb, lda: t, b: k, ldb: 3 * d, c: dq + r0 * 3 * d, ldc: 3 * d)
                        Kernels.gemm(transA: true, m: r1, n: hd, k: rows, a: dpb, lda: t, b: q + r0 * 3 * d, ldb: 3 * d, beta: 1, c: dk, ldc: 3 * d)
                    }
                }
            }
            return [dqkv]
        }
    }
}
