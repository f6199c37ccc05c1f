import Foundation
import TandemCore
import TandemData
import TandemFormats
import Testing

// MARK: - Expecting errors

/// Runs `body` and requires it to throw a one-line `DataError` whose description contains
/// every keyword (case-insensitive). Returns the error for further checks.
@discardableResult
func expectDataError(
    _ keywords: String..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> DataError? {
    do {
        try body()
        Issue.record("expected a DataError mentioning \(keywords), but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as DataError {
        let text = error.description
        #expect(!text.contains("\n"), "error is not one line: \(text)", sourceLocation: sourceLocation)
        #expect(text.hasPrefix(error.source + ": "), "error does not start with its source: \(text)", sourceLocation: sourceLocation)
        for keyword in keywords {
            #expect(
                text.lowercased().contains(keyword.lowercased()), "'\(keyword)' missing from: \(text)",
                sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a DataError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - Comparing batches

/// Requires two batches to hold the same samples: indices, then shapes, then values.
func expectSameBatch(_ a: DataBatch, _ b: DataBatch, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.indices == b.indices, "\(what): indices differ", sourceLocation: sourceLocation)
    #expect(a.inputs.shape == b.inputs.shape, "\(what): input shapes differ", sourceLocation: sourceLocation)
    guard a.inputs.shape == b.inputs.shape else { return }
    #expect(a.inputs.scalars == b.inputs.scalars, "\(what): inputs differ", sourceLocation: sourceLocation)
    #expect(a.labels == b.labels, "\(what): labels differ", sourceLocation: sourceLocation)
    #expect(a.targets?.shape == b.targets?.shape, "\(what): target shapes differ", sourceLocation: sourceLocation)
    #expect(a.targets?.scalars == b.targets?.scalars, "\(what): targets differ", sourceLocation: sourceLocation)
}

// MARK: - Data sets

/// `count` samples of shape `[2, 3]` whose features identify them (sample i holds
/// 100·i + j at position j) and whose label is `i mod classes`.
func numberedDataset(count: Int, classes: Int = 3) throws -> Dataset {
    let features = (0..<count).flatMap { i in (0..<6).map { Float(100 * i + $0) } }
    return try Dataset(features: features, sampleShape: [2, 3], labels: (0..<count).map { Int32($0 % classes) })
}

/// The sample id recorded in the first feature of each row of a `numberedDataset` batch.
func sampleIDs(_ dataset: Dataset) -> [Int] {
    stride(from: 0, to: dataset.features.count, by: dataset.featuresPerSample).map { Int(dataset.features[$0]) / 100 }
}

/// The digits data set shipped beside the project, when present.
let digitsPath = "/work/shared/datasets/digits"
var digitsPresent: Bool { FileManager.default.fileExists(atPath: digitsPath + "/images.npy") }

// MARK: - Temporary files

/// A fresh directory, removed after `body`.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-data-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

func writeText(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

// MARK: - NPZ archives

/// Writes an `.npz` (a zip archive of stored, uncompressed `.npy` members) as `np.savez` does.
func writeNPZ(_ arrays: [(name: String, array: HostArray)], to path: String) throws {
    var archive: [UInt8] = []
    var directory: [UInt8] = []
    for (name, array) in arrays {
        let data = try NPY.encode(array)
        let member = Array("\(name).npy".utf8)
        let crc = crc32(data)
        let offset = archive.count
        archive.append32(0x0403_4B50)
        archive.append16(20)  // version needed
        archive.append16(0)  // flags
        archive.append16(0)  // method: stored
        archive.append32(0)  // time, date
        archive.append32(Int(crc))
        archive.append32(data.count)
        archive.append32(data.count)
        archive.append16(member.count)
        archive.append16(0)
        archive += member + data

        directory.append32(0x0201_4B50)
        directory.append16(20)
        directory.append16(20)
        directory.append16(0)
        directory.append16(0)
        directory.append32(0)
        directory.append32(Int(crc))
        directory.append32(data.count)
        directory.append32(data.count)
        directory.append16(member.count)
        directory.append16(0)  // extra
        directory.append16(0)  // comment
        directory.append16(0)  // disk
        directory.append16(0)  // internal attributes
        directory.append32(0)  // external attributes
        directory.append32(offset)
        directory += member
    }
    let directoryOffset = archive.count
    archive += directory
    archive.append32(0x0605_4B50)
    archive.append16(0)
    archive.append16(0)
    archive.append16(arrays.count)
    archive.append16(arrays.count)
    archive.append32(directory.count)
    archive.append32(directoryOffset)
    archive.append16(0)
    try writeBytes(archive, to: path)
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

extension Array where Element == UInt8 {
    mutating func append16(_ value: Int) {
        for shift in stride(from: 0, to: 16, by: 8) { append(UInt8(truncatingIfNeeded: value >> shift)) }
    }
    mutating func append32(_ value: Int) {
        for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> shift)) }
    }
}

// MARK: - Clocks

/// A fake clock that advances by `step` seconds on every reading.
final class SteppingClock {
    let step: Double
    private(set) var now: Double = 0
    init(step: Double) { self.step = step }
    func read() -> Double {
        now += step
        return now
    }
}
