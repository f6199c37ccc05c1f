#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import TandemCollectives
import TandemCore

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
        try communicator.use { comm in
            try nccl.check(nccl.ncclGroupStart(), "ncclGroupStart")
            for b in buffers where b.count > 0 {
                let rc = nccl.ncclAllReduce(b.base, b.base, b.count, Self.type(b), Self.op(operation), comm, stream)
                if rc != 0 { _ = nccl.ncclGroupEnd(); try nccl.check(rc, "ncclAllReduce") }
            }
            try nccl.check(nccl.ncclGroupEnd(), "ncclGroupEnd")
        }
    }

    /// Marks this rank's progress (a new number in the rendezvous folder, so a timeout can
    /// name the ranks behind — graph replays included) and puts a marker on `stream` after
    /// the work queued so far; the watchdog aborts the communicator if the GPU has not
    /// reached it within the timeout.
    public func watch(stream: OpaquePointer?) throws {
        try checkHealth()
        let seq = nextSequence()
        rendezvous?.announce(seq)
        let d = gpu.driver
        var event: CUHandle?
        try d.check(d.cuEventCreate(&event, 2), "cuEventCreate")   // CU_EVENT_DISABLE_TIMING
        try d.check(d.cuEventRecord(event, stream), "cuEventRecord")
        watchdog.add(Watchdog.Mark(event: event, sequence: seq, deadline: monotonicSeconds() + timeout))
    }

    /// Throws the failure that ended the communicator (the watchdog's, a collective's, an abort), if any.
    public func checkHealth() throws(CollectiveError) {
        if let failure = communicator.error { throw failure }
    }
}

/// A thread that checks, oldest first, that the GPU passes each watched marker before its
/// deadline; on a miss it fails the communicator with a timeout naming the ranks behind
/// (which aborts it). The group stops it, and waits for it, before ending the communicator.
final class Watchdog: @unchecked Sendable {
    // Safe: `marks` and the flags are guarded by `lock`; the thread uses only the immutable
    // references below, and the communicator serialises its own use.
    struct Mark: @unchecked Sendable {
        let event: CUHandle?
        let sequence: Int
        let deadline: Double
    }
    private let lock = NSLock()
    private var marks: [Mark] = []
    private var running = false
    private var stopped = false
    private let exited = DispatchSemaphore(value: 0)
    let communicator: NCCLCommunicator
    let driver: CUDADriver
    let rendezvous: NCCLRendezvous?
    let timeout: Double

    init(group: NCCLGroup) {
        communicator = group.communicator; driver = group.gpu.driver
        rendezvous = group.rendezvous; timeout = group.timeout
    }

    func add(_ mark: Mark) {
        let start = lock.withLock { () -> Bool in
            marks.append(mark)
            defer { running = true }
            return !running
        }
        if start {
            let thread = Thread { [self] in loop() }
            thread.name = "tandem-nccl-watchdog"
            thread.start()
        }
    }

    /// Ends the thread, waits until it has, and says whether marks were still outstanding.
    @discardableResult
    func stop() -> Bool {
        let (wasRunning, pending) = lock.withLock { () -> (Bool, Bool) in stopped = true; return (running, !marks.isEmpty) }
        if wasRunning { exited.wait() }
        return pending
    }

    private func loop() {
        defer { exited.signal() }
        while true {
            let next = lock.withLock { () -> Mark?? in stopped ? .none : .some(marks.first) }
            guard case .some(let mark) = next else { return }
            guard let mark else { usleep(1_000); continue }
            let rc = communicator.nccl.cuEventQuery(mark.event)
            if rc == 600 && monotonicSeconds() <= mark.deadline { usleep(200); continue }   // CUDA_ERROR_NOT_READY
            if rc != 0 {
                let missing = rendezvous?.behind(mark.sequence) ?? []
                communicator.fail(rc == 600
                    ? .timeout(operation: "step (collectives in stream order)", sequence: mark.sequence, missing: missing, seconds: timeout)
                    : .invalid("the GPU reported \(driver.message(rc)) before progress mark #\(mark.sequence)"))
                while !lock.withLock({ stopped }) { usleep(1_000) }   // the group reads the failure and tears down
                return
            }
            _ = driver.cuEventDestroy(mark.event)
            lock.withLock { _ = marks.removeFirst() }
        }
    }
}
