#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - BLAS opened at run time

/// The BLAS library Tandem found, opened once with `dlopen`.
///
/// Search order: `TANDEM_BLAS` (a path), then OpenBLAS's usual names, then any
/// `libblas.so.3` that exports `cblas_sgemm`. Without one, `Kernels.gemm` runs a
/// portable Swift kernel and `BLAS.warning` says so.
public enum BLAS {
    typealias SGEMM = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Int32, Float,
        UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32, Float,
        UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void
    typealias GetConfig = @convention(c) () -> UnsafePointer<CChar>?

    /// What was found: where, and the library's own description of itself.
    public struct Library: Sendable {
        public let path: String
        public let config: String?
    }

    struct Table: @unchecked Sendable {
        // Safe: the table is written once, during the `loaded` initialiser, and only read after.
        let library: Library
        let sgemm: SGEMM
        let setThreads: SetThreads?
    }

    /// Names tried in order when `TANDEM_BLAS` is unset.
    public static let candidates = [
        "libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.3.21.so",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
        "libblas.so.3", "libblis.so.4", "libmkl_rt.so",
    ]

    static let loaded: Table? = {
        var names = candidates
        if let path = getenv("TANDEM_BLAS").map({ String(cString: $0) }), !path.isEmpty {
            if path == "none" { return nil }
            names = [path]
        }
        // One thread per worker: parallelism comes from the workers, not from BLAS. Set
        // before loading so OpenBLAS starts no thread pool at all.
        if getenv("OPENBLAS_NUM_THREADS") == nil { setenv("OPENBLAS_NUM_THREADS", "1", 1) }
        for name in names {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            // (1) cblas_sgemm has the CBLAS C signature on every library we accept.
            guard let symbol = dlsym(handle, "cblas_sgemm") else { dlclose(handle); continue }
            let sgemm = unsafeBitCast(symbol, to: SGEMM.self)
            // (2) openblas_set_num_threads takes one int; absent on non-OpenBLAS libraries.
            let setThreads = dlsym(handle, "openblas_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) }
            // (3) openblas_get_config returns a static C string.
            let config = dlsym(handle, "openblas_get_config")
                .flatMap { unsafeBitCast($0, to: GetConfig.self)() }
                .map { String(cString: $0) }
            let table = Table(library: Library(path: resolvedPath(handle: handle, symbol: symbol) ?? name, config: config),
                              sgemm: sgemm, setThreads: setThreads)
            setThreads?(1)
            return table
        }
        return nil
    }()

    /// The library in use, or nil when the Swift fallback runs.
    public static var library: Library? { loaded?.library }

    /// A one-line warning when no BLAS was found, else nil.
    public static var warning: String? {
        loaded == nil ? "warning: no BLAS library found (install libopenblas0 or set TANDEM_BLAS); using the slower portable Swift GEMM" : nil
    }

    /// Sets BLAS's own thread count (OpenBLAS only).
    public static func setThreads(_ n: Int) { loaded?.setThreads?(Int32(n)) }

    /// The file the dynamic loader mapped for `name`, read from /proc/self/maps (Linux).
    private static func resolvedPath(handle: UnsafeMutableRawPointer, symbol: UnsafeMutableRawPointer) -> String? {
        guard let file = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(file) }
        let address = UInt(bitPattern: symbol)
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, let dash = fields[0].firstIndex(of: "-"),
                  let low = UInt(fields[0][..<dash], radix: 16),
                  let high = UInt(fields[0][fields[0].index(after: dash)...], radix: 16),
                  address >= low && address < high else { continue }
            return String(fields[5].filter { !$0.isWhitespace })
        }
        return nil
    }
}
