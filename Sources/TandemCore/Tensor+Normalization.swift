// MARK: - Layer normalisation and embedding lookup

extension Tensor {
    /// Layer normalisation over the last dimension with affine `weight` and `bias`
    /// (PyTorch's `F.layer_norm`, biased variance, `eps` inside the square root).
    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float = 1e-5) -> Tensor {
        let d = x.shape.last ?? 1
        precondition(weight.count == d && bias.count == d, "layerNorm: weight and bias must have \(d) elements")
        let rows = x.count / Swift.max(d, 1)
        let out = Tensor(uninitializedShape: x.shape)
        let normalized = Tensor(uninitializedShape: x.shape)
        let inverseStd = Tensor(uninitializedShape: [rows])
        let w = weight.pointer, b = bias.pointer
        for r in 0..<rows {
            let xr = x.pointer + r * d, nr = normalized.pointer + r * d, yr = out.pointer + r * d
            var mean: Float = 0
            for j in 0..<d { mean += xr[j] }
            mean /= Float(d)
            var variance: Float = 0
            for j in 0..<d { let c = xr[j] - mean; variance += c * c }
            let inv = 1 / (variance / Float(d) + eps).squareRoot()
            inverseStd.pointer[r] = inv
            for j in 0..<d { let n = (xr[j] - mean) * inv; nr[j] = n; yr[j] = n * w[j] + b[j] }
        }
        return Tape.track(out, inputs: [x, weight, bias]) { g, needs in
            var dx: Tensor?, dw: Tensor?, db: Tensor?
            if needs[1] || needs[2] {
                let gw = Tensor(zeros: [d]), gb = Tensor(zeros: [d])
                for r in 0..<rows {
                    let gr = g.pointer + r * d, nr = normalized.pointer + r * d
                    for j in 0..<d { gw.pointer[j] += gr[j] * nr[j]; gb.pointer[j] += gr[j] }
                }
                dw = gw; db = gb
            }
            if needs[0] {
                let t = Tensor(uninitializedShape: x.shape)
                for r in 0..<rows {
                    let gr = g.pointer + r * d, nr = normalized.pointer + r * d, dr = t.pointer + r * d
                    var sumG: Float = 0, sumGN: Float = 0
                    for j in 0..<d { let gn = gr[j] * w[j]; sumG += gn; sumGN += gn * nr[j] }
                    let inv = inverseStd.pointer[r], scale = 1 / Float(d)
                    for j in 0..<d { dr[j] = inv * (gr[j] * w[j] - scale * sumG - nr[j] * scale * sumGN) }
                }
                dx = t
            }
            return [dx, dw, db]
        }
    }

    /// Rows of `table` `[V, D]` picked by `indices`; the result is `shape + [D]`.
    public static func embedding(_ table: Tensor, indices: [Int32], shape: [Int]) -> Tensor {
        let vocabulary = table.shape[0], d = table.shape[1]
        precondition(indices.count == Tensor.count(of: shape), "embedding: \(indices.count) indices for shape \(shape)")
        let out = Tensor(uninitializedShape: shape + [d])
        for (i, index) in indices.enumerated() {
            precondition(index >= 0 && Int(index) < vocabulary, "token \(index) out of 0..<\(vocabulary)")
            (out.pointer + i * d).update(from: table.pointer + Int(index) * d, count: d)
        }
        return Tape.track(out, inputs: [table]) { g, _ in
            let dt = Tensor(zeros: table.shape)
            for (i, index) in indices.enumerated() {
                Kernels.addInPlace(dt.pointer + Int(index) * d, g.pointer + i * d, count: d)
            }
            return [dt]
        }
    }
}
