#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import _TandemCUDAShims

/// A kernel argument, passed by value to `cuLaunchKernel`.
public enum KernelArgument {
    case pointer(DevicePointer)
    case int(Int32)
    case float(Float)
    case long(Int64)
}

/// One GPU in use: its primary context, one stream, the caching allocator, a cuBLAS handle
/// bound to the stream, and the kernels compiled for its architecture.
///
/// Everything runs in order on `stream`; the host waits only in ``synchronize()`` and in
/// the copies back to the host.
public final class CUDAContext {
    public let driver: CUDADriver
    public let device: CUDADeviceInfo
    public let context: CUHandle?
    public let stream: CUHandle?
    /// A second stream for work that may overlap the main one (the optimizer during backward).
    public let sideStream: CUHandle?
    /// A third stream for gradient all-reduces (NCCL) beside both: they overlap backward without holding up the
    /// weight gradients queued on the side stream.
    public let commStream: CUHandle?
    /// Where ``launch(_:grid:block:sharedBytes:_:)`` queues: `stream`, or `sideStream` inside ``onSideStream(_:)``.
    private var launchStream: CUHandle?
    private var syncEvents: [CUHandle?] = []
    private var syncEventsUsed = 0
    public let allocator: DeviceAllocator
    public let blas: CuBLAS
    /// cuDNN on `stream`, made at first use: nil when the library is missing or `TANDEM_CUDNN=0`
    /// (``dnnUnavailable`` says why); convolutions and the LSTM then take their own kernels.
    public private(set) lazy var dnn: CuDNN? = makeDNN()
    /// Why ``dnn`` is nil, once it has been asked for.
    public private(set) var dnnUnavailable: String?
    /// Whether trainers made from now on may use cuDNN (the self-test turns it off to compare the two paths).
    var dnnEnabled = true
    /// ``dnn`` when trainers may use it.
    var dnnForTrainers: CuDNN? { dnnEnabled ? dnn : nil }
    /// cuBLASLt, made at first use, for GEMMs with their bias work fused in (it takes the stream and the
    /// cuBLAS workspace with each call, see ``currentStream``): nil when the library is missing or
    /// `TANDEM_CUBLASLT=0` (``blasLtUnavailable`` says why); those GEMMs then take cuBLAS and a kernel.
    public private(set) lazy var blasLt: CuBLASLt? = makeBlasLt()
    /// Why ``blasLt`` is nil, once it has been asked for.
    public private(set) var blasLtUnavailable: String?
    /// Whether GEMMs choose their cuBLASLt algorithm by timing (``GEMMTuner``; `TANDEM_GEMM_TUNE=0` turns it off).
    public var tunesGEMMs = GEMMTuner.enabledByEnvironment
    /// The tuning record of this GPU model and cuBLASLt version (nil when records are off or cuBLASLt is missing).
    public private(set) lazy var gemmRecord: GEMMTuningRecord? = {
        guard let version = try? CuBLASLt.library().version else { return nil }
        let record = GEMMTuningRecord.forDevice("\(device.name)-sm\(device.computeCapability.major)\(device.computeCapability.minor)-\(device.multiprocessors)",
                                                library: "cublasLt\(version)")
        if let record, !record.skipped.isEmpty {
            let line = "tandem: \(record.path): skipped \(record.skipped.count) unreadable lines (\(record.skipped[0])); they are timed again\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
        return record
    }()
    /// Whether the stream is being captured into a graph (nothing may wait on the host then).
    public private(set) var isCapturing = false
    let workspace: DevicePointer
    /// cuBLAS's workspace while it works on the side stream (two streams must not share one); as large as the main
    /// one, so that a GEMM plans the same on either stream.
    let sideWorkspace: DevicePointer
    static let workspaceBytes = 32 << 20, sideWorkspaceBytes = 32 << 20
    private var module: CUHandle?
    private var functions: [String: CUHandle?] = [:]
    /// The kernel constants `TANDEM_KERNEL_DEFINES` set (``kernelDefines(_:)``), for launches whose shape follows one.
    private var definedConstants: [String: Int] = [:]
    /// When set, every launch through ``launch(_:grid:block:sharedBytes:_:)`` and every ``profiled(_:_:)``
    /// region is timed with a pair of events (eager steps only: not while capturing a graph).
    public var profiler: KernelProfiler?
    /// Seconds spent compiling or loading kernels (a disk-cache hit is fast).
    public private(set) var compileSeconds = 0.0
    /// Whether launches let a kernel start before the one ahead of it in the stream has finished (programmatic
    /// dependent launch: compute capability 9.0 or later, a CUDA 12.3 driver or later, not `TANDEM_PDL=0`). Safe for every kernel of
    /// ``KernelSource``: each waits for the kernels before it (`PDL_ENTRY`) before it touches memory, so this only takes
    /// the launch's latency out of the gap between two kernels.
    public private(set) var launchesProgrammatically: Bool

    /// Opens GPU `index`: retains its primary context, makes it current on this thread,
    /// creates a non-blocking stream, a 32 MiB cuBLAS workspace and compiles the kernels.
    public init(device index: Int = 0) throws {
        driver = try CUDADriver.shared()
        let devices = try CUDADeviceInfo.all()
        guard !devices.isEmpty else { throw CUDAError.noDevice("no CUDA GPU found (the driver loaded, but reports no device)") }
        guard index >= 0 && index < devices.count else { throw CUDAError.noDevice("GPU \(index) does not exist: this host has \(devices.count)") }
        device = devices[index]
        var dev: Int32 = 0
        try driver.check(driver.cuDeviceGet(&dev, Int32(index)), "cuDeviceGet")
        var ctx: CUHandle?
        try driver.check(driver.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain")
        context = ctx
        try driver.check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        var s: CUHandle?
        try driver.check(driver.cuStreamCreate(&s, 1), "cuStreamCreate")   // (1) CU_STREAM_NON_BLOCKING = 1
        stream = s
        launchStream = s
        // The side stream gets the highest priority: its memory-bound blocks (the optimizer) are
        // scheduled as soon as the main stream's compute-bound GEMM blocks free a slot.
        var least: Int32 = 0, greatest: Int32 = 0
        try driver.check(driver.cuCtxGetStreamPriorityRange(&least, &greatest), "cuCtxGetStreamPriorityRange")
        var side: CUHandle?
        try driver.check(driver.cuStreamCreateWithPriority(&side, 1, greatest), "cuStreamCreateWithPriority")
        sideStream = side
        var comm: CUHandle?
        try driver.check(driver.cuStreamCreateWithPriority(&comm, 1, greatest), "cuStreamCreateWithPriority")
        commStream = comm
        allocator = DeviceAllocator(backing: DriverBacking(driver: driver))
        workspace = try allocator.allocate(bytes: Self.workspaceBytes, category: .workspace)
        sideWorkspace = try allocator.allocate(bytes: Self.sideWorkspaceBytes, category: .workspace)
        blas = try CuBLAS(stream: s, workspace: workspace, workspaceBytes: Self.workspaceBytes)
        launchesProgrammatically = Self.programmaticLaunchOff(driver: driver, device: device) == nil
        try loadKernels()
    }

    /// Why kernels are not launched programmatically (``launchesProgrammatically``) with this driver and device; nil when
    /// they are.
    static func programmaticLaunchOff(driver: CUDADriver, device: CUDADeviceInfo) -> String? {
        let version = (try? driver.version()) ?? (0, 0)
        return programmaticLaunchOff(environment: getenv("TANDEM_PDL").map { String(cString: $0) }, hasLaunchEx: driver.cuLaunchKernelEx != nil,
                                     cudaVersion: version, computeCapability: device.computeCapability)
    }

    /// The rule of ``programmaticLaunchOff(driver:device:)``: `TANDEM_PDL=0` turns it off; else it needs `cuLaunchKernelEx`,
    /// compute capability 9.0 (griddepcontrol) and CUDA 12.3 (graphs capture programmatic launches from then on).
    static func programmaticLaunchOff(environment: String?, hasLaunchEx: Bool, cudaVersion: (major: Int, minor: Int),
                                      computeCapability: (major: Int, minor: Int)) -> String? {
        if environment == "0" { return "turned off by TANDEM_PDL=0" }
        if computeCapability.major < 9 { return "needs compute capability 9.0 (this GPU has \(computeCapability.major).\(computeCapability.minor))" }
        if (cudaVersion.major, cudaVersion.minor) < (12, 3) {
            return "needs a CUDA 12.3 driver or later (this one has CUDA \(cudaVersion.major).\(cudaVersion.minor))"
        }
        if !hasLaunchEx { return "the driver has no cuLaunchKernelEx" }
        return nil
    }

    private func makeBlasLt() -> CuBLASLt? {
        if CuBLASLt.disabledByEnvironment { blasLtUnavailable = "turned off by TANDEM_CUBLASLT=0"; return nil }
        do { return try CuBLASLt() } catch let error { blasLtUnavailable = error.description; return nil }
    }

    /// The stream launches and GEMMs queue on now (``stream``, or ``sideStream`` inside ``onSideStream(waitForMain:_:)``),
    /// and the workspace cuBLAS has there: a cuBLASLt call on the same stream may use it too (the stream orders them).
    var currentStream: CUHandle? { launchStream }
    var currentWorkspace: (pointer: DevicePointer, bytes: Int) {
        launchStream == sideStream ? (sideWorkspace, Self.sideWorkspaceBytes) : (workspace, Self.workspaceBytes)
    }

    private func makeDNN() -> CuDNN? {
        if CuDNN.disabledByEnvironment { dnnUnavailable = "turned off by TANDEM_CUDNN=0"; return nil }
        do { return try CuDNN(stream: stream) } catch let error { dnnUnavailable = error.description; return nil }
    }

    /// Makes this context current on the calling thread (the driver's current context is per thread).
    public func makeCurrent() throws { try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent") }

    private func loadKernels() throws {
        let start = monotonicSeconds()
        let nvrtc = try NVRTC.shared()
        func load(_ cubin: [UInt8]) throws -> CUHandle? {
            var m: CUHandle?
            try cubin.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws in
                try driver.check(driver.cuModuleLoadData(&m, raw.baseAddress!), "cuModuleLoadData")
            }
            return m
        }
        let defines = try Self.kernelDefines(getenv("TANDEM_KERNEL_DEFINES").map { String(cString: $0) })
        definedConstants = Self.integerConstants(defines)
        do {
            module = try load(nvrtc.compile(source: KernelSource.all, name: "tandem_kernels", architecture: device.architecture, options: defines))
        } catch is CUDAError {
            // A cached cubin the driver refuses (a damaged cache file): compiled afresh, and the cache written again.
            module = try load(nvrtc.compile(source: KernelSource.all, name: "tandem_kernels", architecture: device.architecture, options: defines,
                                            reuse: false))
        }
        compileSeconds = monotonicSeconds() - start
    }

    /// The NVRTC options of `TANDEM_KERNEL_DEFINES="NAME=VALUE …"`: constants of the kernel source (its `#ifndef`s) set
    /// otherwise, for experiments (an A/B of a kernel's parameters in one binary); part of the kernel cache's key. A token
    /// whose name is not a C identifier is an error that names it.
    static func kernelDefines(_ text: String?) throws -> [String] {
        try (text ?? "").split(separator: " ").map { token in
            let name = token.prefix { $0 != "=" }
            let identifier = name.first.map { $0 == "_" || ($0.isASCII && $0.isLetter) } == true
                && name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
            guard identifier else {
                throw CUDAError.unsupported("TANDEM_KERNEL_DEFINES: '\(token)' is not NAME or NAME=VALUE with NAME a C identifier "
                                            + "(for example \"FA_BWD_BLOCKS=2\")")
            }
            return "-D\(token)"
        }
    }

    /// The integer constants among NVRTC options `-DNAME=VALUE` (``kernelDefines(_:)``), by name; the last one wins.
    static func integerConstants(_ options: [String]) -> [String: Int] {
        var constants: [String: Int] = [:]
        for option in options where option.hasPrefix("-D") {
            let parts = option.dropFirst(2).split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1]) { constants[String(parts[0])] = value }
        }
        return constants
    }

