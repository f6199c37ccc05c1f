#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCollectives

// MARK: - One communicator, aborted at most once

/// An NCCL communicator and what became of it, shared by an ``NCCLGroup``, its handles and
/// its watchdog thread. The first failure wins and aborts the communicator, once; after
/// that no NCCL call touches it (`ncclCommAbort` frees it).
///
/// Calls on the communicator run under a mutex, so an abort from the watchdog cannot free
/// it in the middle of one. A call that blocks inside NCCL (a connection to a peer that is
/// gone) would hold the mutex forever, so the abort waits for it at most a second and then
/// aborts anyway: unblocking such a call is what `ncclCommAbort` is for.
final class NCCLCommunicator: @unchecked Sendable {
    // Safe: `failure` and `ended` are read and written under `mutex`.
    let nccl: NCCLLibrary
    private let comm: NCCLLibrary.Comm
    private var mutex = pthread_mutex_t()
    private var failure: CollectiveError?
    private var ended = false

    init(nccl: NCCLLibrary, comm: NCCLLibrary.Comm) {
        self.nccl = nccl
        self.comm = comm
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    /// The failure that ended the communicator, if any.
    var error: CollectiveError? {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        return failure
    }

    /// Runs `body` on the communicator, or throws the failure that ended it.
    func use<T>(_ body: (NCCLLibrary.Comm) throws -> T) throws -> T {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        if let failure { throw failure }
        guard !ended else { throw CollectiveError.invalid("the NCCL communicator has been destroyed") }
        return try body(comm)
    }

    /// Records `error` (unless an earlier failure did) and aborts the communicator, once.
    /// Returns the failure that stands.
    @discardableResult
    func fail(_ error: CollectiveError) -> CollectiveError {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += 1
        let locked = pthread_mutex_timedlock(&mutex, &deadline) == 0
        defer { if locked { pthread_mutex_unlock(&mutex) } }
        if let failure { return failure }
        failure = error
        if !ended { ended = true; _ = nccl.ncclCommAbort(comm) }
        return error
    }

    /// Ends the communicator: destroyed when nothing is outstanding, aborted otherwise
    /// (`ncclCommDestroy` would wait, without bound, for work that peers never join).
    func end(outstanding: Bool) {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        guard !ended else { return }
        ended = true
        _ = failure == nil && !outstanding ? nccl.ncclCommDestroy(comm) : nccl.ncclCommAbort(comm)
    }
}
