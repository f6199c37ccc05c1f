#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - zlib, loaded at run time

/// Raw-deflate decompression through the system zlib, opened with `dlopen` on first use so
/// that the package links without zlib's headers and works without zlib until a
/// compressed member is actually met.
///
/// Unsafe assumptions, each checked where it can be:
/// 1. The library is zlib 1.x with its C ABI: `zlibVersion`, `inflateInit2_`, `inflate`,
///    `inflateEnd`, called through the `@convention(c)` types below.
/// 2. `z_stream` has the LP64 layout of 64-bit Linux and macOS, 112 bytes (offsets in
///    `StreamField`). `inflateInit2_` compares the size we pass with its own
///    `sizeof(z_stream)` and fails with `Z_VERSION_ERROR` on a mismatch, so a wrong layout
///    is reported, not written through.
/// 3. A zeroed stream (null `zalloc`, `zfree`, `opaque`) makes zlib use `malloc`/`free`.
/// 4. zlib only reads `next_in` and only writes `next_out` within the `avail_*` counts we
///    set, and keeps no pointer to them after `inflateEnd`.
enum Zlib {
    typealias VersionFunction = @convention(c) () -> UnsafePointer<CChar>?
    typealias InflateInitFunction =
        @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, Int32) -> Int32
    typealias InflateFunction = @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32
    typealias InflateEndFunction = @convention(c) (UnsafeMutableRawPointer?) -> Int32

    /// The resolved entry points.
    struct Library: Sendable {
        let version: String
        let inflateInit2: InflateInitFunction
        let inflate: InflateFunction
        let inflateEnd: InflateEndFunction
    }

    /// The library, or why it could not be loaded; opened once, never closed.
    static let library: Result<Library, LoadError> = load()

    struct LoadError: Error, Sendable {
        let message: String
    }

    // MARK: - Constants from zlib.h

    static let streamSize: Int32 = 112
    static let noFlush: Int32 = 0
    static let ok: Int32 = 0
    static let streamEnd: Int32 = 1
    static let bufferError: Int32 = -5
    /// Negative window bits select raw deflate (no zlib header), as zip stores it.
    static let rawDeflateWindowBits: Int32 = -15

    /// Byte offsets of the `z_stream` fields we touch (assumption 2).
    enum StreamField {
        static let nextIn = 0
        static let availIn = 8
        static let nextOut = 24
        static let availOut = 32
        static let message = 48
    }

    // MARK: - Loading

    private static func load() -> Result<Library, LoadError> {
        guard MemoryLayout<Int>.size == 8 else {
            return .failure(LoadError(message: "zlib support needs a 64-bit platform"))
        }
        let names = ["libz.so.1", "libz.so", "libz.1.dylib", "libz.dylib"]
        guard let handle = names.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_LOCAL) }).first else {
            return .failure(LoadError(message: "cannot load zlib (tried \(names.joined(separator: ", ")))"))
        }
        func symbol<T>(_ name: String, as _: T.Type) -> T? {
            dlsym(handle, name).map { unsafeBitCast($0, to: T.self) }
        }
        guard let version = symbol("zlibVersion", as: VersionFunction.self),
            let inflateInit2 = symbol("inflateInit2_", as: InflateInitFunction.self),
            let inflate = symbol("inflate", as: InflateFunction.self),
            let inflateEnd = symbol("inflateEnd", as: InflateEndFunction.self)
        else {
            return .failure(LoadError(message: "zlib lacks zlibVersion, inflateInit2_, inflate or inflateEnd"))
        }
        guard let versionText = version().map({ String(cString: $0) }), versionText.hasPrefix("1.") else {
            return .failure(LoadError(message: "zlib reports an unknown version, expected 1.x"))
        }
        return .success(
            Library(version: versionText, inflateInit2: inflateInit2, inflate: inflate, inflateEnd: inflateEnd))
    }

    // MARK: - Inflating

    /// Inflates raw deflate `input` that must produce exactly `expectedSize` bytes.
    ///
    /// - Parameters:
    ///   - file: the file errors name.
    ///   - member: what is being inflated, e.g. `"member 'x.npy'"`, to start error messages.
    /// - Throws: `FormatError` when zlib is missing, the data is corrupt or truncated, or
    ///   its size differs from `expectedSize`.
    static func inflate(
        _ input: ArraySlice<UInt8>, expectedSize: Int, file: String, member: String
    ) throws -> [UInt8] {
        func fail(_ message: String) -> FormatError { FormatError(file: file, message: "\(member): \(message)") }
        let zlib: Library
        switch library {
        case .success(let loaded): zlib = loaded
        case .failure(let error):
            throw fail("is deflated but \(error.message), expected zlib (libz.so.1) to be installed")
        }
        // One spare byte so the output pointer is valid even for an empty member.
        var output = [UInt8](repeating: 0, count: expectedSize + 1)
        let stream = UnsafeMutableRawPointer.allocate(byteCount: Int(streamSize), alignment: 8)
        stream.initializeMemory(as: UInt8.self, repeating: 0, count: Int(streamSize))  // assumption 3
        defer { stream.deallocate() }

        let produced: Int = try input.withUnsafeBytes { (source) throws -> Int in
            try output.withUnsafeMutableBytes { (target) throws -> Int in
                let initCode = zlib.inflateInit2(stream, rawDeflateWindowBits, zlib.version, streamSize)
                try check(initCode, stream, "inflateInit2", fail)
                defer { _ = zlib.inflateEnd(stream) }

                // avail_in and avail_out are 32-bit, so feed both sides in steps of at most 1 GiB.
                let step = 1 << 30
                var inputOffset = 0
                var outputOffset = 0
                while true {
                    if stream.load(fromByteOffset: StreamField.availIn, as: UInt32.self) == 0,
                        inputOffset < source.count
                    {
                        let length = min(step, source.count - inputOffset)
                        stream.storeBytes(
                            of: source.baseAddress.map { $0 + inputOffset }, toByteOffset: StreamField.nextIn,
                            as: UnsafeRawPointer?.self)
                        stream.storeBytes(of: UInt32(length), toByteOffset: StreamField.availIn, as: UInt32.self)
                        inputOffset += length
                    }
                    if stream.load(fromByteOffset: StreamField.availOut, as: UInt32.self) == 0,
                        outputOffset < expectedSize
                    {
                        let length = min(step, expectedSize - outputOffset)
                        stream.storeBytes(
                            of: target.baseAddress.map { $0 + outputOffset }, toByteOffset: StreamField.nextOut,
                            as: UnsafeMutableRawPointer?.self)
                        stream.storeBytes(of: UInt32(length), toByteOffset: StreamField.availOut, as: UInt32.self)
                        outputOffset += length
                    }
                    let code = zlib.inflate(stream, noFlush)
                    let availIn = Int(stream.load(fromByteOffset: StreamField.availIn, as: UInt32.self))
                    let availOut = Int(stream.load(fromByteOffset: StreamField.availOut, as: UInt32.self))
                    switch code {
                    case streamEnd:
                        return outputOffset - availOut
                    case ok:
                        continue
                    case bufferError where availIn == 0 && inputOffset == source.count:
                        throw fail("truncated deflate stream, expected it to run to its final block")
                    case bufferError:
                        throw fail(
                            "inflates to more than the declared \(expectedSize) bytes, expected exactly that size")
                    default:
                        try check(code, stream, "inflate", fail)
                        throw fail("inflate returned unexpected code \(code), expected Z_OK or Z_STREAM_END")
                    }
                }
            }
        }
        guard produced == expectedSize else {
            throw fail("inflates to \(produced) bytes, expected the declared \(expectedSize)")
        }
        output.removeLast()
        return output
    }

    /// The one choke point for zlib return codes: a negative code becomes an error
    /// carrying zlib's own message where it set one.
    private static func check(
        _ code: Int32, _ stream: UnsafeMutableRawPointer, _ call: String, _ fail: (String) -> FormatError
    ) throws {
        guard code < 0 || code == 2 else { return }
        let names: [Int32: String] = [
            2: "Z_NEED_DICT", -2: "Z_STREAM_ERROR", -3: "Z_DATA_ERROR", -4: "Z_MEM_ERROR", -6: "Z_VERSION_ERROR",
        ]
        let detail =
            stream.load(fromByteOffset: StreamField.message, as: UnsafePointer<CChar>?.self)
            .map { ": " + String(cString: $0) } ?? ""
        let name = names[code] ?? "code \(code)"
        throw fail("corrupt deflate data, \(call) returned \(name)\(detail), expected a valid deflate stream")
    }
}
