import TandemFormats

// MARK: - Data errors

/// A data file, a data set or a loader argument that cannot be used.
///
/// The description is one line: the source (a file path, or the type whose argument is at
/// fault), then what is wrong and what was expected.
///
/// ```swift
/// do { _ = try Dataset.load(path: "train.npz") }
/// catch let error as DataError { print(error) }
/// // train.npz: 'x' has 100 samples but 'y' has 99, expected the same first dimension
/// ```
public struct DataError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file path, or the name of the type or argument at fault (`DistributedSampler`).
    public let source: String
    /// What is wrong and what was expected, in one line, without the source.
    public let message: String

    public init(source: String, message: String) {
        self.source = source
        self.message = message
    }

    public var description: String { "\(source): \(message)" }
}

extension DataError {
    /// The same error from a file reader, so callers of this module catch one type.
    init(_ error: FormatError) {
        self.init(source: error.file, message: error.message)
    }
}

/// Runs `body`, turning a `FormatError` from a reader into a `DataError`.
func translatingFormatErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as FormatError {
        throw DataError(error)
    }
}
