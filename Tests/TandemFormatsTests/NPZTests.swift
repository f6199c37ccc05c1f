import Testing

@testable import TandemFormats

// MARK: - NPZ and zip

@Suite struct NPZTests {
    /// `np.savez(f, a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.array([1, -2, 3]))`
    /// with NumPy 2.4: stored members whose local headers carry zip64 extra fields.
    static let numpySavez = base64Bytes(
        "UEsDBC0AAAAAAAAAIQBP6QAq//////////8FABQAYS5ucHkBABAAmAAAAAAAAACYAAAAAAAAAJNOVU1QWQEAdgB7J2Rlc2NyJzogJzxmNCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgyLCAzKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAAAAAAAAgD8AAABAAABAQAAAgEAAAKBAUEsDBC0AAAAAAAAAIQB0qPMw//////////8FABQAYi5ucHkBABAAmAAAAAAAAACYAAAAAAAAAJNOVU1QWQEAdgB7J2Rlc2NyJzogJzxpOCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgzLCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAQAAAAAAAAD+/////////wMAAAAAAAAAUEsBAi0DLQAAAAAAAAAhAE/pACqYAAAAmAAAAAUAAAAAAAAAAAAAAIABAAAAAGEubnB5UEsBAi0DLQAAAAAAAAAhAHSo8zCYAAAAmAAAAAUAAAAAAAAAAAAAAIABzwAAAGIubnB5UEsFBgAAAAACAAIAZgAAAJ4BAAAAAA=="
    )

    /// The same arrays through `np.savez_compressed`: deflated members (real Huffman codes).
    static let numpySavezCompressed = base64Bytes(
        "UEsDBC0AAAAIAAAAIQBP6QAq//////////8FABQAYS5ucHkBABAAmAAAAAAAAABVAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6CsaaOgq1CmQDLgYwaLAHEg5ABMQNQLzAAQBQSwMELQAAAAgAAAAhAHSo8zD//////////wUAFABiLm5weQEAEACYAAAAAAAAAE4AAAAAAAAAm+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaxjqaOgq1ChQALkYGCPj3HwKYoXwAUEsBAi0DLQAAAAgAAAAhAE/pACpVAAAAmAAAAAUAAAAAAAAAAAAAAIABAAAAAGEubnB5UEsBAi0DLQAAAAgAAAAhAHSo8zBOAAAAmAAAAAUAAAAAAAAAAAAAAIABjAAAAGIubnB5UEsFBgAAAAACAAIAZgAAABEBAAAAAA=="
    )

    static let expectedA = HostArray(shape: [2, 3], floats: [0, 1, 2, 3, 4, 5])
    static let expectedB = HostArray(shape: [3], integers: [1, -2, 3])

    @Test(arguments: [("savez", numpySavez), ("savez_compressed", numpySavezCompressed)])
    func readsNumPyArchives(label: String, bytes: [UInt8]) throws {
        let arrays = try NPZ.parse(bytes, name: "\(label).npz")
        #expect(arrays.keys.sorted() == ["a", "b"], "\(label)")
        #expect(arrays["a"] == Self.expectedA, "\(label)")
        #expect(arrays["b"] == Self.expectedB, "\(label)")
    }