    /// The value of the kernel source's integer constant `name`: as `TANDEM_KERNEL_DEFINES` sets it, else `standard` (the
    /// source's own `#define`, which the caller states again).
    func kernelConstant(_ name: String, standard: Int) -> Int { definedConstants[name] ?? standard }

    func function(_ name: String) throws -> CUHandle? {
        if let f = functions[name] { return f }
        var f: CUHandle?
        try driver.check(driver.cuModuleGetFunction(&f, module, name), "cuModuleGetFunction(\(name))")
        functions[name] = f
        return f
    }

    // MARK: - Launching

    /// Launches kernel `name` on the stream with `grid` blocks of `block` threads.
    public func launch(_ name: String, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                       _ arguments: [KernelArgument]) throws {
        if profiler != nil { return try profiled(name) { try launchUnprofiled(name, grid: grid, block: block, sharedBytes: sharedBytes, arguments) } }
        try launchUnprofiled(name, grid: grid, block: block, sharedBytes: sharedBytes, arguments)
    }

    /// Times `body` on the stream under `label` when profiling; otherwise just runs it.
    public func profiled(_ label: @autoclosure () -> String, _ body: () throws -> Void) throws {
        guard let profiler else { return try body() }
        let (start, end) = try profiler.pair(driver: driver)
        try driver.check(driver.cuEventRecord(start, launchStream), "cuEventRecord")
        try body()
        try driver.check(driver.cuEventRecord(end, launchStream), "cuEventRecord")
        profiler.pending.append((label(), start, end, launchStream == sideStream ? "side" : launchStream == commStream ? "comm" : "main"))
    }

