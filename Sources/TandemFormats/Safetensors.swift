import Foundation
import TandemCore

// MARK: - Safetensors files

/// Reads and writes the safetensors format: an 8-byte little-endian header size `N`, `N`
/// bytes of JSON describing each tensor, then one buffer holding every tensor's bytes.
///
/// ```text
/// {"__metadata__": {"step": "1200"},
///  "fc.weight": {"dtype": "F32", "shape": [10, 64], "data_offsets": [0, 2560]}, ...}
/// ```
///
/// Reading validates everything the specification requires — known dtypes, whole
/// non-negative shapes, offsets that match the shape and lie inside the buffer, ranges that
/// neither overlap nor leave gaps — and names the offending tensor in the `FormatError`.
/// Writing is deterministic: keys sorted, tensors laid out in key order, the header padded
/// with spaces so the data starts on an 8-byte boundary.
///
/// ```swift
/// try Safetensors.write(["w": HostArray(shape: [2], floats: [1, 2])], metadata: ["step": "3"], to: "ckpt.safetensors")
/// let (tensors, metadata) = try Safetensors.read(path: "ckpt.safetensors")
/// ```
///
/// Format: <https://github.com/huggingface/safetensors#format>
public enum Safetensors {
    /// Headers larger than this are treated as corrupt rather than read.
    public static let maximumHeaderSize = 100_000_000

    /// The file's dtype names, by element type.
    static let dtypeNames: [(name: String, dtype: DType)] = [
        ("F64", .float64), ("F32", .float32), ("F16", .float16), ("BF16", .bfloat16),
        ("I64", .int64), ("I32", .int32), ("I16", .int16), ("I8", .int8), ("U8", .uint8), ("BOOL", .bool),
    ]

    static let metadataKey = "__metadata__"

    // MARK: - Reading

    /// Reads the file at `path`.
    public static func read(path: String) throws -> (tensors: [String: HostArray], metadata: [String: String]) {
        try parse(FileIO.contents(of: path), name: path)
    }

