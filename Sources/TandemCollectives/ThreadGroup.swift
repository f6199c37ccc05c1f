import Foundation
import TandemCore

// MARK: - One rank of the threads backend

/// A rank of a `ThreadWorld`. Collectives run, in the order they were issued, on this
/// rank's own communication thread, so the caller goes on computing while they move data.
public final class ThreadGroup: ProcessGroup, @unchecked Sendable {
    // Safe: `sequence` and `step` are touched only by the rank's own thread (issue) and
    // its communication thread (run), which the queue orders; the queue has its own lock.
    public let rank: Int
    public var size: Int { world.size }
    public let backend = "threads"
    let world: ThreadWorld
    private let queue: WorkQueue
    private var sequence = 0
    private var step = 0
    private var scratch: [Float] = []
    private let busy = BusyClock()
    public var busySeconds: Double { busy.total }
    /// Every collective this rank ran: what, when (monotonic seconds), how long, bytes.
    public var log: [CollectiveRecord] { busy.records }

    init(world: ThreadWorld, rank: Int) {
        self.world = world
        self.rank = rank
        queue = WorkQueue(name: "tandem-comm-\(rank)")
    }

    deinit { queue.stop() }

    /// Runs `body` on the communication thread as collective number `sequence`.
    func submit(_ name: String, call: String, bytes: Int = 0, _ body: @escaping @Sendable (ThreadGroup, Int) throws(CollectiveError) -> Void) -> any CollectiveHandle {
        sequence += 1
        let seq = sequence
        let handle = ThreadHandle()
        queue.push { [self] in
            let start = monotonicSeconds()
            do throws(CollectiveError) {
                try body(self, seq)
                busy.add(CollectiveRecord(operation: name, sequence: seq, start: start, duration: monotonicSeconds() - start, bytes: bytes))
                handle.finish(nil)
            } catch {
                handle.finish(error)
            }
        }
        return handle
    }

    /// One rendezvous step of collective `seq`.
    func meet(_ operation: String, _ seq: Int, _ buffers: [CollectiveBuffer], call: String = "") throws(CollectiveError) -> [[CollectiveBuffer]] {
        step += 1
        return try world.rendezvous(rank: rank, index: step, sequence: seq, operation: operation,
                                    posting: .init(buffers: buffers, call: call)).map(\.buffers)
    }

    /// A step after ranks have started writing into each other's buffers: every rank waits
    /// for all the others (up to the timeout) even when the job has failed, so no rank
    /// returns — and frees its buffers — while a peer may still be writing into them.
    func settle(_ operation: String, _ seq: Int) throws(CollectiveError) {
        step += 1
        _ = try world.rendezvous(rank: rank, index: step, sequence: seq, operation: operation,
                                 posting: .init(buffers: [], call: ""), waitThroughFailure: true)
    }

    /// Fails the whole world with `error` (so no peer waits for this rank) and returns it.
    func failing(_ error: CollectiveError) -> CollectiveError {
        world.fail(error)
        return error
    }

    // MARK: Collectives

    public func allReduce(_ buffers: [CollectiveBuffer], operation: ReduceOperation) -> any CollectiveHandle {
        let total = buffers.reduce(0) { $0 + $1.count * $1.dtype.byteSize }
        let call = "all-reduce(\(operation), " + buffers.map { "\($0.dtype)×\($0.count)" }.joined(separator: ", ") + ")"
        return submit("all-reduce", call: call, bytes: total) { g, seq throws(CollectiveError) in
            let all = try g.meet("all-reduce", seq, buffers, call: call)
            // Check every buffer before reducing any, so a mismatch leaves all of them untouched.
            let columns = try buffers.indices.map { i throws(CollectiveError) in try Self.column(all, i, seq: seq) }
            for column in columns {
                if total <= g.world.treeThresholdBytes {
                    try g.treeAllReduce(column, operation: operation, seq: seq)
                } else {
                    g.ringAllReduce(column, operation: operation)
                }
            }
            if total > g.world.treeThresholdBytes { try g.settle("all-reduce", seq) }
        }
    }

