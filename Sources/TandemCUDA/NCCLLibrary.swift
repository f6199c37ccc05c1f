#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import TandemCollectives
import _TandemCUDAShims

// MARK: - NCCL, opened at run time

/// NCCL (`libnccl.so.2`), opened with `dlopen` into one table of function pointers, and
/// the few CUDA driver calls its process group needs beyond ``CUDADriver``'s (event
/// queries and cross-stream waits), looked up in the same driver library.
///
/// Unsafe assumptions, numbered where they are used:
/// 1. `ncclComm_t` and `cudaStream_t`/`CUstream` are opaque pointers; the runtime's and
///    the driver's streams are the same objects.
/// 2. Enumerations (`ncclDataType_t`, `ncclRedOp_t`, `ncclResult_t`) are C `int`s with the
///    values of nccl.h (unchanged since NCCL 2.10; bf16 and `ncclAvg` need 2.10).
/// 3. `ncclCommInitRank` takes the 128-byte `ncclUniqueId` by value: it goes through the
///    C shim `tandem_nccl_comm_init_rank`, the one call Swift cannot make itself.
public struct NCCLLibrary: @unchecked Sendable {
    // Safe to share: the table is immutable after loading, and NCCL's entry points are
    // thread-safe for distinct communicators.
    public typealias Comm = OpaquePointer
    typealias FVersion = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    typealias FUniqueId = @convention(c) (UnsafeMutableRawPointer) -> Int32
    typealias FComm = @convention(c) (Comm?) -> Int32
    typealias FAsyncError = @convention(c) (Comm?, UnsafeMutablePointer<Int32>) -> Int32
    typealias FErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?
    typealias FVoid = @convention(c) () -> Int32
    typealias FAllReduce = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, Int32, Int32, Comm?, OpaquePointer?) -> Int32
    typealias FBroadcast = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, Int32, Int32, Comm?, OpaquePointer?) -> Int32
    typealias FAllGather = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, Int32, Comm?, OpaquePointer?) -> Int32
    typealias FReduceScatter = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int, Int32, Int32, Comm?, OpaquePointer?) -> Int32
    // The driver calls beyond CUDADriver's table (CUresult results).
    typealias FEventQuery = @convention(c) (OpaquePointer?) -> Int32
    typealias FStreamWaitEvent = @convention(c) (OpaquePointer?, OpaquePointer?, UInt32) -> Int32

    public let path: String
    let initRank: UnsafeMutableRawPointer
    let ncclGetVersion: FVersion
    let ncclGetUniqueId: FUniqueId
    let ncclCommAbort: FComm
    let ncclCommDestroy: FComm
    let ncclCommGetAsyncError: FAsyncError
    let ncclGetErrorString: FErrorString
    let ncclGroupStart: FVoid
    let ncclGroupEnd: FVoid
    let ncclAllReduce: FAllReduce
    let ncclBroadcast: FBroadcast
    let ncclAllGather: FAllGather
    let ncclReduceScatter: FReduceScatter
    let cuEventQuery: FEventQuery
    let cuStreamWaitEvent: FStreamWaitEvent

    static let hint = "Install NCCL 2.10 or newer (Debian/Ubuntu: libnccl2 from NVIDIA's repository; pip: nvidia-nccl-cu13), or set TANDEM_CUDA_LIBS to the folder holding libnccl.so.2."

    static func load() throws(CUDAError) -> NCCLLibrary {
        let (h, path) = try NativeLibrary.open(names: ["libnccl.so.2", "libnccl.so"], what: "NCCL", hint: hint)
        func f<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T { try NativeLibrary.symbol(h, name, library: "libnccl", as: t) }
        guard let initRank = dlsym(h, "ncclCommInitRank") else { throw .symbolMissing(library: "libnccl", symbol: "ncclCommInitRank") }
        let driver = try CUDADriver.shared()
        guard let cuda = dlopen(driver.path, RTLD_NOW | RTLD_GLOBAL) else {
            throw .libraryMissing(name: "the CUDA driver", searched: [driver.path], hint: CUDADriver.hint)
        }
        func d<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T { try NativeLibrary.symbol(cuda, name, library: "libcuda", as: t) }
        return NCCLLibrary(
            path: path, initRank: initRank,
            ncclGetVersion: try f("ncclGetVersion", FVersion.self), ncclGetUniqueId: try f("ncclGetUniqueId", FUniqueId.self),
            ncclCommAbort: try f("ncclCommAbort", FComm.self), ncclCommDestroy: try f("ncclCommDestroy", FComm.self),
            ncclCommGetAsyncError: try f("ncclCommGetAsyncError", FAsyncError.self),
            ncclGetErrorString: try f("ncclGetErrorString", FErrorString.self),
            ncclGroupStart: try f("ncclGroupStart", FVoid.self), ncclGroupEnd: try f("ncclGroupEnd", FVoid.self),
            ncclAllReduce: try f("ncclAllReduce", FAllReduce.self), ncclBroadcast: try f("ncclBroadcast", FBroadcast.self),
            ncclAllGather: try f("ncclAllGather", FAllGather.self), ncclReduceScatter: try f("ncclReduceScatter", FReduceScatter.self),
            cuEventQuery: try d("cuEventQuery", FEventQuery.self), cuStreamWaitEvent: try d("cuStreamWaitEvent", FStreamWaitEvent.self))
    }

    private static let loaded: Swift.Result<NCCLLibrary, CUDAError> = {
        do throws(CUDAError) { return .success(try load()) } catch let error { return .failure(error) }
    }()

    /// NCCL, opened once per process.
    public static func shared() throws(CUDAError) -> NCCLLibrary { try loaded.get() }

    /// The one choke point: a non-zero `ncclResult_t` becomes a ``CUDAError`` naming `function`.
    @inline(__always)
    func check(_ code: Int32, _ function: @autoclosure () -> String) throws(CUDAError) {
        if code != 0 { throw .call(library: "libnccl", function: function(), code: code, message: message(code)) }
    }

    func message(_ code: Int32) -> String {
        ncclGetErrorString(code).map { String(cString: $0) } ?? "unknown NCCL error"
    }

    /// NCCL's version as major.minor.patch (`ncclGetVersion`: major·10000 + minor·100 + patch since 2.9).
    public func version() throws(CUDAError) -> String {
        var v: Int32 = 0
        try check(ncclGetVersion(&v), "ncclGetVersion")
        return v >= 10_000 ? "\(v / 10_000).\(v % 10_000 / 100).\(v % 100)" : "\(v / 1000).\(v % 1000 / 100).\(v % 100)"
    }

    /// 128 fresh bytes naming a new communicator (rank 0 makes them; every rank needs them).
    public func uniqueId() throws(CUDAError) -> [UInt8] {
        var id = [UInt8](repeating: 0, count: 128)
        let rc = id.withUnsafeMutableBytes { ncclGetUniqueId($0.baseAddress!) }
        try check(rc, "ncclGetUniqueId")
        return id
    }

    /// This rank's communicator of `size` ranks named by `id`, made on a thread of its own
    /// with `gpu` current: `ncclCommInitRank` blocks until every rank has joined and has no
    /// timeout of its own, so this waits at most `timeout` seconds and then throws a timeout
    /// naming `missing()` (the thread is left behind, blocked in NCCL; the caller is expected
    /// to end the job).
    func communicator(id: [UInt8], size: Int, rank: Int, gpu: CUDAContext, timeout: Double,
                      missing: @escaping @Sendable () -> [Int]) throws -> Comm {
        precondition(id.count == 128, "an NCCL unique id has 128 bytes")
        final class Call: @unchecked Sendable {
            // Safe: the inputs are read, and the outputs written, only by the init thread
            // before `done` is signalled; the caller reads the outputs after.
            let function: UnsafeMutableRawPointer
            let gpu: CUDAContext
            let id: [UInt8]
            var code: Int32 = 0
            var comm: UnsafeMutableRawPointer?
            var contextError: (any Error)?
            let done = DispatchSemaphore(value: 0)
            init(function: UnsafeMutableRawPointer, gpu: CUDAContext, id: [UInt8]) { self.function = function; self.gpu = gpu; self.id = id }
        }
        let outcome = Call(function: initRank, gpu: gpu, id: id)
        let thread = Thread {
            do { try outcome.gpu.makeCurrent() } catch { outcome.contextError = error; outcome.done.signal(); return }
            outcome.code = outcome.id.withUnsafeBytes {
                tandem_nccl_comm_init_rank(outcome.function, &outcome.comm, Int32(size), $0.baseAddress!, Int32(rank))   // (3)
            }
            outcome.done.signal()
        }
        thread.name = "tandem-nccl-init-\(rank)"
        thread.start()
        guard outcome.done.wait(timeout: .now() + timeout) == .success else {
            throw CollectiveError.timeout(operation: "ncclCommInitRank (joining a job of \(size))", sequence: 0, missing: missing(), seconds: timeout)
        }
        if let error = outcome.contextError { throw error }
        try check(outcome.code, "ncclCommInitRank(rank \(rank) of \(size))")
        guard let comm = outcome.comm else { throw CUDAError.call(library: "libnccl", function: "ncclCommInitRank", code: 0, message: "returned no communicator") }
        return Comm(comm)
    }

    /// nccl.h's `ncclDataType_t` of a collective buffer's dtype (2).
    static func dataType(_ bytes: Int, bfloat: Bool) -> Int32 { bytes == 4 ? 7 : bfloat ? 9 : 6 }
}
