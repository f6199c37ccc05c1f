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
    private var handle: MPIHandle?
    private var operation = ""
    private var sequence = 0
    private var deadline = Double.infinity
    private var missing: [Int] = []
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
    }

    /// Collective `sequence` starts on the communication thread.
    /// `inline`: it runs on the caller's own thread (a small collective), so a library that
    /// does not return would hold the caller itself; then the watchdog ends the process.
    func begin(_ handle: MPIHandle, sequence: Int, inline: Bool) {
        lock.lock(); self.handle = handle; self.sequence = sequence; deadline = .infinity; missing = []; self.inline = inline; lock.unlock()
    }

    /// An exchange of `operation` must end by `deadline`; `missing` are the ranks not yet heard from.
    func exchange(_ operation: String, deadline: Double, missing: [Int]) {
        lock.lock(); self.operation = operation; self.deadline = deadline; self.missing = missing; lock.unlock()
    }

    func update(missing: [Int]) { lock.lock(); self.missing = missing; lock.unlock() }

    /// The collective is over (the communication thread finishes the handle itself).
    func end() { lock.lock(); handle = nil; deadline = .infinity; lock.unlock() }

    func stop() { lock.lock(); stopped = true; lock.unlock() }

    private func loop() {
        while true {
            usleep(50_000)
            lock.lock()
            if stopped { lock.unlock(); return }
            guard let handle, monotonicSeconds() > deadline + grace else { lock.unlock(); continue }
            let error = CollectiveError.timeout(operation: operation, sequence: sequence, missing: missing, seconds: timeout)
            self.handle = nil
            deadline = .infinity
            let stuckCaller = inline
            lock.unlock()
            world.fail(error)
            handle.finish(error)
            if stuckCaller {
                world.tellOthers("\(error)")
                world.abortJob("tandem: rank \(world.rank): error: \(error) (the MPI library did not return; ending the process)")
            }
        }
    }
}