    func launchUnprofiled(_ name: String, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int,
                          _ arguments: [KernelArgument]) throws {
        let f = try function(name)
        // (2) cuLaunchKernel reads each argument through the pointer in `params` before it returns.
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 8 * max(arguments.count, 1), alignment: 8)
        defer { storage.deallocate() }
        var params = [UnsafeMutableRawPointer?](repeating: nil, count: arguments.count)
        for (i, a) in arguments.enumerated() {
            let slot = storage + 8 * i
            switch a {
            case .pointer(let p): slot.storeBytes(of: p, as: UInt64.self)
            case .int(let v): slot.storeBytes(of: v, as: Int32.self)
            case .float(let v): slot.storeBytes(of: v, as: Float.self)
            case .long(let v): slot.storeBytes(of: v, as: Int64.self)
            }
            params[i] = slot
        }
        let rc = params.withUnsafeMutableBufferPointer { p -> Int32 in
            guard launchesProgrammatically, let ex = driver.cuLaunchKernelEx else {
                return driver.cuLaunchKernel(f, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block.0), UInt32(block.1),
                                             UInt32(block.2), UInt32(sharedBytes), launchStream, p.baseAddress, nil)
            }
            return tandem_cu_launch_programmatic(ex, UnsafeMutableRawPointer(f), UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block.0),
                                                 UInt32(block.1), UInt32(block.2), UInt32(sharedBytes), UnsafeMutableRawPointer(launchStream),
                                                 p.baseAddress)
        }
        try driver.check(rc, "\(launchesProgrammatically ? "cuLaunchKernelEx" : "cuLaunchKernel")(\(name), grid \(grid), block \(block))")
    }

    /// How many blocks of kernel `name` with `threads` threads each the whole GPU holds at once
    /// (asked of the driver once per kernel and shape: launch paths call this every step).
    public func residentBlocks(_ name: String, threads: Int, sharedBytes: Int = 0) throws -> Int {
        let key = "\(name)/\(threads)/\(sharedBytes)"
        if let known = occupancy[key] { return known }
        var perMultiprocessor: Int32 = 0
        try driver.check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&perMultiprocessor, try function(name), Int32(threads), sharedBytes),
                         "cuOccupancyMaxActiveBlocksPerMultiprocessor(\(name))")
        occupancy[key] = Int(perMultiprocessor) * device.multiprocessors
        return occupancy[key]!
    }
    private var occupancy: [String: Int] = [:]

    /// One thread per pixel of `planes × images` planes of `pixels` each: grid (⌈pixels / block⌉, planes, images).
    public func launchPlanes(_ name: String, pixels: Int, planes: Int, images: Int, _ arguments: [KernelArgument]) throws {
        let threads = min(256, (pixels + 31) / 32 * 32)
        try launch(name, grid: ((pixels + threads - 1) / threads, planes, images), block: (threads, 1, 1), arguments)
    }

    /// A one-dimensional launch over `count` items, `threads` per block.
    public func launch1D(_ name: String, count: Int, threads: Int = 256, _ arguments: [KernelArgument]) throws {
        guard count > 0 else { return }
        try launch(name, grid: ((count + threads - 1) / threads, 1, 1), block: (threads, 1, 1), arguments)
    }

    // MARK: - Memory

    public func allocate(bytes: Int, category: MemoryCategory) throws -> DevicePointer {
        try allocator.allocate(bytes: bytes, category: category)
    }

    public func free(_ pointer: DevicePointer) { allocator.free(pointer) }

    /// Copies host bytes to the device (ordered on the stream; waits for the copy).
    public func upload(_ source: UnsafeRawPointer, to destination: DevicePointer, bytes: Int) throws {
        try driver.check(driver.cuMemcpyHtoDAsync(destination, source, bytes, stream), "cuMemcpyHtoDAsync(\(bytes) bytes)")
        try synchronize()
    }

    public func upload(_ values: [Float], to destination: DevicePointer) throws {
        try values.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws in
            try upload(raw.baseAddress!, to: destination, bytes: raw.count)
        }
    }

    public func upload(_ values: [Int32], to destination: DevicePointer) throws {
        try values.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws in
            try upload(raw.baseAddress!, to: destination, bytes: raw.count)
        }
    }

    /// Copies device bytes to the host after everything queued on the stream.
    public func download(_ source: DevicePointer, to destination: UnsafeMutableRawPointer, bytes: Int) throws {
        try driver.check(driver.cuMemcpyDtoHAsync(destination, source, bytes, stream), "cuMemcpyDtoHAsync(\(bytes) bytes)")
        try synchronize()
    }

    public func downloadFloats(_ source: DevicePointer, count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) throws in
            try download(source, to: raw.baseAddress!, bytes: raw.count)
        }
        return out
    }

    public func copy(_ source: DevicePointer, to destination: DevicePointer, bytes: Int) throws {
        try driver.check(driver.cuMemcpyDtoDAsync(destination, source, bytes, stream), "cuMemcpyDtoDAsync(\(bytes) bytes)")
    }

    /// Sets `count` 32-bit words to `pattern` (asynchronous).
    public func fill(_ destination: DevicePointer, words count: Int, pattern: UInt32) throws {
        try driver.check(driver.cuMemsetD32Async(destination, pattern, count, stream), "cuMemsetD32Async")
    }

    public func synchronize() throws {
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    // MARK: - Events and graphs

    /// Makes `waiter` wait for everything queued so far on `signaller` (an event between them;
    /// inside a graph capture this becomes an edge of the graph).
    public func order(_ waiter: CUHandle?, after signaller: CUHandle?) throws {
        try wait(waiter, for: mark(signaller))
    }

    /// The point `stream` has reached: everything queued on it so far (an event recorded now, valid until
    /// ``resetOrdering()``).
    public func mark(_ stream: CUHandle?) throws -> StreamMark {
        if syncEventsUsed == syncEvents.count {
            var e: CUHandle?
            try driver.check(driver.cuEventCreate(&e, 2), "cuEventCreate")   // (4) CU_EVENT_DISABLE_TIMING = 2
            syncEvents.append(e)
        }
        let event = syncEvents[syncEventsUsed]
        syncEventsUsed += 1
        try driver.check(driver.cuEventRecord(event, stream), "cuEventRecord")
        return StreamMark(event: event)
    }

    /// Makes `waiter` wait until the stream `mark` was taken on has reached it (inside a graph capture, an edge).
    public func wait(_ waiter: CUHandle?, for mark: StreamMark) throws {
        try driver.check(driver.cuStreamWaitEvent(waiter, mark.event, 0), "cuStreamWaitEvent")
    }

    /// Starts a new round of ordering events (call once per step: an event may be recorded again
    /// once the waits on its last recording have been queued).
    public func resetOrdering() { syncEventsUsed = 0 }

    /// Queues `body`'s launches and GEMMs on the side stream, after everything queued so far on the main
    /// stream (unless `waitForMain` is false: then only after what the side stream already has).
    public func onSideStream(waitForMain: Bool = true, _ body: () throws -> Void) throws {
        if waitForMain { try order(sideStream, after: stream) }
        launchStream = sideStream
        try blas.bind(stream: sideStream, workspace: sideWorkspace, workspaceBytes: Self.sideWorkspaceBytes)
        var failure: (any Error)?
        do { try body() } catch let error { failure = error }
        launchStream = stream
        try blas.bind(stream: stream, workspace: workspace, workspaceBytes: Self.workspaceBytes)
        if let failure { throw failure }
    }

    /// Queues `body`'s kernel launches (no GEMMs: cuBLAS stays bound to its stream) on the communication stream, after
    /// what that stream has already.
    public func onCommStream(_ body: () throws -> Void) throws {
        let previous = launchStream
        launchStream = commStream
        defer { launchStream = previous }
        try body()
    }

    /// Makes the side stream wait for everything queued so far on the main stream.
    public func sideWaitsForMain() throws { try order(sideStream, after: stream) }

    /// Makes the main stream wait for everything queued on the side stream.
    public func joinSideStream() throws { try order(stream, after: sideStream) }

    /// A tuner for a GEMM planned now on the current stream, with the caller's `alternative` way to compute it:
    /// nil while capturing a graph or when tuning is off. Its timing leaves the profiler out.
    func gemmTuner(alternative: (() throws -> Void)?) -> GEMMTuner? {
        guard tunesGEMMs, !isCapturing else { return nil }
        return GEMMTuner(time: { [unowned self] body in
            // Nothing else runs while a candidate is timed (the other stream may have work queued in an eager step),
            // and the calls are all queued, behind a short wait, before the first starts: the host's time to queue
            // them is not counted (it is not paid in a replayed graph either).
            try driver.check(driver.cuCtxSynchronize(), "cuCtxSynchronize")
            try launchUnprofiled("spin_wait", grid: (1, 1, 1), block: (1, 1, 1), sharedBytes: 0, [.long(Self.tuningQueueNanoseconds)])
            return try time(on: launchStream, body)
        }, alternative: alternative, record: gemmRecord, quietly: { [unowned self] body in
            let saved = profiler
            profiler = nil
            defer { profiler = saved }
            try body()
        })
    }
    /// How long the stream waits before a timed run of GEMM calls: longer than the host takes to queue them.
    static let tuningQueueNanoseconds: Int64 = 200_000

    /// Milliseconds `stream` (the main one unless given) spends on `body`, measured with two events.
    public func time(on stream: CUHandle? = nil, _ body: () throws -> Void) throws -> Double {
        let stream = stream ?? self.stream
        var start: CUHandle?, end: CUHandle?
        try driver.check(driver.cuEventCreate(&start, 0), "cuEventCreate")
        try driver.check(driver.cuEventCreate(&end, 0), "cuEventCreate")
        defer { _ = driver.cuEventDestroy(start); _ = driver.cuEventDestroy(end) }
        try driver.check(driver.cuEventRecord(start, stream), "cuEventRecord")
        try body()
        try driver.check(driver.cuEventRecord(end, stream), "cuEventRecord")
        try driver.check(driver.cuEventSynchronize(end), "cuEventSynchronize")
        var ms: Float = 0
        try driver.check(driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime")
        return Double(ms)
    }

    /// Milliseconds one replay of `graph` takes: one replay to warm it, then the mean of `replays` timed back to back.
    public func replayTime(_ graph: CUDAGraph, replays: Int) throws -> Double {
        try graph.launch()
        return try time { for _ in 0..<replays { try graph.launch() } } / Double(replays)
    }

    /// Runs `body(i)` for `count` steps with an event between steps; returns each step's device
    /// milliseconds and the host seconds from the first launch to the end of the last step.
    public func timeline(_ count: Int, _ body: (Int) throws -> Void) throws -> (steps: [Double], wall: Double) {
        var events = [CUHandle?](repeating: nil, count: count + 1)
        for i in 0...count { try driver.check(driver.cuEventCreate(&events[i], 0), "cuEventCreate") }
        defer { for e in events { _ = driver.cuEventDestroy(e) } }
        let start = monotonicSeconds()
        for i in 0..<count {
            try driver.check(driver.cuEventRecord(events[i], stream), "cuEventRecord")
            try body(i)
        }
        try driver.check(driver.cuEventRecord(events[count], stream), "cuEventRecord")
        try driver.check(driver.cuEventSynchronize(events[count]), "cuEventSynchronize")
        let wall = monotonicSeconds() - start
        var steps: [Double] = []
        for i in 0..<count {
            var ms: Float = 0
            try driver.check(driver.cuEventElapsedTime(&ms, events[i], events[i + 1]), "cuEventElapsedTime")
            steps.append(Double(ms))
        }
        return (steps, wall)
    }

    /// Records everything `body` queues on the stream into one executable graph. With `batch`, the graph's first node
    /// copies `batch.bytes` from `batch.source` to `batch.destination`, and each launch may read another source
    /// (``CUDAGraph/readBatch(from:)``): a step's inputs loaded inside its graph, not by a stream operation between two
    /// launches (which waits for the first to end and holds up the second: gpt bf16 lost 1.3% of its step to it).
    public func capture(batch: (source: DevicePointer, destination: DevicePointer, bytes: Int)? = nil,
                        _ body: () throws -> Void) throws -> CUDAGraph {
        // (3) CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1: other threads' unsafe calls are not affected.
        try driver.check(driver.cuStreamBeginCapture(stream, 1), "cuStreamBeginCapture")
        var failure: (any Error)?
        isCapturing = true
        do {
            if let batch { try copy(batch.source, to: batch.destination, bytes: batch.bytes) }
            try body()
        } catch let error { failure = error }
        isCapturing = false
        var graph: CUHandle?
        let rc = driver.cuStreamEndCapture(stream, &graph)
        if let failure { if graph != nil { _ = driver.cuGraphDestroy(graph) }; throw failure }
        try driver.check(rc, "cuStreamEndCapture")
        var exec: CUHandle?
        let node = batch == nil ? nil : rootCopyNode(graph)
        // The graph is kept while its copy node may be retargeted (the node belongs to it).
        var kept = false
        defer { if !kept { _ = driver.cuGraphDestroy(graph) } }
        try driver.check(driver.cuGraphInstantiate(&exec, graph, 0), "cuGraphInstantiateWithFlags")
        kept = node != nil
        return CUDAGraph(driver: driver, exec: exec, stream: stream, context: context, batch: batch, copyNode: node.map { (graph, $0) })
    }

    /// The one root node of `graph` that is a copy (CU_GRAPH_NODE_TYPE_MEMCPY = 1), where the driver can say and there is one.
    func rootCopyNode(_ graph: CUHandle?) -> CUHandle? {
        guard let roots = driver.cuGraphGetRootNodes, let type = driver.cuGraphNodeGetType,
              driver.cuGraphMemcpyNodeGetParams != nil, driver.cuGraphExecMemcpyNodeSetParams != nil else { return nil }
        var count = 0
        guard roots(graph, nil, &count) == 0, count > 0 else { return nil }
        var nodes = [CUHandle?](repeating: nil, count: count)
        guard roots(graph, &nodes, &count) == 0 else { return nil }
        let copies = nodes.prefix(count).filter { node in
            var kind: Int32 = -1
            return type(node, &kind) == 0 && kind == 1
        }
        return copies.count == 1 ? copies[0] : nil
    }
}

/// A point in a stream's queue (``CUDAContext/mark(_:)``) that another stream can wait for.
public struct StreamMark {
    let event: CUHandle?
}

/// Per-label device time of profiled launches: ``CUDAContext/profiler``.
public final class KernelProfiler {
    var events: [CUHandle?] = []
    var used = 0
    var pending: [(String, CUHandle?, CUHandle?, stream: String)] = []
    /// Total milliseconds and count per label, over every collected step.
    public private(set) var totals: [String: (ms: Double, count: Int)] = [:]
    /// One timed launch: its label, start (ms after the step's first launch started), duration (ms), stream (main or side).
    public typealias Launch = (label: String, start: Double, ms: Double, stream: String)
    /// The last collected step's launches in the order they were queued.
    public private(set) var timeline: [Launch] = []

    public init() {}

    func pair(driver: CUDADriver) throws -> (CUHandle?, CUHandle?) {
        while used + 2 > events.count {
            var e: CUHandle?
            try driver.check(driver.cuEventCreate(&e, 0), "cuEventCreate")
            events.append(e)
        }
        used += 2
        return (events[used - 2], events[used - 1])
    }

    /// Waits for the timed launches and adds their times to ``totals``.
    public func collect(_ gpu: CUDAContext) throws {
        try gpu.synchronize()
        timeline = []
        for (label, start, end, stream) in pending {
            var ms: Float = 0, at: Float = 0
            try gpu.driver.check(gpu.driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime")
            try gpu.driver.check(gpu.driver.cuEventElapsedTime(&at, pending[0].1, start), "cuEventElapsedTime")
            let old = totals[label] ?? (0, 0)
            totals[label] = (old.ms + Double(ms), old.count + 1)
            timeline.append((label, Double(at), Double(ms), stream))
        }
        pending = []
        used = 0
    }

    /// Labels by total time, largest first.
    public var ranked: [(label: String, ms: Double, count: Int)] {
        totals.map { ($0.key, $0.value.ms, $0.value.count) }.sorted { $0.ms > $1.ms }
    }
}

/// An instantiated CUDA graph, replayed on the stream it was captured from.
public final class CUDAGraph {
    let driver: CUDADriver
    let exec: CUHandle?
    let stream: CUHandle?, context: CUHandle?
    /// The copy the graph starts with (``CUDAContext/capture(batch:_:)``), as captured; nil: none.
    let batch: (source: DevicePointer, destination: DevicePointer, bytes: Int)?
    /// The graph the executable one was made from and its copy node, while the node can be retargeted.
    let copyNode: (graph: CUHandle?, node: CUHandle?)?
    /// Where the copy node reads from now.
    private var reading: DevicePointer

    init(driver: CUDADriver, exec: CUHandle?, stream: CUHandle?, context: CUHandle? = nil,
         batch: (source: DevicePointer, destination: DevicePointer, bytes: Int)? = nil, copyNode: (graph: CUHandle?, node: CUHandle?)? = nil) {
        (self.driver, self.exec, self.stream, self.context, self.batch, self.copyNode) = (driver, exec, stream, context, batch, copyNode)
        reading = batch?.source ?? 0
    }

    /// Makes the following launches copy their batch from `source` (as many bytes as captured): the copy node retargeted,
    /// or, where the driver cannot, `source` copied on the stream into the block the graph was captured reading.
    public func readBatch(from source: DevicePointer) throws {
        guard let batch, source != reading else { return }
        if let copyNode, let get = driver.cuGraphMemcpyNodeGetParams, let set = driver.cuGraphExecMemcpyNodeSetParams {
            try driver.check(tandem_cu_graph_exec_retarget_copy(get, set, UnsafeMutableRawPointer(exec), UnsafeMutableRawPointer(copyNode.node),
                                                                source, batch.destination, UnsafeMutableRawPointer(context)),
                             "cuGraphExecMemcpyNodeSetParams")
            reading = source
        } else {
            try driver.check(driver.cuMemcpyDtoDAsync(batch.source, source, batch.bytes, stream), "cuMemcpyDtoDAsync(\(batch.bytes) bytes)")
        }
    }

    public func launch() throws { try driver.check(driver.cuGraphLaunch(exec, stream), "cuGraphLaunch") }
    deinit {
        _ = driver.cuGraphExecDestroy(exec)
        if let copyNode { _ = driver.cuGraphDestroy(copyNode.graph) }
    }
}
