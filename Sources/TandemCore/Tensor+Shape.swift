// MARK: - Shape operations

extension Tensor {
    /// The same elements under a new shape (one dimension may be -1). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let hole = target.firstIndex(of: -1) {
            let known = target.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            target[hole] = count / known
        }
        precondition(Tensor.count(of: target) == count, "cannot reshape \(shape) to \(newShape)")
        let out = Tensor(shape: target, storage: storage)
        let inputShape = shape
        return Tape.track(out, inputs: [self]) { g, _ in [g.detached.reshaped(inputShape)] }
    }

    /// Dimensions reordered: output dimension i is input dimension `order[i]`.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permutation \(order) does not fit rank \(rank)")
        let out = Tensor(uninitializedShape: order.map { shape[$0] })
        Tensor.permute(pointer, shape: shape, order: order, into: out.pointer)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return Tape.track(out, inputs: [self]) { g, _ in [g.detached.permuted(inverse)] }
    }

    /// The last two dimensions swapped.
    public func transposed() -> Tensor {
        precondition(rank >= 2, "transposed needs rank ≥ 2")
        var order = Array(0..<rank)
        order.swapAt(rank - 1, rank - 2)
        return permuted(order)
    }

    static func permute(_ src: UnsafePointer<Float>, shape: [Int], order: [Int], into dst: UnsafeMutablePointer<Float>) {
        let rank = shape.count
        let total = Tensor.count(of: shape)
        if total == 0 { return }
        var srcStrides = [Int](repeating: 1, count: rank)
        for d in stride(from: rank - 2, through: 0, by: -1) { srcStrides[d] = srcStrides[d + 1] * shape[d + 1] }
        let outShape = order.map { shape[$0] }
        let strides = order.map { srcStrides[$0] }
        let inner = outShape.last ?? 1
        let innerStride = strides.last ?? 1
        var index = [Int](repeating: 0, count: max(rank - 1, 0))
        var offset = 0
        var o = 0
        while o < total {
            if innerStride == 1 {
                (dst + o).update(from: src + offset, count: inner)
            } else {
                for j in 0..<inner { dst[o + j] = src[offset + j * innerStride] }
            }
            o += inner
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < outShape[d] { break }
                offset -= strides[d] * outShape[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// Elements `range` of dimension `axis`.
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        precondition(axis >= 0 && axis < rank && range.lowerBound >= 0 && range.upperBound <= shape[axis],
                     "slice \(range) out of dimension \(axis) of \(shape)")
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        var outShape = shape
        outShape[axis] = range.count
        let out = Tensor(uninitializedShape: outShape)
        let n = shape[axis]
        for o in 0..<outer {
            (out.pointer + o * range.count * inner).update(from: pointer + (o * n + range.lowerBound) * inner, count: range.count * inner)
        }
        let inputShape = shape
        return Tape.track(out, inputs: [self]) { g, _ in
            let dx = Tensor(zeros: inputShape)
            for o in 0..<outer {
                (dx.pointer + (o * n + range.lowerBound) * inner).update(from: g.pointer + o * range.count * inner, count: range.count * inner)
            }
            return [dx]
        }
    }

    /// Tensors joined along `axis`; all other dimensions must agree.
    public static func concatenate(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concatenate needs at least one tensor")
        let first = parts[0].shape
        for p in parts {
            precondition(p.rank == first.count && (0..<first.count).allSatisfy { $0 == axis || p.shape[$0] == first[$0] },
                         "cannot concatenate \(p.shape) with \(first) along \(axis)")
        }
        let outer = first[..<axis].reduce(1, *)
        let inner = first[(axis + 1)...].reduce(1, *)
        let sizes = parts.map { $0.shape[axis] }
        let total = sizes.reduce(0, +)
        var outShape = first
        outShape[axis] = total
        let out = Tensor(uninitializedShape: outShape)
        var start = 0
        for (p, size) in zip(parts, sizes) {
            for o in 0..<outer {
                (out.pointer + (o * total + start) * inner).update(from: p.pointer + o * size * inner, count: size * inner)
            }
            start += size
        }
        return Tape.track(out, inputs: parts) { g, needs in
            var begin = 0
            return zip(sizes, needs).map { size, need in
                defer { begin += size }
                return need ? g.detached.slice(axis: axis, begin..<(begin + size)) : nil
            }
        }
    }
}
