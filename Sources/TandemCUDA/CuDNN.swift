#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// cuDNN (`libcudnn.so.9`) opened at run time: the handle bound to the context's stream, the
/// descriptors the convolutions and the LSTM use, and one choke point for return codes.
///
/// cuDNN is optional. Without it (or with `TANDEM_CUDNN=0`) convolutions are im2col + cuBLAS
/// and the LSTM is one GEMM and one fused cell kernel per step; ``CUDAContext/dnn`` is nil then.
///
/// In cuDNN 9 the legacy convolution API lives in `libcudnn_cnn.so.9` and the RNN API in
/// `libcudnn_adv.so.9`; `libcudnn.so.9` is a shim that loads them. Each symbol is looked up in
/// the shim first, then in the sub-libraries, which are opened beforehand from the same search
/// so the shim finds them even when they are not on the loader's path.
public final class CuDNN: @unchecked Sendable {
    // Safe: one instance per context, used from the thread that drives that context's stream.
    typealias Handle = OpaquePointer?
    typealias Raw = UnsafeMutableRawPointer?
    typealias ConstRaw = UnsafeRawPointer?
    typealias Status = Int32
    // (1) Every signature below is the one in cudnn_graph.h, cudnn_ops.h, cudnn_cnn.h and
    // cudnn_adv.h of cuDNN 9 (unchanged from cuDNN 8 for these functions). Enums are C `int`,
    // `size_t` is `Int`, descriptors and the handle are opaque pointers.
    typealias FVersion = @convention(c) () -> Int
    typealias FErrorString = @convention(c) (Status) -> UnsafePointer<CChar>?
    typealias FCreate = @convention(c) (UnsafeMutablePointer<Handle>) -> Status
    typealias FDestroy = @convention(c) (Handle) -> Status
    typealias FSetStream = @convention(c) (Handle, CUHandle?) -> Status
    // cudnnSetTensorNdDescriptor(desc, dataType, nbDims, dimA[], strideA[])
    typealias FSetTensorNd = @convention(c) (Handle, Int32, Int32, UnsafePointer<Int32>, UnsafePointer<Int32>) -> Status
    // cudnnSetFilter4dDescriptor(desc, dataType, format, k, c, h, w)
    typealias FSetFilter4d = @convention(c) (Handle, Int32, Int32, Int32, Int32, Int32, Int32) -> Status
    // cudnnSetConvolution2dDescriptor(desc, pad_h, pad_w, u, v, dilation_h, dilation_w, mode, computeType)
    typealias FSetConv2d = @convention(c) (Handle, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) -> Status
    typealias FSetMathType = @convention(c) (Handle, Int32) -> Status
    // cudnnFind…AlgorithmEx(handle, a, aPtr, b, bPtr, conv, out, outPtr, requested, &returned, perf, workspace, bytes):
    // forward (x, w → y), backward data (w, dy → dx), backward filter (x, dy → dw) share this shape.
    typealias FFindEx = @convention(c) (Handle, Handle, ConstRaw, Handle, ConstRaw, Handle, Handle, Raw, Int32,
                                        UnsafeMutablePointer<Int32>, Raw, Raw, Int) -> Status
    // cudnnConvolutionForward(handle, alpha, xDesc, x, wDesc, w, conv, algo, ws, wsBytes, beta, yDesc, y); the two
    // backward calls have the same shape: (w, dy → dx) and (x, dy → dw).
    typealias FConvolve = @convention(c) (Handle, ConstRaw, Handle, ConstRaw, Handle, ConstRaw, Handle, Int32, Raw, Int,
                                          ConstRaw, Handle, Raw) -> Status
    // cudnnSetDropoutDescriptor(desc, handle, dropout, states, stateBytes, seed)
    typealias FSetDropout = @convention(c) (Handle, Handle, Float, Raw, Int, UInt64) -> Status
    // cudnnSetRNNDescriptor_v8(desc, algo, cellMode, biasMode, dirMode, inputMode, dataType, mathPrec, mathType,
    // inputSize, hiddenSize, projSize, numLayers, dropoutDesc, auxFlags)
    typealias FSetRNN = @convention(c) (Handle, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
                                        Int32, Handle, UInt32) -> Status
    // cudnnSetRNNDataDescriptor(desc, dataType, layout, maxSeqLength, batchSize, vectorSize, seqLengthArray[], paddingFill)
    typealias FSetRNNData = @convention(c) (Handle, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Int32>, Raw) -> Status
    typealias FWeightSpaceSize = @convention(c) (Handle, Handle, UnsafeMutablePointer<Int>) -> Status
    // cudnnGetRNNTempSpaceSizes(handle, rnn, fwdMode, xDesc, &workSpaceSize, &reserveSpaceSize)
    typealias FTempSpaceSizes = @convention(c) (Handle, Handle, Int32, Handle, UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> Status
    // cudnnGetRNNWeightParams(handle, rnn, pseudoLayer, weightSpaceSize, weightSpace, linLayerID, mDesc, &mAddr, bDesc, &bAddr)
    typealias FWeightParams = @convention(c) (Handle, Handle, Int32, Int, ConstRaw, Int32, Handle, UnsafeMutablePointer<Raw>,
                                              Handle, UnsafeMutablePointer<Raw>) -> Status
    typealias FBuildDynamic = @convention(c) (Handle, Handle, Int32) -> Status
    // cudnnRNNForward(handle, rnn, fwdMode, devSeqLengths, xDesc, x, yDesc, y, hDesc, hx, hy, cDesc, cx, cy,
    // weightSpaceSize, weightSpace, workSpaceSize, workSpace, reserveSpaceSize, reserveSpace)
    typealias FRNNForward = @convention(c) (Handle, Handle, Int32, ConstRaw, Handle, ConstRaw, Handle, Raw, Handle, ConstRaw, Raw,
                                            Handle, ConstRaw, Raw, Int, ConstRaw, Int, Raw, Int, Raw) -> Status
    // cudnnRNNBackwardData_v8(handle, rnn, devSeqLengths, yDesc, y, dy, xDesc, dx, hDesc, hx, dhy, dhx, cDesc, cx, dcy, dcx,
    // weightSpaceSize, weightSpace, workSpaceSize, workSpace, reserveSpaceSize, reserveSpace)
    typealias FRNNBackwardData = @convention(c) (Handle, Handle, ConstRaw, Handle, ConstRaw, ConstRaw, Handle, Raw, Handle, ConstRaw,
                                                 ConstRaw, Raw, Handle, ConstRaw, ConstRaw, Raw, Int, ConstRaw, Int, Raw, Int, Raw) -> Status
    // cudnnRNNBackwardWeights_v8(handle, rnn, addGrad, devSeqLengths, xDesc, x, hDesc, hx, yDesc, y,
    // weightSpaceSize, dweightSpace, workSpaceSize, workSpace, reserveSpaceSize, reserveSpace)
    typealias FRNNBackwardWeights = @convention(c) (Handle, Handle, Int32, ConstRaw, Handle, ConstRaw, Handle, ConstRaw, Handle,
                                                    ConstRaw, Int, Raw, Int, Raw, Int, Raw) -> Status

    // MARK: Enum values

    // (2) Enum values from the cuDNN 9 headers (cudnn_graph.h for data and math types, cudnn_cnn.h,
    // cudnn_adv.h); each was checked against two independent copies of the headers.
    enum DataType: Int32 { case float = 0, half = 2, bfloat16 = 9 }
    enum MathType: Int32 { case `default` = 0, tensorOp = 1, tensorOpAllowConversion = 2, fma = 3 }
    static let formatNCHW: Int32 = 0          // CUDNN_TENSOR_NCHW
    static let crossCorrelation: Int32 = 1    // CUDNN_CROSS_CORRELATION (what deep-learning "convolution" means)
    enum RNNAlgorithm: Int32, CaseIterable { case standard = 0, persistStatic = 1, persistDynamic = 2 }
    static let lstmMode: Int32 = 2            // CUDNN_LSTM
    static let doubleBias: Int32 = 2          // CUDNN_RNN_DOUBLE_BIAS
    static let unidirectional: Int32 = 0      // CUDNN_UNIDIRECTIONAL
    static let linearInput: Int32 = 0         // CUDNN_LINEAR_INPUT
    static let seqMajorUnpacked: Int32 = 0    // CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED
    static let forwardTraining: Int32 = 1     // CUDNN_FWD_MODE_TRAINING
    static let gradientAdd: Int32 = 0         // CUDNN_WGRAD_MODE_ADD (the only mode cudnnRNNBackwardWeights_v8 takes)

    struct Table {
        let path: String
        let version: FVersion, errorString: FErrorString, create: FCreate, destroy: FDestroy, setStream: FSetStream
        let createTensor: FCreate, destroyTensor: FDestroy, setTensorNd: FSetTensorNd
        let createFilter: FCreate, destroyFilter: FDestroy, setFilter4d: FSetFilter4d
        let createConvolution: FCreate, destroyConvolution: FDestroy, setConvolution2d: FSetConv2d, setConvolutionMath: FSetMathType
        let findForward: FFindEx, findBackwardData: FFindEx, findBackwardFilter: FFindEx
        let forward: FConvolve, backwardData: FConvolve, backwardFilter: FConvolve
        let createDropout: FCreate, destroyDropout: FDestroy, setDropout: FSetDropout
        let createRNN: FCreate, destroyRNN: FDestroy, setRNN: FSetRNN
        let createRNNData: FCreate, destroyRNNData: FDestroy, setRNNData: FSetRNNData
        let weightSpaceSize: FWeightSpaceSize, tempSpaceSizes: FTempSpaceSizes, weightParams: FWeightParams, buildDynamic: FBuildDynamic
        let rnnForward: FRNNForward, rnnBackwardData: FRNNBackwardData, rnnBackwardWeights: FRNNBackwardWeights
    }

    public static let names = ["libcudnn.so.9"]
    static let hint = "Optional: without it convolutions are im2col + cuBLAS and the LSTM runs step by step (`pip install nvidia-cudnn-cu13`)."
    /// The sub-libraries of cuDNN 9, in the order of their dependencies.
    static let parts = ["graph", "engines_precompiled", "engines_runtime_compiled", "heuristic", "ops", "cnn", "adv"]

    private static let loaded: Result<Table, CUDAError> = {
        do throws(CUDAError) {
            let (main, path) = try NativeLibrary.open(names: names, what: "cuDNN", hint: hint)
            var handles = [main]
            for part in parts {
                if let (h, _) = try? NativeLibrary.open(names: ["libcudnn_\(part).so.9"], what: "cuDNN \(part)", hint: hint) { handles.append(h) }
            }
            func f<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T {
                for h in handles { if let s = NativeLibrary.optionalSymbol(h, name, as: t) { return s } }
                throw .symbolMissing(library: "libcudnn", symbol: name)
            }
            return .success(Table(
                path: path, version: try f("cudnnGetVersion", FVersion.self), errorString: try f("cudnnGetErrorString", FErrorString.self),
                create: try f("cudnnCreate", FCreate.self), destroy: try f("cudnnDestroy", FDestroy.self),
                setStream: try f("cudnnSetStream", FSetStream.self),
                createTensor: try f("cudnnCreateTensorDescriptor", FCreate.self), destroyTensor: try f("cudnnDestroyTensorDescriptor", FDestroy.self),
                setTensorNd: try f("cudnnSetTensorNdDescriptor", FSetTensorNd.self),
                createFilter: try f("cudnnCreateFilterDescriptor", FCreate.self), destroyFilter: try f("cudnnDestroyFilterDescriptor", FDestroy.self),
                setFilter4d: try f("cudnnSetFilter4dDescriptor", FSetFilter4d.self),
                createConvolution: try f("cudnnCreateConvolutionDescriptor", FCreate.self),
                destroyConvolution: try f("cudnnDestroyConvolutionDescriptor", FDestroy.self),
                setConvolution2d: try f("cudnnSetConvolution2dDescriptor", FSetConv2d.self),
                setConvolutionMath: try f("cudnnSetConvolutionMathType", FSetMathType.self),
                findForward: try f("cudnnFindConvolutionForwardAlgorithmEx", FFindEx.self),
                findBackwardData: try f("cudnnFindConvolutionBackwardDataAlgorithmEx", FFindEx.self),
                findBackwardFilter: try f("cudnnFindConvolutionBackwardFilterAlgorithmEx", FFindEx.self),
                forward: try f("cudnnConvolutionForward", FConvolve.self), backwardData: try f("cudnnConvolutionBackwardData", FConvolve.self),
                backwardFilter: try f("cudnnConvolutionBackwardFilter", FConvolve.self),
                createDropout: try f("cudnnCreateDropoutDescriptor", FCreate.self), destroyDropout: try f("cudnnDestroyDropoutDescriptor", FDestroy.self),
                setDropout: try f("cudnnSetDropoutDescriptor", FSetDropout.self),
                createRNN: try f("cudnnCreateRNNDescriptor", FCreate.self), destroyRNN: try f("cudnnDestroyRNNDescriptor", FDestroy.self),
                setRNN: try f("cudnnSetRNNDescriptor_v8", FSetRNN.self),
                createRNNData: try f("cudnnCreateRNNDataDescriptor", FCreate.self), destroyRNNData: try f("cudnnDestroyRNNDataDescriptor", FDestroy.self),
                setRNNData: try f("cudnnSetRNNDataDescriptor", FSetRNNData.self),
                weightSpaceSize: try f("cudnnGetRNNWeightSpaceSize", FWeightSpaceSize.self),
                tempSpaceSizes: try f("cudnnGetRNNTempSpaceSizes", FTempSpaceSizes.self),
                weightParams: try f("cudnnGetRNNWeightParams", FWeightParams.self), buildDynamic: try f("cudnnBuildRNNDynamic", FBuildDynamic.self),
                rnnForward: try f("cudnnRNNForward", FRNNForward.self), rnnBackwardData: try f("cudnnRNNBackwardData_v8", FRNNBackwardData.self),
                rnnBackwardWeights: try f("cudnnRNNBackwardWeights_v8", FRNNBackwardWeights.self)))
        } catch let error { return .failure(error) }
    }()

    /// Whether `TANDEM_CUDNN=0` turns cuDNN off (for side-by-side runs of the two paths).
    public static var disabledByEnvironment: Bool { getenv("TANDEM_CUDNN").map { String(cString: $0) == "0" } ?? false }

    /// Where cuDNN was found and its version (`major.minor.patch`), with every entry point the engine uses.
    public static func library() throws(CUDAError) -> (path: String, version: String) {
        let t = try loaded.get()
        let v = t.version()
        return (t.path, "\(v / 10000).\(v % 10000 / 100).\(v % 100)")
    }

    let table: Table
    let handle: Handle

    /// A handle whose work is queued on `stream` (so it is ordered with the rest of the step and captured in its graph).
    init(stream: CUHandle?) throws(CUDAError) {
        let t = try Self.loaded.get()
        var h: Handle = nil
        try Self.check(t, t.create(&h), "cudnnCreate")
        table = t
        handle = h
        try check(table.setStream(h, stream), "cudnnSetStream")
    }

    deinit { _ = table.destroy(handle) }

    /// The one choke point for cuDNN return codes: 0 is success, anything else a typed error with cuDNN's own name for it.
    func check(_ status: Status, _ function: @autoclosure () -> String) throws(CUDAError) {
        try Self.check(table, status, function())
    }

    static func check(_ table: Table, _ status: Status, _ function: @autoclosure () -> String) throws(CUDAError) {
        guard status != 0 else { return }
        let message = table.errorString(status).map { String(cString: $0) } ?? "CUDNN_STATUS \(status)"
        throw .call(library: "libcudnn", function: function(), code: status, message: message)
    }

    static func dataType(_ p: GPUPrecision) -> DataType {
        switch p {
        case .fp32, .tf32: .float
        case .bf16: .bfloat16
        case .fp16: .half
        }
    }

    /// True fp32 stays on the FMA units (cuDNN's default math would allow tf32 on this card); tf32 and
    /// the 16-bit types may use tensor cores.
    static func mathType(_ p: GPUPrecision) -> MathType { p == .fp32 ? .fma : .tensorOp }

    // MARK: Descriptors

    /// An owned cuDNN descriptor, destroyed with its owner.
    final class Descriptor {
        let raw: Handle
        let destroy: FDestroy
        init(_ dnn: CuDNN, create: FCreate, destroy: FDestroy, _ what: String) throws(CUDAError) {
            var d: Handle = nil
            try dnn.check(create(&d), "cudnnCreate\(what)Descriptor")
            raw = d
            self.destroy = destroy
        }
        deinit { _ = destroy(raw) }
    }

    /// A packed tensor of `dims` (outermost first) in `type`.
    func tensor(_ dims: [Int], _ type: DataType) throws(CUDAError) -> Descriptor {
        let d = try Descriptor(self, create: table.createTensor, destroy: table.destroyTensor, "Tensor")
        var strides = [Int32](repeating: 1, count: dims.count)
        for i in stride(from: dims.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * Int32(dims[i + 1]) }
        let dims32 = dims.map { Int32($0) }
        try check(table.setTensorNd(d.raw, type.rawValue, Int32(dims.count), dims32, strides), "cudnnSetTensorNdDescriptor(\(dims))")
        return d
    }

    /// A filter `[out, in, h, w]` (PyTorch's and Tandem's convolution weight layout).
    func filter(out: Int, in cin: Int, h: Int, w: Int, _ type: DataType) throws(CUDAError) -> Descriptor {
        let d = try Descriptor(self, create: table.createFilter, destroy: table.destroyFilter, "Filter")
        try check(table.setFilter4d(d.raw, type.rawValue, Self.formatNCHW, Int32(out), Int32(cin), Int32(h), Int32(w)),
                  "cudnnSetFilter4dDescriptor")
        return d
    }

    /// A 2-D cross-correlation with `pad` on every side, stride 1, accumulating in fp32.
    func convolution(pad: Int, math: MathType) throws(CUDAError) -> Descriptor {
        let d = try Descriptor(self, create: table.createConvolution, destroy: table.destroyConvolution, "Convolution")
        try check(table.setConvolution2d(d.raw, Int32(pad), Int32(pad), 1, 1, 1, 1, Self.crossCorrelation, DataType.float.rawValue),
                  "cudnnSetConvolution2dDescriptor")
        try check(table.setConvolutionMath(d.raw, math.rawValue), "cudnnSetConvolutionMathType")
        return d
    }
}

/// Device pointers as cuDNN takes them.
@inline(__always) func raw(_ p: DevicePointer) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt(p)) }
@inline(__always) func constRaw(_ p: DevicePointer) -> UnsafeRawPointer? { UnsafeRawPointer(bitPattern: UInt(p)) }
