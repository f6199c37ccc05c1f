import Foundation
import TandemCore
import TandemData
import TandemFormats
import Testing

// MARK: - Reading files

@Suite("Dataset.load")
struct DatasetLoadingTests {
    @Test("the digits directory: uint8 images [1797, 8, 8] and int64 labels", .enabled(if: digitsPresent))
    func digits() throws {
        let digits = try Dataset.load(path: digitsPath)
        #expect(digits.count == 1797 && digits.sampleShape == [8, 8] && digits.numClasses == 10)
        #expect(Array(digits.features.prefix(10)) == [0, 0, 5, 13, 9, 1, 0, 0, 0, 0])
        #expect(digits.features.max() == 16 && digits.features.min() == 0)
        #expect(Array(digits.labels!.prefix(5)) == [0, 1, 2, 3, 4])
        let slashed = try Dataset.load(path: digitsPath + "/")
        #expect(slashed.features == digits.features && slashed.labels == digits.labels)

        let (train, eval) = try digits.split(evalFraction: 0.2, seed: 0)
        #expect(train.count == 1438 && eval.count == 359)
        let standardized = try Standardizer(fitting: train).apply(to: train)
        #expect(standardized.features.allSatisfy { $0.isFinite })
    }

    @Test("an npz with integer y gives classes; with floating y, regression targets")
    func npz() throws {
        try withTemporaryDirectory { dir in
            let x = HostArray(shape: [4, 3], floats: (0..<12).map(Float.init))
            let path = dir + "/classes.npz"
            try writeNPZ([("x", x), ("y", HostArray(shape: [4], integers: [2, 0, 1, 2]))], to: path)
            let classes = try Dataset.load(path: path)
            #expect(classes.count == 4 && classes.sampleShape == [3] && classes.labels == [2, 0, 1, 2])
            #expect(classes.features == (0..<12).map(Float.init) && classes.numClasses == 3 && classes.source == path)

            let regression = dir + "/regression.npz"
            try writeNPZ([("x", x), ("y", HostArray(shape: [4, 2], floats: [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4]))], to: regression)
            let values = try Dataset.load(path: regression)
            #expect(values.targets == [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4] && values.targetShape == [2] && values.labels == nil)

            // Overrides: integer y as values, whole floating y as classes.
            #expect(try Dataset.load(path: path, targetKind: .values).targets == [2, 0, 1, 2])
            let wholeFloats = dir + "/whole.npz"
            try writeNPZ([("x", x), ("y", HostArray(shape: [4], floats: [1, 0, 1, 3]))], to: wholeFloats)
            #expect(try Dataset.load(path: wholeFloats, targetKind: .classes).labels == [1, 0, 1, 3])
            expectDataError("regression.npz[y]", "integer") { _ = try Dataset.load(path: regression, targetKind: .classes) }

            // Integer features (uint8 images) convert to floats as they are.
            let images = dir + "/images.npz"
            try writeNPZ(
                [("x", HostArray(shape: [2, 2], integers: [0, 255, 16, 1], dtype: .uint8)), ("y", HostArray(shape: [2], integers: [1, 0], dtype: .int32))],
                to: images)
            #expect(try Dataset.load(path: images).features == [0, 255, 16, 1])
        }
    }

