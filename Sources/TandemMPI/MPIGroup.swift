import Foundation
import TandemCore
import TandemCollectives

// MARK: - One rank of the MPI backend

/// This process's rank of an MPI job. Collectives run, in the order they were issued, on
/// the group's communication thread, so the caller goes on computing while they move data
/// (DDP's buckets overlap backward as on threads).
///
/// Every collective is built from non-blocking point-to-point messages between the ranks
/// that must meet (`MPI_Isend`/`MPI_Irecv`), polled with `MPI_Test` against a deadline —
/// never a bare `MPI_Wait` — so a rank that died, stopped, or skipped a call is named in a
/// timeout error: the ranks whose messages did not arrive. All-reduce and reduce-scatter
/// sum each element in the same order as the threads backend (rank order, or the binary tree
/// for small calls), so a run over MPI gives the same weights, bit for bit, as over threads.
///
/// ```swift
/// let world = try MPIWorld.shared()                 // under mpirun -np 4
/// let group = MPIGroup(world: world, timeout: 60)
/// try group.allReduce(CollectiveBuffer(pointer, count: n), operation: .average).wait()
/// ```
public final class MPIGroup: ProcessGroup, @unchecked Sendable {
    // Safe: `sequence` and `allReduces` are touched only by the issuing thread; the
    // communication thread (or an inline caller, one at a time) owns `scratch`,
    // `directDecision` and `mailboxDecision`; `busy` and `world` have their own locks.
    public var rank: Int { world.rank }
    public var size: Int { world.size }
    public let backend = "mpi"
    public let world: MPIWorld
    /// Seconds a collective may take before it fails, naming the ranks that did not arrive.
    public let timeout: Double
    /// Check before every collective that every rank made the same call (operation, dtype, count).
    public let verifyCalls: Bool
    /// All-reduces of at most this many bytes sum in tree order, larger ones in rank order
    /// (the threads backend's rule, so results match it bit for bit).
    public let treeThresholdBytes: Int
    let queue: CommThread
    let watchdog: MPIWatchdog
    let fault: MPIFault?
    private var sequence = 0
    private var allReduces = 0
    var scratch = ScratchBuffer()
    /// Whether large all-reduces reduce directly in the peers' memory (all ranks on one
    /// host), decided at the first one (`MPIGroup+Direct.swift`).
    var directDecision: DirectDecision?
    /// Whether small all-reduces go through a segment shared by the ranks (all on one host),
    /// decided at the first one (`MPIGroup+Mailbox.swift`).
    var mailboxDecision: MailboxDecision?
    let busy = BusyClock()
    public var busySeconds: Double { busy.total }
    /// Every collective this rank ran: what, when (monotonic seconds), how long, bytes.
    public var log: [CollectiveRecord] { busy.records }

    public init(world: MPIWorld, timeout: Double = 300, verifyCalls: Bool = false, treeThresholdBytes: Int = 64 << 10) {
        precondition(timeout > 0, "the collective timeout must be positive")
        self.world = world
        self.timeout = timeout
        self.verifyCalls = verifyCalls
        self.treeThresholdBytes = treeThresholdBytes
        fault = MPIFault.fromEnvironment(rank: world.rank)
        queue = CommThread(name: "tandem-mpi-comm")
        watchdog = MPIWatchdog(world: world, timeout: timeout)
    }

    deinit { queue.stop(); watchdog.stop() }

    /// Runs `body` on the communication thread as collective number `sequence`.
    /// `call` describes the collective for `--debug-collectives`; it is built only then
    /// (formatting it cost about a microsecond, a sixth of a small all-reduce).
    private func submit(_ name: String, call: @escaping @Sendable () -> String, bytes: Int = 0, allReduce: Bool = false,
                        _ body: @escaping @Sendable (MPIGroup, Int) throws(CollectiveError) -> Void) -> any CollectiveHandle {
        let seq = nextSequence(allReduce: allReduce)
        let injected = allReduce ? fault?.action(atAllReduce: allReduces) : nil
        if injected == .skip { return FinishedHandle(error: nil) }
        // The collective itself, on whichever thread runs it; returns its error.
        let run: @Sendable (_ inline: Bool, _ handle: MPIHandle?) -> CollectiveError? = { [self] inline, handle in
            let start = monotonicSeconds()
            watchdog.begin(handle, sequence: seq, inline: inline)
            defer { watchdog.end() }
            do throws(CollectiveError) {
                if let failure = world.error { throw failure }
                if let injected { injected.strike() }
                if verifyCalls { try fingerprint(call(), seq: seq) }
                try body(self, seq)
                busy.add(CollectiveRecord(operation: name, sequence: seq, start: start, duration: monotonicSeconds() - start, bytes: bytes))
                return nil
            } catch {
                world.fail(error)
                return error
            }
        }
        if bytes <= treeThresholdBytes && injected == nil {
            // The caller would only wait for it: run it here, polling without pauses, and
            // hand back a handle that is already done (no lock or condition to make).
            var outcome: CollectiveError?
            let ran = queue.runInlineIfIdle {
                world.adjustWaiting(1)
                outcome = run(true, nil)
                world.adjustWaiting(-1)
            }
            if ran { return FinishedHandle(error: outcome) }
        }
        let handle = MPIHandle(world: world)
        let token = queue.push { handle.finish(run(false, handle)) }
        handle.runHere = { [queue, world, weak handle] in
            guard let handle else { return }
            _ = queue.runIfNext(token) {
                world.adjustWaiting(1)
                handle.finish(run(true, handle))
                world.adjustWaiting(-1)
            }
        }
        return handle
    }

