import TandemCore
import TandemCollectives

// MARK: - Reduction, in the threads backend's order

/// The order in which one element's values from every rank are combined. Floating-point
/// addition is not associative, so the order decides the last bits; these are the two
/// orders of the threads backend, so MPI and threads runs agree bit for bit.
enum ReductionOrder {
    /// ((v₀ ∘ v₁) ∘ v₂) ∘ …, in float32, then ×1/N for an average, rounded to 16 bits once.
    case rank
    /// Binary tree: at stride s = 1, 2, 4, … rank r (r mod 2s = 0) combines with r + s; 16-bit
    /// buffers are rounded after every combination; an average divides the root by N
    /// (float32: ×1/N).
    case tree
}

extension MPIGroup {
    /// Phase 1 of an all-reduce, and the whole of a reduce-scatter: rank r receives chunk r
    /// of every buffer from every rank, and combines the N values of each element in
    /// `order`, into `targets` (or in place, into chunk r of the buffer).
    /// - Complexity: each rank sends and receives (N−1)/N of every buffer.
    func reduceScatterPhase(_ buffers: [CollectiveBuffer], targets: [CollectiveBuffer]?, operation: ReduceOperation,
                            order: ReductionOrder, seq: Int, name: String) throws(CollectiveError) {
        let n = size, me = rank
        var offsets: [Int] = [], total = 0
        for b in buffers {
            let (lo, hi) = Self.chunk(me, of: b.count, parts: n)
            offsets.append(total)
            total += (hi - lo) * b.dtype.byteSize * (n - 1)
        }
        let base = scratch.reserve(total)
        var transfers: [Transfer] = []
        for (i, b) in buffers.enumerated() where b.count > 0 {
            let width = b.dtype.byteSize
            let (lo, hi) = Self.chunk(me, of: b.count, parts: n)
            var k = 0
            for peer in 0..<n where peer != me {
                transfers.append(Transfer(peer: peer, receive: true, pointer: base + offsets[i] + k * (hi - lo) * width, bytes: (hi - lo) * width))
                let (plo, phi) = Self.chunk(peer, of: b.count, parts: n)
                transfers.append(Transfer(peer: peer, receive: false, pointer: b.base! + plo * width, bytes: (phi - plo) * width))
                k += 1
            }
        }
        try exchange(transfers, tag: Self.tag(seq, phase: 1), operation: name, sequence: seq)
        for (i, b) in buffers.enumerated() where b.count > 0 {
            let width = b.dtype.byteSize
            let (lo, hi) = Self.chunk(me, of: b.count, parts: n)
            var operands: [Operand] = []
            var k = 0
            for r in 0..<n {
                if r == me {
                    operands.append(Operand(base: b.base! + lo * width, dtype: b.dtype))
                } else {
                    operands.append(Operand(base: base + offsets[i] + k * (hi - lo) * width, dtype: b.dtype)); k += 1
                }
            }
            let target = targets.map { Operand(base: $0[i].base ?? base, dtype: $0[i].dtype) } ?? operands[me]
            scratch.combine(operands, count: hi - lo, operation: operation, order: order, into: target)
        }
    }

    /// A small all-reduce in one round: every rank sends every buffer whole to every other,
    /// and each reduces all of it in tree order (the threads backend's order for small
    /// all-reduces), so all ranks compute the same bits.
    /// - Complexity: (N−1)·count elements sent per rank, one message latency.
    func exchangeAndReduce(_ buffers: [CollectiveBuffer], operation: ReduceOperation, seq: Int) throws(CollectiveError) {
        let n = size, me = rank
        var offsets: [Int] = [], total = 0
        for b in buffers { offsets.append(total); total += b.count * b.dtype.byteSize * (n - 1) }
        let base = scratch.reserve(total)
        var transfers: [Transfer] = []
        for (i, b) in buffers.enumerated() where b.count > 0 {
            let bytes = b.count * b.dtype.byteSize
            var k = 0
            for peer in 0..<n where peer != me {
                transfers.append(Transfer(peer: peer, receive: true, pointer: base + offsets[i] + k * bytes, bytes: bytes))
                transfers.append(Transfer(peer: peer, receive: false, pointer: b.base, bytes: bytes))
                k += 1
            }
        }
        try exchange(transfers, tag: Self.tag(seq, phase: 1), operation: "all-reduce", sequence: seq)
        for (i, b) in buffers.enumerated() where b.count > 0 {
            let bytes = b.count * b.dtype.byteSize
            var operands: [Operand] = [], k = 0
            for r in 0..<n {
                if r == me { operands.append(Operand(base: b.base!, dtype: b.dtype)) } else {
                    operands.append(Operand(base: base + offsets[i] + k * bytes, dtype: b.dtype)); k += 1
                }
            }
            scratch.combine(operands, count: b.count, operation: operation, order: .tree, into: operands[me])
        }
    }

    /// Phase 2 of an all-reduce: every rank sends its reduced chunk of every buffer to all.
    func allGatherPhase(_ buffers: [CollectiveBuffer], seq: Int, name: String) throws(CollectiveError) {
        var transfers: [Transfer] = []
        for b in buffers where b.count > 0 {
            let width = b.dtype.byteSize
            let (lo, hi) = Self.chunk(rank, of: b.count, parts: size)
            for peer in 0..<size where peer != rank {
                let (plo, phi) = Self.chunk(peer, of: b.count, parts: size)
                transfers.append(Transfer(peer: peer, receive: true, pointer: b.base! + plo * width, bytes: (phi - plo) * width))
                transfers.append(Transfer(peer: peer, receive: false, pointer: b.base! + lo * width, bytes: (hi - lo) * width))
            }
        }
        try exchange(transfers, tag: Self.tag(seq, phase: 2), operation: name, sequence: seq)
    }
}

