#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Whole-file reads and atomic writes

/// Reads whole files and replaces files atomically, through POSIX calls whose return
/// codes all pass through `check`.
public enum FileIO {
    /// The whole contents of the file at `path`.
    public static func contents(of path: String) throws -> [UInt8] {
        let descriptor = try check(open(path, O_RDONLY | O_CLOEXEC), path, "cannot open for reading", "a readable file")
        defer { _ = close(descriptor) }
        var info = stat()
        try check(fstat(descriptor, &info), path, "cannot stat", "a readable file")
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw FormatError(file: path, message: "is a directory, expected a regular file")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(clamping: info.st_size))
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, chunk) }
            if got < 0 {
                if errno == EINTR { continue }
                try check(Int32(got), path, "read failed", "a readable file")
            }
            if got == 0 { break }
            bytes.append(contentsOf: buffer[0..<got])
        }
        return bytes
    }

    /// Replaces the file at `path` with `bytes`, so that a reader (or a crash) sees either
    /// the old file or the whole new one.
    ///
    /// Writes `"<path>.tmp-<pid>"`, flushes it to disk, renames it over `path`, then flushes
    /// the directory so the rename itself survives a crash. On any failure the temporary
    /// file is removed and `path` is untouched. Two threads of one process writing the same
    /// `path` at once would share the temporary name; callers serialise such writes.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = "\(path).tmp-\(getpid())"
        let descriptor = try check(
            open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644),
            temporary, "cannot create temporary file", "a writable directory")
        var renamed = false
        defer { if !renamed { _ = unlink(temporary) } }
        do {
            try writeAll(bytes, to: descriptor, path: temporary)
            try check(fsync(descriptor), temporary, "fsync failed", "the data flushed to disk")
        } catch {
            _ = close(descriptor)
            throw error
        }
        try check(close(descriptor), temporary, "close failed", "the data written")
        try check(rename(temporary, path), path, "cannot rename \(quoted(temporary)) over it", "a writable target")
        renamed = true
        try syncDirectory(containing: path)
    }

    // MARK: - Helpers

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let wrote = write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if wrote < 0 {
                    if errno == EINTR { continue }
                    try check(Int32(wrote), path, "write failed", "\(raw.count) bytes written")
                }
                offset += wrote
            }
        }
    }

    private static func syncDirectory(containing path: String) throws {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let descriptor = try check(
            open(directory, O_RDONLY | O_CLOEXEC), directory, "cannot open directory to fsync", "a readable directory")
        defer { _ = close(descriptor) }
        try check(fsync(descriptor), directory, "directory fsync failed", "the rename flushed to disk")
    }

    /// The one choke point for POSIX return codes: a negative result becomes a
    /// `FormatError` carrying `strerror(errno)`.
    @discardableResult
    private static func check(_ result: Int32, _ path: String, _ what: String, _ expected: String) throws -> Int32 {
        guard result < 0 else { return result }
        let code = errno
        let reason = String(cString: strerror(code))
        throw FormatError(file: path, message: "\(what): \(reason) (errno \(code)), expected \(expected)")
    }
}
