// MARK: - Format errors

/// A file, or a buffer that came from one, that could not be read or written.
///
/// The description is one line: the file, then what is wrong and what was expected,
/// naming the field, tensor, row or column at fault.
///
/// ```swift
/// do { _ = try NPY.read(path: "w.npy") }
/// catch let error as FormatError { print(error) }
/// // w.npy: truncated data, 40 bytes after the header, expected 48 for shape [3, 4] of float32
/// ```
public struct FormatError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The path or name of the file at fault.
    public let file: String
    /// What is wrong, in one line, without the file name.
    public let message: String

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}
