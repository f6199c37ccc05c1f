import Foundation
import TandemCore
import Testing

@testable import TandemFormats

// MARK: - A real dataset written by NumPy

private let digitsDirectory = "/work/shared/datasets/digits"

/// The scikit-learn digits saved with `np.save`, when the shared datasets are present.
@Suite(.enabled(if: FileManager.default.fileExists(atPath: digitsDirectory + "/images.npy")))
struct DigitsTests {
    static let directory = digitsDirectory

    @Test func images() throws {
        let images = try NPY.read(path: Self.directory + "/images.npy")
        #expect(images.dtype == .uint8)
        #expect(images.shape == [1797, 8, 8])
        let pixels = images.floats()
        #expect(pixels.count == 1797 * 64)
        #expect(pixels.min() == 0)
        #expect(pixels.max() == 16)
    }

    @Test func labels() throws {
        let labels = try NPY.read(path: Self.directory + "/labels.npy")
        #expect(labels.dtype == .int64)
        #expect(labels.shape == [1797])
        let classes = try labels.ints()
        #expect(Set(classes) == Set(0...9))
        #expect(Array(classes.prefix(10)) == Array(0...9))
    }

    @Test func survivesNPYRoundTrip() throws {
        let labels = try NPY.read(path: Self.directory + "/labels.npy")
        #expect(try NPY.parse(try NPY.encode(labels), name: "labels") == labels)
    }
}