    /// Numbers the next collective (on the issuing thread).
    func nextSequence(allReduce: Bool) -> Int {
        sequence += 1
        if allReduce { allReduces += 1 }
        return sequence
    }

    // MARK: Collectives

    public func allReduce(_ buffers: [CollectiveBuffer], operation: ReduceOperation) -> any CollectiveHandle {
        var buffers = buffers
        if let fault, fault.kind == .resize, fault.sequence == allReduces + 1, let last = buffers.popLast() {
            buffers.append(MPIFault.shrunk(last))
        }
        let total = buffers.reduce(0) { $0 + $1.count * $1.dtype.byteSize }
        if total <= treeThresholdBytes && fault == nil && !verifyCalls,
           let done = mailboxFastPath(buffers, bytes: total, operation: operation) {
            return done
        }
        let buffersCopy = buffers
        let call: @Sendable () -> String = { "all-reduce(\(operation), " + buffersCopy.map { "\($0.dtype)×\($0.count)" }.joined(separator: ", ") + ")" }
        return submit("all-reduce", call: call, bytes: total, allReduce: true) { g, seq throws(CollectiveError) in
            let small = total <= g.treeThresholdBytes
            if let box = try g.mailbox(seq: seq), small || box.rankOrder, box.fits(buffersCopy, bytes: total) {
                // Every rank on this host: through the mailbox, whole in the threads backend's tree
                // order (small calls) or by shares in rank order (mid-size ones).
                try g.mailboxAllReduce(buffersCopy, with: box, operation: operation, order: small ? .tree : .rank, seq: seq, started: monotonicSeconds())
            } else if small {
                // The tree order in whichever message pattern is quicker here.
                if g.smallAllReduceInOneRound(bytes: total) {
                    try g.exchangeAndReduce(buffersCopy, operation: operation, seq: seq)
                } else {
                    try g.reduceScatterPhase(buffersCopy, targets: nil, operation: operation, order: .tree, seq: seq, name: "all-reduce")
                    try g.allGatherPhase(buffersCopy, seq: seq, name: "all-reduce")
                }
            } else if let peers = try g.directPeers(seq: seq) {
                // Every rank on this host: reduce in each other's memory, as on threads.
                try g.directAllReduce(buffersCopy, peers: peers, operation: operation, seq: seq)
            } else {
                try g.reduceScatterPhase(buffersCopy, targets: nil, operation: operation, order: .rank, seq: seq, name: "all-reduce")
                try g.allGatherPhase(buffersCopy, seq: seq, name: "all-reduce")
            }
        }
    }

    public func broadcast(_ buffer: CollectiveBuffer, root: Int) -> any CollectiveHandle {
        let call: @Sendable () -> String = { "broadcast(root \(root), \(buffer.dtype), \(buffer.count))" }
        return submit("broadcast", call: call, bytes: buffer.count * buffer.dtype.byteSize) { g, seq throws(CollectiveError) in
            guard root >= 0 && root < g.size else { throw .invalid("broadcast root \(root) is outside a world of \(g.size)") }
            let bytes = buffer.count * buffer.dtype.byteSize
            let transfers: [Transfer] = g.rank == root
                ? (0..<g.size).filter { $0 != root }.map { Transfer(peer: $0, receive: false, pointer: buffer.base, bytes: bytes) }
                : [Transfer(peer: root, receive: true, pointer: buffer.base, bytes: bytes)]
            try g.exchange(transfers, tag: Self.tag(seq, phase: 1), operation: "broadcast", sequence: seq)
        }
    }

