// MARK: - Matrix products

extension Tensor {
    /// `x · weightᵀ + bias` over the last dimension of `x` (PyTorch's `F.linear`):
    /// `x` is `[..., in]`, `weight` `[out, in]`, `bias` `[out]`.
    ///
    /// - Complexity: 2·rows·in·out FLOPs forward, twice that backward.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let inFeatures = weight.shape[1], outFeatures = weight.shape[0]
        precondition(weight.rank == 2 && x.shape.last == inFeatures,
                     "linear: input \(x.shape) does not end in \(inFeatures) features of weight \(weight.shape)")
        let rows = x.count / Swift.max(inFeatures, 1)
        let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
        if let bias {
            for r in 0..<rows { (out.pointer + r * outFeatures).update(from: bias.pointer, count: outFeatures) }
        }
        Kernels.gemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                     a: x.pointer, b: weight.pointer, beta: bias == nil ? 0 : 1, c: out.pointer)
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tape.track(out, inputs: inputs) { g, needs in
            var grads: [Tensor?] = [nil, nil, nil]
            if needs[0] {
                let dx = Tensor(uninitializedShape: x.shape)
                Kernels.gemm(m: rows, n: inFeatures, k: outFeatures, a: g.pointer, b: weight.pointer, c: dx.pointer)
                grads[0] = dx
            }
            if needs[1] {
                let dw = Tensor(uninitializedShape: weight.shape)
                Kernels.gemm(transA: true, m: outFeatures, n: inFeatures, k: rows, a: g.pointer, b: x.pointer, c: dw.pointer)
                grads[1] = dw
            }
            if bias != nil && needs[2] { grads[2] = g.detached.reshaped([rows, outFeatures]).sum(axis: 0) }
            return Array(grads.prefix(inputs.count))
        }
    }

    /// Matrix product over the last two dimensions, batched over the leading ones
    /// (equal on both sides, or absent on `b`).
    public static func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank ≥ 2, got \(a.shape) and \(b.shape)")
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        precondition(b.shape[b.rank - 2] == k, "matmul: \(a.shape) × \(b.shape) inner dimensions differ")
        let batch = a.count / Swift.max(m * k, 1)
        let sharedB = b.rank == 2
        precondition(sharedB || b.count / Swift.max(k * n, 1) == batch, "matmul: batch dimensions of \(a.shape) and \(b.shape) differ")
        let out = Tensor(uninitializedShape: Array(a.shape.dropLast()) + [n])
        for i in 0..<batch {
            Kernels.gemm(m: m, n: n, k: k, a: a.pointer + i * m * k, b: b.pointer + (sharedB ? 0 : i * k * n), c: out.pointer + i * m * n)
        }
        return Tape.track(out, inputs: [a, b]) { g, needs in
            var da: Tensor?, db: Tensor?
            if needs[0] {
                let t = Tensor(uninitializedShape: a.shape)
                for i in 0..<batch {
                    Kernels.gemm(transB: true, m: m, n: k, k: n, a: g.pointer + i * m * n, b: b.pointer + (sharedB ? 0 : i * k * n), c: t.pointer + i * m * k)
                }
                da = t
            }
            if needs[1] {
                let t = Tensor(zeros: b.shape)
                for i in 0..<batch {
                    Kernels.gemm(transA: true, m: k, n: n, k: m, a: a.pointer + i * m * k, b: g.pointer + i * m * n,
                                 beta: sharedB ? 1 : 0, c: t.pointer + (sharedB ? 0 : i * k * n))
                }
                db = t
            }
            return [da, db]
        }
    }
}
