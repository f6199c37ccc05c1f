// Internal helpers shared by the readers: checked arithmetic on sizes that come from
// files, and bounds-checked little-endian reads. Nothing here traps on bad input.

// MARK: - Checked sizes

enum CheckedSize {
    /// The product of `shape`, or `nil` when an extent is negative or the product overflows `Int`.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for extent in shape {
            guard extent >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: extent)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// Bytes an array of `shape` and `dtype` takes, or `nil` on a negative extent or overflow.
    static func byteCount(_ shape: [Int], elementSize: Int) -> Int? {
        guard let count = elementCount(shape) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        return overflow ? nil : bytes
    }

    /// `a + b`, or `nil` on overflow.
    static func sum(_ a: Int, _ b: Int) -> Int? {
        let (total, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : total
    }
}

// MARK: - Little-endian reads

extension Array where Element == UInt8 {
    /// The little-endian integer of type `T` at `offset`, or `nil` when it does not lie
    /// wholly inside the array.
    func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= count - size else { return nil }
        var value: T = 0
        for index in 0..<size {
            value |= T(truncatingIfNeeded: self[offset + index]) << (8 * index)
        }
        return value
    }

    /// The bytes in `offset ..< offset + length`, or `nil` when that range is not wholly inside the array.
    func slice(at offset: Int, length: Int) -> ArraySlice<UInt8>? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        return self[offset..<(offset + length)]
    }

    /// Appends `value` as little-endian bytes.
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        for index in 0..<MemoryLayout<T>.size {
            append(UInt8(truncatingIfNeeded: value >> (8 * index)))
        }
    }
}

// MARK: - Quoting for messages

/// `text` in single quotes, shortened and with control characters escaped, for one-line messages.
func quoted(_ text: String, limit: Int = 60) -> String {
    var shown = ""
    for scalar in text.unicodeScalars.prefix(limit) {
        shown += scalar.value < 0x20 || scalar.value == 0x7F ? scalar.escaped(asASCII: true) : String(scalar)
    }
    if text.unicodeScalars.count > limit { shown += "…" }
    return "'\(shown)'"
}

/// `bytes` decoded as UTF-8 where valid, with bad bytes replaced, for messages only.
func lossyText<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    String(decoding: bytes, as: UTF8.self)
}
