#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Broadcasting

extension Tensor {
    /// The shape two shapes broadcast to (NumPy rules), or nil when they do not.
    public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let x = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let y = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            guard x == y || x == 1 || y == 1 else { return nil }
            out[i] = x == 1 ? y : x
        }
        return out
    }

    /// Strides of `shape` read as `target` (0 on broadcast dimensions).
    static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let pad = target.count - shape.count
        var strides = [Int](repeating: 0, count: target.count)
        var s = 1
        for d in stride(from: target.count - 1, through: 0, by: -1) {
            let size = d < pad ? 1 : shape[d - pad]
            strides[d] = size == 1 ? 0 : s
            s *= size
        }
        return strides
    }

    /// Calls `body(outOffset, aOffset, bOffset, innerCount, aInnerStride, bInnerStride)` row by row.
    static func forEachRow(_ shape: [Int], _ sa: [Int], _ sb: [Int],
                           _ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        let total = Tensor.count(of: shape)
        if total == 0 { return }
        let rank = shape.count
        if rank == 0 { body(0, 0, 0, 1, 0, 0); return }
        let inner = shape[rank - 1]
        var index = [Int](repeating: 0, count: rank)
        var oa = 0, ob = 0, o = 0
        while o < total {
            body(o, oa, ob, inner, sa[rank - 1], sb[rank - 1])
            o += inner
            var d = rank - 2
            while d >= 0 {
                index[d] += 1; oa += sa[d]; ob += sb[d]
                if index[d] < shape[d] { break }
                oa -= sa[d] * shape[d]; ob -= sb[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// Sums this gradient down to `target` (the inverse of broadcasting).
    public func sumTo(_ target: [Int]) -> Tensor {
        if target == shape { return self }
        let out = Tensor(zeros: target)
        let so = Tensor.broadcastStrides(target, to: shape)
        let one = [Int](repeating: 0, count: shape.count)
        Tensor.forEachRow(shape, so, one) { o, offOut, _, n, sOut, _ in
            let src = self.pointer + o, dst = out.pointer + offOut
            if sOut == 0 { var s: Float = 0; for j in 0..<n { s += src[j] }; dst[0] += s }
            else { for j in 0..<n { dst[j] += src[j] } }
        }
        return out
    }

    /// Element-wise `op` with broadcasting; forward only.
    static func zipMap(_ a: Tensor, _ b: Tensor, _ op: (Float, Float) -> Float) -> Tensor {
        if a.shape == b.shape {
            let out = Tensor(uninitializedShape: a.shape)
            let pa = a.pointer, pb = b.pointer, po = out.pointer
            for i in 0..<a.count { po[i] = op(pa[i], pb[i]) }
            return out
        }
        guard let shape = broadcastShape(a.shape, b.shape) else {
            preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let out = Tensor(uninitializedShape: shape)
        forEachRow(shape, broadcastStrides(a.shape, to: shape), broadcastStrides(b.shape, to: shape)) { o, oa, ob, n, sa, sb in
            let pa = a.pointer + oa, pb = b.pointer + ob, po = out.pointer + o
            if sa == 1 && sb == 1 { for j in 0..<n { po[j] = op(pa[j], pb[j]) } }
            else if sa == 1 { let y = pb[0]; for j in 0..<n { po[j] = op(pa[j], y) } }
            else if sb == 1 { let x = pa[0]; for j in 0..<n { po[j] = op(x, pb[j]) } }
            else { po[0] = op(pa[0], pb[0]); for j in 1..<max(n, 1) { po[j] = po[0] } }
        }
        return out
    }

    /// Element-wise `op`; forward only.
    public func map(_ op: (Float) -> Float) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let p = pointer, o = out.pointer
        for i in 0..<count { o[i] = op(p[i]) }
        return out
    }
}

// MARK: - Binary operators

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = zipMap(a, b, +)
        return Tape.track(out, inputs: [a, b]) { g, needs in
            [needs[0] ? g.detached.sumTo(a.shape) : nil, needs[1] ? g.detached.sumTo(b.shape) : nil]
        }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = zipMap(a, b, -)
        return Tape.track(out, inputs: [a, b]) { g, needs in
            [needs[0] ? g.detached.sumTo(a.shape) : nil, needs[1] ? g.map { -$0 }.sumTo(b.shape) : nil]
        }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = zipMap(a, b, *)
        return Tape.track(out, inputs: [a, b]) { g, needs in
            [needs[0] ? zipMap(g, b, *).sumTo(a.shape) : nil, needs[1] ? zipMap(g, a, *).sumTo(b.shape) : nil]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = zipMap(a, b, /)
        return Tape.track(out, inputs: [a, b]) { g, needs in
            [needs[0] ? zipMap(g, b, /).sumTo(a.shape) : nil,
             needs[1] ? zipMap(zipMap(g, out, *), b, { -$0 / $1 }).sumTo(b.shape) : nil]
        }
    }

    public static func + (a: Tensor, s: Float) -> Tensor { a + Tensor(scalar: s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a - Tensor(scalar: s) }
    public static func * (a: Tensor, s: Float) -> Tensor { a * Tensor(scalar: s) }
    public static func / (a: Tensor, s: Float) -> Tensor { a * Tensor(scalar: 1 / s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a * Tensor(scalar: s) }
    public static prefix func - (a: Tensor) -> Tensor { a * Tensor(scalar: -1) }
}

// MARK: - Unary functions

extension Tensor {
    /// An element-wise function with its derivative written in terms of input and output.
    func unary(_ f: (Float) -> Float, derivative: @escaping (_ x: Float, _ y: Float) -> Float) -> Tensor {
        let out = map(f)
        let input = self
        return Tape.track(out, inputs: [self]) { g, _ in
            let dx = Tensor(uninitializedShape: input.shape)
            let pg = g.pointer, px = input.pointer, py = out.pointer, pd = dx.pointer
            for i in 0..<input.count { pd[i] = pg[i] * derivative(px[i], py[i]) }
            return [dx]
        }
    }

    public func relu() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let px = pointer, py = out.pointer
        for i in 0..<count { py[i] = px[i] > 0 ? px[i] : 0 }
        let n = count
        return Tape.track(out, inputs: [self]) { g, _ in
            let dx = Tensor(uninitializedShape: out.shape)
            Kernels.reluBackward(output: py, gradient: g.pointer, into: dx.pointer, count: n)
            return [dx]
        }
    }
    public func exp() -> Tensor { unary({ expf($0) }, derivative: { _, y in y }) }
    public func log() -> Tensor { unary({ logf($0) }, derivative: { x, _ in 1 / x }) }
    public func tanh() -> Tensor { unary({ tanhf($0) }, derivative: { _, y in 1 - y * y }) }
    public func sigmoid() -> Tensor { unary({ 1 / (1 + expf(-$0)) }, derivative: { _, y in y * (1 - y) }) }
    public func sqrt() -> Tensor { unary({ sqrtf($0) }, derivative: { _, y in 0.5 / y }) }
    public func squared() -> Tensor { unary({ $0 * $0 }, derivative: { x, _ in 2 * x }) }

    /// GELU with the exact error function, as PyTorch's default `nn.GELU()`.
    public func gelu() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        guard let tape = Tape.current, isTracked else {
            Kernels.gelu(pointer, out.pointer, count: count)
            return out
        }
        // Keep Φ(x) for backward rather than evaluating erf twice.
        let cdf = Tensor(uninitializedShape: shape)
        Kernels.gelu(pointer, out.pointer, cdf: cdf.pointer, count: count)
        let input = self
        return tape.track(out, inputs: [self]) { g, _ in
            let dx = Tensor(uninitializedShape: input.shape)
            Kernels.geluBackward(input.pointer, cdf: cdf.pointer, g.pointer, dx.pointer, count: input.count)
            return [dx]
        }
    }
}

// MARK: - Reductions

extension Tensor {
    /// Sum of every element, as a scalar tensor.
    public func sum() -> Tensor {
        var total: Double = 0
        let p = pointer
        var i = 0
        while i < count {
            let end = min(i + 1024, count)
            var block: Float = 0
            for j in i..<end { block += p[j] }
            total += Double(block)
            i = end
        }
        let out = Tensor(scalar: Float(total))
        let inputShape = shape
        return Tape.track(out, inputs: [self]) { g, _ in [Tensor(repeating: g.item, shape: inputShape)] }
    }

    public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }

    /// Sum over `axis`, removing it (or keeping it as size 1).
    public func sum(axis: Int, keepingDimension: Bool = false) -> Tensor {
        precondition(axis >= 0 && axis < rank, "axis \(axis) out of rank \(rank)")
        var kept = shape
        kept[axis] = 1
        let out = Tensor(zeros: kept)
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        for o in 0..<outer {
            let dst = out.pointer + o * inner
            for k in 0..<n {
                let src = pointer + (o * n + k) * inner
                for j in 0..<inner { dst[j] += src[j] }
            }
        }
        let inputShape = shape
        let result = keepingDimension ? out : Tensor(shape: shape.enumerated().filter { $0.offset != axis }.map(\.element), storage: out.storage)
        return Tape.track(result, inputs: [self]) { g, _ in [Tensor.zipMap(Tensor(zeros: inputShape), g.detached.reshaped(kept), +)] }
    }

    public func mean(axis: Int, keepingDimension: Bool = false) -> Tensor {
        sum(axis: axis, keepingDimension: keepingDimension) * (1 / Float(shape[axis]))
    }
}
