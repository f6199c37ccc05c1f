import Foundation
import TandemCollectives
import TandemCore

// MARK: - The deadline, even when the library does not return

/// Watches the collective in flight on a group's communication thread. `exchange` polls
/// `MPI_Test` against its deadline, but a library can stop returning from `MPI_Test` itself
/// (Open MPI's TCP transport, after a peer's connection is reset, can spin inside its
/// progress engine). Past the deadline and a short grace, the watchdog fails the
/// collective's handle with the timeout — naming the ranks whose messages had not arrived
/// when the library was last seen — so the caller is never held longer than the timeout.
final class MPIWatchdog: @unchecked Sendable {
    // Safe: every field is guarded by `lock`.
    private let lock = NSLock()
    private var active = false
    private var handle: MPIHandle?
    private var operation = ""
    private var sequence = 0
    private var deadline = Double.infinity
    /// The exchange in flight and which of its messages are done: the missing ranks are
    /// worked out from them only when the deadline passes.
    private var transfers: [Transfer] = []
    private var done: [Bool] = []
    private var stopped = false
    private var inline = false
    let timeout: Double
    let grace: Double
    private let world: MPIWorld

    init(world: MPIWorld, timeout: Double, grace: Double = 0.5) {
        self.world = world
        self.timeout = timeout
        self.grace = grace
        let thread = Thread { [self] in self.loop() }
        thread.name = "tandem-mpi-watchdog"
        thread.stackSize = 1 << 20
        thread.start()
        MPITermination.register(self)
    }

    /// The collective in flight, if any: its operation, number, and the ranks whose messages
    /// have not arrived yet (empty before its exchange starts).
    func inFlight() -> (operation: String, sequence: Int, missing: [Int])? {
        lock.lock(); defer { lock.unlock() }
        guard active else { return nil }
        return (operation.isEmpty ? "collective" : operation, sequence, missing)
    }

    /// The ranks whose messages of the exchange in flight have not arrived (call under `lock`).
    private var missing: [Int] { done.count == transfers.count ? MPIGroup.unheard(transfers, done) : [] }

    /// Collective `sequence` starts, finishing `handle` (nil: it runs on the caller's own
    /// thread, which has no handle yet). `inline`: it runs on the caller's own thread (a small
    /// collective), so a library that does not return would hold the caller itself; then the
    /// watchdog ends the process.
    func begin(_ handle: MPIHandle?, sequence: Int, inline: Bool) {
        lock.lock()
        active = true; self.handle = handle; self.sequence = sequence; deadline = .infinity; self.inline = inline
        lock.unlock()
    }

    /// An exchange of `operation` must end by `deadline`; `done` says which of `transfers` are.
    func exchange(_ operation: String, deadline: Double, transfers: [Transfer], done: [Bool]) {
        lock.lock(); self.operation = operation; self.deadline = deadline; self.transfers = transfers; self.done = done; lock.unlock()
    }

    func update(done: [Bool]) { lock.lock(); self.done = done; lock.unlock() }

    /// The collective is over (its thread finishes the handle itself).
    func end() { lock.lock(); active = false; handle = nil; deadline = .infinity; lock.unlock() }

    func stop() { lock.lock(); stopped = true; lock.unlock() }

    private func loop() {
        while true {
            usleep(50_000)
            lock.lock()
            if stopped { lock.unlock(); return }
            guard active, monotonicSeconds() > deadline + grace else { lock.unlock(); continue }
            let error = CollectiveError.timeout(operation: operation, sequence: sequence, missing: missing, seconds: timeout)
            let handle = self.handle
            active = false
            self.handle = nil
            deadline = .infinity
            let stuckCaller = inline
            lock.unlock()
            world.fail(error)
            handle?.finish(error)
            if stuckCaller {
                world.tellOthers("\(error)")
                world.abortJob("tandem: rank \(world.rank): error: \(error) (the MPI library did not return; ending the process)")
            }
        }
    }
}