/// Where one rank's values of a chunk lie, and in which precision.
struct Operand {
    var base: UnsafeMutableRawPointer
    var dtype: DType

    @inline(__always) func load(_ i: Int) -> Float {
        switch dtype {
        case .bfloat16: HalfConversion.float(bfloat16: base.assumingMemoryBound(to: UInt16.self)[i])
        case .float16: HalfConversion.float(float16: base.assumingMemoryBound(to: UInt16.self)[i])
        default: base.assumingMemoryBound(to: Float.self)[i]
        }
    }

    @inline(__always) func store(_ v: Float, _ i: Int) {
        switch dtype {
        case .bfloat16: base.assumingMemoryBound(to: UInt16.self)[i] = HalfConversion.bfloat16Bits(v)
        case .float16: base.assumingMemoryBound(to: UInt16.self)[i] = HalfConversion.float16Bits(v)
        default: base.assumingMemoryBound(to: Float.self)[i] = v
        }
    }

    /// `v` as this operand's precision would hold it.
    @inline(__always) func rounded(_ v: Float) -> Float {
        switch dtype {
        case .bfloat16: HalfConversion.float(bfloat16: HalfConversion.bfloat16Bits(v))
        case .float16: HalfConversion.float(float16: HalfConversion.float16Bits(v))
        default: v
        }
    }
}

/// The communication thread's working memory: received chunks and reduction tiles. It only
/// grows, and is never freed while the group lives (a cancelled receive may still land in it).
struct ScratchBuffer {
    private var base: UnsafeMutableRawPointer?
    private var capacity = 0
    private var tiles: [Float] = []
    static let tile = 2048

    mutating func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity || base == nil {
            // The old block is dropped, not freed: a receive cancelled after a failure may still write into it. (7)
            capacity = max(bytes, 2 * capacity, 4096)
            base = .allocate(byteCount: capacity, alignment: 64)
        }
        return base!
    }

    /// Combines `operands` (one per rank, in rank order) element by element in `order` and
    /// writes the result to `target`. Works in tiles that stay in L1.
    mutating func combine(_ operands: [Operand], count: Int, operation: ReduceOperation, order: ReductionOrder, into target: Operand) {
        let n = operands.count, tile = Self.tile
        let needed = order == .tree ? n * tile : tile
        if tiles.count < needed { tiles = [Float](repeating: 0, count: needed) }
        let pairwise: ReduceOperation = operation == .max ? .max : .sum
        tiles.withUnsafeMutableBufferPointer { memory in
            let t = memory.baseAddress!
            var start = 0
            while start < count {
                let m = Swift.min(tile, count - start)
                switch order {
                case .rank:
                    Self.load(operands[0], start, into: t, m)
                    for other in operands.dropFirst() {
                        if other.dtype == .float32 {
                            let q = other.base.assumingMemoryBound(to: Float.self) + start
                            if operation == .max { for i in 0..<m { t[i] = Swift.max(t[i], q[i]) } } else { for i in 0..<m { t[i] += q[i] } }
                        } else {
                            for i in 0..<m { let v = other.load(start + i); t[i] = operation == .max ? Swift.max(t[i], v) : t[i] + v }
                        }
                    }
                    if operation == .average {
                        let scale = 1 / Float(n)
                        if scale != 1 { for i in 0..<m { t[i] *= scale } }
                    }
                    Self.store(t, m, into: target, start)
                case .tree:
                    for r in 0..<n { Self.load(operands[r], start, into: t + r * tile, m) }
                    let holder = operands[0]
                    var stride = 1
                    while stride < n {
                        var r = 0
                        while r + stride < n {
                            let a = t + r * tile, b = t + (r + stride) * tile
                            if pairwise == .max { for i in 0..<m { a[i] = Swift.max(a[i], b[i]) } } else { for i in 0..<m { a[i] += b[i] } }
                            if holder.dtype != .float32 { for i in 0..<m { a[i] = holder.rounded(a[i]) } }
                            r += 2 * stride
                        }
                        stride *= 2
                    }
                    if operation == .average {
                        if holder.dtype == .float32 {
                            let scale = 1 / Float(n)
                            for i in 0..<m { t[i] *= scale }
                        } else {
                            for i in 0..<m { t[i] = t[i] / Float(n) }
                        }
                    }
                    Self.store(t, m, into: target, start)
                }
                start += m
            }
        }
    }

    static func load(_ operand: Operand, _ start: Int, into t: UnsafeMutablePointer<Float>, _ m: Int) {
        if operand.dtype == .float32 {
            t.update(from: operand.base.assumingMemoryBound(to: Float.self) + start, count: m)
        } else {
            for i in 0..<m { t[i] = operand.load(start + i) }
        }
    }

    static func store(_ t: UnsafeMutablePointer<Float>, _ m: Int, into target: Operand, _ start: Int) {
        if target.dtype == .float32 {
            (target.base.assumingMemoryBound(to: Float.self) + start).update(from: t, count: m)
        } else {
            for i in 0..<m { target.store(t[i], start + i) }
        }
    }
}
