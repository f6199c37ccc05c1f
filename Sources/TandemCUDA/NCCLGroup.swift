#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import TandemCore
import TandemCollectives

// MARK: - The NCCL process group

/// One rank per GPU, its collectives run by NCCL on a stream of their own.
///
/// Buffers are **device** memory (``CollectiveBuffer/device(_:count:dtype:)``). A collective
/// first waits, on its own stream, for everything already queued on the GPU's compute
/// stream (so gradients written by backward are complete), then runs; its handle completes
/// when the GPU has finished it. Waiting polls an event against the deadline — never a bare
/// blocking call — and meanwhile asks NCCL for asynchronous errors (a peer that died); at
/// the deadline the communicator is aborted, which stops its kernels, and the error names
/// the ranks whose progress (in the rendezvous folder) shows they never started that
/// collective.
///
/// ```swift
/// let gpu = try CUDAContext(device: localRank)
/// let group = try NCCLGroup.join(gpu: gpu, rendezvous: try NCCLRendezvous.fromEnvironment()!)
/// try group.allReduce(.device(gradients, count: n), operation: .average).wait()
/// ```
public final class NCCLGroup: ProcessGroup, @unchecked Sendable {
    // Safe: a group is driven by one thread (its rank's); the handles it returns only read
    // the immutable parts and update `busy` under its lock.
    public let rank: Int
    public let size: Int
    public let backend = "nccl"
    public let timeout: Double
    let nccl: NCCLLibrary
    let gpu: CUDAContext
    let communicator: NCCLCommunicator
    let stream: OpaquePointer?
    let rendezvous: NCCLRendezvous?
    let scratch: DevicePointer
    private var sequence = 0
    lazy var watchdog = Watchdog(group: self)
    private let lock = NSLock()
    private var busy = 0.0

    public var busySeconds: Double { lock.withLock { busy } }

    /// Joins communicator `id` as `rank` of `size` on `gpu` (every rank must call it).
    public init(gpu: CUDAContext, id: [UInt8], rank: Int, size: Int, timeout: Double = 300, rendezvous: NCCLRendezvous? = nil) throws {
        self.nccl = try NCCLLibrary.shared()
        self.gpu = gpu
        self.rank = rank
        self.size = size
        self.timeout = timeout
        self.rendezvous = rendezvous
        try gpu.makeCurrent()
        rendezvous?.announce(0)
        let comm = try nccl.communicator(id: id, size: size, rank: rank, gpu: gpu, timeout: timeout) { [rendezvous] in
            // Ranks that never reached this point (progress 0); unknown without a rendezvous folder.
            rendezvous?.behind(0) ?? []
        }
        communicator = NCCLCommunicator(nccl: nccl, comm: comm)
        var s: CUHandle?
        try gpu.driver.check(gpu.driver.cuStreamCreate(&s, 1), "cuStreamCreate")   // CU_STREAM_NON_BLOCKING
        stream = s
        scratch = try gpu.allocate(bytes: 4, category: .workspace)
    }

    /// Joins through a rendezvous folder: rank 0 makes the id and publishes it.
    public static func join(gpu: CUDAContext, rendezvous: NCCLRendezvous, timeout: Double = 300) throws -> NCCLGroup {
        let name = "nccl-unique-id"
        let id: [UInt8]
        if rendezvous.rank == 0 {
            id = try NCCLLibrary.shared().uniqueId()
            try rendezvous.publish(id, as: name)
        } else {
            id = try rendezvous.await(name, count: 128, from: 0, timeout: timeout)
        }
        return try NCCLGroup(gpu: gpu, id: id, rank: rendezvous.rank, size: rendezvous.size, timeout: timeout, rendezvous: rendezvous)
    }

    /// Joins through another group (MPI under `mpirun`): rank 0's id is broadcast over it.
    public static func join(gpu: CUDAContext, bootstrap: any ProcessGroup, timeout: Double = 300) throws -> NCCLGroup {
        var words = [Float](repeating: 0, count: 32)
        if bootstrap.rank == 0 {
            let id = try NCCLLibrary.shared().uniqueId()
            words.withUnsafeMutableBytes { $0.copyBytes(from: id) }
        }
        // 128 bytes as 32 float32 words: every backend copies a broadcast bit for bit.
        try words.withUnsafeMutableBufferPointer { w in
            try bootstrap.broadcast(CollectiveBuffer(w.baseAddress!, count: 32), root: 0).wait()
        }
        let id = words.withUnsafeBytes { [UInt8]($0) }
        return try NCCLGroup(gpu: gpu, id: id, rank: bootstrap.rank, size: bootstrap.size, timeout: timeout)
    }

    deinit {
        communicator.end(outstanding: watchdog.stop())
        _ = gpu.driver.cuStreamDestroy(stream)
        gpu.free(scratch)
    }

    // MARK: Collectives