    /// Parses the bytes of a safetensors file; `name` labels errors.
    public static func parse(
        _ bytes: [UInt8], name: String
    ) throws -> (tensors: [String: HostArray], metadata: [String: String]) {
        func fail(_ message: String) -> FormatError { FormatError(file: name, message: message) }

        // Header size and header text.
        guard let declaredSize = bytes.littleEndian(UInt64.self, at: 0) else {
            throw fail("truncated at \(bytes.count) bytes, expected an 8-byte little-endian header size")
        }
        guard declaredSize <= UInt64(maximumHeaderSize) else {
            throw fail("header size \(declaredSize) is absurd, expected at most \(maximumHeaderSize) bytes")
        }
        let headerSize = Int(declaredSize)
        guard let headerBytes = bytes.slice(at: 8, length: headerSize) else {
            throw fail(
                "truncated, header size \(headerSize) is larger than the \(bytes.count - 8) bytes after it, expected at most that"
            )
        }
        let header = Array(headerBytes)
        guard String(validating: header, as: UTF8.self) != nil else {
            throw fail("header is not valid UTF-8, expected UTF-8 JSON")
        }
        guard header.first == UInt8(ascii: "{"),
            let parsed = try? JSONSerialization.jsonObject(with: Data(header)),
            let object = parsed as? [String: Any]
        else {
            throw fail("header is not valid JSON, expected a JSON object starting with '{'")
        }
        if let duplicate = JSONDuplicateKeys.first(in: header) {
            let place =
                duplicate.path.isEmpty ? "the header" : "tensor \(quoted(duplicate.path.joined(separator: ".")))"
            throw fail("duplicate key \(quoted(duplicate.key)) in \(place), expected each key once")
        }

        // Metadata: string to string.
        var metadata: [String: String] = [:]
        if let rawMetadata = object[metadataKey] {
            guard let entries = rawMetadata as? [String: Any] else {
                throw fail("'__metadata__' is \(kind(of: rawMetadata)), expected an object of strings")
            }
            for (key, value) in entries {
                guard let text = value as? String else {
                    throw fail("'__metadata__' value for \(quoted(key)) is \(kind(of: value)), expected a string")
                }
                metadata[key] = text
            }
        }

        // Tensor entries, in name order so that errors are deterministic.
        let dataStart = 8 + headerSize
        let bufferSize = bytes.count - dataStart
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
        for tensorName in object.keys.sorted() where tensorName != metadataKey {
            let tensor = "tensor \(quoted(tensorName))"
            guard let fields = object[tensorName] as? [String: Any] else {
                throw fail(
                    "\(tensor) is \(kind(of: object[tensorName] as Any)), expected an object with dtype, shape and data_offsets"
                )
            }
            guard let dtypeValue = fields["dtype"] else { throw fail("\(tensor) lacks 'dtype', expected e.g. \"F32\"") }
            guard let dtypeName = dtypeValue as? String else {
                throw fail("\(tensor) dtype is \(kind(of: dtypeValue)), expected a string such as \"F32\"")
            }
            guard let dtype = dtypeNames.first(where: { $0.name == dtypeName })?.dtype else {
                throw fail(
                    "\(tensor) has unknown dtype \(quoted(dtypeName)), expected one of \(dtypeNames.map(\.name).joined(separator: " "))"
                )
            }
            let shape = try integers(fields["shape"], field: "shape", tensor: tensor, count: nil, fail)
            let offsets = try integers(fields["data_offsets"], field: "data_offsets", tensor: tensor, count: 2, fail)
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end else {
                throw fail("\(tensor) data_offsets [\(begin), \(end)] begin > end, expected begin <= end")
            }
            guard let expected = CheckedSize.byteCount(shape, elementSize: dtype.byteSize) else {
                throw fail("\(tensor) shape \(shape) has more elements than Int holds, expected a loadable tensor")
            }
            guard end - begin == expected else {
                throw fail(
                    "\(tensor) data_offsets [\(begin), \(end)] span \(end - begin) bytes, expected \(expected) for shape \(shape) of \(dtypeName)"
                )
            }
            guard end <= bufferSize else {
                throw fail(
                    "truncated, \(tensor) data_offsets end \(end) is past the end of the \(bufferSize)-byte data buffer, expected at most \(bufferSize)"
                )
            }
            entries.append((tensorName, dtype, shape, begin, end))
        }

        // The ranges must tile the buffer exactly: no overlap, no gap, nothing left over.
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        var previous: String?
        for entry in entries {
            if entry.begin < covered, let previous {
                throw fail(
                    "tensors \(quoted(previous)) and \(quoted(entry.name)) overlap: \(quoted(entry.name)) begins at offset \(entry.begin) before \(covered), expected disjoint ranges"
                )
            }
            if entry.begin > covered {
                throw fail(
                    "gap of \(entry.begin - covered) unused bytes at offset \(covered) before tensor \(quoted(entry.name)), expected the data buffer fully covered"
                )
            }
            covered = entry.end
            previous = entry.name
        }
        if covered != bufferSize {
            throw fail(
                "\(bufferSize - covered) unused bytes at the end of the data buffer after offset \(covered), expected the data buffer fully covered"
            )
        }

        var tensors: [String: HostArray] = [:]
        for entry in entries {
            let data = Array(bytes[(dataStart + entry.begin)..<(dataStart + entry.end)])
            tensors[entry.name] = HostArray(shape: entry.shape, dtype: entry.dtype, bytes: data)
        }
        return (tensors, metadata)
    }