    public func allGather(send: CollectiveBuffer, receive: CollectiveBuffer) -> any CollectiveHandle {
        let call: @Sendable () -> String = { "all-gather(\(send.dtype), \(send.count))" }
        return submit("all-gather", call: call, bytes: send.count * send.dtype.byteSize * size) { g, seq throws(CollectiveError) in
            guard receive.count == send.count * g.size, receive.dtype == send.dtype else {
                throw .invalid("all-gather on rank \(g.rank): receive holds \(receive.count) \(receive.dtype) elements, expected \(g.size)·\(send.count) \(send.dtype)")
            }
            let bytes = send.count * send.dtype.byteSize
            var transfers: [Transfer] = []
            for peer in 0..<g.size where peer != g.rank {
                transfers.append(Transfer(peer: peer, receive: true, pointer: receive.base.map { $0 + peer * bytes }, bytes: bytes))
                transfers.append(Transfer(peer: peer, receive: false, pointer: send.base, bytes: bytes))
            }
            try g.exchange(transfers, tag: Self.tag(seq, phase: 1), operation: "all-gather", sequence: seq)
            if bytes > 0 { (receive.base! + g.rank * bytes).copyMemory(from: send.base!, byteCount: bytes) }
        }
    }

    public func reduceScatter(send: CollectiveBuffer, receive: CollectiveBuffer, operation: ReduceOperation) -> any CollectiveHandle {
        let call: @Sendable () -> String = { "reduce-scatter(\(operation), \(send.dtype), \(send.count))" }
        return submit("reduce-scatter", call: call, bytes: send.count * send.dtype.byteSize) { g, seq throws(CollectiveError) in
            let (lo, hi) = Self.chunk(g.rank, of: send.count, parts: g.size)
            guard receive.count == hi - lo else {
                throw .invalid("reduce-scatter on rank \(g.rank): receive holds \(receive.count) elements, expected \(hi - lo) of \(send.count)")
            }
            try g.reduceScatterPhase([send], targets: [receive], operation: operation, order: .rank, seq: seq, name: "reduce-scatter")
        }
    }

    public func barrier() -> any CollectiveHandle {
        submit("barrier", call: { "barrier" }) { g, seq throws(CollectiveError) in
            var transfers: [Transfer] = []
            for peer in 0..<g.size where peer != g.rank {
                transfers.append(Transfer(peer: peer, receive: true, pointer: nil, bytes: 0))
                transfers.append(Transfer(peer: peer, receive: false, pointer: nil, bytes: 0))
            }
            try g.exchange(transfers, tag: Self.tag(seq, phase: 1), operation: "barrier", sequence: seq)
        }
    }

    /// Tells every rank that this one gave up with `message`: their pending and future
    /// collectives fail with it (naming this rank). The job itself is ended by the launcher
    /// (``MPIWorld/abortJob(_:code:)``), after every rank has had a moment to report.
    public func abort(_ message: String) {
        world.tellOthers(message)
    }

    /// Whether a small all-reduce of `bytes` goes in one round (every rank sends every other
    /// its whole buffer, one message latency) rather than two (reduce-scatter, then
    /// all-gather: messages of bytes/N, two latencies). Both sum in tree order, so the choice
    /// changes only the time. A message up to the library's eager limit is sent at once; a
    /// larger one waits for a handshake, which costs more than a second round
    /// (2 processes, Open MPI: 4 KB in one round 3.9 µs, in two 1.5 µs; MPICH: 16 KB 11.8
    /// against 2.7 µs — `docs/performance.md`, "The MPI backend"). So: one round when the whole buffer is
    /// eager; two when only its shares are; above both, one round under Open MPI (a single
    /// copy between processes, one handshake) and two under MPICH (which copies through
    /// shared cells, where each rank moving a share of the bytes pays).
    func smallAllReduceInOneRound(bytes: Int) -> Bool {
        let eager = world.library.family.eagerBytes
        if bytes <= eager { return true }
        if (bytes + size - 1) / size <= eager { return false }
        return world.library.family == .openMPI
    }

    // MARK: Tags and chunks

    /// Message tag of phase `phase` (0 fingerprint, 1 and 2 data) of collective `seq`; MPI
    /// guarantees tags up to 32767.
    static func tag(_ seq: Int, phase: Int) -> Int32 { Int32((seq % 8000) * 4 + phase) }

    /// Rank r's share of `count` elements split into `parts`: [r·count/parts, (r+1)·count/parts).
    static func chunk(_ r: Int, of count: Int, parts: Int) -> (Int, Int) { (r * count / parts, (r + 1) * count / parts) }
}
