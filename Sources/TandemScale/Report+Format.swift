import Foundation

// MARK: - Escaping

extension HTMLReport {
    /// `text` safe inside HTML/XML text and double- or single-quoted attributes.
    ///
    /// Only the five entities XML predefines are used, so every chart is also well-formed
    /// XML; characters XML 1.0 forbids (most C0 controls, U+FFFE, U+FFFF) become U+FFFD.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF || (0x7F...0x9F).contains(scalar.value) {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}

// MARK: - Numbers

extension HTMLReport {
    /// A coordinate or length for an SVG attribute: at most two decimals, no trailing zeros,
    /// never `-0`, and `0` for a value that is not finite (callers filter those first; this
    /// is the last guard so that no attribute ever says NaN or inf).
    static func coordinate(_ x: Double) -> String {
        assert(x.isFinite, "a non-finite coordinate reached the SVG writer")
        guard x.isFinite else { return "0" }
        let rounded = (x * 100).rounded() / 100
        if rounded == 0 { return "0" }
        return trimZeros(String(format: "%.2f", rounded))
    }

    /// `x` with `decimals` decimals and a thousands separator (scientific notation from
    /// 10¹⁵), or an en dash when not finite.
    static func fixed(_ x: Double, decimals: Int) -> String {
        guard x.isFinite else { return "–" }
        if abs(x) >= 1e15 { return String(format: "%.2e", x) }
        // Halves round away from zero, as people expect (printf rounds them to even).
        let scale = Foundation.pow(10, Double(max(0, decimals)))
        let value = abs(x * scale) < 1e15 ? (x * scale).rounded() / scale : x
        let text = String(format: "%.\(max(0, decimals))f", value)
        if Double(text) == 0 { return String(format: "%.\(max(0, decimals))f", 0.0) }
        return grouped(text)
    }

    /// `x` to about three significant figures (`0.0123`, `1.23`, `12.3`, `6,275`),
    /// in scientific notation below 0.001 and from 10¹⁵, and an en dash when not finite.
    static func number(_ x: Double) -> String {
        guard x.isFinite else { return "–" }
        let magnitude = abs(x)
        if magnitude == 0 { return "0" }
        if magnitude < 0.001 { return String(format: "%.2e", x) }
        if magnitude >= 100 { return fixed(x, decimals: 0) }
        let decimals = magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 2 - Int(log10(magnitude).rounded(.down))
        return trimZeros(fixed(x, decimals: decimals))
    }

    /// `x` as a percentage of one, e.g. `0.512` → `51.2%`.
    static func percent(_ x: Double) -> String {
        guard x.isFinite else { return "–" }
        let p = x * 100
        return (abs(p) >= 10 ? fixed(p, decimals: 0) : trimZeros(fixed(p, decimals: 1))) + "%"
    }

    /// Bytes in binary units: `512 B`, `1.5 KiB`, `7.11 MiB`, `2 GiB`.
    static func bytes(_ x: Double) -> String {
        guard x.isFinite else { return "–" }
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = x
        var unit = 0
        while abs(value) >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return (unit == 0 ? fixed(value, decimals: 0) : number(value)) + " " + units[unit]
    }

    /// The binary unit (power of 1024 and its name) that suits values up to `maximum` bytes.
    static func byteUnit(for maximum: Double) -> (scale: Double, name: String) {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var scale = 1.0
        var unit = 0
        while maximum.isFinite, maximum / scale >= 1024, unit < units.count - 1 { scale *= 1024; unit += 1 }
        return (scale, units[unit])
    }

    /// `1234567.5` → `1,234,567.5` (the text must be plain `-?digits(.digits)?`).
    private static func grouped(_ text: String) -> String {
        var sign = ""
        var body = Substring(text)
        if body.hasPrefix("-") { sign = "-"; body = body.dropFirst() }
        guard body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else { return text }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        let integer = Array(parts[0])
        var out = ""
        for (index, digit) in integer.enumerated() {
            if index > 0, (integer.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        if parts.count > 1 { out += "." + parts[1] }
        return sign + out
    }

    private static func trimZeros(_ text: String) -> String {
        guard text.contains("."), !text.contains("e") else { return text }
        var t = Substring(text)
        while t.hasSuffix("0") { t = t.dropLast() }
        if t.hasSuffix(".") { t = t.dropLast() }
        return t == "-0" ? "0" : String(t)
    }
}