    /// A JSON array of non-negative integers (of exactly `count` when given).
    private static func integers(
        _ value: Any?, field: String, tensor: String, count: Int?, _ fail: (String) -> FormatError
    ) throws -> [Int] {
        let what = count == 2 ? "[begin, end]" : "an array of non-negative integers"
        guard let value else { throw fail("\(tensor) lacks '\(field)', expected \(what)") }
        guard let items = value as? [Any] else {
            throw fail("\(tensor) \(field) is \(kind(of: value)), expected \(what)")
        }
        if let count, items.count != count {
            throw fail("\(tensor) \(field) has \(items.count) entries, expected \(what)")
        }
        return try items.enumerated().map { index, item in
            guard let integer = nonNegativeInteger(item) else {
                throw fail("\(tensor) \(field)[\(index)] is \(describe(item)), expected a non-negative integer")
            }
            return integer
        }
    }

    /// `value` as an `Int` when JSON held it as a non-negative integer literal; booleans and
    /// numbers with a fraction or exponent are refused.
    private static func nonNegativeInteger(_ value: Any) -> Int? {
        guard let number = value as? NSNumber else { return nil }
        let type = String(cString: number.objCType)
        guard ["i", "s", "l", "q"].contains(type) else { return nil }
        let integer = number.int64Value
        return integer >= 0 ? Int(exactly: integer) : nil
    }

    /// A JSON value's kind, with an article, for messages.
    private static func kind(of value: Any) -> String {
        switch value {
        case is NSNull: "null"
        case is String: "a string"
        case is [Any]: "an array"
        case is [String: Any]: "an object"
        case let number as NSNumber: String(cString: number.objCType) == "c" ? "a boolean" : "a number"
        default: "an unknown value"
        }
    }

    /// A JSON scalar's value where it is a number, else its kind, for messages.
    private static func describe(_ value: Any) -> String {
        if let number = value as? NSNumber, String(cString: number.objCType) != "c" { return "\(number)" }
        return kind(of: value)
    }

    // MARK: - Writing

    /// The bytes of a safetensors file holding `tensors` and `metadata`. The same input
    /// always gives the same bytes.
    public static func encode(_ tensors: [String: HostArray], metadata: [String: String] = [:]) -> [UInt8] {
        precondition(tensors[metadataKey] == nil, "a tensor cannot be named \(metadataKey); it is the metadata key")
        let names = tensors.keys.sorted(by: utf8Order)
        var json = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted(by: utf8Order).map {
                "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))"
            }
            fields.append("\(jsonString(metadataKey)):{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for name in names {
            guard let tensor = tensors[name] else { continue }
            precondition(
                tensor.bytes.count == CheckedSize.byteCount(tensor.shape, elementSize: tensor.dtype.byteSize),
                "tensor \(name) holds \(tensor.bytes.count) bytes, which does not match shape \(tensor.shape) of \(tensor.dtype)"
            )
            let dtypeName = dtypeNames.first { $0.dtype == tensor.dtype }?.name ?? "F32"
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            let end = offset + tensor.bytes.count
            fields.append(
                "\(jsonString(name)):{\"dtype\":\"\(dtypeName)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}"
            )
            offset = end
        }
        json += fields.joined(separator: ",") + "}"

        // Pad the header with spaces (allowed by the format) so the data starts 8-byte aligned.
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + header.count + offset)
        bytes.appendLittleEndian(UInt64(header.count))
        bytes += header
        for name in names { bytes += tensors[name]?.bytes ?? [] }
        return bytes
    }

    /// Writes `tensors` and `metadata` to `path` atomically.
    ///
    /// The bytes go to `"<path>.tmp-<pid>"`, which is flushed to disk, renamed over `path`,
    /// and the directory flushed: a reader or a crash sees the old file or the whole new one,
    /// never a torn checkpoint. On failure `path` is left as it was.
    public static func write(_ tensors: [String: HostArray], metadata: [String: String] = [:], to path: String) throws {
        try FileIO.writeAtomically(encode(tensors, metadata: metadata), to: path)
    }

    // MARK: - JSON text

    /// Orders strings by their UTF-8 bytes, so output does not depend on Unicode tables.
    private static func utf8Order(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// `text` as a JSON string literal: quotes, backslashes and control characters escaped,
    /// everything else verbatim UTF-8.
    static func jsonString(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
