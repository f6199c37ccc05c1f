// MARK: - Backing allocator

/// Where device memory really comes from: the driver on a GPU, a fake in tests.
public protocol DeviceBacking: AnyObject {
    /// A fresh block of at least `bytes`, or nil when the device has no room.
    func allocate(bytes: Int) throws(CUDAError) -> DevicePointer?
    func free(_ pointer: DevicePointer)
    /// Free and total bytes on the device.
    func memoryInfo() -> (free: Int, total: Int)
}

/// What a block of device memory holds, for the report of bytes in use and peak by category.
public enum MemoryCategory: String, CaseIterable, Sendable {
    case parameters, gradients, optimizer, activations, workspace
}

// MARK: - Caching allocator

/// A caching allocator for device memory: freed blocks go to a free list of their size class
/// and are handed out again, so a training loop calls the driver's allocator only while it
/// warms up (and never while a graph is being captured). Bytes in use and the peak are kept
/// per ``MemoryCategory``.
///
/// Size classes: multiples of 512 bytes up to 1 MiB, multiples of 2 MiB above.
public final class DeviceAllocator {
    public let backing: any DeviceBacking
    private var freeLists: [Int: [DevicePointer]] = [:]
    private var sizes: [DevicePointer: (bytes: Int, category: MemoryCategory)] = [:]
    public private(set) var inUse: [MemoryCategory: Int] = [:]
    public private(set) var peak: [MemoryCategory: Int] = [:]
    /// The most bytes in use at once, all categories together.
    public private(set) var peakTotal = 0
    /// Bytes held from the backing allocator (in use plus cached).
    public private(set) var reserved = 0
    /// How many requests reached the backing allocator.
    public private(set) var backingAllocations = 0

    public init(backing: any DeviceBacking) { self.backing = backing }

    /// The size class `bytes` is rounded up to.
    public static func sizeClass(_ bytes: Int) -> Int {
        let b = max(bytes, 1)
        return b <= 1 << 20 ? (b + 511) / 512 * 512 : (b + (2 << 20) - 1) / (2 << 20) * (2 << 20)
    }

    public var totalInUse: Int { inUse.values.reduce(0, +) }

    /// Every block handed out and not yet freed.
    public var livePointers: Set<DevicePointer> { Set(sizes.keys) }

    /// A block of at least `bytes` for `category`: from the cache when one of its class is
    /// free, else from the backing allocator; when that has no room the cache is released
    /// and the request tried once more, then the error names the bytes asked and free.
    public func allocate(bytes: Int, category: MemoryCategory) throws(CUDAError) -> DevicePointer {
        precondition(bytes >= 0, "a device allocation cannot be negative")
        let size = Self.sizeClass(bytes)
        var pointer: DevicePointer
        if let cached = freeLists[size]?.popLast() {
            pointer = cached
        } else {
            var fresh = try backing.allocate(bytes: size)
            if fresh == nil {
                releaseCache()
                fresh = try backing.allocate(bytes: size)
            }
            guard let fresh else {
                let info = backing.memoryInfo()
                throw .outOfMemory(requested: bytes, free: info.free, total: info.total, category: category.rawValue)
            }
            pointer = fresh
            reserved += size
            backingAllocations += 1
        }
        sizes[pointer] = (size, category)
        inUse[category, default: 0] += size
        peak[category] = max(peak[category, default: 0], inUse[category]!)
        peakTotal = max(peakTotal, totalInUse)
        return pointer
    }

    /// Returns a block to its free list.
    public func free(_ pointer: DevicePointer) {
        guard let (size, category) = sizes.removeValue(forKey: pointer) else {
            preconditionFailure("freeing a device pointer this allocator did not hand out")
        }
        inUse[category, default: 0] -= size
        freeLists[size, default: []].append(pointer)
    }

    /// Hands every cached (free) block back to the backing allocator.
    public func releaseCache() {
        for (size, list) in freeLists {
            for p in list { backing.free(p); reserved -= size }
        }
        freeLists = [:]
    }

    /// Starts a new peak measurement from what is in use now.
    public func resetPeak() {
        peak = inUse
        peakTotal = totalInUse
    }

    deinit {
        releaseCache()
        for (p, _) in sizes { backing.free(p) }
    }
}

// MARK: - The driver as backing

/// Device memory from `cuMemAlloc`; an out-of-memory code becomes nil so the allocator can
/// release its cache, retry, and report.
final class DriverBacking: DeviceBacking {
    let driver: CUDADriver
    init(driver: CUDADriver) { self.driver = driver }

    func allocate(bytes: Int) throws(CUDAError) -> DevicePointer? {
        var p: DevicePointer = 0
        let rc = driver.cuMemAlloc(&p, bytes)
        if rc == 2 { return nil }   // (1) CUDA_ERROR_OUT_OF_MEMORY = 2
        try driver.check(rc, "cuMemAlloc(\(bytes) bytes)")
        return p
    }

    func free(_ pointer: DevicePointer) { _ = driver.cuMemFree(pointer) }

    func memoryInfo() -> (free: Int, total: Int) {
        var free = 0, total = 0
        _ = driver.cuMemGetInfo(&free, &total)
        return (free, total)
    }
}
