import Foundation
import TandemCore

// MARK: - The shared world of the threads backend

/// The ranks of one process that talk through shared memory. Make one, then one
/// `ThreadGroup` per rank (each used from that rank's thread).
///
/// ```swift
/// let world = ThreadWorld(size: 4)
/// DispatchQueue.concurrentPerform(iterations: 4) { rank in
///     let group = world.group(rank: rank)
///     try! group.allReduce(buffer, operation: .average).wait()
/// }
/// ```
public final class ThreadWorld: @unchecked Sendable {
    // Safe: every mutable field is read and written under `condition`'s lock.
    public let size: Int
    /// Seconds a rank waits for the others at any collective before the job fails.
    public let timeout: Double
    /// All-reduces of at most this many bytes take the tree; larger ones the ring.
    public let treeThresholdBytes: Int
    /// Check that every rank made the same call (operation, dtype, count) at each step.
    public let verifyCalls: Bool

    struct Posting {
        var buffers: [CollectiveBuffer]
        var call: String
    }

    private struct Slot {
        var postings: [Posting?]
        var arrived = 0
        var departed = 0
        init(size: Int) { postings = Array(repeating: nil, count: size) }
    }

    /// How long a waiting thread keeps the core (yielding) before it sleeps. Ranks
    /// usually meet within microseconds, and a sleep/wake pair costs tens of them; bounded
    /// in time, not in turns, because a yield can hand the core away for a whole time slice.
    static let spinSeconds = 50e-6

    /// Waits, yielding the core, until `ready()` (called with the lock held) or the spin
    /// time is over; returns with the lock held.
    static func spin(_ condition: NSCondition, until ready: () -> Bool) {
        let end = monotonicSeconds() + spinSeconds
        while !ready() && monotonicSeconds() < end {
            condition.unlock(); sched_yield(); condition.lock()
        }
    }
    private let condition = NSCondition()
    private var slots: [Int: Slot] = [:]
    private var failure: CollectiveError?

    public init(size: Int, timeout: Double = 300, treeThresholdBytes: Int = 64 << 10, verifyCalls: Bool = false) {
        precondition(size >= 1, "a world has at least one rank")
        precondition(timeout > 0, "the collective timeout must be positive")
        self.size = size
        self.timeout = timeout
        self.treeThresholdBytes = treeThresholdBytes
        self.verifyCalls = verifyCalls
    }

    /// Rank `rank`'s end of the world.
    public func group(rank: Int) -> ThreadGroup {
        precondition(rank >= 0 && rank < size, "rank \(rank) is outside a world of \(size)")
        return ThreadGroup(world: self, rank: rank)
    }

    /// The failure that ended the world, if any.
    public var error: CollectiveError? {
        condition.lock(); defer { condition.unlock() }
        return failure
    }

    func fail(_ error: CollectiveError) {
        condition.lock()
        if failure == nil { failure = error }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every rank has posted at step `index`; returns every rank's posting.
    /// Throws a timeout naming the ranks that never came, or the world's failure.
    /// With `waitThroughFailure`, a failure of the world does not end the wait early (only
    /// the timeout does): used once ranks may be writing into each other's buffers.
    func rendezvous(rank: Int, index: Int, sequence: Int, operation: String, posting: Posting,
                    waitThroughFailure: Bool = false) throws(CollectiveError) -> [Posting] {
        condition.lock()
        defer { condition.unlock() }
        let stopsEarly = !waitThroughFailure
        if stopsEarly, let failure { throw failure }
        var slot = slots[index] ?? Slot(size: size)
        slot.postings[rank] = posting
        slot.arrived += 1
        slots[index] = slot
        if slot.arrived == size { condition.broadcast() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        Self.spin(condition) { (slots[index]?.arrived ?? size) >= size || (stopsEarly && failure != nil) }
        while let current = slots[index], current.arrived < size {
            if stopsEarly, let failure { throw failure }
            if !condition.wait(until: deadline) && (slots[index]?.arrived ?? size) < size {
                let missing = (0..<size).filter { slots[index]?.postings[$0] == nil }
                let error = CollectiveError.timeout(operation: operation, sequence: sequence, missing: missing, seconds: timeout)
                if failure == nil { failure = error }
                condition.broadcast()
                throw error
            }
        }
        if stopsEarly, let failure { throw failure }
        guard var done = slots[index] else { throw .invalid("collective step \(index) vanished") }
        let postings = done.postings.map { $0! }
        done.departed += 1
        slots[index] = done.departed == size ? nil : done
        if verifyCalls, Set(postings.map(\.call)).count > 1 {
            throw .mismatch(sequence: sequence, calls: postings.map(\.call))
        }
        return postings
    }
}
