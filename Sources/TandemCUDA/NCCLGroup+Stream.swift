#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import TandemCollectives

// MARK: - Collectives in the compute stream, under a watchdog

extension NCCLGroup {
    /// Queues an all-reduce on `stream` itself, in order with the kernels around it, with no
    /// handle to wait on: the form a training step uses, and the one a CUDA graph can
    /// capture (the gradients' all-reduce between backward and the optimizer).
    ///
    /// Nothing on the host waits for it, so the host cannot time out on it either: call
    /// ``watch(stream:)`` after queueing (or replaying) the step, and the group's watchdog
    /// thread aborts the communicator if the GPU has not passed that point within the
    /// timeout — which ends the NCCL kernels, so the host's next synchronisation returns —
    /// and ``checkHealth()`` then throws the error naming the ranks behind.
    public func allReduceInStream(_ buffers: [CollectiveBuffer], operation: ReduceOperation, stream: OpaquePointer?) throws {
        try checkHealth()
        let seq = nextSequence()
        rendezvous?.announce(seq)
        try nccl.check(nccl.ncclGroupStart(), "ncclGroupStart")
        for b in buffers where b.count > 0 {
            let rc = nccl.ncclAllReduce(b.base, b.base, b.count, Self.type(b), Self.op(operation), comm, stream)
            if rc != 0 { _ = nccl.ncclGroupEnd(); try nccl.check(rc, "ncclAllReduce") }
        }
        try nccl.check(nccl.ncclGroupEnd(), "ncclGroupEnd")
    }

    /// Puts a marker on `stream` after the work queued so far; the watchdog aborts the
    /// communicator if the GPU has not reached it within the timeout.
    public func watch(stream: OpaquePointer?) throws {
        try checkHealth()
        let d = gpu.driver
        var event: CUHandle?
        try d.check(d.cuEventCreate(&event, 2), "cuEventCreate")   // CU_EVENT_DISABLE_TIMING
        try d.check(d.cuEventRecord(event, stream), "cuEventRecord")
        watchdog.add(Watchdog.Mark(event: event, sequence: currentSequence, deadline: monotonicSeconds() + timeout))
    }

    /// Throws the failure the watchdog (or an earlier collective) found, if any.
    public func checkHealth() throws(CollectiveError) {
        if let failure = watchdog.failure ?? currentFailure { throw failure }
    }
}

/// A thread that checks, oldest first, that the GPU passes each watched marker before its
/// deadline; on a miss it records a timeout naming the ranks behind and aborts the
/// communicator. The group stops it (and waits for it) before destroying the communicator.
final class Watchdog: @unchecked Sendable {
    // Safe: `marks`, `found` and the flags are guarded by `lock`; the thread uses only the
    // immutable copies below, and NCCL's abort is thread-safe.
    struct Mark: @unchecked Sendable {
        let event: CUHandle?
        let sequence: Int
        let deadline: Double
    }
    private let lock = NSLockLite()
    private var marks: [Mark] = []
    private var found: CollectiveError?
    private var running = false
    private var stopped = false
    private let exited = DispatchSemaphore(value: 0)
    let nccl: NCCLLibrary
    let driver: CUDADriver
    let comm: NCCLLibrary.Comm
    let rendezvous: NCCLRendezvous?
    let timeout: Double
    let rank: Int

    init(group: NCCLGroup) {
        nccl = group.nccl; driver = group.gpu.driver; comm = group.comm
        rendezvous = group.rendezvous; timeout = group.timeout; rank = group.rank
    }

    var failure: CollectiveError? { lock.locked { found } }

    func add(_ mark: Mark) {
        let start = lock.locked { () -> Bool in
            marks.append(mark)
            defer { running = true }
            return !running
        }
        if start {
            let thread = Thread { [self] in loop() }
            thread.name = "tandem-nccl-watchdog-\(rank)"
            thread.start()
        }
    }

    /// Ends the thread and waits until it has.
    func stop() {
        let wasRunning = lock.locked { () -> Bool in stopped = true; return running }
        if wasRunning { exited.wait() }
    }

    private func loop() {
        defer { exited.signal() }
        while true {
            let next = lock.locked { () -> Mark?? in stopped ? .none : .some(marks.first) }
            guard case .some(let mark) = next else { return }
            guard let mark else { usleep(1_000); continue }
            let rc = nccl.cuEventQuery(mark.event)
            if rc == 600 && monotonicSeconds() <= mark.deadline { usleep(200); continue }   // CUDA_ERROR_NOT_READY
            if rc == 600 || rc != 0 {
                let missing = rendezvous?.behind(mark.sequence) ?? []
                let error: CollectiveError = rc == 600
                    ? .timeout(operation: "collectives up to", sequence: mark.sequence, missing: missing, seconds: timeout)
                    : .aborted(rank: rank, message: "the GPU reported \(driver.message(rc)) before collective #\(mark.sequence)")
                lock.locked { found = found ?? error }
                _ = nccl.ncclCommAbort(comm)
                // Wait to be stopped: the group reads `failure` and tears down.
                while !lock.locked({ stopped }) { usleep(1_000) }
                return
            }
            _ = driver.cuEventDestroy(mark.event)
            lock.locked { _ = marks.removeFirst() }
        }
    }
}
