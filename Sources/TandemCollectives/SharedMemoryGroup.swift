import TandemCore

// MARK: - Ranks that share one address space

/// A process group whose ranks live in one process (threads), so a collective can hand each
/// rank the buffers every other rank posted and let it read and write them in place.
///
/// This is what lets a sharded optimizer step fuse its three phases on shared memory: the
/// owner of a slice sums every rank's gradient for it, updates the weights, and writes them
/// straight into every replica — one pass instead of a reduce-scatter, an update and an
/// all-gather, each through staging buffers. Groups of separate processes (MPI, NCCL) are
/// not shared-memory groups; callers fall back to `reduceScatter` and `allGather`.
///
/// ```swift
/// if let shared = group as? any SharedMemoryGroup {
///     try shared.exchange([mine], name: "copy-from-0") { all, rank in
///         if rank != 0 { /* read all[0][0], write all[rank][0] */ }
///     }.wait()
/// }
/// ```
public protocol SharedMemoryGroup: ProcessGroup {
    /// All-reduces of at most this many bytes sum the ranks pairwise, as a binary tree
    /// ((r0 + r1) + (r2 + r3) …); larger ones in rank order (((r0 + r1) + r2) …). A fused
    /// reduction that sums the same way gets the all-reduce's bits.
    var treeThresholdBytes: Int { get }
    /// Collective: once every rank has posted `buffers`, runs `body` on each rank with every
    /// rank's buffers (in rank order) and this rank's number; completes on each rank only
    /// when every rank's `body` has returned, so no rank touches another's buffers after its
    /// own handle completes. Every rank must post the same number of buffers with the same
    /// counts and types (checked in the debug mode, as every call is).
    ///
    /// `body` runs on the rank's communication thread, after the collectives issued before
    /// it; between the rendezvous and the end, the ranks' `body`s run at the same time, so
    /// each must write only memory no other rank's `body` reads or writes.
    func exchange(_ buffers: [CollectiveBuffer], name: String,
                  _ body: @escaping @Sendable (_ all: [[CollectiveBuffer]], _ rank: Int) -> Void) -> any CollectiveHandle
}

extension ThreadGroup: SharedMemoryGroup {
    public var treeThresholdBytes: Int { world.treeThresholdBytes }

    public func exchange(_ buffers: [CollectiveBuffer], name: String,
                         _ body: @escaping @Sendable (_ all: [[CollectiveBuffer]], _ rank: Int) -> Void) -> any CollectiveHandle {
        let bytes = buffers.reduce(0) { $0 + $1.count * $1.dtype.byteSize }
        let call = "\(name)(" + buffers.map { "\($0.dtype)×\($0.count)" }.joined(separator: ", ") + ")"
        return submit(name, call: call, bytes: bytes) { g, seq throws(CollectiveError) in
            let all = try g.meet(name, seq, buffers, call: call)
            guard all.allSatisfy({ $0.count == buffers.count }) else {
                throw g.failing(.mismatch(sequence: seq, calls: all.map { "\(name) of \($0.count) buffers" }))
            }
            body(all, g.rank)
            try g.settle(name, seq)
        }
    }
}
