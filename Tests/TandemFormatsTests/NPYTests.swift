import Foundation
import TandemCore
import Testing

@testable import TandemFormats

// MARK: - NPY

@Suite struct NPYTests {
    static let numpyDTypes: [DType] = DType.allCases.filter { $0 != .bfloat16 }

    static func sample(_ dtype: DType, shape: [Int]) -> HostArray {
        let count = shape.reduce(1, *)
        let bytes = (0..<(count * dtype.byteSize)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let array = HostArray(shape: shape, dtype: dtype, bytes: bytes)
        // Keep bool elements 0 or 1 so the array is one NumPy would write.
        return dtype == .bool ? HostArray(shape: shape, dtype: .bool, bytes: bytes.map { $0 & 1 }) : array
    }

    // MARK: Round trips

    @Test(arguments: numpyDTypes, [[2, 3], [], [0, 4], [7]])
    func roundTrip(dtype: DType, shape: [Int]) throws {
        let array = Self.sample(dtype, shape: shape)
        let bytes = try NPY.encode(array)
        #expect(Array(bytes.prefix(8)) == NPY.magic + [1, 0], "dtype \(dtype) shape \(shape)")
        #expect((bytes.count - array.bytes.count) % 64 == 0, "data starts 64-byte aligned")
        #expect(try NPY.parse(bytes, name: "x.npy") == array, "dtype \(dtype) shape \(shape)")
    }

    @Test func writeThenRead() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/w.npy"
            let array = HostArray(shape: [2, 2], floats: [1, 2, 3, 4])
            try NPY.write(array, to: path)
            #expect(try NPY.read(path: path) == array)
            #expect(try FileIOListing.names(in: directory) == ["w.npy"], "no temporary file left")
        }
    }

    @Test func headerMatchesNumPy() throws {
        let bytes = try NPY.encode(HostArray(shape: [2, 3], floats: Array(repeating: 0, count: 6)))
        let header = String(decoding: bytes[10..<128], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"))
        #expect(header.hasSuffix(" \n"))
        #expect(bytes[8] == 118 && bytes[9] == 0, "header length 118, as np.save writes it")
    }

    @Test func bfloat16HasNoNPYType() {
        let array = HostArray(shape: [1], dtype: .bfloat16, bytes: [0, 0])
        expectFormatError("bfloat16", "no NPY") { _ = try NPY.encode(array, name: "b.npy") }
    }

    // MARK: Header variants

    @Test(arguments: [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
        "{ 'descr' : '<f4' ,'fortran_order':False,'shape':( 2 , ) , }   \n",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2], 'extra': None}",
    ])
    func headerSpellings(header: String) throws {
        let data: [UInt8] = [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]
        let array = try NPY.parse(npyBytes(header: header, data: data), name: "h.npy")
        #expect(array.shape == [2])
        #expect(array.floats() == [1, 2])
    }

    @Test(arguments: [UInt8(2), 3])
    func laterVersions(major: UInt8) throws {
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), 'note': 'é'}\n"
        let array = try NPY.parse(npyBytes(header: header, data: [1, 2, 3], major: major), name: "v.npy")
        #expect(array == HostArray(shape: [3], dtype: .uint8, bytes: [1, 2, 3]))
    }

    @Test func oneByteTypesAcceptAnyByteOrder() throws {
        let header = "{'descr': '>i1', 'fortran_order': False, 'shape': (1,), }"
        #expect(try NPY.parse(npyBytes(header: header, data: [0xFF]), name: "b.npy").ints() == [-1])
    }

    // MARK: Errors

    struct BadFile: CustomTestStringConvertible, Sendable {
        var label: String
        var bytes: [UInt8]
        var keywords: [String]
        var testDescription: String { label }
    }

    static func header(_ descr: String = "'<f4'", fortran: String = "False", shape: String = "(2,)") -> String {
        "{'descr': \(descr), 'fortran_order': \(fortran), 'shape': \(shape), }"
    }

    static let twoFloats: [UInt8] = [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]

    static let badFiles: [BadFile] = [
        BadFile(label: "empty", bytes: [], keywords: ["truncated", "magic"]),
        BadFile(
            label: "not npy", bytes: Array("PK\u{3}\u{4}hello world".utf8), keywords: ["not an NPY file", "magic"]),
        BadFile(label: "magic only", bytes: [0x93] + Array("NUMPY".utf8), keywords: ["truncated", "version"]),
        BadFile(
            label: "version 4", bytes: npyBytes(header: header(), data: twoFloats, major: 4),
            keywords: ["version 4.0", "expected 1.0, 2.0 or 3.0"]),
        BadFile(
            label: "header cut", bytes: Array(npyBytes(header: header(), data: []).prefix(30)),
            keywords: ["truncated header"]),
        BadFile(
            label: "big-endian", bytes: npyBytes(header: header("'>f4'"), data: twoFloats),
            keywords: ["big-endian", "'>f4'", "'<f4'"]),
        BadFile(
            label: "fortran", bytes: npyBytes(header: header(fortran: "True"), data: twoFloats),
            keywords: ["fortran_order", "True", "C order"]),
        BadFile(
            label: "object", bytes: npyBytes(header: header("'|O'"), data: twoFloats),
            keywords: ["object dtype", "'|O'"]),
        BadFile(
            label: "uint32", bytes: npyBytes(header: header("'<u4'"), data: twoFloats),
            keywords: ["unsupported dtype", "'<u4'", "<f4"]),
        BadFile(
            label: "structured", bytes: npyBytes(header: header("[('x', '<f4')]"), data: twoFloats),
            keywords: ["structured"]),
        BadFile(
            label: "truncated data", bytes: npyBytes(header: header(shape: "(3,)"), data: twoFloats),
            keywords: ["truncated data", "8 bytes", "expected 12", "[3]"]),
        BadFile(
            label: "extra data", bytes: npyBytes(header: header(shape: "(1,)"), data: twoFloats),
            keywords: ["4 extra bytes", "expected exactly 4"]),
        BadFile(
            label: "negative shape", bytes: npyBytes(header: header(shape: "(-2,)"), data: twoFloats),
            keywords: ["'shape' axis 0", "-2", "non-negative"]),
        BadFile(
            label: "shape overflow",
            bytes: npyBytes(header: header(shape: "(4294967296, 4294967296)"), data: twoFloats),
            keywords: ["more elements than Int"]),
        BadFile(
            label: "integer overflow", bytes: npyBytes(header: header(shape: "(99999999999999999999,)"), data: []),
            keywords: ["too large"]),
        BadFile(
            label: "missing shape", bytes: npyBytes(header: "{'descr': '<f4', 'fortran_order': False}", data: []),
            keywords: ["lacks 'shape'"]),
        BadFile(
            label: "missing descr", bytes: npyBytes(header: "{'shape': (1,), 'fortran_order': False}", data: []),
            keywords: ["lacks 'descr'"]),
        BadFile(
            label: "duplicate key",
            bytes: npyBytes(
                header: "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", data: twoFloats),
            keywords: ["'descr' twice"]),
        BadFile(
            label: "shape is a string", bytes: npyBytes(header: header(shape: "'2'"), data: twoFloats),
            keywords: ["'shape' is a string", "tuple"]),
        BadFile(
            label: "not a dict", bytes: npyBytes(header: "(1, 2)", data: []), keywords: ["a tuple", "dictionary"]),
        BadFile(
            label: "garbage after", bytes: npyBytes(header: header() + " x", data: twoFloats),
            keywords: ["after the dictionary"]),
        BadFile(
            label: "unterminated string", bytes: npyBytes(header: "{'descr: 1}", data: []),
            keywords: ["unterminated string"]),
        BadFile(
            label: "deep nesting", bytes: npyBytes(header: String(repeating: "(", count: 100), data: []),
            keywords: ["deeper than"]),
        BadFile(
            label: "bad UTF-8 in v3", bytes: npyBytes(rawHeader: [0x7B, 0xC3, 0x28, 0x7D], data: [], major: 3),
            keywords: ["UTF-8"]),
    ]

    @Test(arguments: badFiles)
    func rejects(file: BadFile) {
        expectFormatError(["bad.npy"] + file.keywords) { _ = try NPY.parse(file.bytes, name: "bad.npy") }
    }

    @Test func missingFileIsAnError() {
        expectFormatError("/nonexistent/x.npy", "cannot open", "No such file") {
            _ = try NPY.read(path: "/nonexistent/x.npy")
        }
    }
}

/// Directory listing for checks that no temporary file is left behind.
enum FileIOListing {
    static func names(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }
}
