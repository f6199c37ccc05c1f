import Foundation
import TandemCore
import Testing

@testable import TandemFormats

// MARK: - Expecting errors

/// Runs `body` and requires it to throw a `FormatError` whose description is one line and
/// contains every keyword (case-insensitive). Returns the error for further checks.
@discardableResult
func expectFormatError(
    _ keywords: String..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> FormatError? {
    expectFormatError(keywords, sourceLocation: sourceLocation, body)
}

@discardableResult
func expectFormatError(
    _ keywords: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> FormatError? {
    do {
        try body()
        Issue.record(
            "expected a FormatError mentioning \(keywords), but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as FormatError {
        let text = error.description
        #expect(!text.contains("\n"), "error is not one line: \(text)", sourceLocation: sourceLocation)
        #expect(
            text.hasPrefix(error.file + ": "), "error does not start with its file: \(text)",
            sourceLocation: sourceLocation)
        for keyword in keywords {
            #expect(
                text.lowercased().contains(keyword.lowercased()), "\(quotedForTest(keyword)) missing from: \(text)",
                sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a FormatError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

func quotedForTest(_ text: String) -> String { "'\(text)'" }

// MARK: - Seeded randomness

/// SplitMix64: a tiny seeded generator so fuzz tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Temporary files

/// A fresh directory, removed after `body`.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-formats-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

func fileBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

// MARK: - Byte building

extension Array where Element == UInt8 {
    mutating func append16(_ value: Int) { appendLittleEndian(UInt16(truncatingIfNeeded: value)) }
    mutating func append32(_ value: Int) { appendLittleEndian(UInt32(truncatingIfNeeded: value)) }
    mutating func append64(_ value: Int) { appendLittleEndian(UInt64(truncatingIfNeeded: value)) }
}

func base64Bytes(_ text: String) -> [UInt8] {
    [UInt8](Data(base64Encoded: text) ?? Data())
}

/// An NPY file with the given header text and data, version `major`.0.
func npyBytes(header: String, data: [UInt8], major: UInt8 = 1) -> [UInt8] {
    npyBytes(rawHeader: Array(header.utf8), data: data, major: major)
}

func npyBytes(rawHeader: [UInt8], data: [UInt8], major: UInt8 = 1) -> [UInt8] {
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
    if major == 1 { bytes.append16(rawHeader.count) } else { bytes.append32(rawHeader.count) }
    return bytes + rawHeader + data
}

/// A safetensors file with the given header JSON and data buffer.
func safetensorsBytes(header: String, data: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.append64(header.utf8.count)
    return bytes + Array(header.utf8) + data
}

// MARK: - Zip building

/// Builds small zip archives the way a writer would, with knobs to break them.
struct ZipBuilder {
    struct Member {
        var name: String
        var data: [UInt8]
        var deflate = false
        /// Overrides the stored CRC-32.
        var crc: UInt32?
        /// Overrides the method written in both headers.
        var method: UInt16?
        /// Overrides the declared uncompressed size.
        var declaredSize: Int?
        /// Writes the sizes and offset in a zip64 extra field of the central directory.
        var zip64 = false
    }

    var members: [Member]

    func build() -> [UInt8] {
        var archive: [UInt8] = []
        var directory: [UInt8] = []
        for member in members {
            let payload = member.deflate ? storedDeflate(member.data) : member.data
            let method = member.method ?? (member.deflate ? 8 : 0)
            let crc = member.crc ?? CRC32.checksum(member.data)
            let size = member.declaredSize ?? member.data.count
            let name = Array(member.name.utf8)
            let offset = archive.count

            archive.append32(0x0403_4B50)
            archive.append16(20)
            archive.append16(0)
            archive.append16(Int(method))
            archive.append32(0)  // time, date
            archive.append32(Int(crc))
            archive.append32(payload.count)
            archive.append32(size)
            archive.append16(name.count)
            archive.append16(0)
            archive += name + payload

            var extra: [UInt8] = []
            if member.zip64 {
                extra.append16(1)
                extra.append16(24)
                extra.append64(size)
                extra.append64(payload.count)
                extra.append64(offset)
            }
            directory.append32(0x0201_4B50)
            directory.append16(45)
            directory.append16(45)
            directory.append16(0)
            directory.append16(Int(method))
            directory.append32(0)
            directory.append32(Int(crc))
            directory.append32(member.zip64 ? 0xFFFF_FFFF : payload.count)
            directory.append32(member.zip64 ? 0xFFFF_FFFF : size)
            directory.append16(name.count)
            directory.append16(extra.count)
            directory.append16(0)  // comment
            directory.append16(0)  // disk
            directory.append16(0)  // internal attributes
            directory.append32(0)  // external attributes
            directory.append32(member.zip64 ? 0xFFFF_FFFF : offset)
            directory += name + extra
        }
        let directoryOffset = archive.count
        archive += directory
        archive.append32(0x0605_4B50)
        archive.append16(0)
        archive.append16(0)
        archive.append16(members.count)
        archive.append16(members.count)
        archive.append32(directory.count)
        archive.append32(directoryOffset)
        archive.append16(0)
        return archive
    }
}

/// `data` as a raw deflate stream of stored (uncompressed) blocks.
func storedDeflate(_ data: [UInt8], final: Bool = true) -> [UInt8] {
    var stream: [UInt8] = []
    var offset = 0
    repeat {
        let length = Swift.min(65535, data.count - offset)
        let last = offset + length == data.count
        stream.append(last && final ? 1 : 0)
        stream.append16(length)
        stream.append16(~length & 0xFFFF)
        stream += data[offset..<(offset + length)]
        offset += length
    } while offset < data.count
    return stream
}
