#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// NVIDIA's run-time compiler (`libnvrtc`) opened at run time: CUDA C++ source → machine code
/// (cubin) for one architecture, cached on disk.
public struct NVRTC: @unchecked Sendable {
    // Safe: written once by `load()`, read-only afterwards.
    typealias Program = OpaquePointer
    // (1) Signatures from nvrtc.h (CUDA 12 and 13); nvrtcResult is an int enum, 0 = success.
    typealias FCreate = @convention(c) (UnsafeMutablePointer<Program?>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32,
                                        UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    typealias FCompile = @convention(c) (Program?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    typealias FSize = @convention(c) (Program?, UnsafeMutablePointer<Int>) -> Int32
    typealias FBytes = @convention(c) (Program?, UnsafeMutablePointer<CChar>) -> Int32
    typealias FDestroy = @convention(c) (UnsafeMutablePointer<Program?>) -> Int32
    typealias FVersion = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    typealias FErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?

    public let path: String
    let create: FCreate, compile: FCompile, logSize: FSize, log: FBytes, cubinSize: FSize, cubin: FBytes
    let destroy: FDestroy, versionCall: FVersion, errorString: FErrorString

    public static let names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    static let hint = "Install NVRTC (the CUDA toolkit, or `pip install nvidia-cuda-nvrtc`), or set TANDEM_CUDA_LIBS to the folder holding libnvrtc.so."

    private static let loaded: Result<NVRTC, CUDAError> = {
        do throws(CUDAError) {
            let (h, path) = try NativeLibrary.open(names: names, what: "NVRTC", hint: hint)
            // NVRTC opens its builtins library by bare name at compile time; open it from the same
            // folder first (pip wheels do not put that folder on the loader's path).
            if let slash = path.lastIndex(of: "/") {
                let dir = String(path[..<slash])
                for name in NativeLibrary.entries(dir) where name.hasPrefix("libnvrtc-builtins.so") {
                    _ = dlopen(dir + "/" + name, RTLD_NOW | RTLD_GLOBAL)
                }
            }
            func f<T>(_ name: String, _ t: T.Type) throws(CUDAError) -> T { try NativeLibrary.symbol(h, name, library: "libnvrtc", as: t) }
            return .success(NVRTC(
                path: path, create: try f("nvrtcCreateProgram", FCreate.self), compile: try f("nvrtcCompileProgram", FCompile.self),
                logSize: try f("nvrtcGetProgramLogSize", FSize.self), log: try f("nvrtcGetProgramLog", FBytes.self),
                cubinSize: try f("nvrtcGetCUBINSize", FSize.self), cubin: try f("nvrtcGetCUBIN", FBytes.self),
                destroy: try f("nvrtcDestroyProgram", FDestroy.self), versionCall: try f("nvrtcVersion", FVersion.self),
                errorString: try f("nvrtcGetErrorString", FErrorString.self)))
        } catch let error { return .failure(error) }
    }()

    /// NVRTC, opened once per process.
    public static func shared() throws(CUDAError) -> NVRTC { try loaded.get() }

    /// NVRTC's version as major.minor.
    public var version: (major: Int, minor: Int) {
        var major: Int32 = 0, minor: Int32 = 0
        _ = versionCall(&major, &minor)
        return (Int(major), Int(minor))
    }

    func check(_ code: Int32, _ function: String) throws(CUDAError) {
        if code != 0 {
            let text = errorString(code).map { String(cString: $0) } ?? "unknown"
            throw .call(library: "libnvrtc", function: function, code: code, message: text)
        }
    }

    /// Compiles `source` for `architecture` (`sm_90`) and returns the cubin. Reads and fills
    /// the disk cache unless `cache` is false; with `reuse` false it compiles afresh and writes the cache over.
    ///
    /// - Complexity: a cache hit reads one file; a miss runs the compiler (seconds).
    public func compile(source: String, name: String, architecture: String, options extra: [String] = [],
                        cache: Bool = true, reuse: Bool = true) throws(CUDAError) -> [UInt8] {
        let options = ["--gpu-architecture=\(architecture)", "--std=c++17", "-default-device"] + extra
        let v = version
        let key = KernelCache.key(source + "\u{0}" + options.joined(separator: " ") + "\u{0}nvrtc \(v.major).\(v.minor)")
        if cache && reuse, let bytes = KernelCache.read(key: key, name: name) { return bytes }
        var program: Program?
        try check(create(&program, source, name, 0, nil, nil), "nvrtcCreateProgram")
        defer { _ = destroy(&program) }
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let result = cOptions.map { UnsafePointer($0) }.withUnsafeBufferPointer { compile(program, Int32($0.count), $0.baseAddress) }
        var size = 0
        _ = logSize(program, &size)
        var logText = [CChar](repeating: 0, count: max(size, 1))
        if size > 1 { _ = log(program, &logText) }
        let message = String(decoding: logText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if result != 0 { throw .compile(program: name, log: message) }
        var cubinBytes = 0
        try check(cubinSize(program, &cubinBytes), "nvrtcGetCUBINSize")
        var bytes = [CChar](repeating: 0, count: cubinBytes)
        try check(cubin(program, &bytes), "nvrtcGetCUBIN")
        let out = bytes.map { UInt8(bitPattern: $0) }
        if cache { KernelCache.write(key: key, name: name, bytes: out) }
        return out
    }
}

// MARK: - Disk cache

/// Compiled kernels on disk, keyed by a hash of the source, the options and NVRTC's version.
/// `TANDEM_KERNEL_CACHE` names the folder (default `~/.cache/tandem/kernels`); `none` turns it off.
enum KernelCache {
    static var directory: String? {
        if let dir = getenv("TANDEM_KERNEL_CACHE").map({ String(cString: $0) }) { return dir == "none" || dir.isEmpty ? nil : dir }
        guard let home = getenv("HOME").map({ String(cString: $0) }) else { return nil }
        return home + "/.cache/tandem/kernels"
    }

    /// FNV-1a over the bytes, twice with different seeds, as 32 hex digits.
    static func key(_ text: String) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325, b: UInt64 = 0x84222325_cbf29ce4
        for byte in text.utf8 {
            a = (a ^ UInt64(byte)) &* 0x100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x100_0000_01b3 &+ 0x9e37_79b9
        }
        func hex(_ v: UInt64) -> String { let s = String(v, radix: 16); return String(repeating: "0", count: 16 - s.count) + s }
        return hex(a) + hex(b)
    }

    static func path(key: String, name: String) -> String? {
        directory.map { "\($0)/\(name.filter { $0.isLetter || $0.isNumber || $0 == "_" })-\(key).cubin" }
    }

    static func read(key: String, name: String) -> [UInt8]? {
        guard let path = path(key: key, name: name), let bytes = CacheFile.read(path) else { return nil }
        return bytes.count > 16 ? bytes : nil
    }

    static func write(key: String, name: String, bytes: [UInt8]) {
        guard let path = path(key: key, name: name) else { return }
        CacheFile.write(bytes, to: path)
    }
}
