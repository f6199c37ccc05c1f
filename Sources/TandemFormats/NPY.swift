import TandemCore

// MARK: - NPY files

/// Reads and writes NumPy's `.npy` format: a magic string, a version, a Python-dictionary
/// header naming dtype, order and shape, then the raw elements.
///
/// Versions 1.0, 2.0 and 3.0 are read; version 1.0 is written (2.0 when the header would
/// not fit 64 KiB). Only little-endian, C-order arrays of the `DType` element types are
/// accepted; anything else is a `FormatError` saying what was found and what was expected.
///
/// ```swift
/// let images = try NPY.read(path: "images.npy")   // uint8 [1797, 8, 8]
/// let pixels = images.floats()
/// ```
///
/// Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>
public enum NPY {
    /// `\x93NUMPY`.
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// The descr strings read and written, by element type.
    static let descriptions: [(descr: String, dtype: DType)] = [
        ("<f8", .float64), ("<f4", .float32), ("<f2", .float16),
        ("<i8", .int64), ("<i4", .int32), ("<i2", .int16), ("|i1", .int8),
        ("|u1", .uint8), ("|b1", .bool),
    ]

    // MARK: - Reading

    /// Reads the `.npy` file at `path`.
    public static func read(path: String) throws -> HostArray {
        try parse(FileIO.contents(of: path), name: path)
    }

    /// Parses the bytes of an `.npy` file; `name` labels errors.
    public static func parse(_ bytes: [UInt8], name: String) throws -> HostArray {
        func fail(_ message: String) -> FormatError { FormatError(file: name, message: message) }

        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            if bytes.count < magic.count, Array(magic[0..<bytes.count]) == bytes {
                throw fail("truncated at \(bytes.count) bytes, expected the 6-byte NPY magic '\\x93NUMPY'")
            }
            throw fail("not an NPY file, expected the magic '\\x93NUMPY' at the start")
        }
        guard let major = bytes.littleEndian(UInt8.self, at: 6), let minor = bytes.littleEndian(UInt8.self, at: 7)
        else { throw fail("truncated at \(bytes.count) bytes, expected the format version after the magic") }

        // Header length: 2 bytes in version 1, 4 bytes in versions 2 and 3.
        let headerStart: Int
        let headerLength: Int?
        switch major {
        case 1:
            headerStart = 10
            headerLength = bytes.littleEndian(UInt16.self, at: 8).map(Int.init)
        case 2, 3:
            headerStart = 12
            headerLength = bytes.littleEndian(UInt32.self, at: 8).map { Int($0) }
        default:
            throw fail("unsupported NPY version \(major).\(minor), expected 1.0, 2.0 or 3.0")
        }
        guard let headerLength else {
            throw fail("truncated at \(bytes.count) bytes, expected the header length of NPY version \(major).\(minor)")
        }
        guard let headerBytes = bytes.slice(at: headerStart, length: headerLength) else {
            throw fail(
                "truncated header, \(bytes.count - headerStart) bytes after the preamble, expected \(headerLength)")
        }

        // Versions 1 and 2 store the header in Latin-1, version 3 in UTF-8.
        let text: String
        if major == 3 {
            guard let decoded = String(validating: headerBytes, as: UTF8.self) else {
                throw fail("header is not valid UTF-8, expected a UTF-8 dictionary (NPY 3.0)")
            }
            text = decoded
        } else {
            var decoded = ""
            decoded.unicodeScalars.append(contentsOf: headerBytes.map { Unicode.Scalar($0) })
            text = decoded
        }
        let header: NPYHeader
        do {
            header = try NPYHeader.parse(text)
        } catch {
            throw fail(error.message)
        }

        let dtype = try dtype(descr: header.descr, name: name)
        if header.fortranOrder {
            throw fail("'fortran_order' is True, expected False (C order); save with np.ascontiguousarray")
        }
        guard let expected = CheckedSize.byteCount(header.shape, elementSize: dtype.byteSize) else {
            throw fail("shape \(header.shape) has more elements than Int holds, expected a loadable array")
        }
        let dataStart = headerStart + headerLength
        let available = bytes.count - dataStart
        if available < expected {
            throw fail(
                "truncated data, \(available) bytes after the header, expected \(expected) for shape \(header.shape) of \(dtype)"
            )
        }
        if available > expected {
            throw fail(
                "\(available - expected) extra bytes after the data, expected exactly \(expected) for shape \(header.shape) of \(dtype)"
            )
        }
        return HostArray(shape: header.shape, dtype: dtype, bytes: Array(bytes[dataStart...]))
    }

    /// The element type a descr string such as `'<f4'` names.
    static func dtype(descr: String, name: String) throws -> DType {
        func fail(_ message: String) -> FormatError { FormatError(file: name, message: message) }
        let accepted = descriptions.map(\.descr).joined(separator: " ")
        guard let order = descr.first, "<>|=".contains(order) else {
            throw fail("dtype \(quoted(descr)) has no byte-order mark, expected one of \(accepted)")
        }
        let code = String(descr.dropFirst())
        guard let match = descriptions.first(where: { $0.descr.dropFirst() == code }) else {
            if code.hasPrefix("O") {
                throw fail("object dtype \(quoted(descr)) cannot be read without pickle, expected one of \(accepted)")
            }
            throw fail("unsupported dtype \(quoted(descr)), expected one of \(accepted)")
        }
        if order == ">" && match.dtype.byteSize > 1 {
            throw fail(
                "big-endian dtype \(quoted(descr)) is not supported, expected little-endian \(quoted(match.descr))")
        }
        return match.dtype
    }

    // MARK: - Writing

    /// The bytes of an `.npy` file holding `array`; `name` labels errors.
    ///
    /// - Throws: `FormatError` for `bfloat16`, which NumPy has no type for.
    public static func encode(_ array: HostArray, name: String = "array") throws -> [UInt8] {
        guard let descr = descriptions.first(where: { $0.dtype == array.dtype })?.descr else {
            throw FormatError(
                file: name,
                message: "dtype \(array.dtype) has no NPY equivalent, expected a NumPy dtype (use safetensors)")
        }
        let shape: String
        switch array.shape.count {
        case 0: shape = "()"
        case 1: shape = "(\(array.shape[0]),)"
        default: shape = "(" + array.shape.map(String.init).joined(separator: ", ") + ")"
        }
        var header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }".utf8)

        // Pad with spaces and a newline so the data starts on a 64-byte boundary.
        let version: UInt8 = header.count + 11 > 65535 ? 2 : 1
        let preamble = version == 1 ? 10 : 12
        let total = (preamble + header.count + 1 + 63) / 64 * 64
        header += [UInt8](repeating: 0x20, count: total - preamble - header.count - 1) + [0x0A]

        var bytes = magic + [version, 0]
        if version == 1 {
            bytes.appendLittleEndian(UInt16(header.count))
        } else {
            bytes.appendLittleEndian(UInt32(header.count))
        }
        bytes += header
        bytes += array.bytes
        return bytes
    }

    /// Writes `array` to `path` atomically (see `Safetensors.write`).
    public static func write(_ array: HostArray, to path: String) throws {
        try FileIO.writeAtomically(encode(array, name: path), to: path)
    }
}
