#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Softmax and losses

extension Tensor {
    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        let n = shape.last ?? 1
        let rows = count / Swift.max(n, 1)
        let out = Tensor(uninitializedShape: shape)
        for r in 0..<rows { Kernels.softmaxRow(pointer + r * n, out.pointer + r * n, count: n) }
        return Tape.track(out, inputs: [self]) { g, _ in
            let dx = Tensor(uninitializedShape: out.shape)
            for r in 0..<rows {
                let y = out.pointer + r * n, gy = g.pointer + r * n, d = dx.pointer + r * n
                var dot: Float = 0
                for j in 0..<n { dot += y[j] * gy[j] }
                for j in 0..<n { d[j] = y[j] * (gy[j] - dot) }
            }
            return [dx]
        }
    }

    /// Mean cross-entropy of `logits` `[N, C]` (or `[..., C]`) against class ids, as
    /// PyTorch's `F.cross_entropy` with mean reduction.
    public static func crossEntropy(logits: Tensor, labels: [Int32]) -> Tensor {
        let classes = logits.shape.last ?? 1
        let rows = logits.count / Swift.max(classes, 1)
        precondition(labels.count == rows, "crossEntropy: \(labels.count) labels for \(rows) rows of logits \(logits.shape)")
        let probabilities = Tensor(uninitializedShape: [rows, classes])
        var total = 0.0
        for r in 0..<rows {
            let label = Int(labels[r])
            precondition(label >= 0 && label < classes, "label \(label) out of 0..<\(classes)")
            let x = logits.pointer + r * classes, p = probabilities.pointer + r * classes
            // The loss in log-sum-exp form (finite even for huge logits), from the softmax pass.
            let (m, s) = Kernels.softmaxRow(x, p, count: classes)
            total += Double(m + logf(s) - x[label])
        }
        // The gradient of the mean loss, (softmax − one-hot)/rows, made now while the rows
        // are in cache; backward only scales it when the incoming gradient is not 1.
        let inverseRows = 1 / Float(Swift.max(rows, 1))
        for r in 0..<rows {
            let p = probabilities.pointer + r * classes
            for j in 0..<classes { p[j] *= inverseRows }
            p[Int(labels[r])] -= inverseRows
        }
        let gradient = Tensor(shape: logits.shape, storage: probabilities.storage)
        let out = Tensor(scalar: Float(total / Double(Swift.max(rows, 1))))
        return Tape.track(out, inputs: [logits]) { g, _ in
            let scale = g.item
            if scale == 1 { return [gradient] }
            let dx = gradient.copy()
            Kernels.scale(dx.pointer, by: scale, count: dx.count)
            return [dx]
        }
    }

    /// Mean squared error, as PyTorch's `F.mse_loss` with mean reduction.
    public static func meanSquaredError(_ prediction: Tensor, _ target: Tensor) -> Tensor {
        precondition(prediction.shape == target.shape, "meanSquaredError: \(prediction.shape) against \(target.shape)")
        let diff = prediction - target
        return (diff * diff).mean()
    }
}

extension Kernels {
    /// Numerically stable softmax of one row; returns the row's maximum and Σ e^(x−max).
    @inlinable @discardableResult
    public static func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) -> (max: Float, sum: Float) {
        var m = -Float.infinity
        for j in 0..<n { m = Swift.max(m, x[j]) }
        var s: Float = 0
        for j in 0..<n { let e = exp(x[j] - m); y[j] = e; s += e }
        let inv = 1 / s
        for j in 0..<n { y[j] *= inv }
        return (m, s)
    }
}