    /// Buffer `i` of every rank; every rank must have passed the same count and dtype.
    static func column(_ all: [[CollectiveBuffer]], _ i: Int, seq: Int) throws(CollectiveError) -> [CollectiveBuffer] {
        guard all.allSatisfy({ $0.count == all[0].count }) else {
            throw .mismatch(sequence: seq, calls: all.map { "all-reduce of \($0.count) buffers" })
        }
        let column = all.map { $0[i] }
        if column.contains(where: { $0.count != column[0].count || $0.dtype != column[0].dtype }) {
            throw .mismatch(sequence: seq, calls: column.map { "all-reduce(\($0.dtype), \($0.count))" })
        }
        return column
    }

    /// Every rank passed the same count and dtype; checked on every rank from the same
    /// postings, so all of them throw together (copying by mismatched counts would overrun).
    static func requireSameLayout(_ all: [CollectiveBuffer], seq: Int, _ operation: String) throws(CollectiveError) {
        if all.contains(where: { $0.count != all[0].count || $0.dtype != all[0].dtype }) {
            throw .mismatch(sequence: seq, calls: all.map { "\(operation)(\($0.dtype), \($0.count))" })
        }
    }

    public func broadcast(_ buffer: CollectiveBuffer, root: Int) -> any CollectiveHandle {
        let call = "broadcast(root \(root), \(buffer.dtype), \(buffer.count))"
        return submit("broadcast", call: call) { g, seq throws(CollectiveError) in
            guard root >= 0 && root < g.size else { throw g.failing(.invalid("broadcast root \(root) is outside a world of \(g.size)")) }
            let all = try g.meet("broadcast", seq, [buffer], call: call).map { $0[0] }
            try Self.requireSameLayout(all, seq: seq, "broadcast")
            if g.rank != root { Self.copy(from: all[root], 0, to: buffer, 0, count: buffer.count) }
            try g.settle("broadcast", seq)
        }
    }

    public func allGather(send: CollectiveBuffer, receive: CollectiveBuffer) -> any CollectiveHandle {
        let call = "all-gather(\(send.dtype), \(send.count))"
        return submit("all-gather", call: call) { g, seq throws(CollectiveError) in
            guard receive.count == send.count * g.size else {
                throw g.failing(.invalid("all-gather on rank \(g.rank): receive holds \(receive.count) elements, expected \(g.size)·\(send.count)"))
            }
            let all = try g.meet("all-gather", seq, [send], call: call).map { $0[0] }
            try Self.requireSameLayout(all, seq: seq, "all-gather")
            for (q, piece) in all.enumerated() { Self.copy(from: piece, 0, to: receive, q * send.count, count: send.count) }
            try g.settle("all-gather", seq)
        }
    }

    public func reduceScatter(send: CollectiveBuffer, receive: CollectiveBuffer, operation: ReduceOperation) -> any CollectiveHandle {
        let call = "reduce-scatter(\(operation), \(send.dtype), \(send.count))"
        return submit("reduce-scatter", call: call) { g, seq throws(CollectiveError) in
            let (lo, hi) = Self.chunk(g.rank, of: send.count, parts: g.size)
            guard receive.count == hi - lo else {
                throw g.failing(.invalid("reduce-scatter on rank \(g.rank): receive holds \(receive.count) elements, expected \(hi - lo) of \(send.count)"))
            }
            let all = try g.meet("reduce-scatter", seq, [send], call: call).map { $0[0] }
            try Self.requireSameLayout(all, seq: seq, "reduce-scatter")
            g.reduce(all, lo..<hi, operation: operation, into: [receive], at: 0)
            try g.settle("reduce-scatter", seq)
        }
    }

    public func barrier() -> any CollectiveHandle {
        submit("barrier", call: "barrier") { g, seq throws(CollectiveError) in _ = try g.meet("barrier", seq, [], call: "barrier") }
    }

