#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

/// A failure of the CUDA stack: a missing library, a failed call, or a request the device cannot meet.
public enum CUDAError: Error, CustomStringConvertible, Equatable {
    /// A native library was not found; `hint` says what to install.
    case libraryMissing(name: String, searched: [String], hint: String)
    /// A symbol the table needs is absent from the library that was found.
    case symbolMissing(library: String, symbol: String)
    /// A call returned a failure code.
    case call(library: String, function: String, code: Int32, message: String)
    /// Kernel source did not compile; `log` is the compiler's.
    case compile(program: String, log: String)
    /// The device has too little free memory for a request.
    case outOfMemory(requested: Int, free: Int, total: Int, category: String)
    /// No device, or a device index out of range.
    case noDevice(String)
    /// A model, precision or option the GPU engine does not take.
    case unsupported(String)

    public var description: String {
        switch self {
        case .libraryMissing(let name, let searched, let hint):
            return "\(name) not found (looked in: \(searched.isEmpty ? "the dynamic loader's path" : searched.joined(separator: ", "))). \(hint)"
        case .symbolMissing(let library, let symbol):
            return "\(library) has no symbol \(symbol): the library is too old or not the one expected"
        case .call(let library, let function, let code, let message):
            return "\(library): \(function) failed with code \(code) (\(message))"
        case .compile(let program, let log):
            return "NVRTC could not compile \(program):\n\(log)"
        case .outOfMemory(let requested, let free, let total, let category):
            return "out of GPU memory: asked for \(requested) bytes (\(Self.mib(requested))) of \(category), "
                + "\(free) bytes (\(Self.mib(free))) free of \(total) (\(Self.mib(total)))"
        case .noDevice(let message):
            return message
        case .unsupported(let message):
            return message
        }
    }

    static func mib(_ bytes: Int) -> String {
        let m = Double(bytes) / 1_048_576
        return m >= 1024 ? "\(Double(Int(m / 1024 * 100)) / 100) GiB" : "\(Double(Int(m * 100)) / 100) MiB"
    }
}

// MARK: - Finding native libraries

/// Where the CUDA libraries are looked for, and how one is opened.
///
/// `TANDEM_CUDA_LIBS` (directories separated by `:`) replaces the whole search when set:
/// only those directories are tried, for every library, the driver included. Otherwise
/// the dynamic loader's own path comes first, then the CUDA toolkit's folders, then the
/// `nvidia/*/lib` folders that NVIDIA's Python wheels install into site-packages.
public enum NativeLibrary {
    /// The directories searched, in order (the loader's own path is tried before them unless overridden).
    public static var searchDirectories: [String] {
        if let override = overrideDirectories { return override }
        var dirs = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu",
                    "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"]
        for root in sitePackages() {
            for sub in ["cu13", "cu12", "cublas", "cuda_nvrtc", "cuda_runtime", "nccl", "cudnn"] {
                let dir = root + "/nvidia/" + sub + "/lib"
                if isDirectory(dir) { dirs.append(dir) }
            }
        }
        return dirs
    }

    /// `TANDEM_CUDA_LIBS` split into directories, or nil when unset.
    static var overrideDirectories: [String]? {
        guard let raw = getenv("TANDEM_CUDA_LIBS").map({ String(cString: $0) }) else { return nil }
        return raw.split(separator: ":").map(String.init)
    }

    /// Opens the first of `names` found; returns the handle and the path it came from.
    /// `directories` replaces the search the way `TANDEM_CUDA_LIBS` does.
    static func open(names: [String], what: String, hint: String,
                     directories: [String]? = nil) throws(CUDAError) -> (handle: UnsafeMutableRawPointer, path: String) {
        let restricted = directories ?? overrideDirectories
        let dirs = restricted ?? searchDirectories
        var tried: [String] = []
        if restricted == nil {
            for name in names {
                if let handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) { return (handle, name) }
            }
        }
        for dir in dirs {
            for name in names {
                let path = dir + "/" + name
                tried.append(dir)
                if let handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL) { return (handle, path) }
            }
        }
        var seen = Set<String>()
        let unique = (restricted == nil ? ["the dynamic loader's path"] : []) + (restricted ?? tried).filter { seen.insert($0).inserted }
        throw .libraryMissing(name: "\(what) (\(names.joined(separator: ", ")))", searched: unique, hint: hint)
    }

    /// Looks `symbol` up in `handle` and reinterprets it as the function type `T`.
    static func symbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, library: String, as type: T.Type) throws(CUDAError) -> T {
        guard let pointer = dlsym(handle, name) else { throw .symbolMissing(library: library, symbol: name) }
        return unsafeBitCast(pointer, to: type)
    }

    static func optionalSymbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, as type: T.Type) -> T? {
        dlsym(handle, name).map { unsafeBitCast($0, to: type) }
    }

    static func isDirectory(_ path: String) -> Bool {
        guard let dir = opendir(path) else { return false }
        closedir(dir)
        return true
    }

    static func entries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Python site-packages folders on this host (virtual environments under /opt included).
    static func sitePackages() -> [String] {
        var roots: [String] = []
        if let path = getenv("PYTHONPATH").map({ String(cString: $0) }) { roots += path.split(separator: ":").map(String.init) }
        var prefixes = ["/usr/local/lib", "/usr/lib"]
        for name in entries("/opt") {
            prefixes.append("/opt/\(name)/.venv/lib")
            prefixes.append("/opt/\(name)/lib")
        }
        if let home = getenv("HOME").map({ String(cString: $0) }) { prefixes.append(home + "/.local/lib") }
        for prefix in prefixes {
            for python in entries(prefix) where python.hasPrefix("python3") {
                for kind in ["site-packages", "dist-packages"] {
                    let dir = "\(prefix)/\(python)/\(kind)"
                    if isDirectory(dir + "/nvidia") { roots.append(dir) }
                }
            }
        }
        return roots
    }
}
