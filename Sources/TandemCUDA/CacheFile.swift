#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and writes for the caches on disk (compiled kernels, GEMM choices): a write goes to a
/// temporary name in the same folder and is renamed over the file, so a reader (another process too) sees the
/// old file or the new one, never half of one. Failures are not errors: a cache that cannot be read or written is
/// rebuilt or kept in memory.
enum CacheFile {
    /// The file's bytes; nil when it cannot be opened.
    static func read(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return bytes
    }

    /// The folders `path` lies in, outermost first (a relative path's from the working directory's).
    static func folders(of path: String) -> [String] {
        var partial = path.hasPrefix("/") ? "" : ".", out: [String] = []
        for component in path.split(separator: "/").dropLast() {
            partial += "/" + component
            out.append(partial)
        }
        return out
    }

    /// Writes `bytes` to `path`, making its folders: false (the old file untouched) when any step fails.
    @discardableResult
    static func write(_ bytes: [UInt8], to path: String) -> Bool {
        for folder in folders(of: path) { mkdir(folder, 0o755) }
        let temporary = path + ".tmp\(getpid())"
        guard let file = fopen(temporary, "wb") else { return false }
        let written = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
        let closed = fclose(file) == 0
        guard written == bytes.count, closed, rename(temporary, path) == 0 else { unlink(temporary); return false }
        return true
    }
}
