#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A device address (`CUdeviceptr`).
public typealias DevicePointer = UInt64
/// Opaque driver handles (`CUcontext`, `CUmodule`, `CUfunction`, `CUstream`, `CUevent`, `CUgraph`, `CUgraphExec`).
public typealias CUHandle = OpaquePointer

// MARK: - The driver table

/// The CUDA driver API (`libcuda.so.1`) opened at run time into a table of function pointers.
///
/// Every call goes through ``check(_:_:)``, which turns a failure code into a ``CUDAError``
/// naming the function and the driver's own message.
public struct CUDADriver: @unchecked Sendable {
    // Safe: written once by `load()`, read-only afterwards; the pointers are to immutable code.
    typealias Result = Int32
    // (1) Each signature below is the one in cuda.h for CUDA 12 and 13; the `_v2` names are
    // the ones cuda.h maps the plain names to.
    typealias FInit = @convention(c) (UInt32) -> Result
    typealias FIntOut = @convention(c) (UnsafeMutablePointer<Int32>) -> Result
    typealias FDeviceGet = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Result
    typealias FDeviceGetName = @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Result
    typealias FDeviceGetAttribute = @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Result
    typealias FDeviceTotalMem = @convention(c) (UnsafeMutablePointer<Int>, Int32) -> Result
    typealias FPrimaryCtxRetain = @convention(c) (UnsafeMutablePointer<CUHandle?>, Int32) -> Result
    typealias FHandleIn = @convention(c) (CUHandle?) -> Result
    typealias FVoid = @convention(c) () -> Result
    typealias FMemAlloc = @convention(c) (UnsafeMutablePointer<DevicePointer>, Int) -> Result
    typealias FMemFree = @convention(c) (DevicePointer) -> Result
    typealias FMemGetInfo = @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> Result
    typealias FMemcpyHtoD = @convention(c) (DevicePointer, UnsafeRawPointer, Int) -> Result
    typealias FMemcpyDtoH = @convention(c) (UnsafeMutableRawPointer, DevicePointer, Int) -> Result
    typealias FMemcpyHtoDAsync = @convention(c) (DevicePointer, UnsafeRawPointer, Int, CUHandle?) -> Result
    typealias FMemcpyDtoHAsync = @convention(c) (UnsafeMutableRawPointer, DevicePointer, Int, CUHandle?) -> Result
    typealias FMemcpyDtoDAsync = @convention(c) (DevicePointer, DevicePointer, Int, CUHandle?) -> Result
    typealias FMemsetD32Async = @convention(c) (DevicePointer, UInt32, Int, CUHandle?) -> Result
    typealias FModuleLoadData = @convention(c) (UnsafeMutablePointer<CUHandle?>, UnsafeRawPointer) -> Result
    typealias FModuleGetFunction = @convention(c) (UnsafeMutablePointer<CUHandle?>, CUHandle?, UnsafePointer<CChar>) -> Result
    typealias FLaunchKernel = @convention(c) (CUHandle?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, CUHandle?,
                                              UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Result
    typealias FFuncSetAttribute = @convention(c) (CUHandle?, Int32, Int32) -> Result
    typealias FOccupancy = @convention(c) (UnsafeMutablePointer<Int32>, CUHandle?, Int32, Int) -> Result
    typealias FHandleOutFlags = @convention(c) (UnsafeMutablePointer<CUHandle?>, UInt32) -> Result
    typealias FEventRecord = @convention(c) (CUHandle?, CUHandle?) -> Result
    typealias FEventElapsed = @convention(c) (UnsafeMutablePointer<Float>, CUHandle?, CUHandle?) -> Result
    typealias FBeginCapture = @convention(c) (CUHandle?, Int32) -> Result
    typealias FEndCapture = @convention(c) (CUHandle?, UnsafeMutablePointer<CUHandle?>) -> Result
    typealias FGraphInstantiate = @convention(c) (UnsafeMutablePointer<CUHandle?>, CUHandle?, UInt64) -> Result
    typealias FGraphLaunch = @convention(c) (CUHandle?, CUHandle?) -> Result
    typealias FEventWait = @convention(c) (CUHandle?, CUHandle?, UInt32) -> Result
    typealias FStreamPriority = @convention(c) (UnsafeMutablePointer<CUHandle?>, UInt32, Int32) -> Result
    typealias FPriorityRange = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Result
    typealias FGetErrorString = @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Result
    typealias FGraphRootNodes = @convention(c) (CUHandle?, UnsafeMutablePointer<CUHandle?>?, UnsafeMutablePointer<Int>) -> Result
    typealias FGraphNodeType = @convention(c) (CUHandle?, UnsafeMutablePointer<Int32>) -> Result

    public let path: String
    let cuInit: FInit
    let cuDriverGetVersion: FIntOut
    let cuDeviceGetCount: FIntOut
    let cuDeviceGet: FDeviceGet
    let cuDeviceGetName: FDeviceGetName
    let cuDeviceGetAttribute: FDeviceGetAttribute
    let cuDeviceTotalMem: FDeviceTotalMem
    let cuDevicePrimaryCtxRetain: FPrimaryCtxRetain
    let cuCtxSetCurrent: FHandleIn
    let cuCtxSynchronize: FVoid
    let cuMemAlloc: FMemAlloc
    let cuMemFree: FMemFree
    let cuMemGetInfo: FMemGetInfo
    let cuMemcpyHtoD: FMemcpyHtoD
    let cuMemcpyDtoH: FMemcpyDtoH
    let cuMemcpyHtoDAsync: FMemcpyHtoDAsync
    let cuMemcpyDtoHAsync: FMemcpyDtoHAsync
    let cuMemcpyDtoDAsync: FMemcpyDtoDAsync
    let cuMemsetD32Async: FMemsetD32Async
    let cuModuleLoadData: FModuleLoadData
    let cuModuleGetFunction: FModuleGetFunction
    let cuLaunchKernel: FLaunchKernel
    let cuFuncSetAttribute: FFuncSetAttribute
    let cuOccupancyMaxActiveBlocksPerMultiprocessor: FOccupancy
    let cuStreamCreate: FHandleOutFlags
    let cuStreamSynchronize: FHandleIn
    let cuStreamDestroy: FHandleIn
    let cuEventCreate: FHandleOutFlags
    let cuEventRecord: FEventRecord
    let cuEventSynchronize: FHandleIn
    let cuEventElapsedTime: FEventElapsed
    let cuEventDestroy: FHandleIn
    let cuStreamBeginCapture: FBeginCapture
    let cuStreamEndCapture: FEndCapture
    let cuGraphInstantiate: FGraphInstantiate
    let cuGraphLaunch: FGraphLaunch
    let cuGraphDestroy: FHandleIn
    let cuGraphExecDestroy: FHandleIn
    let cuGetErrorString: FGetErrorString
    let cuStreamWaitEvent: FEventWait
    let cuStreamCreateWithPriority: FStreamPriority
    let cuCtxGetStreamPriorityRange: FPriorityRange
    /// `cuLaunchKernelEx` (CUDA 12.0 on), called through `tandem_cu_launch_programmatic`; nil with an older driver.
    let cuLaunchKernelEx: UnsafeMutableRawPointer?
    /// A captured graph's root nodes and their types, and its copy node's parameters read and, in an executable graph,
    /// set (the last two through `tandem_cu_graph_exec_retarget_copy`): ``CUDAGraph/readBatch(from:)``. Nil where the
    /// driver lacks them (each is in CUDA 11.0 on).
    let cuGraphGetRootNodes: FGraphRootNodes?
    let cuGraphNodeGetType: FGraphNodeType?
    let cuGraphMemcpyNodeGetParams: UnsafeMutableRawPointer?
    let cuGraphExecMemcpyNodeSetParams: UnsafeMutableRawPointer?

    static let hint = "Install the NVIDIA driver (it provides libcuda.so.1), or set TANDEM_CUDA_LIBS to the folder holding it."

    static func load() throws(CUDAError) -> CUDADriver {
        let (h, path) = try NativeLibrary.open(names: ["libcuda.so.1", "libcuda.so"], what: "the CUDA driver", hint: hint)
        func f<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T { try NativeLibrary.symbol(h, name, library: "libcuda", as: t) }
        return CUDADriver(
            path: path,
            cuInit: try f("cuInit", FInit.self), cuDriverGetVersion: try f("cuDriverGetVersion", FIntOut.self),
            cuDeviceGetCount: try f("cuDeviceGetCount", FIntOut.self), cuDeviceGet: try f("cuDeviceGet", FDeviceGet.self),
            cuDeviceGetName: try f("cuDeviceGetName", FDeviceGetName.self),
            cuDeviceGetAttribute: try f("cuDeviceGetAttribute", FDeviceGetAttribute.self),
            cuDeviceTotalMem: try f("cuDeviceTotalMem_v2", FDeviceTotalMem.self),
            cuDevicePrimaryCtxRetain: try f("cuDevicePrimaryCtxRetain", FPrimaryCtxRetain.self),
            cuCtxSetCurrent: try f("cuCtxSetCurrent", FHandleIn.self), cuCtxSynchronize: try f("cuCtxSynchronize", FVoid.self),
            cuMemAlloc: try f("cuMemAlloc_v2", FMemAlloc.self), cuMemFree: try f("cuMemFree_v2", FMemFree.self),
            cuMemGetInfo: try f("cuMemGetInfo_v2", FMemGetInfo.self),
            cuMemcpyHtoD: try f("cuMemcpyHtoD_v2", FMemcpyHtoD.self), cuMemcpyDtoH: try f("cuMemcpyDtoH_v2", FMemcpyDtoH.self),
            cuMemcpyHtoDAsync: try f("cuMemcpyHtoDAsync_v2", FMemcpyHtoDAsync.self),
            cuMemcpyDtoHAsync: try f("cuMemcpyDtoHAsync_v2", FMemcpyDtoHAsync.self),
            cuMemcpyDtoDAsync: try f("cuMemcpyDtoDAsync_v2", FMemcpyDtoDAsync.self),
            cuMemsetD32Async: try f("cuMemsetD32Async", FMemsetD32Async.self),
            cuModuleLoadData: try f("cuModuleLoadData", FModuleLoadData.self),
            cuModuleGetFunction: try f("cuModuleGetFunction", FModuleGetFunction.self),
            cuLaunchKernel: try f("cuLaunchKernel", FLaunchKernel.self),
            cuFuncSetAttribute: try f("cuFuncSetAttribute", FFuncSetAttribute.self),
            cuOccupancyMaxActiveBlocksPerMultiprocessor: try f("cuOccupancyMaxActiveBlocksPerMultiprocessor", FOccupancy.self),
            cuStreamCreate: try f("cuStreamCreate", FHandleOutFlags.self),
            cuStreamSynchronize: try f("cuStreamSynchronize", FHandleIn.self),
            cuStreamDestroy: try f("cuStreamDestroy_v2", FHandleIn.self),
            cuEventCreate: try f("cuEventCreate", FHandleOutFlags.self), cuEventRecord: try f("cuEventRecord", FEventRecord.self),
            cuEventSynchronize: try f("cuEventSynchronize", FHandleIn.self),
            cuEventElapsedTime: try f("cuEventElapsedTime", FEventElapsed.self),
            cuEventDestroy: try f("cuEventDestroy_v2", FHandleIn.self),
            cuStreamBeginCapture: try f("cuStreamBeginCapture_v2", FBeginCapture.self),
            cuStreamEndCapture: try f("cuStreamEndCapture", FEndCapture.self),
            cuGraphInstantiate: try f("cuGraphInstantiateWithFlags", FGraphInstantiate.self),
            cuGraphLaunch: try f("cuGraphLaunch", FGraphLaunch.self),
            cuGraphDestroy: try f("cuGraphDestroy", FHandleIn.self),
            cuGraphExecDestroy: try f("cuGraphExecDestroy", FHandleIn.self),
            cuGetErrorString: try f("cuGetErrorString", FGetErrorString.self),
            cuStreamWaitEvent: try f("cuStreamWaitEvent", FEventWait.self),
            cuStreamCreateWithPriority: try f("cuStreamCreateWithPriority", FStreamPriority.self),
            cuCtxGetStreamPriorityRange: try f("cuCtxGetStreamPriorityRange", FPriorityRange.self),
            cuLaunchKernelEx: NativeLibrary.optionalSymbol(h, "cuLaunchKernelEx", as: UnsafeMutableRawPointer.self),
            cuGraphGetRootNodes: NativeLibrary.optionalSymbol(h, "cuGraphGetRootNodes", as: FGraphRootNodes.self),
            cuGraphNodeGetType: NativeLibrary.optionalSymbol(h, "cuGraphNodeGetType", as: FGraphNodeType.self),
            cuGraphMemcpyNodeGetParams: NativeLibrary.optionalSymbol(h, "cuGraphMemcpyNodeGetParams", as: UnsafeMutableRawPointer.self),
            cuGraphExecMemcpyNodeSetParams: NativeLibrary.optionalSymbol(h, "cuGraphExecMemcpyNodeSetParams", as: UnsafeMutableRawPointer.self))
    }

    private static let loaded: Swift.Result<CUDADriver, CUDAError> = {
        do throws(CUDAError) {
            let driver = try load()
            let rc = driver.cuInit(0)
            if rc != 0 { return .failure(.call(library: "libcuda", function: "cuInit", code: rc, message: driver.message(rc))) }
            return .success(driver)
        } catch let error { return .failure(error) }
    }()

    /// The driver, opened and initialised once per process.
    public static func shared() throws(CUDAError) -> CUDADriver { try loaded.get() }

    func message(_ code: Int32) -> String {
        var text: UnsafePointer<CChar>?
        if cuGetErrorString(code, &text) == 0, let text { return String(cString: text) }
        return "unknown CUDA error"
    }

    /// The one choke point: a non-zero `CUresult` becomes a ``CUDAError`` naming `function`.
    @inline(__always)
    public func check(_ code: Int32, _ function: @autoclosure () -> String) throws(CUDAError) {
        if code != 0 { throw .call(library: "libcuda", function: function(), code: code, message: message(code)) }
    }

    /// The driver's CUDA version as major.minor (e.g. 13.0).
    public func version() throws(CUDAError) -> (major: Int, minor: Int) {
        var v: Int32 = 0
        try check(cuDriverGetVersion(&v), "cuDriverGetVersion")
        return (Int(v) / 1000, Int(v) % 1000 / 10)
    }
}

// MARK: - Devices

/// One GPU as the driver describes it.
public struct CUDADeviceInfo: Sendable {
    public var index: Int
    public var name: String
    public var computeCapability: (major: Int, minor: Int)
    public var multiprocessors: Int
    public var totalMemory: Int
    public var l2Bytes: Int

