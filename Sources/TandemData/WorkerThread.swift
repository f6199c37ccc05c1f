#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Worker threads

/// A POSIX thread running one closure, joined by `join()` (a Foundation `Thread` cannot be
/// joined, and a loader must know its thread is gone before it returns).
final class WorkerThread {
    /// The closure, boxed so it can pass through `pthread_create`'s context pointer.
    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    #if canImport(Darwin)
    private var handle: pthread_t?
    #else
    private var handle = pthread_t()
    #endif
    private var joined = false

    /// Starts a thread running `body`, or returns `nil` when the system cannot make one.
    init?(_ body: @escaping @Sendable () -> Void) {
        // (1) The box is retained here and released by the new thread, which takes it over.
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        #if canImport(Darwin)
        let rc = pthread_create(&handle, nil, { raw in
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        #else
        let rc = pthread_create(&handle, nil, { raw in
            // (2) `raw` is the non-nil context passed below.
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        #endif
        if rc != 0 {
            Unmanaged<Body>.fromOpaque(context).release()
            return nil
        }
    }

    /// Waits for the thread to end. Calling it again does nothing.
    func join() {
        if joined { return }
        joined = true
        #if canImport(Darwin)
        if let handle { pthread_join(handle, nil) }
        #else
        pthread_join(handle, nil)
        #endif
    }

    deinit { join() }
}
