// MARK: - NPZ archives

/// Reads NumPy's `.npz` archives (`np.savez`, `np.savez_compressed`): a zip archive whose
/// members are `.npy` files, stored or deflated.
///
/// ```swift
/// let arrays = try NPZ.read(path: "mnist.npz")
/// let images = arrays["x_train"]   // the member "x_train.npy"
/// ```
public enum NPZ {
    /// Reads the archive at `path`; keys are the member names without `.npy`.
    public static func read(path: String) throws -> [String: HostArray] {
        try parse(FileIO.contents(of: path), name: path)
    }

    /// Parses the bytes of an `.npz` archive; `name` labels errors. An error inside a
    /// member names the file as `"<name>[<member>]"`.
    public static func parse(_ bytes: [UInt8], name: String) throws -> [String: HostArray] {
        let archive = try ZipArchive(bytes: bytes, file: name)
        var arrays: [String: HostArray] = [:]
        for entry in archive.entries {
            guard entry.name.hasSuffix(".npy"), entry.name.count > 4 else {
                throw FormatError(
                    file: name, message: "member \(quoted(entry.name)) is not a .npy file, expected only .npy members")
            }
            let key = String(entry.name.dropLast(4))
            if arrays[key] != nil {
                throw FormatError(
                    file: name, message: "member \(quoted(entry.name)) appears twice, expected unique names")
            }
            arrays[key] = try NPY.parse(archive.contents(of: entry), name: "\(name)[\(entry.name)]")
        }
        return arrays
    }
}
