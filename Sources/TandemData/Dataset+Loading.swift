#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemFormats

// MARK: - Loading from files

extension Dataset {
    /// Reads a data set from `path`:
    ///
    /// - a `.npz` archive or a `.safetensors` file with arrays `x` (features, `[N, ...]`,
    ///   any numeric type) and `y` (`[N, ...]`: integer → class ids, floating → regression
    ///   targets; see `targetKind`);
    /// - a `.csv` table of numeric columns with a header row; the labels are the column named
    ///   `label`, else `y`, else the last column, and every other column is a feature;
    /// - a directory holding `images.npy` and `labels.npy` (or `x.npy` and `y.npy`), as the
    ///   digits data set does: uint8 images `[1797, 8, 8]`, int64 labels `[1797]`.
    ///
    /// Features are converted to `Float` as they are (uint8 pixels stay 0…255); standardise
    /// them with a `Standardizer` fitted on the training split.
    ///
    /// ```swift
    /// let digits = try Dataset.load(path: "/work/shared/datasets/digits")
    /// let table = try Dataset.load(path: "houses.csv", targetKind: .values)
    /// ```
    ///
    /// - Throws: `DataError` naming the file and what was expected when the path is missing
    ///   or of an unknown kind, an array is missing or malformed, `x` and `y` disagree on the
    ///   number of samples, there are no samples, a value is not finite, or a class id is
    ///   negative or not a whole number.
    public static func load(path: String, targetKind: TargetKind = .automatic) throws -> Dataset {
        switch pathKind(path) {
        case .missing:
            throw DataError(source: path, message: "no such file or directory, expected a .npz, .csv or .safetensors file or a directory of .npy files")
        case .directory:
            return try loadDirectory(path, targetKind: targetKind)
        case .file:
            let lower = path.lowercased()
            if lower.hasSuffix(".npz") {
                let arrays = try translatingFormatErrors { try NPZ.read(path: path) }
                return try fromArrays(arrays, source: path, targetKind: targetKind)
            } else if lower.hasSuffix(".safetensors") {
                let arrays = try translatingFormatErrors { try Safetensors.read(path: path).tensors }
                return try fromArrays(arrays, source: path, targetKind: targetKind)
            } else if lower.hasSuffix(".csv") {
                return try loadCSV(path, targetKind: targetKind)
            }
            throw DataError(
                source: path,
                message: "unknown data file type, expected a .npz, .csv or .safetensors file or a directory with images.npy and labels.npy")
        }
    }

    /// A data set from feature array `x` and label array `y`, validated as `load` describes.
    ///
    /// - Parameter source: the file the arrays came from, used in errors.
    public static func fromArrays(
        x: HostArray, y: HostArray?, source: String, targetKind: TargetKind = .automatic,
        names: (x: String, y: String) = ("x", "y")
    ) throws -> Dataset {
        func fail(_ message: String) -> DataError { DataError(source: source, message: message) }
        guard let samples = x.shape.first else {
            throw fail("\(quote(names.x)) is a scalar, expected an array [samples, ...] of features")
        }
        guard samples > 0 else { throw fail("\(quote(names.x)) has no samples (shape \(x.shape)), expected at least 1") }
        let sampleShape = Array(x.shape.dropFirst())
        let features = x.floats()
        guard let y else {
            return try Dataset(features: features, sampleShape: sampleShape, target: .none, source: source)
        }
        guard let labelled = y.shape.first else {
            throw fail("\(quote(names.y)) is a scalar, expected an array [samples, ...] of labels")
        }
        guard labelled == samples else {
            throw fail(
                "\(quote(names.x)) has \(samples) samples but \(quote(names.y)) has \(labelled), expected the same first dimension")
        }
        let targetShape = Array(y.shape.dropFirst())
        let asClasses: Bool
        switch targetKind {
        case .automatic: asClasses = !y.dtype.isFloatingPoint
        case .classes: asClasses = true
        case .values: asClasses = false
        }
        let target: Target
        if asClasses {
            let ids = try translatingFormatErrors { try y.ints(source: "\(source)[\(names.y)]") }
            target = .classes(try classIDs(ids, perSample: Dataset.elementCount(targetShape) ?? 1, fail), shape: targetShape)
        } else {
            target = .values(y.floats(), shape: targetShape)
        }
        return try Dataset(features: features, sampleShape: sampleShape, target: target, source: source)
    }

    // MARK: - Sources

