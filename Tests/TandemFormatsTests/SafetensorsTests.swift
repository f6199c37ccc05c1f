import Foundation
import TandemCore
import Testing

@testable import TandemFormats

// MARK: - Safetensors

@Suite struct SafetensorsTests {
    static func everyDType() -> [String: HostArray] {
        var tensors: [String: HostArray] = [:]
        for (index, dtype) in DType.allCases.enumerated() {
            let shape = index % 2 == 0 ? [3] : [1, 3]
            let bytes = (0..<(3 * dtype.byteSize)).map { UInt8(truncatingIfNeeded: $0 * 13 + index) }
            tensors["t.\(dtype)"] = HostArray(
                shape: shape, dtype: dtype, bytes: dtype == .bool ? bytes.map { $0 & 1 } : bytes)
        }
        tensors["scalar"] = HostArray(shape: [], floats: [42])
        tensors["empty"] = HostArray(shape: [0, 7], floats: [])
        return tensors
    }

    // MARK: Round trips

    @Test func roundTripEveryDType() throws {
        let tensors = Self.everyDType()
        let metadata = ["step": "1200", "quote \" and \\ and \n": "ünïcode ✓", "format": "pt"]
        let bytes = Safetensors.encode(tensors, metadata: metadata)
        let (back, backMetadata) = try Safetensors.parse(bytes, name: "all.safetensors")
        #expect(back == tensors)
        #expect(backMetadata == metadata)
    }

    @Test func encodingIsDeterministicAndAligned() throws {
        var forward: [String: HostArray] = [:]
        var backward: [String: HostArray] = [:]
        let names = (0..<20).map { "layer\($0).weight" }
        for name in names { forward[name] = HostArray(shape: [1], floats: [Float(name.count)]) }
        for name in names.reversed() { backward[name] = forward[name] }
        let first = Safetensors.encode(forward, metadata: ["a": "1", "b": "2"])
        let second = Safetensors.encode(backward, metadata: ["b": "2", "a": "1"])
        #expect(first == second)
        let headerSize = Int(first.littleEndian(UInt64.self, at: 0)!)
        #expect((8 + headerSize) % 8 == 0, "data starts 8-byte aligned")
        let header = String(decoding: first[8..<(8 + headerSize)], as: UTF8.self)
        let positions = names.sorted().map { header.range(of: "\"\($0)\"")!.lowerBound }
        #expect(positions == positions.sorted(), "keys sorted in the header")
    }

    @Test func exactBytes() {
        let bytes = Safetensors.encode(["w": HostArray(shape: [1], floats: [1])], metadata: ["k": "v"])
        let header = #"{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let padded = header + String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        #expect(bytes == safetensorsBytes(header: padded, data: [0, 0, 0x80, 0x3F]))
    }

    /// `safetensors.numpy.save` 0.8.0 of b (int64 [3]), a (float32 [2, 3]), h (float16 [2]),
    /// z (uint8 [0, 4]) with metadata; its layout orders tensors by dtype, not by name.
    @Test func readsPythonSafetensors() throws {
        let bytes = base64Bytes(
            "EAEAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJzdGVwIjoiMyIsImZvcm1hdCI6Im5wIn0sImIiOnsiZHR5cGUiOiJJNjQiLCJzaGFwZSI6WzNdLCJkYXRhX29mZnNldHMiOlswLDI0XX0sImEiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzIsM10sImRhdGFfb2Zmc2V0cyI6WzI0LDQ4XX0sImgiOnsiZHR5cGUiOiJGMTYiLCJzaGFwZSI6WzJdLCJkYXRhX29mZnNldHMiOls0OCw1Ml19LCJ6Ijp7ImR0eXBlIjoiVTgiLCJzaGFwZSI6WzAsNF0sImRhdGFfb2Zmc2V0cyI6WzUyLDUyXX19ICAgICAgIAEAAAAAAAAA/v////////8DAAAAAAAAAAAAAAAAAIA/AAAAQAAAQEAAAIBAAACgQAA+AMA="
        )
        let (tensors, metadata) = try Safetensors.parse(bytes, name: "py.safetensors")
        #expect(metadata == ["step": "3", "format": "np"])
        #expect(tensors["a"] == HostArray(shape: [2, 3], floats: [0, 1, 2, 3, 4, 5]))
        #expect(try tensors["b"]?.ints() == [1, -2, 3])
        #expect(tensors["h"]?.dtype == .float16)
        #expect(tensors["h"]?.floats() == [1.5, -2])
        #expect(tensors["z"]?.shape == [0, 4])
    }

