import Foundation
import TandemCollectives

// MARK: - The communication thread and its handles

/// A thread that runs submitted collectives one after another, in issue order.
final class CommThread: @unchecked Sendable {
    // Safe: `items`, `running` and `stopped` are guarded by `condition`.
    private let condition = NSCondition()
    private var items: [(token: Int, run: @Sendable () -> Void)] = []
    private var issued = 0
    private var running = false
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Queues `item`; the token lets its waiter run it itself (``runIfNext(_:_:)``).
    @discardableResult
    func push(_ item: @escaping @Sendable () -> Void) -> Int {
        condition.lock()
        issued += 1
        let token = issued
        items.append((token, item))
        condition.signal()
        condition.unlock()
        return token
    }

    /// Takes the queued item `token` off the queue and runs `body` (its work, as the caller
    /// wants it run) on the calling thread instead, when it is next in line and the thread
    /// has not started it: a caller about to wait for it would only wait for the thread to
    /// wake up. Returns whether it ran here.
    func runIfNext(_ token: Int, instead body: () -> Void) -> Bool {
        condition.lock()
        guard !running, let first = items.first, first.token == token else { condition.unlock(); return false }
        items.removeFirst()
        running = true
        condition.unlock()
        _ = first
        body()
        finishRunning()
        return true
    }

    /// Runs `item` on the calling thread when nothing is queued or running (so order is
    /// kept), and returns true; otherwise returns false and runs nothing. Small collectives
    /// take this path: handing them to the thread and back costs more than they do.
    func runInlineIfIdle(_ item: () -> Void) -> Bool {
        guard beginInline() else { return false }
        item()
        endInline()
        return true
    }

    /// Claims the thread's turn for the caller when nothing is queued or running; the caller
    /// then runs its collective and calls ``endInline()``. Returns false, claiming nothing,
    /// otherwise.
    func beginInline() -> Bool {
        condition.lock()
        guard items.isEmpty && !running && !stopped else { condition.unlock(); return false }
        running = true
        condition.unlock()
        return true
    }

    func endInline() { finishRunning() }

    /// Ends a run on a caller's thread. The communication thread is woken only when work was
    /// queued meanwhile: waking it for nothing costs two context switches and a contended
    /// lock, more than a small collective itself.
    private func finishRunning() {
        condition.lock()
        running = false
        if !items.isEmpty || stopped { condition.signal() }
        condition.unlock()
    }

    func stop() {
        condition.lock(); stopped = true; condition.signal(); condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while (items.isEmpty || running) && !stopped { condition.wait() }
            if items.isEmpty && stopped { condition.unlock(); return }
            let item = items.removeFirst()
            running = true
            condition.unlock()
            item.run()
            condition.lock(); running = false; condition.unlock()
        }
    }
}

/// Completion of one collective, waited on by the issuing thread. While someone waits,
/// the communication thread polls MPI without pausing.
final class MPIHandle: CollectiveHandle, @unchecked Sendable {
    // Safe: `done` and `error` are guarded by `condition`; `world` is immutable.
    private let condition = NSCondition()
    private var done = false
    private var error: CollectiveError?
    private let world: MPIWorld
    /// Runs the collective on the waiting thread if the communication thread has not started it.
    var runHere: (() -> Void)?

    init(world: MPIWorld) { self.world = world }

    /// The first finish wins (the watchdog may finish a collective the library still holds).
    func finish(_ error: CollectiveError?) {
        condition.lock()
        if !done { self.error = error; done = true; condition.broadcast() }
        condition.unlock()
    }

    var isComplete: Bool { condition.lock(); defer { condition.unlock() }; return done }

    func wait() throws(CollectiveError) {
        if !isComplete, let runHere { runHere() }
        condition.lock()
        if !done {
            world.adjustWaiting(1)
            // No spinning here: the communication thread needs the core to move the data.
            // Once the job has failed, a collective still queued behind one the library holds
            // (the watchdog ended that one) would never be run: it fails with the job's error.
            while !done {
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.05))
                if !done, let failure = world.error { error = failure; done = true }
            }
            world.adjustWaiting(-1)
        }
        let error = self.error
        condition.unlock()
        if let error { throw error }
    }
}

/// A collective that ran to its end on the caller's thread before its handle was made.
struct FinishedHandle: CollectiveHandle {
    let error: CollectiveError?
    var isComplete: Bool { true }
    func wait() throws(CollectiveError) {
        if let error { throw error }
    }
}
