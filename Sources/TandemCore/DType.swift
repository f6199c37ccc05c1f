// MARK: - Element types

/// The element types Tandem stores. Arithmetic runs in `float32`; `bfloat16` and
/// `float16` are storage formats (checkpoints, compressed gradients, mixed precision),
/// and the integer types carry labels and token ids read from files.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32, float64, bfloat16, float16, int64, int32, int16, int8, uint8, bool

    /// Bytes one element takes.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .bfloat16, .float16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .bfloat16, .float16: true
        default: false
        }
    }

    public var description: String { rawValue }
}

// MARK: - Half-width conversions

/// Converts between `Float` and the 16-bit storage formats, rounding to nearest even.
public enum HalfConversion {
    /// `Float` → bfloat16 bits (the top half of the IEEE single, rounded to nearest even; NaN kept NaN).
    @inlinable public static func bfloat16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inlinable public static func float(bfloat16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// `Float` → IEEE half bits, through the standard library's `Float16` where the platform has it.
    @inlinable public static func float16Bits(_ value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    @inlinable public static func float(float16 bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }
}