    @Test func writeThenRead() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/model.safetensors"
            let tensors = Self.everyDType()
            try Safetensors.write(tensors, metadata: ["epoch": "2"], to: path)
            let (back, metadata) = try Safetensors.read(path: path)
            #expect(back == tensors)
            #expect(metadata == ["epoch": "2"])
            // Overwrite in place: the old contents are replaced whole.
            try Safetensors.write(["only": HostArray(shape: [1], floats: [3])], to: path)
            #expect(try Safetensors.read(path: path).tensors.keys.sorted() == ["only"])
            #expect(try FileIOListing.names(in: directory) == ["model.safetensors"], "no temporary file left")
        }
    }

    // MARK: Failed writes leave the target alone

    @Test func failedWriteLeavesExistingFileUntouched() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/ckpt.safetensors"
            let original = ["w": HostArray(shape: [2], floats: [1, 2])]
            try Safetensors.write(original, to: path)
            let before = try fileBytes(path)

            // The temporary name is taken by a directory, so the new file cannot be created.
            let blocker = "\(path).tmp-\(ProcessInfo.processInfo.processIdentifier)"
            try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: false)
            expectFormatError("cannot create temporary file") {
                try Safetensors.write(["w": HostArray(shape: [1], floats: [9])], to: path)
            }
            #expect(try fileBytes(path) == before)
            try FileManager.default.removeItem(atPath: blocker)

            // A target directory that does not exist.
            let missing = directory + "/no/such/dir/ckpt.safetensors"
            expectFormatError("no/such/dir", "cannot create temporary file", "No such file") {
                try Safetensors.write(original, to: missing)
            }
            #expect(try FileIOListing.names(in: directory) == ["ckpt.safetensors"])
            #expect(try fileBytes(path) == before)
        }
    }

    @Test func failedRenameRemovesTemporaryFile() throws {
        try withTemporaryDirectory { directory in
            // The target is a non-empty directory, so the rename fails after the data is written.
            let target = directory + "/taken"
            try FileManager.default.createDirectory(atPath: target + "/inside", withIntermediateDirectories: true)
            expectFormatError("taken", "cannot rename") {
                try NPY.write(HostArray(shape: [1], floats: [1]), to: target)
            }
            #expect(try FileIOListing.names(in: directory) == ["taken"], "temporary file removed")
        }
    }

    // MARK: Errors

    struct BadHeader: CustomTestStringConvertible, Sendable {
        var label: String
        var bytes: [UInt8]
        var keywords: [String]
        var testDescription: String { label }

        init(_ label: String, header: String, data: [UInt8] = [0, 0, 0x80, 0x3F], _ keywords: [String]) {
            self.label = label
            self.bytes = safetensorsBytes(header: header, data: data)
            self.keywords = keywords
        }

        init(_ label: String, bytes: [UInt8], _ keywords: [String]) {
            self.label = label
            self.bytes = bytes
            self.keywords = keywords
        }
    }

    static func entry(_ dtype: String = "\"F32\"", shape: String = "[1]", offsets: String = "[0, 4]") -> String {
        "{\"dtype\": \(dtype), \"shape\": \(shape), \"data_offsets\": \(offsets)}"
    }

    static let badHeaders: [BadHeader] = [
        BadHeader("under 8 bytes", bytes: [1, 2, 3], ["truncated at 3 bytes", "8-byte"]),
        BadHeader(
            "header larger than file", bytes: [200, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8),
            ["truncated", "header size 200", "larger than"]),
        BadHeader("absurd header", bytes: [0, 0, 0, 0, 0, 0, 0, 1] + Array("{}".utf8), ["absurd", "100000000"]),
        BadHeader("invalid UTF-8", bytes: [4, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0xFF, 0xFE, 0x7D], ["not valid UTF-8"]),
        BadHeader("invalid JSON", header: "{\"w\": ", ["not valid JSON"]),
        BadHeader("top-level array", header: "[1, 2]", ["not valid JSON", "object"]),
        BadHeader(
            "entry not object", header: "{\"w\": 3}", ["tensor 'w'", "a number", "dtype, shape and data_offsets"]),
        BadHeader(
            "missing dtype", header: "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}",
            ["tensor 'w'", "lacks 'dtype'"]),
        BadHeader(
            "missing shape", header: "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}",
            ["tensor 'w'", "lacks 'shape'"]),
        BadHeader(
            "missing offsets", header: "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}",
            ["tensor 'w'", "lacks 'data_offsets'"]),
        BadHeader("dtype not string", header: "{\"w\": \(entry("7"))}", ["tensor 'w'", "dtype is a number"]),
        BadHeader(
            "unknown dtype", header: "{\"w\": \(entry("\"F8_E4M3\""))}",
            ["tensor 'w'", "unknown dtype 'F8_E4M3'", "BF16"]),
        BadHeader(
            "negative shape", header: "{\"w\": \(entry(shape: "[-1]"))}",
            ["tensor 'w'", "shape[0] is -1", "non-negative integer"]),
        BadHeader(
            "fractional shape", header: "{\"w\": \(entry(shape: "[1.5]"))}",
            ["tensor 'w'", "shape[0] is 1.5", "non-negative integer"]),
        BadHeader(
            "float-spelled shape", header: "{\"w\": \(entry(shape: "[1.0]"))}", ["tensor 'w'", "shape[0]", "integer"]),
        BadHeader(
            "boolean shape", header: "{\"w\": \(entry(shape: "[true]"))}", ["tensor 'w'", "shape[0] is a boolean"]),
        BadHeader("string shape", header: "{\"w\": \(entry(shape: "\"1\""))}", ["tensor 'w'", "shape is a string"]),
        BadHeader(
            "huge shape", header: "{\"w\": \(entry(shape: "[9223372036854775807, 4]"))}",
            ["tensor 'w'", "more elements than Int"]),
        BadHeader(
            "offsets count", header: "{\"w\": \(entry(offsets: "[0, 4, 8]"))}",
            ["tensor 'w'", "data_offsets has 3 entries", "[begin, end]"]),
        BadHeader(
            "negative offset", header: "{\"w\": \(entry(offsets: "[-4, 0]"))}", ["tensor 'w'", "data_offsets[0] is -4"]),
        BadHeader("begin after end", header: "{\"w\": \(entry(offsets: "[4, 0]"))}", ["tensor 'w'", "begin > end"]),
        BadHeader(
            "size mismatch", header: "{\"w\": \(entry(shape: "[2]"))}",
            ["tensor 'w'", "span 4 bytes", "expected 8", "[2]", "F32"]),
        BadHeader(
            "offset past end", header: "{\"w\": \(entry(offsets: "[4, 8]"))}",
            ["tensor 'w'", "offsets end 8", "past the end", "4-byte"]),
        BadHeader(
            "overlap",
            header: "{\"a\": \(entry(offsets: "[0, 4]")), \"b\": \(entry(shape: "[2]", offsets: "[0, 8]"))}",
            data: Array(repeating: 0, count: 8), ["'a'", "'b'", "overlap"]),
        BadHeader(
            "gap",
            header: "{\"a\": \(entry(offsets: "[0, 4]")), \"b\": \(entry(offsets: "[8, 12]"))}",
            data: Array(repeating: 0, count: 12), ["gap of 4 unused bytes", "offset 4", "tensor 'b'", "fully covered"]),
        BadHeader(
            "unused tail", header: "{\"w\": \(entry())}", data: Array(repeating: 0, count: 10),
            ["6 unused bytes", "after offset 4", "fully covered"]),
        BadHeader("unused buffer, no tensors", header: "{}", data: [1], ["1 unused bytes"]),
        BadHeader(
            "duplicate tensor", header: "{\"w\": \(entry()), \"w\": \(entry())}", ["duplicate key 'w'", "the header"]),
        BadHeader(
            "duplicate escaped", header: "{\"w\": \(entry()), \"\\u0077\": \(entry())}", ["duplicate key 'w'"]),
        BadHeader(
            "duplicate field",
            header: "{\"w\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
            ["duplicate key 'dtype'", "tensor 'w'"]),
        BadHeader(
            "metadata not object", header: "{\"__metadata__\": [1], \"w\": \(entry())}", ["'__metadata__' is an array"]),
        BadHeader(
            "metadata value not string", header: "{\"__metadata__\": {\"step\": 3}, \"w\": \(entry())}",
            ["'__metadata__' value for 'step' is a number", "expected a string"]),
    ]

    @Test(arguments: badHeaders)
    func rejects(file: BadHeader) {
        expectFormatError(["bad.safetensors"] + file.keywords) {
            _ = try Safetensors.parse(file.bytes, name: "bad.safetensors")
        }
    }

    @Test func duplicateKeyScanner() {
        #expect(JSONDuplicateKeys.first(in: Array(#"{"a":{"x":1,"y":[{"x":2}]},"b":"{\"a\":1}"}"#.utf8)) == nil)
        let found = JSONDuplicateKeys.first(in: Array(#"{"a":{"x":1,"y":2,"x":3}}"#.utf8))
        #expect(found?.path == ["a"])
        #expect(found?.key == "x")
    }
}
