// MARK: - Zip archives

/// A read-only view of a zip archive held in memory: the central directory, and the
/// contents of each member, inflated and checked against its CRC-32.
///
/// Handles what NumPy's `savez` and `savez_compressed` write: stored (method 0) and
/// deflated (method 8) members, zip64 end records and zip64 size fields. Every offset
/// and size read from the archive is bounds-checked before use.
///
/// Format: PKWARE APPNOTE.TXT, sections 4.3 (layout) and 4.5.3 (zip64 extra field).
struct ZipArchive {
    struct Entry {
        var name: String
        var flags: UInt16
        var method: UInt16
        var crc: UInt32
        var compressedSize: Int
        var uncompressedSize: Int
        var localHeaderOffset: Int
    }

    let bytes: [UInt8]
    let file: String
    private(set) var entries: [Entry] = []

    // MARK: - Signatures and sizes

    static let localHeaderSignature: UInt32 = 0x0403_4B50
    static let centralHeaderSignature: UInt32 = 0x0201_4B50
    static let endSignature: UInt32 = 0x0605_4B50
    static let zip64EndSignature: UInt32 = 0x0606_4B50
    static let zip64LocatorSignature: UInt32 = 0x0706_4B50
    static let endRecordSize = 22
    static let centralHeaderSize = 46
    static let localHeaderSize = 30
    static let zip64LocatorSize = 20
    static let zip64EndRecordSize = 56
    /// The value a 16- or 32-bit field holds when the real one is in a zip64 record.
    static let zip64Marker32: UInt32 = 0xFFFF_FFFF
    static let zip64Marker16: UInt16 = 0xFFFF

    // MARK: - Central directory

    /// Reads the central directory of `bytes`; `file` labels errors.
    init(bytes: [UInt8], file: String) throws {
        self.bytes = bytes
        self.file = file
        let end = try findEndRecord()
        var entryCount = Int(bytes.littleEndian(UInt16.self, at: end + 10) ?? 0)
        var directorySize = Int(bytes.littleEndian(UInt32.self, at: end + 12) ?? 0)
        var directoryOffset = Int(bytes.littleEndian(UInt32.self, at: end + 16) ?? 0)
        if entryCount == Int(Self.zip64Marker16) || directorySize == Int(Self.zip64Marker32)
            || directoryOffset == Int(Self.zip64Marker32)
        {
            (entryCount, directorySize, directoryOffset) = try readZip64EndRecord(before: end)
        }
        guard let directoryEnd = CheckedSize.sum(directoryOffset, directorySize), directoryEnd <= end else {
            throw fail(
                "truncated, central directory at offset \(directoryOffset) of \(directorySize) bytes, expected it to end by the end record at \(end)"
            )
        }

        var position = directoryOffset
        for index in 0..<entryCount {
            guard bytes.littleEndian(UInt32.self, at: position) == Self.centralHeaderSignature,
                position <= directoryEnd - Self.centralHeaderSize
            else {
                throw fail(
                    "central directory entry \(index) of \(entryCount) at offset \(position) is missing or truncated, expected signature PK\\1\\2"
                )
            }
            let entry = try readCentralHeader(at: position)
            entries.append(entry.entry)
            position = entry.next
        }
    }

    /// Scans back from the end for the end-of-central-directory record (it may be
    /// followed by a comment of up to 65535 bytes).
    private func findEndRecord() throws -> Int {
        let latest = bytes.count - Self.endRecordSize
        if latest >= 0 {
            let earliest = max(0, latest - Int(UInt16.max))
            for offset in stride(from: latest, through: earliest, by: -1)
            where bytes.littleEndian(UInt32.self, at: offset) == Self.endSignature {
                let commentLength = Int(bytes.littleEndian(UInt16.self, at: offset + 20) ?? 0)
                if offset + Self.endRecordSize + commentLength <= bytes.count { return offset }
            }
        }
        if bytes.isEmpty { throw fail("not a zip archive, the file is empty, expected a zip (NPZ) archive") }
        if bytes.littleEndian(UInt32.self, at: 0) == Self.localHeaderSignature {
            throw fail("truncated zip archive, no end-of-central-directory record, expected one in the last 64 KiB")
        }
        throw fail("not a zip archive, no end-of-central-directory record, expected a zip (NPZ) archive")
    }

    /// Entry count, directory size and directory offset from the zip64 end record, found
    /// through the locator that sits just before the ordinary end record.
    private func readZip64EndRecord(before end: Int) throws -> (Int, Int, Int) {
        let locator = end - Self.zip64LocatorSize
        guard bytes.littleEndian(UInt32.self, at: locator) == Self.zip64LocatorSignature,
            let recordOffset64 = bytes.littleEndian(UInt64.self, at: locator + 8)
        else {
            throw fail("end record defers to zip64 but no zip64 locator precedes it, expected one at offset \(locator)")
        }
        guard let recordOffset = Int(exactly: recordOffset64), recordOffset <= bytes.count,
            bytes.littleEndian(UInt32.self, at: recordOffset) == Self.zip64EndSignature,
            let count = bytes.littleEndian(UInt64.self, at: recordOffset + 32),
            let size = bytes.littleEndian(UInt64.self, at: recordOffset + 40),
            let offset = bytes.littleEndian(UInt64.self, at: recordOffset + 48)
        else {
            throw fail("truncated or missing zip64 end record at offset \(recordOffset64), expected signature PK\\6\\6")
        }
        guard let entryCount = Int(exactly: count), let directorySize = Int(exactly: size),
            let directoryOffset = Int(exactly: offset)
        else {
            throw fail("zip64 end record has sizes beyond Int, expected an archive that fits in memory")
        }
        return (entryCount, directorySize, directoryOffset)
    }

