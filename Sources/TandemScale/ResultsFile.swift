import Foundation
import TandemParallel

// MARK: - Reading results files (JSON lines)

/// A results file that cannot be read: the file, the line (1-based; 0 for the file as a
/// whole) and what was wrong, as one line of text.
public struct ResultsFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var message: String
    public init(path: String, line: Int, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
}

/// Results in JSON lines: one object of the WORKLOADS.md schema per line, as `tandem`
/// and `bench/torch_bench.py` print them. Blank lines (and lines of only spaces) are
/// skipped; each other line must be a result (read leniently, see ``ResultRecord``).
///
/// ```swift
/// let tandem = try ResultsFile.read(path: "tandem.jsonl")
/// let torch = try ResultsFile.read(path: "torch.jsonl")
/// print(Comparison(baseline: torch, candidate: tandem).markdown())
/// ```
public enum ResultsFile {
    /// The results in the file at `path`, in file order.
    public static func read(path: String) throws(ResultsFileError) -> [RunResult] {
        try records(path: path).map(\.result)
    }

    /// The records in the file at `path`, with what was filled in on each line.
    public static func records(path: String) throws(ResultsFileError) -> [ResultRecord] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ResultsFileError(path: path, line: 0, message: "cannot be read (\(ResultsFile.reason(error)))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ResultsFileError(path: path, line: 0, message: "is not UTF-8 text")
        }
        return try records(text: text, path: path)
    }

    /// The records in `text`, whose errors name `path`.
    public static func records(text: String, path: String = "<text>") throws(ResultsFileError) -> [ResultRecord] {
        var out: [ResultRecord] = []
        var number = 0
        // "\r\n" is one Character in Swift, so split on each line ending explicitly.
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            number += 1
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            do {
                out.append(try ResultRecord(json: trimmed))
            } catch {
                throw ResultsFileError(path: path, line: number, message: error.description)
            }
        }
        return out
    }

    /// The results in `text` (see ``records(text:path:)``).
    public static func parse(text: String, path: String = "<text>") throws(ResultsFileError) -> [RunResult] {
        try records(text: text, path: path).map(\.result)
    }

    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain, ns.code == NSFileReadNoSuchFileError { return "no such file" }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain,
           let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(describing: POSIXError(code).localizedDescription)
        }
        return ns.localizedDescription
    }
}
