// MARK: - The NPY header dictionary

/// The three fields of an NPY header, read from its Python dictionary literal, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct NPYHeader: Equatable {
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]

    /// Reads the header text. Keys may come in any order, with any spacing and a trailing
    /// comma; unknown keys are ignored. Throws a message (without the file name) on anything else.
    static func parse(_ text: String) throws(PythonLiteral.ParseError) -> NPYHeader {
        var parser = PythonLiteral.Parser(text)
        let value = try parser.parseDocument()
        guard case .dict(let entries) = value else {
            throw .init("header is \(value.kind), expected a dictionary")
        }
        var fields: [String: PythonLiteral] = [:]
        for (key, entryValue) in entries {
            guard case .string(let name) = key else {
                throw .init("header has a \(key.kind) key, expected string keys")
            }
            if fields[name] != nil { throw .init("header has key \(quoted(name)) twice, expected it once") }
            fields[name] = entryValue
        }
        guard let descrValue = fields["descr"] else { throw .init("header lacks 'descr', expected the dtype") }
        guard let fortranValue = fields["fortran_order"] else {
            throw .init("header lacks 'fortran_order', expected True or False")
        }
        guard let shapeValue = fields["shape"] else { throw .init("header lacks 'shape', expected a tuple") }

        let descr: String
        switch descrValue {
        case .string(let text): descr = text
        case .list, .tuple: throw .init("'descr' is a structured dtype, expected a plain numeric dtype such as '<f4'")
        default: throw .init("'descr' is \(descrValue.kind), expected a dtype string such as '<f4'")
        }
        guard case .bool(let fortranOrder) = fortranValue else {
            throw .init("'fortran_order' is \(fortranValue.kind), expected True or False")
        }
        let extents: [PythonLiteral]
        switch shapeValue {
        case .tuple(let items), .list(let items): extents = items
        case .int: extents = [shapeValue]
        default: throw .init("'shape' is \(shapeValue.kind), expected a tuple of non-negative integers")
        }
        var shape: [Int] = []
        for (axis, extent) in extents.enumerated() {
            guard case .int(let value) = extent, value >= 0 else {
                throw .init("'shape' axis \(axis) is \(extent.summary), expected a non-negative integer")
            }
            shape.append(value)
        }
        return NPYHeader(descr: descr, fortranOrder: fortranOrder, shape: shape)
    }
}

// MARK: - Python literals

