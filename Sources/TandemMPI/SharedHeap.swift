import Foundation
import TandemCore

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Large storages in memory the host's other ranks can map

/// Where an MPI rank's large storages (gradients, weights, activations) live: one anonymous
/// shared-memory file (`memfd_create`) mapped once, so that ranks of the same host can map
/// each other's (through `/proc/PID/fd/FD`, with the same permission `process_vm_readv`
/// needs) and reduce gradients in place, as worker threads do, instead of copying them
/// through the kernel a tile at a time (`MPIGroup+Direct.swift`).
///
/// The file is sparse: pages exist only once touched. Blocks are page-aligned and come from
/// a bump pointer or from the free list of their exact size (a training step frees and
/// asks for the same sizes every step); beyond `cacheLimit` bytes of free blocks, a freed
/// block's pages go back to the kernel (`MADV_REMOVE`) and its range stays listed.
public final class SharedHeap: StorageHeap, @unchecked Sendable {
    // Safe: `next`, `free` and `cached` only under `lock`; the rest is written once in `init`.
    public let fd: Int32
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    public let minimumBytes = 64 << 10
    static let page = 4096
    static let cacheLimit = 2 << 30
    private let lock = NSLock()
    private var next = page   // the first page holds the cookie
    /// Free blocks by size: their offsets, and whether their pages are still there.
    private var free: [Int: [(offset: Int, kept: Bool)]] = [:]
    private var cached = 0

    /// What a peer reads at `base` to check it mapped this process's heap.
    static func cookie(pid: pid_t) -> UInt64 { 0x7461_6e64_656d_6870 ^ UInt64(UInt32(bitPattern: pid)) }

    /// The heap of this process once ``installIfWanted()`` has run (nil when off or unavailable).
    public static var installed: SharedHeap? { Storage.heap as? SharedHeap }

    /// `TANDEM_MPI_HEAP`: `0` keeps storages on the C heap (peers copy through the kernel);
    /// `require` makes the direct path fail, saying why, when a peer's heap cannot be mapped.
    static var setting: String { ProcessInfo.processInfo.environment["TANDEM_MPI_HEAP"] ?? "" }

    /// Installs a heap as this process's storage source, unless `TANDEM_MPI_HEAP=0` or the
    /// system cannot make one. Call from the main thread before any storage is made on
    /// another thread.
    @discardableResult
    public static func installIfWanted() -> SharedHeap? {
        if let installed { return installed }
        guard setting != "0", let heap = SharedHeap() else { return nil }
        Storage.install(heap)
        return heap
    }

    /// A heap as large as twice the machine's memory (address space only), or nil.
    init?() {
        typealias MemfdCreate = @convention(c) (UnsafePointer<CChar>, UInt32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "memfd_create") else { return nil }
        let memfdCreate = unsafeBitCast(symbol, to: MemfdCreate.self)
        let fd = memfdCreate("tandem-heap", 1)   // MFD_CLOEXEC
        guard fd >= 0 else { return nil }
        let memory = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        let capacity = max(2 * memory, 1 << 30)
        guard ftruncate(fd, off_t(capacity)) == 0,
              let mapped = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            close(fd); return nil
        }
        self.fd = fd
        base = mapped
        self.capacity = capacity
        base.storeBytes(of: Self.cookie(pid: getpid()), as: UInt64.self)
    }

    public func allocate(bytes: Int) -> UnsafeMutableRawPointer? {
        let size = (bytes + Self.page - 1) / Self.page * Self.page
        lock.lock(); defer { lock.unlock() }
        if var list = free[size], let block = list.popLast() {
            free[size] = list
            if block.kept { cached -= size }
            return base + block.offset
        }
        guard next + size <= capacity else { return nil }
        defer { next += size }
        return base + next
    }

    public func release(_ block: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        guard contains(block) else { return false }
        let size = (bytes + Self.page - 1) / Self.page * Self.page
        lock.lock(); defer { lock.unlock() }
        let kept = cached + size <= Self.cacheLimit
        if kept { cached += size } else { _ = madvise(block, size, 9) }   // MADV_REMOVE: the pages go, the range stays
        free[size, default: []].append((block - base, kept))
        return true
    }

    public func contains(_ address: UnsafeRawPointer) -> Bool {
        address >= UnsafeRawPointer(base) && address < UnsafeRawPointer(base + capacity)
    }
}

/// Another rank's heap, mapped into this process.
struct PeerHeap {
    /// The peer's heap as the peer sees it (its addresses), and here.
    let remoteBase: UInt64, capacity: Int
    let local: UnsafeMutableRawPointer

    /// Maps the heap of process `pid` (its file descriptor `fd`), checking its cookie; nil
    /// when that is not allowed or not that process's heap.
    static func map(pid: pid_t, fd: Int32, remoteBase: UInt64, capacity: Int) -> PeerHeap? {
        guard case .success(let mapped) = MPIGroup.mapSegment("/proc/\(pid)/fd/\(fd)", bytes: capacity, create: false) else { return nil }
        guard mapped.load(as: UInt64.self) == SharedHeap.cookie(pid: pid) else { munmap(mapped, capacity); return nil }
        return PeerHeap(remoteBase: remoteBase, capacity: capacity, local: mapped)
    }

    /// Where `bytes` at the peer's `address` lie here, when all of them are in its heap.
    func local(_ address: UInt64, bytes: Int) -> UnsafeMutableRawPointer? {
        guard address >= remoteBase, address - remoteBase + UInt64(bytes) <= UInt64(capacity) else { return nil }
        return local + Int(address - remoteBase)
    }
}