    /// Every GPU the driver sees.
    public static func all() throws(CUDAError) -> [CUDADeviceInfo] {
        let d = try CUDADriver.shared()
        var count: Int32 = 0
        try d.check(d.cuDeviceGetCount(&count), "cuDeviceGetCount")
        var result: [CUDADeviceInfo] = []
        for i in 0..<Int(count) {
            var device: Int32 = 0
            try d.check(d.cuDeviceGet(&device, Int32(i)), "cuDeviceGet")
            var name = [CChar](repeating: 0, count: 256)
            try d.check(d.cuDeviceGetName(&name, 255, device), "cuDeviceGetName")
            func attribute(_ a: Int32) throws(CUDAError) -> Int {
                var v: Int32 = 0
                try d.check(d.cuDeviceGetAttribute(&v, a, device), "cuDeviceGetAttribute(\(a))")
                return Int(v)
            }
            var total = 0
            try d.check(d.cuDeviceTotalMem(&total, device), "cuDeviceTotalMem")
            // (2) CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76,
            // MULTIPROCESSOR_COUNT = 16, L2_CACHE_SIZE = 38.
            result.append(CUDADeviceInfo(
                index: i, name: String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                computeCapability: (try attribute(75), try attribute(76)), multiprocessors: try attribute(16),
                totalMemory: total, l2Bytes: try attribute(38)))
        }
        return result
    }

    /// `sm_XY` for NVRTC.
    public var architecture: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }
}