/// The subset of Python literal syntax NPY headers use: dicts, tuples, lists, strings,
/// integers, `True`, `False` and `None`.
indirect enum PythonLiteral {
    case dict([(PythonLiteral, PythonLiteral)])
    case tuple([PythonLiteral])
    case list([PythonLiteral])
    case string(String)
    case int(Int)
    case bool(Bool)
    case none

    /// The kind, with an article, for messages: "a tuple", "an integer".
    var kind: String {
        switch self {
        case .dict: "a dictionary"
        case .tuple: "a tuple"
        case .list: "a list"
        case .string: "a string"
        case .int: "an integer"
        case .bool: "a boolean"
        case .none: "None"
        }
    }

    /// The value itself where short, else its kind, for messages.
    var summary: String {
        switch self {
        case .string(let text): quoted(text)
        case .int(let value): String(value)
        case .bool(let value): value ? "True" : "False"
        default: kind
        }
    }

    struct ParseError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// A recursive-descent parser over the header's Unicode scalars. Nesting is limited so
    /// that a hostile header cannot exhaust the stack.
    struct Parser {
        private let scalars: [Unicode.Scalar]
        private var position = 0
        private var depth = 0
        private static let maximumDepth = 32

        init(_ text: String) { scalars = Array(text.unicodeScalars) }

        /// One value followed only by whitespace.
        mutating func parseDocument() throws(ParseError) -> PythonLiteral {
            let value = try parseValue()
            skipWhitespace()
            if position < scalars.count {
                throw ParseError("header has \(quoted(rest)) after the dictionary, expected only padding")
            }
            return value
        }

        // MARK: Values

        private mutating func parseValue() throws(ParseError) -> PythonLiteral {
            skipWhitespace()
            guard let first = peek() else { throw ParseError("header ends early, expected a value") }
            switch first {
            case "{":
                return try nested { parser throws(ParseError) in .dict(try parser.parseDict()) }
            case "(":
                return try nested { parser throws(ParseError) in .tuple(try parser.parseSequence(closing: ")")) }
            case "[":
                return try nested { parser throws(ParseError) in .list(try parser.parseSequence(closing: "]")) }
            case "'", "\"":
                return .string(try parseString())
            case "-", "+", "0"..."9":
                return .int(try parseInt())
            default:
                let word = parseWord()
                switch word {
                case "True": return .bool(true)
                case "False": return .bool(false)
                case "None": return .none
                default:
                    throw ParseError(
                        "header has \(quoted(word.isEmpty ? String(first) : word)), expected a Python literal")
                }
            }
        }

        private mutating func nested(
            _ body: (inout Parser) throws(ParseError) -> PythonLiteral
        ) throws(ParseError) -> PythonLiteral {
            depth += 1
            defer { depth -= 1 }
            if depth > Self.maximumDepth {
                throw ParseError("header nests deeper than \(Self.maximumDepth) levels, expected a flat dictionary")
            }
            return try body(&self)
        }

        private mutating func parseDict() throws(ParseError) -> [(PythonLiteral, PythonLiteral)] {
            position += 1  // "{"
            var entries: [(PythonLiteral, PythonLiteral)] = []
            while true {
                skipWhitespace()
                if consume("}") { return entries }
                let key = try parseValue()
                skipWhitespace()
                guard consume(":") else { throw ParseError("header has \(quoted(rest)) after a key, expected ':'") }
                let value = try parseValue()
                entries.append((key, value))
                skipWhitespace()
                if consume(",") { continue }
                if consume("}") { return entries }
                throw ParseError("header has \(quoted(rest)) in the dictionary, expected ',' or '}'")
            }
        }

        private mutating func parseSequence(closing: Unicode.Scalar) throws(ParseError) -> [PythonLiteral] {
            position += 1  // "(" or "["
            var items: [PythonLiteral] = []
            while true {
                skipWhitespace()
                if consume(closing) { return items }
                items.append(try parseValue())
                skipWhitespace()
                if consume(",") { continue }
                if consume(closing) { return items }
                throw ParseError("header has \(quoted(rest)) in a sequence, expected ',' or '\(closing)'")
            }
        }

        private mutating func parseString() throws(ParseError) -> String {
            guard let quote = peek() else { throw ParseError("header ends early, expected a string") }
            position += 1
            var text = ""
            while let scalar = peek() {
                position += 1
                if scalar == quote { return text }
                if scalar == "\\" {
                    guard let escaped = peek() else { break }
                    position += 1
                    switch escaped {
                    case "n": text.unicodeScalars.append("\n")
                    case "t": text.unicodeScalars.append("\t")
                    default: text.unicodeScalars.append(escaped)
                    }
                } else {
                    text.unicodeScalars.append(scalar)
                }
            }
            throw ParseError("header has an unterminated string, expected a closing \(quote)")
        }

        /// A decimal integer, with an optional sign and the `L` suffix Python 2 wrote.
        private mutating func parseInt() throws(ParseError) -> Int {
            var negative = false
            if consume("-") { negative = true } else { _ = consume("+") }
            var value = 0
            var digits = 0
            while let scalar = peek(), ("0"..."9").contains(scalar) {
                let digit = Int(scalar.value) - 48
                position += 1
                digits += 1
                let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (next, overflow2) = shifted.addingReportingOverflow(digit)
                if overflow1 || overflow2 {
                    throw ParseError("header has an integer too large for Int, expected a size")
                }
                value = next
            }
            guard digits > 0 else { throw ParseError("header has \(quoted(rest)), expected digits") }
            _ = consume("L") || consume("l")
            return negative ? -value : value
        }

        // MARK: Scanning

        private func peek() -> Unicode.Scalar? { position < scalars.count ? scalars[position] : nil }

        private mutating func consume(_ scalar: Unicode.Scalar) -> Bool {
            guard peek() == scalar else { return false }
            position += 1
            return true
        }

        private mutating func skipWhitespace() {
            while let scalar = peek(), scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" {
                position += 1
            }
        }

        private mutating func parseWord() -> String {
            var word = ""
            while let scalar = peek(), scalar.properties.isAlphabetic || scalar == "_" {
                word.unicodeScalars.append(scalar)
                position += 1
            }
            return word
        }

        /// The unread text, shortened, for messages.
        private var rest: String {
            var text = ""
            text.unicodeScalars.append(contentsOf: scalars[position...].prefix(12))
            return text
        }
    }
}
