import Foundation
import TandemCore
import TandemFormats
import Testing

// MARK: - Bad --init weights

/// A weights file that `--init` must refuse, and the words its error must contain.
struct BadWeights: Sendable, CustomTestStringConvertible {
    var testDescription: String
    var bytes: @Sendable () throws -> [UInt8]
    var words: [String]

    init(_ name: String, mentions words: [String], _ bytes: @escaping @Sendable () throws -> [UInt8]) {
        testDescription = name
        self.words = words
        self.bytes = bytes
    }
}

@Suite struct InitWeightsTests {
    static func train(initFrom path: String) -> [String] { CLI.smallTrain + ["--init", path] }

    static let good: [UInt8] = Safetensors.encode(Fixtures.smallMLPWeights(), metadata: ["model": "mlp"])

    static let cases: [BadWeights] = [
        BadWeights("empty file", mentions: ["truncated"]) { [] },
        BadWeights("truncated inside the size", mentions: ["truncated"]) { Array(good.prefix(5)) },
        BadWeights("truncated inside the header", mentions: ["truncated", "header size"]) { Array(good.prefix(40)) },
        BadWeights("truncated inside the data", mentions: ["truncated", "past the end"]) {
            Array(good.prefix(good.count - 100))
        },
        BadWeights("header size bigger than the file", mentions: ["truncated", "header size"]) {
            Fixtures.rawSafetensors(
                header: #"{"0.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8),
                declaredSize: 4096)
        },
        BadWeights("absurd header size", mentions: ["header size", "absurd"]) {
            Fixtures.rawSafetensors(header: "{}", data: [], declaredSize: UInt64.max)
        },
        BadWeights("data_offsets past the end", mentions: ["'0.bias'", "past the end"]) {
            Fixtures.rawSafetensors(
                header: #"{"0.bias":{"dtype":"F32","shape":[8],"data_offsets":[16,48]}}"#,
                data: [UInt8](repeating: 0, count: 32))
        },
        BadWeights("data_offsets that disagree with the shape", mentions: ["'0.bias'", "data_offsets", "expected 32"]) {
            Fixtures.rawSafetensors(
                header: #"{"0.bias":{"dtype":"F32","shape":[8],"data_offsets":[0,16]}}"#,
                data: [UInt8](repeating: 0, count: 16))
        },
        BadWeights("overlapping ranges", mentions: ["overlap", "'2.bias'", "'0.bias'"]) {
            Fixtures.rawSafetensors(
                header: #"{"0.bias":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"#
                    + #""2.bias":{"dtype":"F32","shape":[10],"data_offsets":[8,48]}}"#,
                data: [UInt8](repeating: 0, count: 48))
        },
        BadWeights("header that is not JSON", mentions: ["json"]) {
            Fixtures.rawSafetensors(header: "{not json at all}", data: [])
        },
        BadWeights("unknown dtype", mentions: ["'0.bias'", "dtype", "F31"]) {
            Fixtures.rawSafetensors(
                header: #"{"0.bias":{"dtype":"F31","shape":[8],"data_offsets":[0,32]}}"#,
                data: [UInt8](repeating: 0, count: 32))
        },
        BadWeights("negative offsets", mentions: ["'0.bias'", "data_offsets", "non-negative"]) {
            Fixtures.rawSafetensors(
                header: #"{"0.bias":{"dtype":"F32","shape":[8],"data_offsets":[-32,0]}}"#,
                data: [UInt8](repeating: 0, count: 32))
        },
        BadWeights("names of another model", mentions: ["'fc.bias'", "does not have", "0.weight"]) {
            Safetensors.encode([
                "fc.weight": HostArray(shape: [10, 784], floats: Array(repeating: 0, count: 7840)),
                "fc.bias": HostArray(shape: [10], floats: Array(repeating: 0, count: 10)),
            ])
        },
        BadWeights("a tensor missing", mentions: ["'2.bias'", "lack"]) {
            var weights = Fixtures.smallMLPWeights()
            weights["2.bias"] = nil
            return Safetensors.encode(weights)
        },
        BadWeights("right names, wrong shape", mentions: ["'0.weight'", "shape", "[8, 783]", "[8, 784]"]) {
            var weights = Fixtures.smallMLPWeights()
            weights["0.weight"] = HostArray(shape: [8, 783], floats: Array(repeating: 0, count: 8 * 783))
            return Safetensors.encode(weights)
        },
        BadWeights("int64 where float is expected", mentions: ["'0.weight'", "dtype", "int64", "floating-point"]) {
            var weights = Fixtures.smallMLPWeights()
            weights["0.weight"] = HostArray(shape: [8, 784], integers: Array(repeating: 1, count: 8 * 784))
            return Safetensors.encode(weights)
        },
    ]

    @Test(arguments: cases)
    func refused(_ bad: BadWeights) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("init.safetensors", try bad.bytes())
        try expectRefusal(Self.train(initFrom: path), in: directory, mentions: ["init.safetensors"] + bad.words)
    }

    @Test func missingFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path("absent.safetensors")
        try expectRefusal(Self.train(initFrom: path), in: directory, mentions: ["absent.safetensors", "no such file"])
    }

    @Test func directoryInsteadOfFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(at: directory.url.appendingPathComponent("w"), withIntermediateDirectories: false)
        try expectRefusal(Self.train(initFrom: directory.path("w")), in: directory, mentions: ["directory"])
    }

    /// The fixture is sound: the same weights, intact, are accepted.
    @Test func goodWeightsAreAccepted() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("init.safetensors", Self.good)
        let outcome = try CLI.run(Self.train(initFrom: path) + ["--json"])
        #expect(outcome.exitedNormally && outcome.status == 0, "\(outcome)")
    }
}
