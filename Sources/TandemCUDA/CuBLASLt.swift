#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// cuBLASLt (`libcublasLt`) opened at run time: one handle per context and `cublasLtMatmul` with the
/// epilogues the engine fuses into a GEMM: a bias added to the output (a projection's forward) and the
/// bias gradient made from the GEMM's own operand (a layer's weight gradient `dyᵀ · x` also sums `dy`
/// over the batch).
///
/// Every distinct call (shape, leading dimensions, types, compute type, epilogue, pointer alignments,
/// workspace size) is planned once: descriptors, layouts and the algorithm the heuristic picks are kept,
/// so later calls only set the bias pointer and queue the GEMM (no heuristic, no allocation, no sync:
/// CUDA-graph capturable). A call cuBLASLt has no algorithm for is remembered as refused and the caller
/// computes it another way (``plan(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:types:compute:epilogue:workspaceBytes:)``
/// returns nil).
///
/// Sources, cited as (n) below: (1) `cublasLt.h` of CUDA 12.6 (the cuBLASLt API and enum values have not
/// changed since cuBLASLt 11.x; `libcublasLt.so.13` exports the same names); (2) NVIDIA's nvmath-python
/// (`nvmath/linalg/_internal/epilog_protocol.py` and its epilogue tests), for the documented limits of
/// the bias epilogues: a bias type other than D's from cuBLASLt 11.11.3, `k = 1` refused by BGRADA/BGRADB
/// before 12.3.4, bias gradients in D's type.
public final class CuBLASLt: @unchecked Sendable {
    // Safe: one instance per context, used from the thread that drives that context's stream.

