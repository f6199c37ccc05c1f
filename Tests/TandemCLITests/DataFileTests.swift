import Foundation
import TandemCore
import TandemFormats
import Testing

// MARK: - Bad --data files

@Suite struct DataFileTests {
    /// `tandem train` on `path`, small and quick if it were accepted.
    static func train(_ path: String) -> [String] {
        ["train", "--model", "mlp", "--hidden", "8", "--batch", "4", "--steps", "1", "--quiet", "--data", path]
    }

    @Test func missingFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path("absent.npz")
        try expectRefusal(Self.train(path), in: directory, mentions: ["absent.npz", "no such file"])
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    /// The fixture itself is sound: the same bytes, whole, train fine.
    @Test func wholeNPZTrains() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("good.npz", try Fixtures.npz([("x", Fixtures.features()), ("y", Fixtures.labels())]))
        let outcome = try CLI.run(Self.train(path) + ["--json"])
        #expect(outcome.exitedNormally && outcome.status == 0, "\(outcome)")
        #expect(outcome.stdout.contains("\"samples_per_s\""), "\(outcome)")
    }

    @Test(arguments: [0.5, 0.9, 0.1])
    func truncatedNPZ(keeping fraction: Double) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let whole = try Fixtures.npz([("x", Fixtures.features()), ("y", Fixtures.labels())])
        let path = try directory.write("cut.npz", Array(whole.prefix(Int(Double(whole.count) * fraction))))
        try expectRefusal(Self.train(path), in: directory, mentions: ["cut.npz", "truncated"])
    }

    @Test func npzWithoutX() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(
            "nox.npz", try Fixtures.npz([("features", Fixtures.features()), ("y", Fixtures.labels())]))
        try expectRefusal(Self.train(path), in: directory, mentions: ["nox.npz", "no array 'x'", "'features'"])
    }

    @Test func npzWithoutY() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("noy.npz", try Fixtures.npz([("x", Fixtures.features())]))
        try expectRefusal(Self.train(path), in: directory, mentions: ["noy.npz", "no array 'y'"])
    }

    @Test func npzLengthsDiffer() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(
            "ragged.npz", try Fixtures.npz([("x", Fixtures.features(samples: 12)), ("y", Fixtures.labels(samples: 11))]))
        try expectRefusal(Self.train(path), in: directory, mentions: ["ragged.npz", "12", "11", "samples"])
    }

    @Test func npzWithBadCRC() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var bytes = try Fixtures.npz([("x", Fixtures.features()), ("y", Fixtures.labels())])
        bytes[200] ^= 0xFF  // inside the first member's data
        let path = try directory.write("flipped.npz", bytes)
        try expectRefusal(Self.train(path), in: directory, mentions: ["flipped.npz", "crc"])
    }

    @Test func npzNotAZip() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("text.npz", text: "x,y\n1,2\n")
        try expectRefusal(Self.train(path), in: directory, mentions: ["text.npz", "zip"])
    }

    @Test func csvWithNonNumericCell() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("table.csv", text: "a,b,label\n1,2,0\n3,4,1\n5,oops,2\n")
        try expectRefusal(Self.train(path), in: directory, mentions: ["table.csv", "line 4", "'b'", "oops"])
    }

    @Test func csvWithRaggedRow() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("ragged.csv", text: "a,b,label\n1,2,0\n3,1\n")
        try expectRefusal(Self.train(path), in: directory, mentions: ["ragged.csv", "line 3", "cells"])
    }

    @Test func emptyCSV() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("empty.csv", [])
        try expectRefusal(Self.train(path), in: directory, mentions: ["empty.csv", "empty"])
    }

    /// Directories without images.npy: empty, only labels, unrelated files.
    @Test(arguments: [
        ([String](), ["no data files", "images.npy"]),
        (["labels.npy"], ["labels.npy", "images.npy"]),
        (["readme.txt", "weights.safetensors"], ["no data files", "images.npy"]),
    ])
    func directoryWithoutImages(holding files: [String], mentions words: [String]) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let data = directory.url.appendingPathComponent("set")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: false)
        for file in files {
            let bytes = file.hasSuffix(".npy") ? try NPY.encode(Fixtures.labels()) : Array("hello".utf8)
            try directory.write("set/\(file)", bytes)
        }
        try expectRefusal(Self.train(data.path), in: directory, mentions: words)
    }

    @Test func directoryWithCorruptImages() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(at: directory.url.appendingPathComponent("set"), withIntermediateDirectories: false)
        let images = try NPY.encode(Fixtures.features())
        try directory.write("set/images.npy", Array(images.prefix(images.count - 10)))
        try directory.write("set/labels.npy", try NPY.encode(Fixtures.labels()))
        try expectRefusal(Self.train(directory.path("set")), in: directory, mentions: ["images.npy"])
    }

    @Test(arguments: ["data.txt", "data.npy", "data"])
    func unknownExtension(_ name: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(name, try Fixtures.npz([("x", Fixtures.features()), ("y", Fixtures.labels())]))
        try expectRefusal(Self.train(path), in: directory, mentions: [name, "unknown data file type"])
    }

    /// Integer labels shaped [N, 2]: two class ids per sample, which a classifier cannot use
    /// (this used to trap in cross-entropy).
    @Test(arguments: ["mlp", "cnn"])
    func severalLabelsPerSample(model: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(
            "pairs.npz",
            try Fixtures.npz([
                ("x", HostArray(shape: [12, 4, 4], floats: (0..<192).map { Float($0 % 5) })),
                ("y", HostArray(shape: [12, 2], integers: (0..<24).map { $0 % 3 })),
            ]))
        var arguments = Self.train(path)
        arguments[arguments.firstIndex(of: "mlp")!] = model
        try expectRefusal(arguments, in: directory, mentions: ["pairs.npz", "one class id per sample", "[2]"])
    }

    /// A class id of 2^31 − 1 would make a classifier with 2^31 outputs (this used to trap in the allocator).
    @Test func absurdClassID() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(
            "huge.npz",
            try Fixtures.npz([
                ("x", Fixtures.features()), ("y", HostArray(shape: [12], integers: [2_147_483_647] + Array(repeating: 0, count: 11))),
            ]))
        try expectRefusal(Self.train(path), in: directory, mentions: ["huge.npz", "2147483647", "class"])
    }

    @Test func realValuedLabelsForMLP() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write(
            "regression.npz",
            try Fixtures.npz([("x", Fixtures.features()), ("y", HostArray(shape: [12], floats: Array(repeating: 0.5, count: 12)))]))
        try expectRefusal(Self.train(path), in: directory, mentions: ["regression.npz", "class labels"])
    }
}