    public func abort(_ message: String) {
        world.fail(.aborted(rank: rank, message: message))
    }

    // MARK: Algorithms

    /// Rank r's share of `count` elements split into `parts`: [r·count/parts, (r+1)·count/parts).
    static func chunk(_ r: Int, of count: Int, parts: Int) -> (Int, Int) { (r * count / parts, (r + 1) * count / parts) }

    /// Reduces `range` of every buffer and writes the result into each of `targets` at `offset`.
    /// Works through the range in tiles that stay in L1, so each element is read once from
    /// every source and written once to every target.
    func reduce(_ all: [CollectiveBuffer], _ range: Range<Int>, operation: ReduceOperation, into targets: [CollectiveBuffer], at offset: Int) {
        let tile = 2048
        if scratch.count < tile { scratch = [Float](repeating: 0, count: tile) }
        let scale = operation == .average ? 1 / Float(all.count) : 1
        scratch.withUnsafeMutableBufferPointer { tmp in
            let t = tmp.baseAddress!
            var start = range.lowerBound
            while start < range.upperBound {
                let n = Swift.min(tile, range.upperBound - start)
                Self.load(all[0], start, into: t, count: n)
                for other in all.dropFirst() {
                    if other.dtype == .float32 {
                        let q = other.base!.assumingMemoryBound(to: Float.self) + start
                        if operation == .max { for i in 0..<n { t[i] = Swift.max(t[i], q[i]) } } else { for i in 0..<n { t[i] += q[i] } }
                    } else {
                        for i in 0..<n { let v = other.load(start + i); t[i] = operation == .max ? Swift.max(t[i], v) : t[i] + v }
                    }
                }
                if scale != 1 { for i in 0..<n { t[i] *= scale } }
                let at = offset + (start - range.lowerBound)
                for target in targets {
                    if target.dtype == .float32 {
                        (target.base!.assumingMemoryBound(to: Float.self) + at).update(from: t, count: n)
                    } else {
                        for i in 0..<n { target.store(t[i], at + i) }
                    }
                }
                start += n
            }
        }
    }

    static func load(_ buffer: CollectiveBuffer, _ start: Int, into t: UnsafeMutablePointer<Float>, count n: Int) {
        if buffer.dtype == .float32 {
            t.update(from: buffer.base!.assumingMemoryBound(to: Float.self) + start, count: n)
        } else {
            for i in 0..<n { t[i] = buffer.load(start + i) }
        }
    }

    /// Each rank reduces its own chunk over all ranks and writes it to every rank: the
    /// shared-memory form of reduce-scatter followed by all-gather.
    func ringAllReduce(_ all: [CollectiveBuffer], operation: ReduceOperation) {
        let (lo, hi) = Self.chunk(rank, of: all[0].count, parts: size)
        reduce(all, lo..<hi, operation: operation, into: all, at: lo)
    }

    /// Binary-tree reduction into rank 0 (⌈log₂N⌉ steps), then every rank copies the result.
    func treeAllReduce(_ all: [CollectiveBuffer], operation: ReduceOperation, seq: Int) throws(CollectiveError) {
        let count = all[0].count
        var stride = 1
        while stride < size {
            if rank % (2 * stride) == 0 && rank + stride < size {
                let op: ReduceOperation = operation == .max ? .max : .sum
                reduce([all[rank], all[rank + stride]], 0..<count, operation: op, into: [all[rank]], at: 0)
            }
            try settle("all-reduce", seq)
            stride *= 2
        }
        if operation == .average && rank == 0 {
            if all[0].dtype == .float32 {
                Kernels.scale(all[0].base!.assumingMemoryBound(to: Float.self), by: 1 / Float(size), count: count)
            } else {
                for i in 0..<count { all[0].store(all[0].load(i) / Float(size), i) }
            }
        }
        try settle("all-reduce", seq)
        if rank != 0 { Self.copy(from: all[0], 0, to: all[rank], 0, count: count) }
        try settle("all-reduce", seq)
    }

