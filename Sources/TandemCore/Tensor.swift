#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Storage

/// A contiguous, 64-byte aligned buffer of `Float`s, freed when the last tensor using it goes.
///
/// `@unchecked Sendable`: the buffer is handed between worker threads only at
/// synchronisation points (collectives, data-loader queues) that order the accesses;
/// nothing mutates a storage that another thread may be reading at the same time.
public final class Storage: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Bytes currently held by all storages (parameters, gradients, activations, buffers).
    public static var liveBytes: Int { Memory.live.load() }
    /// The most bytes held at once since the last `resetPeak()`.
    public static var peakBytes: Int { Memory.peak.load() }
    public static func resetPeak() { Memory.peak.store(Memory.live.load()) }

    public init(count: Int) {
        _ = Storage.keepFreedMemory
        precondition(count >= 0, "a storage cannot have a negative size")
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = BufferCache.take(bytes: bytes) ?? Storage.allocateBlock(bytes: bytes)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        Memory.add(bytes)
    }

    /// Where blocks of at least its `minimumBytes` come from instead of the C heap, once
    /// installed (an MPI rank places them in memory its peers on the host can map, so they
    /// reduce gradients in place). Install it before any other thread makes storages.
    nonisolated(unsafe) public private(set) static var heap: (any StorageHeap)?

    public static func install(_ heap: any StorageHeap) { self.heap = heap }

    /// A fresh block of `bytes`, 64-byte aligned.
    static func allocateBlock(bytes: Int) -> UnsafeMutableRawPointer {
        if let heap, bytes >= heap.minimumBytes, let block = heap.allocate(bytes: bytes) { return block }
        var raw: UnsafeMutableRawPointer?
        let rc = posix_memalign(&raw, 64, (bytes + 63) & ~63)
        precondition(rc == 0 && raw != nil, "out of memory allocating \(bytes) bytes")
        return raw!
    }

    /// Gives back a block from ``allocateBlock(bytes:)`` (whichever source it came from).
    static func freeBlock(_ block: UnsafeMutableRawPointer, bytes: Int) {
        if let heap, heap.release(block, bytes: bytes) { return }
        free(block)
    }

    /// Large tensors come and go every step; glibc would hand each back to the kernel
    /// with `munmap` and fault it in again (zeroed) on the next step. Keeping freed
    /// memory in the heap makes the next step's allocations reuse warm pages.
    private static let keepFreedMemory: Bool = {
        #if canImport(Glibc)
        // mallopt lives in <malloc.h>, which Glibc's module map leaves out: look it up.
        // (1) `int mallopt(int, int)`; M_TRIM_THRESHOLD is -1, M_MMAP_THRESHOLD -3 in glibc.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            _ = mallopt(-3, 32 << 20)   // the largest glibc accepts (HEAP_MAX_SIZE / 2)
            _ = mallopt(-1, Int32.max)
        }
        #endif
        return true
    }()

    deinit {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        Memory.add(-bytes)
        BufferCache.give(UnsafeMutableRawPointer(pointer), bytes: bytes)
    }
}

/// A source of large storage blocks other than the C heap (``Storage/install(_:)``).
public protocol StorageHeap: AnyObject, Sendable {
    /// Blocks smaller than this come from the C heap.
    var minimumBytes: Int { get }
    /// A block of `bytes`, 64-byte aligned, or nil to fall back to the C heap.
    func allocate(bytes: Int) -> UnsafeMutableRawPointer?
    /// Takes back `block` when this heap made it (true); false leaves it to the C heap.
    func release(_ block: UnsafeMutableRawPointer, bytes: Int) -> Bool
}

// MARK: - Per-thread buffer cache

/// Freed tensor buffers kept by the thread that freed them, by exact size, for the next
/// allocation of that size on that thread. A training step allocates the same sizes every
/// step, so after the first step no buffer goes through malloc, no page is faulted in,
/// and worker threads never contend for an allocator lock. A thread's cache is bounded by
/// `limit` bytes and `perSize` buffers of one size (a thread that frees what another
/// allocated — batches from a loader — keeps only a few), and is freed when the thread ends.
enum BufferCache {
    static let limit = 2 << 30
    static let perSize = 16

