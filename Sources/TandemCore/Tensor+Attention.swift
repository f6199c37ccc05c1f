#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Causal multi-head attention core

extension Tensor {
    /// Scaled dot-product attention with a causal mask, reading queries, keys and values
    /// from one packed projection `qkv` `[B, T, 3·D]` (PyTorch's in-projection order
    /// q, k, v) and returning the heads merged back to `[B, T, D]`.
    ///
    /// Per batch and head: S = Q·Kᵀ/√d, P = softmax over keys j ≤ i, O = P·V. The GEMMs
    /// read Q, K, V in place through leading dimensions, so nothing is copied.
    ///
    /// - Complexity: 4·B·T²·D FLOPs forward, twice that backward; B·H·T² floats kept for backward.
    public static func causalAttention(_ qkv: Tensor, heads: Int) -> Tensor {
        precondition(qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0, "causalAttention: \(qkv.shape) is not [B, T, 3·D] with D divisible by \(heads) heads")
        let b = qkv.shape[0], t = qkv.shape[1], d = qkv.shape[2] / 3, hd = d / heads
        let scale = 1 / Float(hd).squareRoot()
        let probabilities = Tensor(uninitializedShape: [b, heads, t, t])
        let out = Tensor(uninitializedShape: [b, t, d])
        for bi in 0..<b {
            for h in 0..<heads {
                let q = qkv.pointer + bi * t * 3 * d + h * hd, k = q + d, v = q + 2 * d
                let p = probabilities.pointer + (bi * heads + h) * t * t
                Kernels.gemm(transB: true, m: t, n: t, k: hd, alpha: scale, a: q, lda: 3 * d, b: k, ldb: 3 * d, c: p)
                for i in 0..<t {
                    let row = p + i * t
                    Kernels.softmaxRow(row, row, count: i + 1)
                    (row + i + 1).initialize(repeating: 0, count: t - i - 1)
                }
                Kernels.gemm(m: t, n: hd, k: t, a: p, b: v, ldb: 3 * d, c: out.pointer + bi * t * d + h * hd, ldc: d)
            }
        }
        return Tape.track(out, inputs: [qkv]) { g, _ in
            let dqkv = Tensor(uninitializedShape: qkv.shape)
            let dp = Tensor(uninitializedShape: [t, t])
            for bi in 0..<b {
                for h in 0..<heads {
                    let q = qkv.pointer + bi * t * 3 * d + h * hd, k = q + d, v = q + 2 * d
                    let dq = dqkv.pointer + bi * t * 3 * d + h * hd, dk = dq + d, dv = dq + 2 * d
                    let go = g.pointer + bi * t * d + h * hd
                    let p = probabilities.pointer + (bi * heads + h) * t * t
                    // dV = Pᵀ·dO, dP = dO·Vᵀ
                    Kernels.gemm(transA: true, m: t, n: hd, k: t, a: p, b: go, ldb: d, c: dv, ldc: 3 * d)
                    Kernels.gemm(transB: true, m: t, n: t, k: hd, a: go, lda: d, b: v, ldb: 3 * d, c: dp.pointer)
                    // dS = P ⊙ (dP − rowsum(dP ⊙ P)), times the scale
                    for i in 0..<t {
                        let pr = p + i * t, dr = dp.pointer + i * t
                        var dot: Float = 0
                        for j in 0...i { dot += pr[j] * dr[j] }
                        for j in 0...i { dr[j] = scale * pr[j] * (dr[j] - dot) }
                        (dr + i + 1).initialize(repeating: 0, count: t - i - 1)
                    }
                    // dQ = dS·K, dK = dSᵀ·Q
                    Kernels.gemm(m: t, n: hd, k: t, a: dp.pointer, b: k, ldb: 3 * d, c: dq, ldc: 3 * d)
                    Kernels.gemm(transA: true, m: t, n: hd, k: t, a: dp.pointer, b: q, ldb: 3 * d, c: dk, ldc: 3 * d)
                }
            }
            return [dqkv]
        }
    }
}