    // (1) cublasStatus_t cublasLtCreate(cublasLtHandle_t*); cublasLtDestroy(cublasLtHandle_t), and the
    // destroy functions of descriptors, layouts and preferences, each taking the object alone.
    typealias FCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    typealias FDestroy = @convention(c) (OpaquePointer?) -> Int32
    // (1) size_t cublasLtGetVersion(void): major·10000 + minor·100 + patch.
    typealias FVersion = @convention(c) () -> Int
    // (1) cublasLtMatmulDescCreate(cublasLtMatmulDesc_t*, cublasComputeType_t computeType, cudaDataType_t scaleType).
    typealias FDescCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, Int32) -> Int32
    // (1) cublasLtMatmulDescSetAttribute(desc, cublasLtMatmulDescAttributes_t, const void* buf, size_t sizeInBytes)
    // and cublasLtMatmulPreferenceSetAttribute(pref, cublasLtMatmulPreferenceAttributes_t, const void*, size_t):
    // sizeInBytes must equal the attribute's own size, else CUBLAS_STATUS_INVALID_VALUE.
    typealias FSetAttribute = @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer?, Int) -> Int32
    // (1) cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t*, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld).
    typealias FLayoutCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, UInt64, UInt64, Int64) -> Int32
    // (1) cublasLtMatmulAlgoGetHeuristic(handle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, preference,
    // int requestedAlgoCount, cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount).
    typealias FHeuristic = @convention(c) (OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?,
                                           OpaquePointer?, OpaquePointer?, Int32, UnsafeMutableRawPointer?,
                                           UnsafeMutablePointer<Int32>) -> Int32
    // (1) cublasLtMatmul(handle, computeDesc, const void* alpha, const void* A, Adesc, const void* B, Bdesc,
    // const void* beta, const void* C, Cdesc, void* D, Ddesc, const cublasLtMatmulAlgo_t* algo,
    // void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream).
    typealias FMatmul = @convention(c) (OpaquePointer?, OpaquePointer?, UnsafeRawPointer, UnsafeRawPointer?, OpaquePointer?,
                                        UnsafeRawPointer?, OpaquePointer?, UnsafeRawPointer, UnsafeRawPointer?, OpaquePointer?,
                                        UnsafeMutableRawPointer?, OpaquePointer?, UnsafeRawPointer?, UnsafeMutableRawPointer?,
                                        Int, CUHandle?) -> Int32
    // (1) cublasLtMatmulAlgoCapGetAttribute(const cublasLtMatmulAlgo_t*, cublasLtMatmulAlgoCapAttributes_t, void* buf,
    // size_t sizeInBytes, size_t* sizeWritten): with buf NULL and size 0, sizeWritten says how many bytes the value has.
    typealias FCapGet = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, Int, UnsafeMutablePointer<Int>) -> Int32
    // (1) cublasLtMatmulAlgoConfigSetAttribute(cublasLtMatmulAlgo_t*, attr, const void* buf, size_t sizeInBytes) and
    // cublasLtMatmulAlgoConfigGetAttribute(const cublasLtMatmulAlgo_t*, attr, void* buf, size_t sizeInBytes, size_t* sizeWritten).
    typealias FConfigSet = @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafeRawPointer?, Int) -> Int32
    typealias FConfigGet = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, Int, UnsafeMutablePointer<Int>) -> Int32
    // (1) cublasLtMatmulAlgoCheck(handle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, const cublasLtMatmulAlgo_t* algo,
    // cublasLtMatmulHeuristicResult_t* result): whether the configured algorithm runs this call, and its workspace.
    typealias FAlgoCheck = @convention(c) (OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?,
                                           OpaquePointer?, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32

    // (1) cublasLtMatmulDescAttributes_t: TRANSA = 3 and TRANSB = 4 (int32_t cublasOperation_t: N 0, T 1),
    // EPILOGUE = 7 (uint32_t cublasLtEpilogue_t), BIAS_POINTER = 8 (a device pointer; the bias gradient's
    // output for the BGRAD epilogues), SM_COUNT_TARGET = 15 (int32_t; default 0: every multiprocessor), BIAS_DATA_TYPE
    // = 26 (int32_t cudaDataType; default -1: D's type).
    static let descTransA: Int32 = 3, descTransB: Int32 = 4, descEpilogue: Int32 = 7, descBiasPointer: Int32 = 8,
               descSMCountTarget: Int32 = 15, descBiasType: Int32 = 26
    // (1) cublasLtMatmulPreferenceAttributes_t: MAX_WORKSPACE_BYTES = 1 (uint64_t; default 0, no workspace),
    // MIN_ALIGNMENT_A/B/C/D_BYTES = 5/6/7/8 (uint32_t; default 256, algorithms may assume that much),
    // IMPL_MASK = 12 (uint64_t cublasLtNumericalImplFlags_t; bits 0xfe are the tensor-core kinds HMMA, IMMA, DMMA…).
    static let prefWorkspace: Int32 = 1, prefAlignA: Int32 = 5, prefAlignB: Int32 = 6, prefAlignC: Int32 = 7,
               prefAlignD: Int32 = 8, prefImplMask: Int32 = 12
    static let tensorOpImplementations: UInt64 = 0xfe
    // (1) cublasLtMatmulHeuristicResult_t: cublasLtMatmulAlgo_t algo (uint64_t data[8]: 64 bytes), size_t
    // workspaceSize at 64, cublasStatus_t state at 72, float wavesCount at 76, int reserved[4]: 96 bytes.
    static let algoBytes = 64, resultBytes = 96, resultWorkspaceOffset = 64, resultStateOffset = 72
    /// Heuristic results asked for: without a tuner the first usable one is kept, with one each is timed.
    public static let candidates = 32
    /// Configurations a tuner times after the heuristic's list (other tile sizes and stage counts of its algorithms), and
    /// so the longest list a tuning record's choice may index.
    public static let variantLimit = 256, longestList = candidates + variantLimit
    // (1) cublasLtMatmulAlgoConfigAttributes_t: ID = 0 (int32_t), TILE_ID = 1 and STAGES_ID = 6 (uint32_t; 0 is
    // UNDEFINED); cublasLtMatmulAlgoCapAttributes_t: TILE_IDS = 6 and STAGES_IDS = 13 (uint32_t arrays),
    // NUMERICAL_IMPL_FLAGS = 15 (uint64_t cublasLtNumericalImplFlags_t).
    static let configID: Int32 = 0, configTile: Int32 = 1, configStages: Int32 = 6, capTiles: Int32 = 6, capStages: Int32 = 13,
               capImplementation: Int32 = 15
    /// `TANDEM_GEMM_VARIANTS=0` keeps a tuner to the heuristic's list.
    public static var variantsByEnvironment: Bool { getenv("TANDEM_GEMM_VARIANTS").map { String(cString: $0) != "0" } ?? true }

    /// What the GEMM does besides `C = op(A) · op(B)` (row-major terms, as ``CuBLAS/gemm(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:types:compute:alpha:beta:batch:strides:)``).
    public enum Epilogue: Sendable, Equatable {
        case none
        /// `C[i, j] += bias[j]`: `n` values of `type` (a layer's bias on its outputs).
        /// (1) CUBLASLT_EPILOGUE_BIAS = 4: a packed vector as long as D's rows (column-major D is row-major
        /// Cᵀ, so its rows are C's columns), broadcast over D's columns.
        case bias(DevicePointer, type: CuBLAS.DataType)
        /// `C[i, j] = max(0, C[i, j] + bias[j])`: the bias as for ``bias(_:type:)``, then ReLU.
        /// (1) CUBLASLT_EPILOGUE_RELU_BIAS = 6 (RELU = 2 | BIAS = 4).
        case biasReLU(DevicePointer, type: CuBLAS.DataType)
        /// `gradient[i] = Σₗ op(A)[i, l]`, `m` values in C's type, written over (not added to) what was there:
        /// with `op(A) = dyᵀ` the bias gradient of the layer whose weight gradient is C.
        /// (1) CUBLASLT_EPILOGUE_BGRADB = 512: the reduction of cuBLASLt's B (here the row-major A) over the
        /// GEMM's k, as long as D's columns (C's rows); (2) its type is D's.
        case biasGradient(DevicePointer)

        /// (1) cublasLtEpilogue_t: DEFAULT = 1, RELU_BIAS = 6, BIAS = 4, BGRADA = 256, BGRADB = 512.
        var code: UInt32 {
            switch self {
            case .none: 1
            case .bias: 4
            case .biasReLU: 6
            case .biasGradient: 512
            }
        }
        var pointer: DevicePointer {
            switch self {
            case .none: 0
            case .bias(let p, _), .biasReLU(let p, _), .biasGradient(let p): p
            }
        }
    }

    struct Table {
        let path: String
        let create: FCreate, destroy: FDestroy, version: FVersion
        let descCreate: FDescCreate, descDestroy: FDestroy, descSet: FSetAttribute
        let layoutCreate: FLayoutCreate, layoutDestroy: FDestroy
        let prefCreate: FCreate, prefDestroy: FDestroy, prefSet: FSetAttribute
        let heuristic: FHeuristic, matmul: FMatmul
        /// What configures an algorithm by hand: nil when the library lacks any of it (the tuner keeps to the heuristic).
        let configure: (capGet: FCapGet, set: FConfigSet, get: FConfigGet, check: FAlgoCheck)?
    }

    public static let names = ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]

    /// `TANDEM_CUBLASLT=0` keeps every GEMM on cuBLAS with the bias work in separate launches.
    public static var disabledByEnvironment: Bool { getenv("TANDEM_CUBLASLT").map { String(cString: $0) == "0" } ?? false }

    private static let loaded: Result<Table, CUDAError> = {
        do throws(CUDAError) {
            let (h, path) = try NativeLibrary.open(names: names, what: "cuBLASLt", hint: CuBLAS.hint)
            func f<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T { try NativeLibrary.symbol(h, name, library: "libcublasLt", as: t) }
            return .success(Table(
                path: path, create: try f("cublasLtCreate", FCreate.self), destroy: try f("cublasLtDestroy", FDestroy.self),
                version: try f("cublasLtGetVersion", FVersion.self),
                descCreate: try f("cublasLtMatmulDescCreate", FDescCreate.self),
                descDestroy: try f("cublasLtMatmulDescDestroy", FDestroy.self),
                descSet: try f("cublasLtMatmulDescSetAttribute", FSetAttribute.self),
                layoutCreate: try f("cublasLtMatrixLayoutCreate", FLayoutCreate.self),
                layoutDestroy: try f("cublasLtMatrixLayoutDestroy", FDestroy.self),
                prefCreate: try f("cublasLtMatmulPreferenceCreate", FCreate.self),
                prefDestroy: try f("cublasLtMatmulPreferenceDestroy", FDestroy.self),
                prefSet: try f("cublasLtMatmulPreferenceSetAttribute", FSetAttribute.self),
                heuristic: try f("cublasLtMatmulAlgoGetHeuristic", FHeuristic.self),
                matmul: try f("cublasLtMatmul", FMatmul.self),
                configure: try? (f("cublasLtMatmulAlgoCapGetAttribute", FCapGet.self), f("cublasLtMatmulAlgoConfigSetAttribute", FConfigSet.self),
                                 f("cublasLtMatmulAlgoConfigGetAttribute", FConfigGet.self), f("cublasLtMatmulAlgoCheck", FAlgoCheck.self))))
        } catch let error { return .failure(error) }
    }()

    /// Where cuBLASLt was found and its version, without creating a handle.
    public static func library() throws(CUDAError) -> (path: String, version: String) {
        let t = try loaded.get()
        let v = t.version()
        return (t.path, "\(v / 10000).\(v / 100 % 100).\(v % 100)")
    }

    /// One planned call: its descriptors, layouts and algorithm, destroyed with it.
    public final class Plan {
        let table: Table
        let desc: OpaquePointer?, aLayout: OpaquePointer?, bLayout: OpaquePointer?, cLayout: OpaquePointer?
        /// The chosen `cublasLtMatmulAlgo_t`, 64 bytes passed by address to every call.
        let algo: UnsafeMutableRawPointer
        /// Workspace bytes the algorithm needs.
        public let workspaceBytes: Int
        let epilogue: UInt32
        /// The bias pointer the descriptor holds now (set again only when a call brings another).
        var bias: DevicePointer

        init(table: Table, desc: OpaquePointer?, layouts: (OpaquePointer?, OpaquePointer?, OpaquePointer?),
             algo: UnsafeMutableRawPointer, workspaceBytes: Int, epilogue: UInt32, bias: DevicePointer) {
            self.table = table
            self.desc = desc
            (aLayout, bLayout, cLayout) = layouts
            self.algo = algo
            self.workspaceBytes = workspaceBytes
            self.epilogue = epilogue
            self.bias = bias
        }

        deinit {
            _ = table.descDestroy(desc)
            for l in [aLayout, bLayout, cLayout] { _ = table.layoutDestroy(l) }
            algo.deallocate()
        }
    }

    /// What makes two calls share a plan.
    struct Key: Hashable {
        var transA: Bool, transB: Bool
        var m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
        var a: Int32, b: Int32, c: Int32, bias: Int32, compute: Int32
        var epilogue: UInt32
        var alignA: UInt32, alignB: UInt32, alignC: UInt32, alignBias: UInt32
        var workspaceBytes: Int
        /// The call adds to C (beta ≠ 0): its algorithms are timed doing so (reading C costs some of them much more).
        var addsC = false
        /// The multiprocessors the algorithms are chosen for, when fewer than the device's (0: all): the call leaves the
        /// others to work on another stream.
        var multiprocessors: Int32 = 0

        /// One line naming the call, as the tuning record keeps it.
        var kind: String {
            "\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k) ld \(lda),\(ldb),\(ldc) types \(a),\(b),\(c) bias \(bias) compute \(compute)"
                + " epilogue \(epilogue) align \(alignA),\(alignB),\(alignC),\(alignBias) workspace \(workspaceBytes)" + (addsC ? " adds C" : "")
                + (multiprocessors > 0 ? " multiprocessors \(multiprocessors)" : "")
        }
    }

    enum Entry {
        case ready(Plan)
        case refused(String)
        /// A tuner found the caller's other way faster.
        case otherWay
    }

    /// What a tuner chose for one call kind: the position in the list it timed (the heuristic's results, then their other
    /// configurations; -1: the caller's other way), how many algorithms were timed, and the times of the heuristic's
    /// first and of the choice (nil when read from the record).
    public struct Tuned: Sendable {
        public let kind: String, choice: Int, candidates: Int
        public let firstMs: Double?, chosenMs: Double?
    }
    /// Every choice a tuner made or read in this process, in order.
    public private(set) var tuned: [Tuned] = []
    let table: Table
    let handle: OpaquePointer?
    private var plans: [Key: Entry] = [:]
    /// Why each refused call was refused (for the self-test), by a short description of the call.
    public private(set) var refusals: [String: String] = [:]

    /// A handle (cuBLASLt takes its stream and workspace with every call).
    init() throws(CUDAError) {
        table = try Self.loaded.get()
        var h: OpaquePointer?
        try Self.check(table.create(&h), "cublasLtCreate")
        handle = h
    }

    deinit {
        plans.removeAll()
        _ = table.destroy(handle)
    }

    static func check(_ status: Int32, _ function: @autoclosure () -> String) throws(CUDAError) {
        guard status != 0 else { return }
        let names: [Int32: String] = [1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
                                      11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED",
                                      16: "LICENSE_ERROR"]
        throw .call(library: "libcublasLt", function: function(), code: status, message: "CUBLAS_STATUS_\(names[status] ?? "UNKNOWN")")
    }

    /// The alignment of a device address in bytes, up to the 256 cuBLASLt assumes by default.
    static func alignment(_ p: DevicePointer) -> UInt32 { p == 0 ? 256 : UInt32(min(256, 1 << p.trailingZeroBitCount)) }

    /// The plan of row-major `C[m, n] = op(A) · op(B)` with `epilogue`, made at the first call of its kind:
    /// nil when cuBLASLt offers no algorithm for it, or when `tuner` found the caller's other way faster (decided
    /// once, kept). Pointers count only through their alignment (and the bias pointer, which the heuristic reads for
    /// it). With a `tuner`, the heuristic's algorithms and their other configurations are timed on the operands `a`, `b`, `c` (and the bias) on
    /// `stream` with `workspace` (at least `workspaceBytes`), overwriting C, unless its record already holds the
    /// choice (see ``GEMMTuner``); `tuner` is asked for only when a plan is made. Without a tuner then, the plan takes
    /// the heuristic's first algorithm, unless `planUntimed` is false: then the call returns nil and plans nothing.
    ///
    /// cuBLASLt is column-major: row-major C is column-major Cᵀ, so the call is `Cᵀ = op(B)ᵀ · op(A)ᵀ`
    /// with the operands swapped (as ``CuBLAS``): cuBLASLt's A is our B, its B our A, its m our n.
    public func plan(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DevicePointer, lda: Int, b: DevicePointer, ldb: Int,
                     c: DevicePointer, ldc: Int, types: (a: CuBLAS.DataType, b: CuBLAS.DataType, c: CuBLAS.DataType),
                     compute: CuBLAS.Compute, epilogue: Epilogue, workspaceBytes: Int,
                     tuner: @autoclosure () -> GEMMTuner? = nil, stream: CUHandle? = nil, workspace: DevicePointer = 0,
                     planUntimed: Bool = true, addsC: Bool = false, multiprocessors: Int = 0) throws -> Plan? {
        let biasType: Int32
        switch epilogue {
        case .bias(_, let type), .biasReLU(_, let type): biasType = type.rawValue
        case .none, .biasGradient: biasType = -1
        }
        let key = Key(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
                      a: types.a.rawValue, b: types.b.rawValue, c: types.c.rawValue, bias: biasType, compute: compute.rawValue,
                      epilogue: epilogue.code, alignA: Self.alignment(a), alignB: Self.alignment(b), alignC: Self.alignment(c),
                      alignBias: Self.alignment(epilogue.pointer), workspaceBytes: workspaceBytes, addsC: addsC,
                      multiprocessors: Int32(clamping: max(0, multiprocessors)))
        switch plans[key] {
        case .ready(let plan): return plan
        case .refused, .otherWay: return nil
        case nil: break
        }
        let tuner = tuner()
        if tuner == nil && !planUntimed { return nil }
        let entry = try makePlan(key, bias: epilogue.pointer,
                                 tuning: tuner.map { ($0, (a: a, b: b, c: c), stream, workspace) })
        plans[key] = entry
        switch entry {
        case .ready(let plan): return plan
        case .otherWay: return nil
        case .refused(let why):
            refusals["\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k) epilogue \(key.epilogue) types \(key.a)/\(key.b)/\(key.c)"] = why
            return nil
        }
    }

    /// The operands, stream and workspace a tuner times the candidates with.
    typealias Tuning = (tuner: GEMMTuner, operands: (a: DevicePointer, b: DevicePointer, c: DevicePointer), stream: CUHandle?,
                        workspace: DevicePointer)

    private func makePlan(_ key: Key, bias: DevicePointer, tuning: Tuning?) throws -> Entry {
        if key.epilogue == Epilogue.biasGradient(0).code && (key.k < 2 || key.m < 2) {
            // (2) BGRADA/BGRADB with k = 1 are refused before cuBLASLt 12.3.4 (and gave wrong sums in older
            // ones); a one-element bias gradient is not worth a special case either.
            return .refused("bias gradient over k \(key.k), length \(key.m): left to cuBLAS and a kernel")
        }
        var desc: OpaquePointer?
        // Scale type fp32 (cudaDataType CUDA_R_32F = 0) for both compute types used (32F, 32F_FAST_TF32).
        try Self.check(table.descCreate(&desc, key.compute, 0), "cublasLtMatmulDescCreate")
        var layouts: [OpaquePointer?] = []
        var pref: OpaquePointer?
        var results: UnsafeMutableRawPointer?, variantStorage: UnsafeMutableRawPointer?
        var keep = false
        defer {
            if !keep {
                _ = table.descDestroy(desc)
                for l in layouts { _ = table.layoutDestroy(l) }
            }
            if pref != nil { _ = table.prefDestroy(pref) }
            results?.deallocate()
            variantStorage?.deallocate()
        }
        func set<T>(_ attribute: Int32, _ value: T, _ name: String) throws(CUDAError) {
            var v = value
            let status = withUnsafeBytes(of: &v) { table.descSet(desc, attribute, $0.baseAddress, $0.count) }
            try Self.check(status, "cublasLtMatmulDescSetAttribute(\(name))")
        }
        // Swapped operands (see plan): cuBLASLt's A is the row-major B, transposed as B is.
        try set(Self.descTransA, Int32(key.transB ? 1 : 0), "TRANSA")
        try set(Self.descTransB, Int32(key.transA ? 1 : 0), "TRANSB")
        try set(Self.descEpilogue, key.epilogue, "EPILOGUE")
        if key.epilogue != Epilogue.none.code {
            // (1) The heuristic does not read the bias, but takes the pointer's alignment from its value.
            try set(Self.descBiasPointer, bias, "BIAS_POINTER")
        }
        if key.multiprocessors > 0 { try set(Self.descSMCountTarget, key.multiprocessors, "SM_COUNT_TARGET") }
        if key.bias >= 0 {
            // (2) A bias type other than D's (fp32 bias, 16-bit D) is accepted from cuBLASLt 11.11.3.
            try set(Self.descBiasType, key.bias, "BIAS_DATA_TYPE")
        }
        // Layouts of the stored (not transposed) column-major matrices: the row-major B [k, n] (or [n, k] when
        // transposed) is column-major n × k (k × n); the row-major A [m, k] ([k, m]) is k × m (m × k); C is n × m.
        func layout(_ type: Int32, _ rows: Int, _ cols: Int, _ ld: Int) throws(CUDAError) -> OpaquePointer? {
            var l: OpaquePointer?
            try Self.check(table.layoutCreate(&l, type, UInt64(rows), UInt64(cols), Int64(ld)),
                           "cublasLtMatrixLayoutCreate(\(rows)×\(cols), ld \(ld))")
            layouts.append(l)
            return l
        }
        let ltA = try key.transB ? layout(key.b, key.k, key.n, key.ldb) : layout(key.b, key.n, key.k, key.ldb)
        let ltB = try key.transA ? layout(key.a, key.m, key.k, key.lda) : layout(key.a, key.k, key.m, key.lda)
        let ltC = try layout(key.c, key.n, key.m, key.ldc)
        try Self.check(table.prefCreate(&pref), "cublasLtMatmulPreferenceCreate")
        func prefer<T>(_ attribute: Int32, _ value: T, _ name: String) throws(CUDAError) {
            var v = value
            let status = withUnsafeBytes(of: &v) { table.prefSet(pref, attribute, $0.baseAddress, $0.count) }
            try Self.check(status, "cublasLtMatmulPreferenceSetAttribute(\(name))")
        }
        try prefer(Self.prefWorkspace, UInt64(key.workspaceBytes), "MAX_WORKSPACE_BYTES")
        // The real alignments (cuBLASLt's A is our B), so no algorithm assumes more than the buffers have.
        try prefer(Self.prefAlignA, key.alignB, "MIN_ALIGNMENT_A_BYTES")
        try prefer(Self.prefAlignB, key.alignA, "MIN_ALIGNMENT_B_BYTES")
        try prefer(Self.prefAlignC, key.alignC, "MIN_ALIGNMENT_C_BYTES")
        try prefer(Self.prefAlignD, key.alignC, "MIN_ALIGNMENT_D_BYTES")
        let trueFP32 = key.compute == CuBLAS.Compute.f32.rawValue && key.a == CuBLAS.DataType.f32.rawValue && key.b == CuBLAS.DataType.f32.rawValue
        if trueFP32 {
            // True fp32: COMPUTE_32F already excludes tf32; the mask also keeps tensor-core kinds out.
            try prefer(Self.prefImplMask, ~Self.tensorOpImplementations, "IMPL_MASK")
        }
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.resultBytes * Self.candidates, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: Self.resultBytes * Self.candidates)
        results = raw
        var returned: Int32 = 0
        let status = table.heuristic(handle, desc, ltA, ltB, ltC, ltC, pref, Int32(Self.candidates), raw, &returned)
        if status == 15 || status == 7 {
            // CUBLAS_STATUS_NOT_SUPPORTED / INVALID_VALUE: no heuristic for this configuration.
            return .refused("cublasLtMatmulAlgoGetHeuristic: status \(status)")
        }
        try Self.check(status, "cublasLtMatmulAlgoGetHeuristic")
        // The usable results, in the heuristic's order: each algorithm's 64 bytes and the workspace it needs.
        let usable: [(algo: UnsafeMutableRawPointer, needs: Int)] = (0..<Int(returned)).compactMap { i in
            let r = raw + Self.resultBytes * i
            let state = r.load(fromByteOffset: Self.resultStateOffset, as: Int32.self)
            let needs = r.load(fromByteOffset: Self.resultWorkspaceOffset, as: Int.self)
            return state == 0 && needs <= key.workspaceBytes ? (r, needs) : nil
        }
        guard !usable.isEmpty else { return .refused("cublasLtMatmulAlgoGetHeuristic: no algorithm (\(returned) returned)") }
        var chosen = 0
        var list = usable
        if let tuning {
            if Self.variantsByEnvironment {
                let storage = UnsafeMutableRawPointer.allocate(byteCount: Self.algoBytes * Self.variantLimit, alignment: 16)
                variantStorage = storage
                list += variants(of: usable, storage: storage, workspaceBytes: key.workspaceBytes, desc: desc, layouts: (ltA, ltB, ltC),
                                 excluding: trueFP32 ? Self.tensorOpImplementations : 0)
            }
            let (tuner, operands, stream, workspace) = tuning
            // The list's length is part of the kind: a record made from a list of another length never applies.
            let kind = key.kind + " of \(list.count)" + (tuner.alternative == nil ? "" : " or other")
            func ptr(_ p: DevicePointer) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt(p)) }
            var one: Float = 1, beta: Float = key.addsC ? 1 : 0
            func run(_ i: Int) throws {
                let status = table.matmul(handle, desc, &one, ptr(operands.b), ltA, ptr(operands.a), ltB, &beta, ptr(operands.c), ltC,
                                          ptr(operands.c), ltC, list[i].algo, ptr(workspace), key.workspaceBytes, stream)
                try Self.check(status, "cublasLtMatmul (algorithm \(i) of \(list.count))")
            }
            // A kept algorithm is used if it still runs here; else the kind is timed again.
            if let kept = tuner.record?.choice(kind), kept < list.count, kept >= 0 || tuner.alternative != nil,
               kept < 0 || (try? run(kept)) != nil {
                chosen = kept
                tuned.append(Tuned(kind: kind, choice: kept, candidates: list.count, firstMs: nil, chosenMs: nil))
            } else {
                let timed = try tuner.choose(candidates: list.count, offered: usable.count, run: run)
                guard let timed else { return .refused("no algorithm of \(list.count) ran on the call's operands") }
                chosen = timed.choice
                func ms(_ t: Double?) -> String { t.map { String(format: "%.4f ms", $0) } ?? "failed" }
                tuner.record?.keep(kind, choice: chosen, note: "first \(ms(timed.firstMs)), chosen \(ms(timed.chosenMs)) of \(list.count)")
                tuned.append(Tuned(kind: kind, choice: chosen, candidates: list.count, firstMs: timed.firstMs, chosenMs: timed.chosenMs))
            }
            if chosen < 0 { return .otherWay }
        }
        let algo = UnsafeMutableRawPointer.allocate(byteCount: Self.algoBytes, alignment: 16)
        algo.copyMemory(from: list[chosen].algo, byteCount: Self.algoBytes)
        keep = true
        return .ready(Plan(table: table, desc: desc, layouts: (ltA, ltB, ltC), algo: algo, workspaceBytes: list[chosen].needs,
                           epilogue: key.epilogue, bias: bias))
    }

    /// Other configurations of the heuristic's algorithms, for a tuner to time after the heuristic's `list`: for the
    /// first result of each algorithm id, every tile size and stage count the algorithm reports, where
    /// `cublasLtMatmulAlgoCheck` accepts the configuration for this call within `workspaceBytes`, and the list does not
    /// hold it already. The heuristic ranks a few configurations by a model of the card; the others it never offers are
    /// sometimes faster (mlp-wide's 4096 × 4096 weight gradient in fp32: 9% with a smaller tile). The check does not
    /// read the preference, so a configuration whose numerical implementation has any of the bits `excluding` (the
    /// tensor-core kinds, for true fp32) is left out here. At most ``variantLimit``, in a fixed order (a tuning record
    /// keeps a position in the list), written to `storage`.
    private func variants(of list: [(algo: UnsafeMutableRawPointer, needs: Int)], storage: UnsafeMutableRawPointer, workspaceBytes: Int,
                          desc: OpaquePointer?, layouts: (a: OpaquePointer?, b: OpaquePointer?, c: OpaquePointer?), excluding: UInt64)
        -> [(algo: UnsafeMutableRawPointer, needs: Int)] {
        guard let c = table.configure else { return [] }
        func bytes(_ p: UnsafeRawPointer) -> [UInt8] { Array(UnsafeRawBufferPointer(start: p, count: Self.algoBytes)) }
        func value(_ algo: UnsafeRawPointer, _ attribute: Int32) -> UInt32? {
            var v: UInt32 = 0, written = 0
            return c.get(algo, attribute, &v, 4, &written) == 0 ? v : nil
        }
        // The values an array capability lists (its size asked for first) but UNDEFINED, or the algorithm's own value.
        func options(_ algo: UnsafeRawPointer, capability: Int32, current: Int32) -> [UInt32] {
            var size = 0
            if c.capGet(algo, capability, nil, 0, &size) == 0, size >= 4 {
                var values = [UInt32](repeating: 0, count: size / 4)
                if values.withUnsafeMutableBytes({ c.capGet(algo, capability, $0.baseAddress, $0.count, &size) }) == 0 {
                    let defined = values.filter { $0 != 0 }
                    if !defined.isEmpty { return defined }
                }
            }
            return value(algo, current).map { [$0] } ?? []
        }
        func implementation(_ algo: UnsafeRawPointer) -> UInt64? {
            var flags: UInt64 = 0, written = 0
            return c.capGet(algo, Self.capImplementation, &flags, 8, &written) == 0 ? flags : nil
        }
        let result = UnsafeMutableRawPointer.allocate(byteCount: Self.resultBytes, alignment: 16)
        defer { result.deallocate() }
        var seen = Set(list.map { bytes($0.algo) }), ids = Set<UInt32>()
        var found: [(algo: UnsafeMutableRawPointer, needs: Int)] = []
        for base in list {
            guard let id = value(base.algo, Self.configID), ids.insert(id).inserted else { continue }
            let stageOptions = options(base.algo, capability: Self.capStages, current: Self.configStages)
            for tile in options(base.algo, capability: Self.capTiles, current: Self.configTile) {
                for stages in stageOptions {
                    guard found.count < Self.variantLimit else { return found }
                    let algo = storage + Self.algoBytes * found.count
                    algo.copyMemory(from: base.algo, byteCount: Self.algoBytes)
                    var t = tile, st = stages
                    guard c.set(algo, Self.configTile, &t, 4) == 0, c.set(algo, Self.configStages, &st, 4) == 0,
                          seen.insert(bytes(algo)).inserted, excluding == 0 || implementation(algo).map({ $0 & excluding == 0 }) == true,
                          c.check(handle, desc, layouts.a, layouts.b, layouts.c, layouts.c, algo, result) == 0 else { continue }
                    let needs = result.load(fromByteOffset: Self.resultWorkspaceOffset, as: Int.self)
                    if needs <= workspaceBytes { found.append((algo, needs)) }
                }
            }
        }
        return found
    }

    /// Queues a planned call on `stream` with `workspace` (at least the plan's ``Plan/workspaceBytes``):
    /// `C = alpha · op(A) · op(B) + beta · C` (and the bias gradient, for that epilogue, overwritten). Graph-capturable.
    public func run(_ plan: Plan, a: DevicePointer, b: DevicePointer, c: DevicePointer, bias: DevicePointer,
                    stream: CUHandle?, workspace: DevicePointer, workspaceBytes: Int, alpha: Float = 1, beta: Float = 0) throws(CUDAError) {
        if plan.epilogue != Epilogue.none.code && bias != plan.bias {
            var p = bias
            let status = withUnsafeBytes(of: &p) { table.descSet(plan.desc, Self.descBiasPointer, $0.baseAddress, $0.count) }
            try Self.check(status, "cublasLtMatmulDescSetAttribute(BIAS_POINTER)")
            plan.bias = bias
        }
        func ptr(_ p: DevicePointer) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt(p)) }
        var scale = alpha, added = beta
        let status = withUnsafePointer(to: &scale) { alpha in
            withUnsafePointer(to: &added) { beta in
                table.matmul(handle, plan.desc, alpha, ptr(b), plan.aLayout, ptr(a), plan.bLayout, beta,
                             ptr(c), plan.cLayout, ptr(c), plan.cLayout, plan.algo, ptr(workspace), workspaceBytes, stream)
            }
        }
        try Self.check(status, "cublasLtMatmul")
    }

    /// ``plan(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:types:compute:epilogue:workspaceBytes:)`` and ``run(_:a:b:c:bias:stream:workspace:workspaceBytes:)``
    /// in one: false (nothing queued) when cuBLASLt refuses the call.
    @discardableResult
    public func matmul(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DevicePointer, lda: Int, b: DevicePointer, ldb: Int,
                       c: DevicePointer, ldc: Int, types: (a: CuBLAS.DataType, b: CuBLAS.DataType, c: CuBLAS.DataType),
                       compute: CuBLAS.Compute, epilogue: Epilogue, stream: CUHandle?, workspace: DevicePointer,
                       workspaceBytes: Int) throws -> Bool {
        guard let plan = try plan(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                                  types: types, compute: compute, epilogue: epilogue, workspaceBytes: workspaceBytes) else { return false }
        try run(plan, a: a, b: b, c: c, bias: epilogue.pointer, stream: stream, workspace: workspace, workspaceBytes: workspaceBytes)
        return true
    }
}