    public func allReduce(_ buffers: [CollectiveBuffer], operation: ReduceOperation) -> any CollectiveHandle {
        let bytes = buffers.reduce(0) { $0 + $1.count * $1.dtype.byteSize }
        return enqueue("all-reduce", bytes: bytes) { n, comm throws(CUDAError) in
            for b in buffers where b.count > 0 {
                try n.nccl.check(n.nccl.ncclAllReduce(b.base, b.base, b.count, Self.type(b), Self.op(operation), comm, n.stream), "ncclAllReduce")
            }
        }
    }

    public func broadcast(_ buffer: CollectiveBuffer, root: Int) -> any CollectiveHandle {
        guard (0..<size).contains(root) else { return FailedHandle(error: .invalid("broadcast root \(root) is outside a world of \(size)")) }
        return enqueue("broadcast", bytes: buffer.count * buffer.dtype.byteSize) { n, comm throws(CUDAError) in
            guard buffer.count > 0 else { return }
            try n.nccl.check(n.nccl.ncclBroadcast(buffer.base, buffer.base, buffer.count, Self.type(buffer), Int32(root), comm, n.stream), "ncclBroadcast")
        }
    }

    public func allGather(send: CollectiveBuffer, receive: CollectiveBuffer) -> any CollectiveHandle {
        guard receive.count == send.count * size else {
            return FailedHandle(error: .invalid("all-gather on rank \(rank): receive holds \(receive.count) elements, expected \(size)·\(send.count)"))
        }
        guard receive.dtype == send.dtype else {
            return FailedHandle(error: .invalid("all-gather on rank \(rank): send is \(send.dtype), receive \(receive.dtype); they must match"))
        }
        return enqueue("all-gather", bytes: receive.count * receive.dtype.byteSize) { n, comm throws(CUDAError) in
            guard send.count > 0 else { return }
            try n.nccl.check(n.nccl.ncclAllGather(send.base, receive.base, send.count, Self.type(send), comm, n.stream), "ncclAllGather")
        }
    }

    public func reduceScatter(send: CollectiveBuffer, receive: CollectiveBuffer, operation: ReduceOperation) -> any CollectiveHandle {
        guard send.count == receive.count * size else {
            return FailedHandle(error: .invalid("reduce-scatter on rank \(rank): NCCL splits evenly; send holds \(send.count) elements, expected \(size)·\(receive.count)"))
        }
        guard receive.dtype == send.dtype else {
            return FailedHandle(error: .invalid("reduce-scatter on rank \(rank): send is \(send.dtype), receive \(receive.dtype); they must match"))
        }
        return enqueue("reduce-scatter", bytes: send.count * send.dtype.byteSize) { n, comm throws(CUDAError) in
            guard receive.count > 0 else { return }
            try n.nccl.check(n.nccl.ncclReduceScatter(send.base, receive.base, receive.count, Self.type(send), Self.op(operation), comm, n.stream),
                             "ncclReduceScatter")
        }
    }

    /// An all-reduce of one float: it completes only when every rank has called it.
    public func barrier() -> any CollectiveHandle {
        let word = UnsafeMutableRawPointer(bitPattern: UInt(scratch))
        return enqueue("barrier", bytes: 4) { n, comm throws(CUDAError) in
            try n.nccl.check(n.nccl.ncclAllReduce(word, word, 1, 7, 0, comm, n.stream), "ncclAllReduce (barrier)")
        }
    }

    public func abort(_ message: String) {
        communicator.fail(.aborted(rank: rank, message: message))
    }

    // MARK: Queueing and waiting

    /// The next collective's number (every collective has one, stream-ordered ones too).
    func nextSequence() -> Int { sequence += 1; return sequence }
    var currentSequence: Int { sequence }

    /// Runs `body` (NCCL calls on `stream`, inside one NCCL group) after the compute
    /// stream's work so far, between two timing events.
    private func enqueue(_ operation: String, bytes: Int, _ body: (NCCLGroup, NCCLLibrary.Comm) throws(CUDAError) -> Void) -> any CollectiveHandle {
        sequence += 1
        let seq = sequence
        if let failure = communicator.error { return FailedHandle(error: failure) }
        rendezvous?.announce(seq)
        do {
            let d = gpu.driver
            var ready: CUHandle?, start: CUHandle?, end: CUHandle?
            try d.check(d.cuEventCreate(&ready, 2), "cuEventCreate")    // CU_EVENT_DISABLE_TIMING
            try d.check(d.cuEventRecord(ready, gpu.stream), "cuEventRecord")
            try d.check(nccl.cuStreamWaitEvent(stream, ready, 0), "cuStreamWaitEvent")
            _ = d.cuEventDestroy(ready)    // released once the wait is done with it
            try d.check(d.cuEventCreate(&start, 0), "cuEventCreate")
            try d.check(d.cuEventCreate(&end, 0), "cuEventCreate")
            try d.check(d.cuEventRecord(start, stream), "cuEventRecord")
            try communicator.use { comm in
                try nccl.check(nccl.ncclGroupStart(), "ncclGroupStart")
                do throws(CUDAError) { try body(self, comm) } catch {
                    _ = nccl.ncclGroupEnd()
                    throw error
                }
                try nccl.check(nccl.ncclGroupEnd(), "ncclGroupEnd")
            }
            try d.check(d.cuEventRecord(end, stream), "cuEventRecord")
            return NCCLHandle(group: self, operation: operation, sequence: seq, start: start, end: end,
                              deadline: monotonicSeconds() + timeout)
        } catch let error as CollectiveError {
            return FailedHandle(error: error)
        } catch {
            return FailedHandle(error: communicator.fail(.aborted(rank: rank, message: "\(operation) #\(seq): \(error)")))
        }
    }

