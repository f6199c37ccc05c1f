#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Bounded queue

/// A first-in first-out queue of at most `capacity` elements between one producer thread
/// and one consumer thread: `push` waits while the queue is full, `pop` while it is empty.
///
/// The producer calls `finish()` after its last element; the consumer may `cancel()` at
/// any time, which wakes a producer blocked in `push` and makes every later `push` fail,
/// so the producer stops and its thread can be joined.
///
/// `@unchecked Sendable`: safe because every stored `var` (`items`, `finished`,
/// `cancelled`) is read and written only while `mutex` is locked, and the mutex and the
/// two condition variables live in memory allocated once here (their addresses never
/// move, as POSIX requires) and destroyed in `deinit`, when no thread holds a reference.
final class BoundedQueue<Element: Sendable>: @unchecked Sendable {
    let capacity: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let notEmpty = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let notFull = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var items: [Element] = []
    private var finished = false
    private var cancelled = false

    init(capacity: Int) {
        precondition(capacity >= 1, "a bounded queue holds at least one element, got capacity \(capacity)")
        self.capacity = capacity
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(notEmpty, nil)
        pthread_cond_init(notFull, nil)
    }

    deinit {
        pthread_cond_destroy(notFull)
        pthread_cond_destroy(notEmpty)
        pthread_mutex_destroy(mutex)
        notFull.deallocate()
        notEmpty.deallocate()
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    // MARK: - Producer

    /// Appends `item`, waiting for room. Returns `false`, dropping `item`, once cancelled.
    func push(_ item: Element) -> Bool {
        locked {
            while items.count >= capacity && !cancelled { pthread_cond_wait(notFull, mutex) }
            if cancelled { return false }
            items.append(item)
            pthread_cond_signal(notEmpty)
            return true
        }
    }

    /// No more elements will come; `pop` returns `nil` once the queue is drained.
    func finish() {
        locked {
            finished = true
            pthread_cond_broadcast(notEmpty)
        }
    }

    // MARK: - Consumer

    /// The oldest element, waiting for one; `nil` once finished and drained, or cancelled.
    func pop() -> Element? {
        locked {
            while items.isEmpty && !finished && !cancelled { pthread_cond_wait(notEmpty, mutex) }
            if cancelled || items.isEmpty { return nil }
            let item = items.removeFirst()  // O(capacity), and capacity is a few batches
            pthread_cond_signal(notFull)
            return item
        }
    }

    /// Stops the exchange: drops what is queued, wakes both sides, fails every later `push`.
    func cancel() {
        locked {
            cancelled = true
            items.removeAll()
            pthread_cond_broadcast(notFull)
            pthread_cond_broadcast(notEmpty)
        }
    }

    /// Elements waiting now (for tests and diagnostics).
    var waiting: Int { locked { items.count } }
}