    /// One central directory header at `position`, and where the next one starts.
    private func readCentralHeader(at position: Int) throws -> (entry: Entry, next: Int) {
        func field<T: FixedWidthInteger>(_ offset: Int, _ type: T.Type) -> T {
            bytes.littleEndian(type, at: position + offset) ?? 0  // in range: checked by the caller
        }
        let nameLength = Int(field(28, UInt16.self))
        let extraLength = Int(field(30, UInt16.self))
        let commentLength = Int(field(32, UInt16.self))
        let nameStart = position + Self.centralHeaderSize
        guard let nameBytes = bytes.slice(at: nameStart, length: nameLength),
            let extra = bytes.slice(at: nameStart + nameLength, length: extraLength),
            bytes.slice(at: nameStart + nameLength + extraLength, length: commentLength) != nil
        else {
            throw fail("truncated central directory entry at offset \(position), expected its name and extra fields")
        }
        let name = lossyText(nameBytes)
        var entry = Entry(
            name: name, flags: field(8, UInt16.self), method: field(10, UInt16.self), crc: field(16, UInt32.self),
            compressedSize: Int(field(20, UInt32.self)), uncompressedSize: Int(field(24, UInt32.self)),
            localHeaderOffset: Int(field(42, UInt32.self)))

        // Zip64 extended information: the 64-bit values, in this order, of just those
        // fields whose 32-bit slot holds 0xFFFFFFFF.
        let marker = Int(Self.zip64Marker32)
        if entry.uncompressedSize == marker || entry.compressedSize == marker || entry.localHeaderOffset == marker {
            let extraBytes = Array(extra)
            var cursor = 0
            var info: [UInt64]?
            while let id = extraBytes.littleEndian(UInt16.self, at: cursor),
                let size = extraBytes.littleEndian(UInt16.self, at: cursor + 2)
            {
                let dataStart = cursor + 4
                if id == 0x0001, let data = extraBytes.slice(at: dataStart, length: Int(size)) {
                    let values = Array(data)
                    info = stride(from: 0, to: values.count - 7, by: 8).compactMap {
                        values.littleEndian(UInt64.self, at: $0)
                    }
                    break
                }
                cursor = dataStart + Int(size)
            }
            guard var values = info?[...] else {
                throw fail("member \(quoted(name)) has 0xFFFFFFFF sizes but no zip64 extra field, expected one")
            }
            func next(_ what: String) throws -> Int {
                guard let value = values.popFirst() else {
                    throw fail("member \(quoted(name)) zip64 extra field lacks the \(what), expected 8 bytes for it")
                }
                guard let result = Int(exactly: value) else {
                    throw fail("member \(quoted(name)) zip64 \(what) \(value) is beyond Int, expected a loadable size")
                }
                return result
            }
            if entry.uncompressedSize == marker { entry.uncompressedSize = try next("uncompressed size") }
            if entry.compressedSize == marker { entry.compressedSize = try next("compressed size") }
            if entry.localHeaderOffset == marker { entry.localHeaderOffset = try next("local header offset") }
        }
        return (entry, nameStart + nameLength + extraLength + commentLength)
    }

    // MARK: - Member contents

    /// The uncompressed contents of `entry`, checked against its CRC-32.
    func contents(of entry: Entry) throws -> [UInt8] {
        let member = "member \(quoted(entry.name))"
        if entry.flags & 1 != 0 {
            throw fail("\(member) is encrypted, expected an unencrypted archive")
        }
        let local = entry.localHeaderOffset
        guard local <= bytes.count, bytes.littleEndian(UInt32.self, at: local) == Self.localHeaderSignature,
            let nameLength = bytes.littleEndian(UInt16.self, at: local + 26),
            let extraLength = bytes.littleEndian(UInt16.self, at: local + 28)
        else {
            throw fail("\(member) local header at offset \(local) is missing or truncated, expected signature PK\\3\\4")
        }
        // The local header's extra field may differ in length from the central one
        // (NumPy writes a zip64 field only locally), so the data start comes from here.
        let dataStart = local + Self.localHeaderSize + Int(nameLength) + Int(extraLength)
        guard let data = bytes.slice(at: dataStart, length: entry.compressedSize) else {
            throw fail(
                "truncated, \(member) data at offset \(dataStart) of \(entry.compressedSize) bytes runs past the end (\(bytes.count) bytes)"
            )
        }

        let contents: [UInt8]
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw fail(
                    "\(member) is stored with \(entry.compressedSize) bytes, expected its size \(entry.uncompressedSize)"
                )
            }
            contents = Array(data)
        case 8:
            // Deflate expands at most 1032:1, so a larger declared size is corrupt; checking
            // first keeps a damaged header from asking for terabytes.
            let (limit, overflow) = entry.compressedSize.multipliedReportingOverflow(by: 1032)
            guard overflow || entry.uncompressedSize <= limit + 1024 else {
                throw fail(
                    "\(member) declares \(entry.uncompressedSize) bytes from \(entry.compressedSize) deflated, expected at most 1032 times as many"
                )
            }
            contents = try Zlib.inflate(data, expectedSize: entry.uncompressedSize, file: file, member: member)
        default:
            let known: [UInt16: String] = [9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd", 95: "xz"]
            let methodName = known[entry.method].map { " (\($0))" } ?? ""
            throw fail(
                "\(member) uses unknown compression method \(entry.method)\(methodName), expected 0 (stored) or 8 (deflated)"
            )
        }

        let crc = CRC32.checksum(contents)
        guard crc == entry.crc else {
            throw fail("bad CRC-32 for \(member): computed \(hex(crc)), expected \(hex(entry.crc)) from the directory")
        }
        return contents
    }

    // MARK: - Helpers

    private func fail(_ message: String) -> FormatError { FormatError(file: file, message: message) }

    private func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