    static func copy(from source: CollectiveBuffer, _ sourceOffset: Int, to target: CollectiveBuffer, _ targetOffset: Int, count: Int) {
        if count == 0 { return }
        if source.dtype == target.dtype {
            let bytes = source.dtype.byteSize
            (target.base! + targetOffset * bytes).copyMemory(from: source.base! + sourceOffset * bytes, byteCount: count * bytes)
        } else {
            for i in 0..<count { target.store(source.load(sourceOffset + i), targetOffset + i) }
        }
    }
}

// MARK: - Handles and the communication thread

/// Completion of one collective, waited on by the issuing thread.
final class ThreadHandle: CollectiveHandle, @unchecked Sendable {
    // Safe: `done` and `error` are guarded by `condition`.
    private let condition = NSCondition()
    private var done = false
    private var error: CollectiveError?

    func finish(_ error: CollectiveError?) {
        condition.lock(); self.error = error; done = true; condition.broadcast(); condition.unlock()
    }

    var isComplete: Bool { condition.lock(); defer { condition.unlock() }; return done }

    func wait() throws(CollectiveError) {
        condition.lock()
        ThreadWorld.spin(condition) { done }
        while !done { condition.wait() }
        let error = self.error
        condition.unlock()
        if let error { throw error }
    }
}

/// A thread that runs submitted closures one after another.
final class WorkQueue: @unchecked Sendable {
    // Safe: `items` and `stopped` are guarded by `condition`.
    private let condition = NSCondition()
    private var items: [@Sendable () -> Void] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    func push(_ item: @escaping @Sendable () -> Void) {
        condition.lock(); items.append(item); condition.signal(); condition.unlock()
    }

    func stop() {
        condition.lock(); stopped = true; condition.signal(); condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            ThreadWorld.spin(condition) { !items.isEmpty || stopped }
            while items.isEmpty && !stopped { condition.wait() }
            if items.isEmpty && stopped { condition.unlock(); return }
            let item = items.removeFirst()
            condition.unlock()
            item()
        }
    }
}

/// One collective as it ran on a rank's communication thread.
public struct CollectiveRecord: Sendable, Equatable, Codable {
    public var operation: String
    public var sequence: Int
    public var start: Double
    public var duration: Double
    public var bytes: Int
    public init(operation: String, sequence: Int, start: Double, duration: Double, bytes: Int) {
        self.operation = operation; self.sequence = sequence; self.start = start; self.duration = duration; self.bytes = bytes
    }
}

/// The collective log's own cost, for `InstrumentationCost`.
public enum CollectiveLog {
    /// Seconds per record as a collective leaves it: two clock reads and a locked append
    /// (the median of 5 rounds of `iterations`).
    public static func recordCost(iterations: Int, clock: () -> Double) -> Double {
        var rounds: [Double] = []
        for _ in 0..<5 {
            let log = BusyClock()
            let start = clock()
            for i in 0..<iterations {
                let t = monotonicSeconds()
                log.add(CollectiveRecord(operation: "allReduce", sequence: i, start: t, duration: monotonicSeconds() - t, bytes: 0))
            }
            rounds.append((clock() - start) / Double(max(iterations, 1)))
        }
        return rounds.sorted()[2]
    }
}

/// Busy seconds and the collective log, under a lock (written by a communication thread,
/// read by the rank; every backend keeps one). The log keeps the latest 10,000 records.
public final class BusyClock: @unchecked Sendable {
    // Safe: `value` and `kept` are guarded by `lock`.
    private let lock = NSLock()
    private var value = 0.0
    private var kept: [CollectiveRecord] = []
    public init() {}
    public func add(_ record: CollectiveRecord) {
        lock.lock()
        value += record.duration
        if kept.count >= 10_000 { kept.removeFirst(kept.count / 2) }
        kept.append(record)
        lock.unlock()
    }
    public var total: Double { lock.lock(); defer { lock.unlock() }; return value }
    public var records: [CollectiveRecord] { lock.lock(); defer { lock.unlock() }; return kept }
}
