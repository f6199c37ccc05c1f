import Testing

@testable import TandemFormats

// MARK: - Damaged input never traps

/// Every prefix of a valid file, and a few hundred seeded single-byte corruptions of it,
/// must parse or throw — never trap. A trap would end the test process, so reaching the
/// end of each test is the assertion; the counts check that both outcomes were exercised.
@Suite struct FuzzTests {
    static let corruptions = 400

    struct Outcomes {
        var parsed = 0
        var thrown = 0
    }

    /// Runs `parse` on every prefix of `bytes` and on seeded single-byte corruptions.
    static func damage(_ bytes: [UInt8], seed: UInt64, _ parse: ([UInt8]) throws -> Void) -> Outcomes {
        var outcomes = Outcomes()
        func attempt(_ candidate: [UInt8]) {
            do {
                try parse(candidate)
                outcomes.parsed += 1
            } catch {
                #expect(error is FormatError, "unexpected error type \(type(of: error))")
                #expect(!"\(error)".contains("\n"), "multi-line error: \(error)")
                outcomes.thrown += 1
            }
        }
        for length in 0..<bytes.count { attempt(Array(bytes.prefix(length))) }
        var generator = SeededGenerator(seed: seed)
        for _ in 0..<corruptions {
            var copy = bytes
            let position = Int.random(in: 0..<copy.count, using: &generator)
            copy[position] = UInt8.random(in: 0...255, using: &generator)
            attempt(copy)
        }
        return outcomes
    }

    @Test func safetensors() {
        let valid = Safetensors.encode(
            [
                "a": HostArray(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]),
                "b": HostArray(shape: [3], integers: [1, 2, 3], dtype: .int16),
                "c": HostArray(shape: [0], floats: []),
            ], metadata: ["step": "10"])
        let outcomes = Self.damage(valid, seed: 1) { _ = try Safetensors.parse($0, name: "fuzz.safetensors") }
        #expect(outcomes.thrown >= valid.count, "every proper prefix is an error")
        #expect(outcomes.parsed > 0, "some corruptions (e.g. in the data) still parse")
    }

    @Test func npy() throws {
        let valid = try NPY.encode(HostArray(shape: [3, 2], integers: [1, 2, 3, 4, 5, 6], dtype: .int32))
        let outcomes = Self.damage(valid, seed: 2) { _ = try NPY.parse($0, name: "fuzz.npy") }
        #expect(outcomes.thrown >= valid.count)
        #expect(outcomes.parsed > 0)
    }

    @Test(arguments: [("savez", NPZTests.numpySavez), ("savez_compressed", NPZTests.numpySavezCompressed)])
    func npz(label: String, valid: [UInt8]) {
        let outcomes = Self.damage(valid, seed: 3) { _ = try NPZ.parse($0, name: "fuzz.npz") }
        #expect(outcomes.thrown >= valid.count, "\(label)")
    }

    @Test func csv() {
        let valid = Array("a, \"b\",label\n1.5,2,0\n\"3\",4e1,1\n".utf8)
        let outcomes = Self.damage(valid, seed: 4) { _ = try CSV.parse($0, name: "fuzz.csv", labelColumn: "label") }
        #expect(outcomes.thrown > 0)
        #expect(outcomes.parsed > 0)
    }

    /// Random buffers that start with each format's magic.
    @Test func randomBuffers() {
        var generator = SeededGenerator(seed: 5)
        for _ in 0..<300 {
            let length = Int.random(in: 0..<200, using: &generator)
            let noise = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? NPY.parse(NPY.magic + [1, 0] + noise, name: "r.npy")
            _ = try? NPZ.parse(
                [0x50, 0x4B, 0x03, 0x04] + noise + [0x50, 0x4B, 0x05, 0x06] + noise.prefix(18), name: "r.npz")
            _ = try? Safetensors.parse([UInt8(length), 0, 0, 0, 0, 0, 0, 0] + noise, name: "r.safetensors")
            _ = try? CSV.parse(noise, name: "r.csv")
        }
    }
}
