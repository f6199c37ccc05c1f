// MARK: - CSV tables

/// Reads numeric CSV tables: a header row of column names, then one row per example.
///
/// Cells are separated by commas; whitespace around a cell is ignored; a cell may be
/// quoted with `"`, with `""` standing for a quote inside it. Blank lines are skipped.
/// Every feature cell must be a finite number, and the label column (when asked for) must
/// hold whole numbers, the class ids. Anything else is a `FormatError` naming the line
/// (1-based, counting the header as line 1) and the column.
///
/// ```swift
/// let table = try CSV.read(path: "iris.csv", labelColumn: "species")
/// // table.features: float32 [150, 4], table.labels: int64 [150], table.columns: the 4 feature names
/// ```
public enum CSV {
    /// Reads the table at `path`.
    ///
    /// - Parameter labelColumn: the column holding integer labels, taken out of the
    ///   features; `nil` for no labels.
    /// - Returns: the features as float32 `[rows, columns.count]`, the labels as int64
    ///   `[rows]` (or `nil`), and the feature column names in order.
    public static func read(
        path: String, labelColumn: String? = nil
    ) throws -> (features: HostArray, labels: HostArray?, columns: [String]) {
        try parse(FileIO.contents(of: path), name: path, labelColumn: labelColumn)
    }

    /// Parses the bytes of a CSV file; `name` labels errors. See `read(path:labelColumn:)`.
    public static func parse(
        _ bytes: [UInt8], name: String, labelColumn: String? = nil
    ) throws -> (features: HostArray, labels: HostArray?, columns: [String]) {
        func fail(_ message: String) -> FormatError { FormatError(file: name, message: message) }

        var reader = Reader(bytes: bytes, fail: fail)
        let rows = try reader.records()
        guard let header = rows.first else { throw fail("empty file, expected a header row of column names") }
        let names = header.cells
        var seen: Set<String> = []
        for column in names where !seen.insert(column).inserted {
            throw fail("line \(header.line): duplicate column name \(quoted(column)), expected unique names")
        }
        var labelIndex: Int?
        if let labelColumn {
            guard let index = names.firstIndex(of: labelColumn) else {
                throw fail(
                    "no column \(quoted(labelColumn)) for labels, expected one of \(names.map { quoted($0) }.joined(separator: ", "))"
                )
            }
            labelIndex = index
        }
        let body = rows.dropFirst()
        guard !body.isEmpty else { throw fail("no data rows after the header, expected at least one") }

        var features: [Float] = []
        features.reserveCapacity(body.count * names.count)
        var labels: [Int] = []
        for row in body {
            guard row.cells.count == names.count else {
                throw fail(
                    "line \(row.line) has \(row.cells.count) cells, expected \(names.count) (one per header column)")
            }
            for (column, rawCell) in row.cells.enumerated() {
                let cell = trimmed(rawCell)
                if column == labelIndex {
                    guard let label = Int(cell) ?? Double(cell).flatMap({ Int(exactly: $0) }) else {
                        throw fail(
                            "line \(row.line), label column \(quoted(names[column])): non-integer value \(quoted(cell)), expected an integer class id"
                        )
                    }
                    labels.append(label)
                } else {
                    guard let value = Float(cell) else {
                        throw fail(
                            "line \(row.line), column \(quoted(names[column])): non-numeric value \(quoted(cell)), expected a number"
                        )
                    }
                    guard value.isFinite else {
                        throw fail(
                            "line \(row.line), column \(quoted(names[column])): value \(quoted(cell)) is not finite, expected a finite float32 number"
                        )
                    }
                    features.append(value)
                }
            }
        }

        let columns = names.enumerated().filter { $0.offset != labelIndex }.map { $0.element }
        let featureArray = HostArray(shape: [body.count, columns.count], floats: features)
        let labelArray = labelIndex == nil ? nil : HostArray(shape: [body.count], integers: labels, dtype: .int64)
        return (featureArray, labelArray, columns)
    }

    /// `cell` without surrounding ASCII whitespace, which a quoted cell may keep.
    private static func trimmed(_ cell: String) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = cell.firstIndex(where: { !isSpace($0) }), let last = cell.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(cell[first...last])
    }

    // MARK: - Splitting into records

    /// One row: the line it starts on and its cells, unquoted and trimmed.
    struct Record {
        var line: Int
        var cells: [String]
    }

    /// A single pass over the bytes that splits records and cells, tracking line numbers
    /// (a quoted cell may span lines).
    struct Reader {
        let bytes: [UInt8]
        let fail: (String) -> FormatError
        private var index = 0
        private var line = 1

        init(bytes: [UInt8], fail: @escaping (String) -> FormatError) {
            self.bytes = bytes
            self.fail = fail
        }

        private static let comma = UInt8(ascii: ","), quote = UInt8(ascii: "\"")
        private static let newline = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")

        mutating func records() throws -> [Record] {
            guard String(validating: bytes, as: UTF8.self) != nil else {
                throw fail("not valid UTF-8 text, expected a UTF-8 CSV file")
            }
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }  // byte-order mark
            var records: [Record] = []
            while index < bytes.count {
                let start = line
                var cells: [String] = []
                var quotedCell = false
                while true {
                    let (cell, wasQuoted) = try readCell()
                    cells.append(cell)
                    quotedCell = quotedCell || wasQuoted
                    guard index < bytes.count, bytes[index] == Self.comma else { break }
                    index += 1
                }
                endLine()
                let blank = cells.count == 1 && cells[0].isEmpty && !quotedCell
                if !blank { records.append(Record(line: start, cells: cells)) }
            }
            return records
        }

        /// One cell, stopping before the `,` or line end that follows it.
        private mutating func readCell() throws -> (String, Bool) {
            skipSpaces()
            guard index < bytes.count, bytes[index] == Self.quote else {
                let start = index
                while index < bytes.count, !endsCell(bytes[index]) {
                    index += 1
                }
                var end = index
                while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
                return (String(decoding: bytes[start..<end], as: UTF8.self), false)
            }
            let openingLine = line
            index += 1
            var cell: [UInt8] = []
            while true {
                guard index < bytes.count else {
                    throw fail("line \(openingLine): unterminated quoted cell, expected a closing '\"'")
                }
                let byte = bytes[index]
                index += 1
                if byte == Self.quote {
                    guard index < bytes.count, bytes[index] == Self.quote else { break }
                    index += 1
                }
                if byte == Self.newline { line += 1 }
                cell.append(byte)
            }
            skipSpaces()
            if index < bytes.count, !endsCell(bytes[index]) {
                throw fail("line \(line): text after a closing quote, expected ',' or the end of the line")
            }
            return (String(decoding: cell, as: UTF8.self), true)
        }

        private func endsCell(_ byte: UInt8) -> Bool {
            byte == Self.comma || byte == Self.newline || byte == Self.carriageReturn
        }

        private mutating func skipSpaces() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
        }

        /// Consumes `\n`, `\r\n` or a lone `\r`, if one is next.
        private mutating func endLine() {
            guard index < bytes.count else { return }
            if bytes[index] == Self.carriageReturn { index += 1 }
            if index < bytes.count, bytes[index] == Self.newline { index += 1 }
            line += 1
        }
    }
}
