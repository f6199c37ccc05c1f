/// cuBLAS (`libcublas`) opened at run time: the handle, its stream and workspace, and the
/// two GEMM entry points the engine uses (`cublasGemmEx`, `cublasGemmStridedBatchedEx`).
public final class CuBLAS: @unchecked Sendable {
    // Safe: one instance per context, used from the thread that drives that context's stream.
    typealias FCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    typealias FHandle = @convention(c) (OpaquePointer?) -> Int32
    typealias FSetStream = @convention(c) (OpaquePointer?, CUHandle?) -> Int32
    typealias FSetMath = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias FSetWorkspace = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int) -> Int32
    typealias FProperty = @convention(c) (Int32, UnsafeMutablePointer<Int32>) -> Int32
    // (1) cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta,
    // C, Ctype, ldc, computeType, algo) as in cublas_api.h of CUDA 12 and 13.
    typealias FGemmEx = @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer,
                                        UnsafeRawPointer?, Int32, Int32, UnsafeRawPointer?, Int32, Int32, UnsafeRawPointer,
                                        UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32) -> Int32
    // (2) cublasGemmStridedBatchedEx: as above with a long long stride after each matrix's
    // leading dimension and the batch count before computeType.
    typealias FGemmBatched = @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer,
                                             UnsafeRawPointer?, Int32, Int32, Int64, UnsafeRawPointer?, Int32, Int32, Int64,
                                             UnsafeRawPointer, UnsafeMutableRawPointer?, Int32, Int32, Int64, Int32, Int32, Int32) -> Int32

    /// Element types (`cudaDataType`).
    public enum DataType: Int32, Sendable { case f32 = 0, f16 = 2, bf16 = 14 }
    /// How fp32 products are computed (`cublasComputeType_t`): true fp32, or tf32 on tensor cores.
    public enum Compute: Int32, Sendable { case f32 = 68, f32FastTF32 = 77 }

    struct Table {
        let path: String
        let create: FCreate, destroy: FHandle, setStream: FSetStream, setMath: FSetMath, setWorkspace: FSetWorkspace
        let property: FProperty, gemmEx: FGemmEx, gemmBatched: FGemmBatched
    }

    public static let names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    static let hint = "Install cuBLAS (the CUDA toolkit, or `pip install nvidia-cublas`), or set TANDEM_CUDA_LIBS to the folder holding libcublas.so."

    private static let loaded: Result<Table, CUDAError> = {
        do throws(CUDAError) {
            // cuBLAS needs cuBLASLt beside it; load it first from the same search so the loader finds it.
            _ = try? NativeLibrary.open(names: ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"], what: "cuBLASLt", hint: hint)
            let (h, path) = try NativeLibrary.open(names: names, what: "cuBLAS", hint: hint)
            func f<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T { try NativeLibrary.symbol(h, name, library: "libcublas", as: t) }
            return .success(Table(
                path: path, create: try f("cublasCreate_v2", FCreate.self), destroy: try f("cublasDestroy_v2", FHandle.self),
                setStream: try f("cublasSetStream_v2", FSetStream.self), setMath: try f("cublasSetMathMode", FSetMath.self),
                setWorkspace: try f("cublasSetWorkspace_v2", FSetWorkspace.self), property: try f("cublasGetProperty", FProperty.self),
                gemmEx: try f("cublasGemmEx", FGemmEx.self), gemmBatched: try f("cublasGemmStridedBatchedEx", FGemmBatched.self)))
        } catch let error { return .failure(error) }
    }()

    /// Where cuBLAS was found and its version, without creating a handle.
    public static func library() throws(CUDAError) -> (path: String, version: String) {
        let t = try loaded.get()
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        _ = t.property(0, &major); _ = t.property(1, &minor); _ = t.property(2, &patch)
        return (t.path, "\(major).\(minor).\(patch)")
    }

    let table: Table
    let handle: OpaquePointer?

    /// A handle bound to `stream`, with a fixed workspace (so calls allocate nothing and can be
    /// captured in a graph) and pedantic-free default math: fp32 stays fp32 unless asked.
    init(stream: CUHandle?, workspace: DevicePointer, workspaceBytes: Int) throws(CUDAError) {
        table = try Self.loaded.get()
        var h: OpaquePointer?
        try Self.check(table.create(&h), "cublasCreate")
        handle = h
        try Self.check(table.setStream(h, stream), "cublasSetStream")
        try Self.check(table.setWorkspace(h, UnsafeMutableRawPointer(bitPattern: UInt(workspace)), workspaceBytes), "cublasSetWorkspace")
    }

    deinit { _ = table.destroy(handle) }

    /// Moves the handle's work to `stream` with `workspace`. (3) cublasSetStream resets the workspace to
    /// cuBLAS's own pool, which allocates and so cannot be captured: the workspace is set again right after.
    func bind(stream: CUHandle?, workspace: DevicePointer, workspaceBytes: Int) throws(CUDAError) {
        try Self.check(table.setStream(handle, stream), "cublasSetStream")
        try Self.check(table.setWorkspace(handle, UnsafeMutableRawPointer(bitPattern: UInt(workspace)), workspaceBytes), "cublasSetWorkspace")
    }

    static func check(_ status: Int32, _ function: String) throws(CUDAError) {
        guard status != 0 else { return }
        let names: [Int32: String] = [1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
                                      11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED",
                                      16: "LICENSE_ERROR"]
        throw .call(library: "libcublas", function: function, code: status, message: "CUBLAS_STATUS_\(names[status] ?? "UNKNOWN")")
    }

    /// Row-major `C[m, n] = alpha · op(A) · op(B) + beta · C`, with `op(A)` of shape `[m, k]`
    /// and `op(B)` of shape `[k, n]`; leading dimensions are row-major row strides.
    ///
    /// cuBLAS is column-major: a row-major matrix is its transpose, so this computes
    /// `Cᵀ = op(B)ᵀ · op(A)ᵀ` with the operands swapped.
    ///
    /// - Complexity: 2·m·n·k floating-point operations.
    public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     a: DevicePointer, lda: Int, b: DevicePointer, ldb: Int, c: DevicePointer, ldc: Int,
                     types: (a: DataType, b: DataType, c: DataType), compute: Compute = .f32,
                     alpha: Float = 1, beta: Float = 0, batch: Int = 1,
                     strides: (a: Int, b: Int, c: Int) = (0, 0, 0)) throws(CUDAError) {
        var al = alpha, be = beta
        let ta: Int32 = transA ? 1 : 0, tb: Int32 = transB ? 1 : 0
        func ptr(_ p: DevicePointer) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt(p)) }
        let status: Int32 = withUnsafePointer(to: &al) { pa in
            withUnsafePointer(to: &be) { pb in
                if batch == 1 {
                    return table.gemmEx(handle, tb, ta, Int32(n), Int32(m), Int32(k), pa, ptr(b), types.b.rawValue, Int32(ldb),
                                        ptr(a), types.a.rawValue, Int32(lda), pb, ptr(c), types.c.rawValue, Int32(ldc),
                                        compute.rawValue, -1)
                }
                return table.gemmBatched(handle, tb, ta, Int32(n), Int32(m), Int32(k), pa,
                                         ptr(b), types.b.rawValue, Int32(ldb), Int64(strides.b),
                                         ptr(a), types.a.rawValue, Int32(lda), Int64(strides.a), pb,
                                         ptr(c), types.c.rawValue, Int32(ldc), Int64(strides.c), Int32(batch), compute.rawValue, -1)
            }
        }
        try Self.check(status, batch == 1 ? "cublasGemmEx(m \(m), n \(n), k \(k))" : "cublasGemmStridedBatchedEx(m \(m), n \(n), k \(k), batch \(batch))")
    }
}
