import Foundation
import TandemCollectives

// MARK: - MPI in this process

/// MPI as initialised in this process: the library, this process's rank and the world's
/// size, and the communicators Tandem's groups use. There is one per process
/// (`MPI_Init_thread` runs once); make it from the main thread, which also finalises it at exit.
///
/// Every MPI call goes through ``call(_:)``, under one lock, so the library is asked only for
/// `MPI_THREAD_SERIALIZED`: groups talk from their communication threads, `abort` from
/// any thread, and never two at once.
public final class MPIWorld: @unchecked Sendable {
    // Safe: `library`, `rank`, `size` and the communicators are written once in `init`;
    // every MPI call, and `finished`, is under `lock`.
    public let library: MPILibrary
    public let rank: Int
    public let size: Int
    /// The thread level the library granted.
    public let threadLevel: Int
    /// A duplicate of `MPI_COMM_WORLD` for collectives' data (no other code shares its tags).
    let dataComm: UInt
    /// A second duplicate for abort notices, so they never match a data receive.
    let controlComm: UInt
    private let lock = NSLock()
    private var finished = false
    /// Guards `failure` and `waiting` (never held across an MPI call).
    let state = NSLock()
    /// The failure that ended this process's collectives, if any (sticky, as a `ThreadWorld`'s).
    var failure: CollectiveError?
    /// Callers blocked in a handle's `wait`: while some are, communication threads poll MPI
    /// without sleeping (nothing else needs the core); otherwise they back off so the
    /// computation they overlap keeps it.
    var waiting = 0
    /// The posted receive of abort notices from any rank (on `controlComm`).
    let notice = NoticeReceiver()

    /// The world of this process, initialising MPI on first use (call it first from the
    /// main thread). Throws when no MPI library is found or it cannot start.
    public static func shared() throws(MPIError) -> MPIWorld {
        lock.lock(); defer { lock.unlock() }
        if let world = current { return world }
        let world = try MPIWorld(library: try MPILibrary.shared())
        current = world
        // Ranks of one host reduce large gradients in each other's heaps (MPIGroup+Direct.swift).
        if world.size > 1 {
            SharedHeap.installIfWanted()
            MPITermination.install(rank: world.rank)
        }
        atexit { MPIWorld.finalizeAtExit() }
        return world
    }

    /// The world, when MPI has been initialised in this process.
    public static var initialized: MPIWorld? { lock.lock(); defer { lock.unlock() }; return current }

    nonisolated(unsafe) private static var current: MPIWorld?   // guarded by `lock`
    private static let lock = NSLock()

    private init(library: MPILibrary) throws(MPIError) {
        self.library = library
        var flag: Int32 = 0
        try library.check(library.initialized(&flag), "MPI_Initialized")
        var provided: Int32 = 0
        if flag == 0 {
            try library.check(library.initThread(nil, nil, library.constants.threadSerialized, &provided), "MPI_Init_thread")
        } else {
            provided = library.constants.threadSerialized
        }
        threadLevel = Int(provided)
        guard provided >= library.constants.threadSerialized else { throw .threadSupport(provided: Int(provided)) }
        let world = library.constants.commWorld
        // Errors come back as codes (through `check`), not as the default abort.
        try library.check(library.commSetErrhandler(world, library.constants.errorsReturn), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try library.check(library.commRank(world, &r), "MPI_Comm_rank")
        try library.check(library.commSize(world, &s), "MPI_Comm_size")
        rank = Int(r); size = Int(s)
        dataComm = try Self.duplicate(world, library)
        controlComm = try Self.duplicate(world, library)
        try library.check(library.commSetErrhandler(dataComm, library.constants.errorsReturn), "MPI_Comm_set_errhandler")
        try library.check(library.commSetErrhandler(controlComm, library.constants.errorsReturn), "MPI_Comm_set_errhandler")
        try notice.post(library, comm: controlComm)
    }

    static func duplicate(_ comm: UInt, _ library: MPILibrary) throws(MPIError) -> UInt {
        // (3) the new handle is written into a zeroed 8-byte slot at the family's width.
        var slot: UInt64 = 0
        try library.check(library.commDup(comm, &slot), "MPI_Comm_dup")
        return library.family.handleBytes == 8 ? UInt(slot) : UInt(UInt32(truncatingIfNeeded: slot))
    }

    /// As ``call(_:)``, giving up (nil) when the lock is not free within `seconds` — the
    /// communication thread may be stuck inside the library.
    func call<T, E: MPICallError>(within seconds: Double, _ body: (MPILibrary) throws(E) -> T) throws(E) -> T? {
        guard lock.lock(before: Date(timeIntervalSinceNow: seconds)) else { return nil }
        defer { lock.unlock() }
        guard !finished else { throw E.afterFinalize }
        return try body(library)
    }

    /// Runs `body` with the library, holding the lock that serialises MPI calls. After
    /// ``finalize()`` (or ``abortJob(_:code:patience:)``) it throws instead: the library
    /// would abort the process on any call.
    func call<T, E: MPICallError>(_ body: (MPILibrary) throws(E) -> T) throws(E) -> T {
        lock.lock(); defer { lock.unlock() }
        guard !finished else { throw E.afterFinalize }
        return try body(library)
    }

    /// True once `MPI_Finalize` has run (or the job is being aborted): no MPI call may follow.
    public var isFinalized: Bool { lock.lock(); defer { lock.unlock() }; return finished }

    /// Prints `message` (this rank's) to standard error, then ends every process of the job
    /// with `MPI_Abort`.
    /// If the launcher cannot be reached (a cut link), `MPI_Abort` may never return; the
    /// process then exits by itself after `patience` seconds.
    public func abortJob(_ message: String, code: Int32 = 1, patience: Double = 5) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        fflush(nil)
        let watchdog = Thread {
            usleep(UInt32(patience * 1e6))
            FileHandle.standardError.write(Data("tandem: rank \(self.rank): MPI_Abort did not end the job within \(patience) s; exiting\n".utf8))
            _exit(code)
        }
        watchdog.start()
        // The communication thread may be stuck inside the library holding the lock; then
        // the watchdog ends the process.
        guard lock.lock(before: Date(timeIntervalSinceNow: patience)) else { _exit(code) }
        // After MPI_Finalize the library cannot be asked to abort: the process just exits.
        if !finished {
            finished = true
            _ = library.abortFn(library.constants.commWorld, code)
        }
        _exit(code)
    }

    /// `MPI_Finalize`, once; after it every collective of every group fails with an error
    /// saying MPI was finalized (the library itself would abort the process).
    public func finalize() {
        lock.lock(); defer { lock.unlock() }
        guard !finished else { return }
        finished = true
        notice.withdraw(library)
        _ = library.finalize()
        // Sticky, as a job's failure: collectives issued or queued from now on fail with it,
        // even those that would make no MPI call (a world of one).
        fail(.afterFinalize)
    }

    static func finalizeAtExit() { initialized?.finalize() }
}

// MARK: - Calls after MPI_Finalize

/// An error a call into the library can end with, including the one for a call made after
/// `MPI_Finalize`, which ``MPIWorld/call(_:)`` refuses instead of letting the library abort.
protocol MPICallError: Error {
    static var afterFinalize: Self { get }
}

extension MPIError: MPICallError {
    static var afterFinalize: MPIError { .finalized }
}

extension CollectiveError: MPICallError {
    static var afterFinalize: CollectiveError { .invalid(MPIError.finalized.description) }
}