    /// Polls `end` until it completes, NCCL reports an error, or the deadline passes.
    fileprivate func finish(_ h: NCCLHandle) throws(CollectiveError) {
        var spins = 0
        while true {
            let rc = nccl.cuEventQuery(h.end)
            if rc == 0 {
                // An abort (by another handle or the watchdog) also completes the events: no success then.
                if let failure = communicator.error { throw failure }
                var ms: Float = 0
                if gpu.driver.cuEventElapsedTime(&ms, h.start, h.end) == 0 { lock.withLock { busy += Double(ms) / 1000 } }
                return
            }
            if rc != 600 {   // CUDA_ERROR_NOT_READY
                throw fail(.aborted(rank: rank, message: "\(h.operation) #\(h.sequence): the GPU reported \(gpu.driver.message(rc))"))
            }
            var async: Int32 = 0
            let asked: Int32
            do { asked = try communicator.use { nccl.ncclCommGetAsyncError($0, &async) } } catch let error as CollectiveError { throw error } catch { throw fail(.invalid("\(error)")) }
            if asked == 0, async != 0, async != 7 {   // 7: ncclInProgress
                throw fail(.aborted(rank: rank, message: "\(h.operation) #\(h.sequence): NCCL reported \(nccl.message(async)) (a peer failed or left)"))
            }
            if monotonicSeconds() > h.deadline {
                let missing = rendezvous?.behind(h.sequence) ?? []
                throw fail(.timeout(operation: h.operation, sequence: h.sequence, missing: missing.isEmpty ? [] : missing, seconds: timeout))
            }
            spins += 1
            if spins > 200 { usleep(100) }
        }
    }

    /// Records the failure, aborts the communicator (stopping its kernels) and returns it.
    private func fail(_ error: CollectiveError) -> CollectiveError { communicator.fail(error) }

    static func type(_ b: CollectiveBuffer) -> Int32 { NCCLLibrary.dataType(b.dtype.byteSize, bfloat: b.dtype == .bfloat16) }
    static func op(_ o: ReduceOperation) -> Int32 {
        switch o {
        case .sum: 0
        case .max: 2
        case .average: 4
        }
    }
}

/// A collective queued on the NCCL stream.
final class NCCLHandle: CollectiveHandle, @unchecked Sendable {
    // Safe: waited on by the rank's own thread; the events are destroyed once, after completion.
    let group: NCCLGroup
    let operation: String
    let sequence: Int
    let start: CUHandle?, end: CUHandle?
    let deadline: Double
    private var outcome: CollectiveError??

    init(group: NCCLGroup, operation: String, sequence: Int, start: CUHandle?, end: CUHandle?, deadline: Double) {
        self.group = group; self.operation = operation; self.sequence = sequence
        self.start = start; self.end = end; self.deadline = deadline
    }

    func wait() throws(CollectiveError) {
        if outcome == nil {
            do throws(CollectiveError) { try group.finish(self); outcome = .some(nil) } catch { outcome = .some(error) }
            _ = group.gpu.driver.cuEventDestroy(start)
            _ = group.gpu.driver.cuEventDestroy(end)
        }
        if case .some(.some(let error)) = outcome { throw error }
    }

    var isComplete: Bool { outcome != nil || group.nccl.cuEventQuery(end) != 600 }
}

/// A collective that failed before it started.
struct FailedHandle: CollectiveHandle {
    let error: CollectiveError
    func wait() throws(CollectiveError) { throw error }
    var isComplete: Bool { true }
}

extension CollectiveBuffer {
    /// A buffer in GPU memory (for ``NCCLGroup``).
    public static func device(_ pointer: DevicePointer, count: Int, dtype: DType = .float32) -> CollectiveBuffer {
        let raw = UnsafeMutableRawPointer(bitPattern: UInt(pointer))!
        if dtype == .float32 { return CollectiveBuffer(raw.assumingMemoryBound(to: Float.self), count: count) }
        return CollectiveBuffer(raw.assumingMemoryBound(to: UInt16.self), count: count, dtype: dtype)
    }
}