    @Test("a safetensors file with tensors x and y")
    func safetensors() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/data.safetensors"
            try Safetensors.write(
                ["x": HostArray(shape: [2, 2], floats: [1, 2, 3, 4]), "y": HostArray(shape: [2], integers: [1, 0])], to: path)
            let data = try Dataset.load(path: path)
            #expect(data.features == [1, 2, 3, 4] && data.labels == [1, 0])
        }
    }

    @Test("a directory of x.npy and y.npy")
    func npyDirectory() throws {
        try withTemporaryDirectory { dir in
            try NPY.write(HostArray(shape: [3, 1], floats: [1, 2, 3]), to: dir + "/x.npy")
            try NPY.write(HostArray(shape: [3], integers: [0, 1, 0]), to: dir + "/y.npy")
            let data = try Dataset.load(path: dir)
            #expect(data.count == 3 && data.labels == [0, 1, 0])
        }
    }

    @Test("a CSV's label column is 'label', else 'y', else the last column")
    func csv() throws {
        try withTemporaryDirectory { dir in
            let named = dir + "/named.csv"
            try writeText("a,label,b\n1,2,3\n4,0,6\n", to: named)
            let fromLabel = try Dataset.load(path: named)
            #expect(fromLabel.features == [1, 3, 4, 6] && fromLabel.labels == [2, 0] && fromLabel.sampleShape == [2])

            let yColumn = dir + "/y.csv"
            try writeText("y,a\n1,10\n0,20\n", to: yColumn)
            #expect(try Dataset.load(path: yColumn).labels == [1, 0])

            let last = dir + "/last.csv"
            try writeText("a,b,c\n1,2,1\n3,4,0\n", to: last)
            let fromLast = try Dataset.load(path: last)
            #expect(fromLast.features == [1, 2, 3, 4] && fromLast.labels == [1, 0])

            let regression = dir + "/regression.csv"
            try writeText("a,target\n1,0.5\n2,-1.25\n", to: regression)
            let values = try Dataset.load(path: regression)
            #expect(values.targets == [0.5, -1.25] && values.targetShape == [1] && values.labels == nil)
            #expect(try Dataset.load(path: last, targetKind: .values).targets == [1, 0])
            expectDataError("data row 1", "'target'", "whole number") {
                _ = try Dataset.load(path: regression, targetKind: .classes)
            }
            expectDataError("label -1", "negative") {
                try writeText("a,label\n1,0\n2,-1\n", to: dir + "/negative.csv")
                _ = try Dataset.load(path: dir + "/negative.csv", targetKind: .classes)
            }
        }
    }

    // MARK: - Bad inputs

    @Test("bad files are thrown errors naming the file and what was expected")
    func badInputs() throws {
        try withTemporaryDirectory { dir in
            let x = HostArray(shape: [4, 2], floats: Array(repeating: 1, count: 8))

            let mismatched = dir + "/mismatched.npz"
            try writeNPZ([("x", x), ("y", HostArray(shape: [3], integers: [0, 1, 0]))], to: mismatched)
            expectDataError(mismatched, "4 samples", "has 3", "same first dimension") { _ = try Dataset.load(path: mismatched) }

            let noX = dir + "/nox.npz"
            try writeNPZ([("features", x), ("y", HostArray(shape: [4], integers: [0, 1, 0, 1]))], to: noX)
            expectDataError(noX, "no array 'x'", "'features'") { _ = try Dataset.load(path: noX) }

            let noY = dir + "/noy.npz"
            try writeNPZ([("x", x)], to: noY)
            expectDataError(noY, "no array 'y'") { _ = try Dataset.load(path: noY) }

            let negative = dir + "/negative.npz"
            try writeNPZ([("x", x), ("y", HostArray(shape: [4], integers: [0, 1, -3, 1]))], to: negative)
            expectDataError(negative, "label -3 of sample 2", "negative") { _ = try Dataset.load(path: negative) }

            let nonFinite = dir + "/nan.npz"
            try writeNPZ(
                [("x", HostArray(shape: [2, 2], floats: [0, 1, .nan, 3])), ("y", HostArray(shape: [2], integers: [0, 1]))],
                to: nonFinite)
            expectDataError(nonFinite, "feature 0 of sample 1", "finite") { _ = try Dataset.load(path: nonFinite) }

            let empty = dir + "/empty.npz"
            try writeNPZ(
                [("x", HostArray(shape: [0, 2], floats: [])), ("y", HostArray(shape: [0], integers: []))], to: empty)
            expectDataError(empty, "no samples", "at least 1") { _ = try Dataset.load(path: empty) }

            let scalarY = dir + "/scalar.npz"
            try writeNPZ([("x", x), ("y", HostArray(shape: [], integers: [1]))], to: scalarY)
            expectDataError(scalarY, "'y' is a scalar") { _ = try Dataset.load(path: scalarY) }

            let garbage = dir + "/garbage.npz"
            try writeText("this is not a zip archive", to: garbage)
            expectDataError(garbage) { _ = try Dataset.load(path: garbage) }

            let text = dir + "/text.csv"
            try writeText("a,b,label\n1,2,0\n3,oops,1\n", to: text)
            expectDataError(text, "line 3", "column 'b'", "non-numeric") { _ = try Dataset.load(path: text) }

            let oneColumn = dir + "/one.csv"
            try writeText("label\n1\n", to: oneColumn)
            expectDataError(oneColumn, "1 column", "feature column") { _ = try Dataset.load(path: oneColumn) }

            let headerOnly = dir + "/header.csv"
            try writeText("a,label\n", to: headerOnly)
            expectDataError(headerOnly, "no data rows") { _ = try Dataset.load(path: headerOnly) }

            let emptyDir = dir + "/empty"
            try FileManager.default.createDirectory(atPath: emptyDir, withIntermediateDirectories: true)
            expectDataError(emptyDir, "no data files", "images.npy and labels.npy") { _ = try Dataset.load(path: emptyDir) }

            let halfDir = dir + "/half"
            try FileManager.default.createDirectory(atPath: halfDir, withIntermediateDirectories: true)
            try NPY.write(HostArray(shape: [2, 2], floats: [1, 2, 3, 4]), to: halfDir + "/images.npy")
            expectDataError(halfDir, "no labels.npy") { _ = try Dataset.load(path: halfDir) }

            expectDataError(dir + "/missing.npz", "no such file") { _ = try Dataset.load(path: dir + "/missing.npz") }

            let unknown = dir + "/data.txt"
            try writeText("1 2 3", to: unknown)
            expectDataError(unknown, "unknown data file type") { _ = try Dataset.load(path: unknown) }
        }
    }
}
