import TandemCore
import TandemCollectives

// MARK: - Checking a backend's collectives against closed forms

/// Runs every collective of a `ProcessGroup` on known inputs and checks every element of
/// the result: all-reduce (sum, average, max; float32, bfloat16, float16; one buffer and
/// several), broadcast from every root, all-gather, reduce-scatter and barrier, for sizes
/// 0, 1, sizes that do not divide by the world, and a large one (1 MiB). Rank r's element i is
/// (i mod 7) + r, so sums of a few ranks are exact in every precision.
///
/// Every rank must call it together; each returns its own failures (empty when correct).
public enum CollectiveCheck {
    /// Element counts tried: empty, one, uneven, and large (1 MiB of float32 and a few).
    public static func sizes(size n: Int) -> [Int] { [0, 1, n + 1, 2 * n + 3, 1000, (1 << 18) + 3] }

    /// How many cases `run` checks on a world of `size`.
    public static func caseCount(size n: Int) -> Int {
        let s = sizes(size: n).count
        return s * 3 * 3 + s * n + s + s + 1
    }

    public static func run(group: any ProcessGroup) throws -> [String] {
        let n = group.size, me = group.rank
        var failures: [String] = []
        func value(_ i: Int, rank r: Int) -> Float { Float(i % 7 + r) }
        func close(_ a: Float, _ b: Float, _ dtype: DType) -> Bool {
            let tolerance: Float = dtype == .float32 ? 1e-6 : dtype == .float16 ? 1e-3 : 8e-3
            return abs(a - b) <= tolerance * max(1, abs(b))
        }
        func firstWrong(_ label: String, _ count: Int, got: (Int) -> Float, want: (Int) -> Float, _ dtype: DType) {
            for i in 0..<count where !close(got(i), want(i), dtype) {
                failures.append("\(label): element \(i) is \(got(i)), expected \(want(i))")
                return
            }
        }

        for count in sizes(size: n) {
            // All-reduce, every operation and precision.
            for operation in ReduceOperation.allCases {
                for dtype in [DType.float32, .bfloat16, .float16] {
                    let want: (Int) -> Float = { i in
                        let values = (0..<n).map { value(i, rank: $0) }
                        switch operation {
                        case .sum: return values.reduce(0, +)
                        case .average: return values.reduce(0, +) / Float(n)
                        case .max: return values.max()!
                        }
                    }
                    let label = "all-reduce(\(operation), \(dtype), \(count))"
                    if dtype == .float32 {
                        let t = Tensor(zeros: [max(count, 1)])
                        for i in 0..<count { t.pointer[i] = value(i, rank: me) }
                        try group.allReduce(CollectiveBuffer(t.pointer, count: count), operation: operation).wait()
                        firstWrong(label, count, got: { t.pointer[$0] }, want: want, dtype)
                    } else {
                        var bits = [UInt16](repeating: 0, count: max(count, 1))
                        for i in 0..<count { bits[i] = dtype == .bfloat16 ? HalfConversion.bfloat16Bits(value(i, rank: me)) : HalfConversion.float16Bits(value(i, rank: me)) }
                        try bits.withUnsafeMutableBufferPointer { b in
                            try group.allReduce(CollectiveBuffer(b.baseAddress!, count: count, dtype: dtype), operation: operation).wait()
                        }
                        let got: (Int) -> Float = { dtype == .bfloat16 ? HalfConversion.float(bfloat16: bits[$0]) : HalfConversion.float(float16: bits[$0]) }
                        firstWrong(label, count, got: got, want: want, dtype)
                    }
                }
            }
            // Broadcast from every root.
            for root in 0..<n {
                let t = Tensor(zeros: [max(count, 1)])
                for i in 0..<count { t.pointer[i] = value(i, rank: me) }
                try group.broadcast(CollectiveBuffer(t.pointer, count: count), root: root).wait()
                firstWrong("broadcast(root \(root), \(count))", count, got: { t.pointer[$0] }, want: { value($0, rank: root) }, .float32)
            }
            // All-gather.
            let send = Tensor(zeros: [max(count, 1)])
            for i in 0..<count { send.pointer[i] = value(i, rank: me) }
            let gathered = Tensor(zeros: [max(count * n, 1)])
            try group.allGather(send: CollectiveBuffer(send.pointer, count: count), receive: CollectiveBuffer(gathered.pointer, count: count * n)).wait()
            firstWrong("all-gather(\(count))", count * n, got: { gathered.pointer[$0] }, want: { value($0 % max(count, 1), rank: $0 / max(count, 1)) }, .float32)
            // Reduce-scatter (sum): this rank's share [r·count/n, (r+1)·count/n).
            let lo = me * count / n, hi = (me + 1) * count / n
            let part = Tensor(zeros: [max(hi - lo, 1)])
            try group.reduceScatter(send: CollectiveBuffer(send.pointer, count: count), receive: CollectiveBuffer(part.pointer, count: hi - lo), operation: .sum).wait()
            firstWrong("reduce-scatter(sum, \(count))", hi - lo, got: { part.pointer[$0] },
                       want: { i in (0..<n).map { value(lo + i, rank: $0) }.reduce(0, +) }, .float32)
        }
        // Several buffers in one all-reduce, of uneven sizes.
        let counts = [3, 0, 1, 2 * n + 1, 5000]
        let tensors = counts.map { Tensor(zeros: [max($0, 1)]) }
        for (t, c) in zip(tensors, counts) { for i in 0..<c { t.pointer[i] = value(i + c, rank: me) } }
        try group.allReduce(zip(tensors, counts).map { CollectiveBuffer($0.pointer, count: $1) }, operation: .sum).wait()
        for (k, (t, c)) in zip(tensors, counts).enumerated() {
            firstWrong("all-reduce of several buffers, buffer \(k) (\(c))", c, got: { t.pointer[$0] },
                       want: { i in (0..<n).map { value(i + c, rank: $0) }.reduce(0, +) }, .float32)
        }
        try group.barrier().wait()
        return failures
    }
}