    private static func fromArrays(_ arrays: [String: HostArray], source: String, targetKind: TargetKind) throws -> Dataset {
        let found = arrays.keys.sorted().map(quote).joined(separator: ", ")
        guard let x = arrays["x"] else {
            throw DataError(source: source, message: "no array 'x', expected arrays 'x' and 'y' (found \(found.isEmpty ? "none" : found))")
        }
        guard let y = arrays["y"] else {
            throw DataError(source: source, message: "no array 'y', expected arrays 'x' and 'y' (found \(found))")
        }
        return try fromArrays(x: x, y: y, source: source, targetKind: targetKind)
    }

    private static func loadDirectory(_ path: String, targetKind: TargetKind) throws -> Dataset {
        let directory = path.hasSuffix("/") ? String(path.dropLast()) : path
        for (xName, yName) in [("images.npy", "labels.npy"), ("x.npy", "y.npy")] {
            let xPath = "\(directory)/\(xName)", yPath = "\(directory)/\(yName)"
            let hasX = pathKind(xPath) == .file, hasY = pathKind(yPath) == .file
            if !hasX && !hasY { continue }
            guard hasX && hasY else {
                throw DataError(
                    source: path, message: "has \(hasX ? xName : yName) but no \(hasX ? yName : xName), expected both")
            }
            let x = try translatingFormatErrors { try NPY.read(path: xPath) }
            let y = try translatingFormatErrors { try NPY.read(path: yPath) }
            return try fromArrays(x: x, y: y, source: path, targetKind: targetKind, names: (xName, yName))
        }
        throw DataError(
            source: path, message: "directory has no data files, expected images.npy and labels.npy (or x.npy and y.npy)")
    }

    private static func loadCSV(_ path: String, targetKind: TargetKind) throws -> Dataset {
        let table = try translatingFormatErrors { try CSV.read(path: path) }
        let columns = table.columns
        guard columns.count >= 2 else {
            throw DataError(
                source: path,
                message: "\(columns.count) column\(columns.count == 1 ? "" : "s"), expected at least one feature column and a label column")
        }
        let labelColumn =
            columns.firstIndex(where: { $0.lowercased() == "label" })
            ?? columns.firstIndex(where: { $0.lowercased() == "y" })
            ?? columns.count - 1
        let width = columns.count
        let all = table.features.floats()
        let rows = all.count / width
        var features: [Float] = []
        features.reserveCapacity(rows * (width - 1))
        var labels: [Float] = []
        labels.reserveCapacity(rows)
        for row in 0..<rows {
            for column in 0..<width {
                let value = all[row * width + column]
                if column == labelColumn { labels.append(value) } else { features.append(value) }
            }
        }
        let wholeAndNonNegative = labels.allSatisfy { $0 >= 0 && $0 == $0.rounded() && $0 <= Float(Int32.max) }
        let asClasses = targetKind == .classes || (targetKind == .automatic && wholeAndNonNegative)
        let target: Target
        if asClasses {
            func fail(_ message: String) -> DataError { DataError(source: path, message: message) }
            var ids: [Int] = []
            ids.reserveCapacity(rows)
            for (row, value) in labels.enumerated() {
                guard let id = Int(exactly: value) else {
                    // Line 1 is the header; blank lines are skipped, so this is the data row number.
                    throw fail(
                        "data row \(row + 1), label column \(quote(columns[labelColumn])): \(value) is not a whole number, expected a class id")
                }
                ids.append(id)
            }
            target = .classes(try classIDs(ids, perSample: 1, fail, column: columns[labelColumn]), shape: [])
        } else {
            target = .values(labels, shape: [1])
        }
        return try Dataset(features: features, sampleShape: [width - 1], target: target, source: path)
    }

    // MARK: - Helpers

    /// Class ids as `Int32`, each checked to be ≥ 0 and to fit.
    private static func classIDs(
        _ ids: [Int], perSample: Int, _ fail: (String) -> DataError, column: String? = nil
    ) throws -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(ids.count)
        let place = column.map { ", column \(quote($0))" } ?? ""
        for (index, id) in ids.enumerated() {
            guard id >= 0 else {
                throw fail("label \(id) of sample \(index / Swift.max(perSample, 1))\(place) is negative, expected class ids ≥ 0")
            }
            guard let narrow = Int32(exactly: id) else {
                throw fail("label \(id) of sample \(index / Swift.max(perSample, 1))\(place) is too large, expected class ids below 2^31")
            }
            out.append(narrow)
        }
        return out
    }

    enum PathKind { case missing, file, directory }

    /// What is at `path`, following symbolic links.
    static func pathKind(_ path: String) -> PathKind {
        var info = stat()
        guard stat(path, &info) == 0 else { return .missing }
        return (info.st_mode & S_IFMT) == S_IFDIR ? .directory : .file
    }
}

/// `'text'`, for names in messages.
func quote(_ text: String) -> String { "'\(text)'" }