    final class Shelf {
        var buffers: [Int: [UnsafeMutableRawPointer]] = [:]
        var bytes = 0
        deinit { for (bytes, list) in buffers { for p in list { Storage.freeBlock(p, bytes: bytes) } } }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        // The destructor releases the shelf (and its buffers) when the thread exits.
        pthread_key_create(&key) { raw in if let raw { Unmanaged<Shelf>.fromOpaque(raw).release() } }
        return key
    }()

    static var shelf: Shelf {
        if let raw = pthread_getspecific(key) { return Unmanaged<Shelf>.fromOpaque(raw).takeUnretainedValue() }
        let shelf = Shelf()
        pthread_setspecific(key, Unmanaged.passRetained(shelf).toOpaque())
        return shelf
    }

    static func take(bytes: Int) -> UnsafeMutableRawPointer? {
        let shelf = shelf
        guard var list = shelf.buffers[bytes], let p = list.popLast() else { return nil }
        shelf.buffers[bytes] = list
        shelf.bytes -= bytes
        return p
    }

    static func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        let shelf = shelf
        guard shelf.bytes + bytes <= limit, shelf.buffers[bytes, default: []].count < perSize else { Storage.freeBlock(pointer, bytes: bytes); return }
        shelf.buffers[bytes, default: []].append(pointer)
        shelf.bytes += bytes
    }
}

/// Process-wide byte counters for `Storage`, each behind its own mutex.
enum Memory {
    final class Counter: @unchecked Sendable {
        // Safe: every access goes through the mutex.
        private var value = 0
        private var mutex = pthread_mutex_t()
        init() { pthread_mutex_init(&mutex, nil) }
        func load() -> Int { pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }; return value }
        func store(_ v: Int) { pthread_mutex_lock(&mutex); value = v; pthread_mutex_unlock(&mutex) }
        func add(_ d: Int) -> Int { pthread_mutex_lock(&mutex); value += d; let v = value; pthread_mutex_unlock(&mutex); return v }
        func raise(to v: Int) { pthread_mutex_lock(&mutex); if v > value { value = v }; pthread_mutex_unlock(&mutex) }
    }
    static let live = Counter()
    static let peak = Counter()
    static func add(_ bytes: Int) {
        let now = live.add(bytes)
        if bytes > 0 { peak.raise(to: now) }
    }
}

// MARK: - Tensor

/// A dense, row-major `Float` tensor on the CPU.
///
/// Tensors are values: every operation makes a new one (a reshape shares storage).
/// While a `Tape` is recording on the current thread, operations on tracked tensors
/// are recorded so `Tape.backward(_:)` can compute gradients.
public struct Tensor {
    public let shape: [Int]
    public internal(set) var storage: Storage
    /// Position on the recording tape, or -1 when the tensor is not tracked.
    public internal(set) var slot: Int = -1

    public init(shape: [Int], storage: Storage) {
        precondition(shape.allSatisfy { $0 >= 0 }, "shape \(shape) has a negative dimension")
        precondition(Tensor.count(of: shape) == storage.count, "shape \(shape) does not fit a storage of \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    /// An uninitialised tensor (callers fill every element).
    public init(uninitializedShape shape: [Int]) {
        self.init(shape: shape, storage: Storage(count: Tensor.count(of: shape)))
    }

    public init(zeros shape: [Int]) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: 0, count: storage.count)
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    public init(_ values: [Float], shape: [Int]) {
        precondition(values.count == Tensor.count(of: shape), "\(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape)
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    public init(scalar: Float) { self.init([scalar], shape: []) }

    public static func count(of shape: [Int]) -> Int { shape.reduce(1, *) }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var isTracked: Bool { slot >= 0 }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: storage.pointer, count: count) }
    public var scalars: [Float] { Array(buffer) }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item needs a one-element tensor, not shape \(shape)")
        return pointer[0]
    }

    /// A copy with its own storage, not tracked.
    public func copy() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }

    /// The same values, not tracked by any tape.
    public var detached: Tensor { Tensor(shape: shape, storage: storage) }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", …" : "")])"
    }
}