    @Test func readsFromDisk() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/arrays.npz"
            try writeBytes(Self.numpySavezCompressed, to: path)
            #expect(try NPZ.read(path: path)["a"] == Self.expectedA)
        }
    }

    /// Members built here: stored and deflated, with and without zip64 size fields,
    /// including one larger than a deflate stored block.
    @Test(arguments: [false, true], [false, true])
    func builtArchives(deflate: Bool, zip64: Bool) throws {
        let big = HostArray(shape: [300, 70], floats: (0..<21000).map { Float($0) * 0.5 })
        let small = HostArray(shape: [2], integers: [4, 5], dtype: .int32)
        let archive = ZipBuilder(members: [
            .init(name: "big.npy", data: try NPY.encode(big), deflate: deflate, zip64: zip64),
            .init(name: "small.npy", data: try NPY.encode(small), deflate: deflate, zip64: zip64),
            .init(name: "empty.npy", data: try NPY.encode(HostArray(shape: [0], floats: [])), deflate: deflate),
        ]).build()
        let arrays = try NPZ.parse(archive, name: "built.npz")
        #expect(arrays["big"] == big, "deflate \(deflate) zip64 \(zip64)")
        #expect(arrays["small"] == small, "deflate \(deflate) zip64 \(zip64)")
        #expect(arrays["empty"]?.count == 0, "deflate \(deflate) zip64 \(zip64)")
    }

    @Test func archiveWithCommentAndZip64EndRecord() throws {
        let member = try NPY.encode(Self.expectedB)
        var archive = ZipBuilder(members: [.init(name: "b.npy", data: member)]).build()
        // Rewrite the end record as zip64: zip64 end record, locator, then an end record
        // whose fields all defer to it, followed by a comment.
        let end = archive.count - 22
        let directoryOffset = Int(archive.littleEndian(UInt32.self, at: end + 16)!)
        let directorySize = Int(archive.littleEndian(UInt32.self, at: end + 12)!)
        archive.removeLast(22)
        let zip64End = archive.count
        archive.append32(0x0606_4B50)
        archive.append64(44)
        archive.append16(45)
        archive.append16(45)
        archive.append32(0)
        archive.append32(0)
        archive.append64(1)
        archive.append64(1)
        archive.append64(directorySize)
        archive.append64(directoryOffset)
        archive.append32(0x0706_4B50)
        archive.append32(0)
        archive.append64(zip64End)
        archive.append32(1)
        archive.append32(0x0605_4B50)
        archive.append32(0)
        archive.append16(0xFFFF)
        archive.append16(0xFFFF)
        archive.append32(0xFFFF_FFFF)
        archive.append32(0xFFFF_FFFF)
        let comment = Array("written by a test".utf8)
        archive.append16(comment.count)
        archive += comment
        #expect(try NPZ.parse(archive, name: "z64.npz")["b"] == Self.expectedB)
    }

    // MARK: Errors

    @Test func notAZip() {
        expectFormatError("x.npz", "not a zip", "empty") { _ = try NPZ.parse([], name: "x.npz") }
        expectFormatError("x.npz", "not a zip") { _ = try NPZ.parse(Array("hello, world".utf8), name: "x.npz") }
        expectFormatError("x.npz", "not a zip") { _ = try NPZ.parse(try NPY.encode(Self.expectedA), name: "x.npz") }
    }

    @Test func truncatedArchives() {
        // Cut before the end record: no directory left.
        expectFormatError("truncated", "end-of-central-directory") {
            _ = try NPZ.parse(Array(Self.numpySavez.prefix(300)), name: "t.npz")
        }
        // Member data that runs past the end of the file.
        var archive = ZipBuilder(members: [.init(name: "a.npy", data: try! NPY.encode(Self.expectedA))]).build()
        let end = archive.count - 22
        let directory = Int(archive.littleEndian(UInt32.self, at: end + 16)!)
        archive.replaceSubrange((directory + 20)..<(directory + 24), with: [0xFF, 0xFF, 0, 0])
        expectFormatError("truncated", "member 'a.npy'", "runs past the end") {
            _ = try NPZ.parse(archive, name: "t.npz")
        }
        // A central directory that claims more entries than it holds.
        var counted = ZipBuilder(members: [.init(name: "a.npy", data: [1, 2, 3])]).build()
        counted[counted.count - 12] = 5
        expectFormatError("entry 1 of 5", "missing or truncated") { _ = try NPZ.parse(counted, name: "t.npz") }
    }

    @Test func unknownCompressionMethod() {
        let archive = ZipBuilder(members: [.init(name: "a.npy", data: [1, 2, 3], method: 12)]).build()
        expectFormatError("m.npz", "member 'a.npy'", "compression method 12", "bzip2", "expected 0 (stored) or 8") {
            _ = try NPZ.parse(archive, name: "m.npz")
        }
    }

    @Test(arguments: [false, true])
    func badCRC(deflate: Bool) throws {
        let data = try NPY.encode(Self.expectedA)
        let archive = ZipBuilder(members: [.init(name: "a.npy", data: data, deflate: deflate, crc: 0xDEAD_BEEF)])
            .build()
        expectFormatError("c.npz", "bad CRC-32", "member 'a.npy'", "expected 0xdeadbeef") {
            _ = try NPZ.parse(archive, name: "c.npz")
        }
    }

    @Test func memberNotNPY() {
        let archive = ZipBuilder(members: [.init(name: "readme.txt", data: Array("hi".utf8))]).build()
        expectFormatError("n.npz", "member 'readme.txt'", "not a .npy") { _ = try NPZ.parse(archive, name: "n.npz") }
    }

    @Test func duplicateMembers() throws {
        let data = try NPY.encode(Self.expectedB)
        let archive = ZipBuilder(members: [.init(name: "b.npy", data: data), .init(name: "b.npy", data: data)]).build()
        expectFormatError("appears twice") { _ = try NPZ.parse(archive, name: "d.npz") }
    }

    @Test func badMemberIsNamed() {
        let archive = ZipBuilder(members: [.init(name: "w.npy", data: [0x93, 1, 2])]).build()
        expectFormatError("bad.npz[w.npy]", "not an NPY file") { _ = try NPZ.parse(archive, name: "bad.npz") }
    }

    @Test func corruptDeflateData() {
        var builder = ZipBuilder(members: [.init(name: "a.npy", data: Array(repeating: 7, count: 40), deflate: true)])
        // Block type 3 is reserved: zlib reports "invalid block type".
        let archive = builder.build().replacingFirst(
            of: storedDeflate(Array(repeating: 7, count: 40)), with: [0x07] + Array(repeating: 0, count: 44))
        expectFormatError("member 'a.npy'", "corrupt deflate data", "Z_DATA_ERROR") {
            _ = try NPZ.parse(archive, name: "z.npz")
        }
        // A stream without its final block.
        builder.members[0].data = Array(repeating: 1, count: 10)
        let unfinished = builder.build().replacingFirst(
            of: storedDeflate(Array(repeating: 1, count: 10)),
            with: storedDeflate(Array(repeating: 1, count: 10), final: false))
        expectFormatError("member 'a.npy'", "truncated deflate stream") { _ = try NPZ.parse(unfinished, name: "z.npz") }
        // More data than the directory declares.
        builder.members[0].declaredSize = 5
        expectFormatError("member 'a.npy'", "more than the declared 5 bytes") {
            _ = try NPZ.parse(builder.build(), name: "z.npz")
        }
        // Less data than declared.
        builder.members[0].declaredSize = 50
        expectFormatError("member 'a.npy'", "inflates to 10 bytes", "declared 50") {
            _ = try NPZ.parse(builder.build(), name: "z.npz")
        }
        // A declared size no deflate stream could reach.
        builder.members[0].declaredSize = 1 << 40
        builder.members[0].zip64 = true
        expectFormatError("member 'a.npy'", "at most 1032 times") { _ = try NPZ.parse(builder.build(), name: "z.npz") }
    }

    @Test func zip64SizesWithoutExtraField() {
        var archive = ZipBuilder(members: [.init(name: "a.npy", data: [1, 2, 3])]).build()
        let end = archive.count - 22
        let directory = Int(archive.littleEndian(UInt32.self, at: end + 16)!)
        archive.replaceSubrange((directory + 24)..<(directory + 28), with: [0xFF, 0xFF, 0xFF, 0xFF])
        expectFormatError("member 'a.npy'", "zip64 extra field") { _ = try NPZ.parse(archive, name: "z.npz") }
    }

    @Test func encryptedMember() {
        var archive = ZipBuilder(members: [.init(name: "a.npy", data: [1, 2, 3])]).build()
        let end = archive.count - 22
        let directory = Int(archive.littleEndian(UInt32.self, at: end + 16)!)
        archive[directory + 8] = 1
        expectFormatError("member 'a.npy'", "encrypted") { _ = try NPZ.parse(archive, name: "z.npz") }
    }
}

extension Array where Element == UInt8 {
    /// `self` with the first occurrence of `pattern` replaced.
    func replacingFirst(of pattern: [UInt8], with replacement: [UInt8]) -> [UInt8] {
        guard let start = indices.first(where: { self[$0...].starts(with: pattern) }) else { return self }
        var copy = self
        copy.replaceSubrange(start..<(start + pattern.count), with: replacement)
        return copy
    }
}
