import TandemCore

// MARK: - Host arrays

/// An array read from or written to a file: its shape, element type and raw bytes.
///
/// The bytes are the elements in C (row-major) order, each little-endian, exactly
/// `shape.product * dtype.byteSize` of them. `HostArray` is the hand-off between the file
/// readers in this module and the tensors in `TandemCore`; it does no arithmetic itself.
///
/// ```swift
/// let weights = HostArray(shape: [2, 2], floats: [1, 2, 3, 4])
/// try NPY.write(weights, to: "w.npy")
/// let back = try NPY.read(path: "w.npy")   // back == weights
/// ```
public struct HostArray: Sendable, Equatable, CustomStringConvertible {
    /// Extents, outermost first; `[]` is a scalar.
    public var shape: [Int]
    /// The element type of `bytes`.
    public var dtype: DType
    /// The elements, C order, little-endian.
    public var bytes: [UInt8]

    /// Wraps raw bytes. The caller guarantees that `bytes` holds exactly one element per
    /// position of `shape`.
    public init(shape: [Int], dtype: DType, bytes: [UInt8]) {
        let expected = CheckedSize.byteCount(shape, elementSize: dtype.byteSize)
        precondition(expected != nil, "HostArray shape \(shape) has a negative extent or more elements than Int holds")
        precondition(
            bytes.count == expected,
            "HostArray of shape \(shape) and \(dtype) needs \(expected ?? 0) bytes, got \(bytes.count)")
        self.shape = shape
        self.dtype = dtype
        self.bytes = bytes
    }

    /// A `float32` array holding `floats` in C order.
    public init(shape: [Int], floats: [Float]) {
        let expected = CheckedSize.elementCount(shape)
        precondition(
            expected == floats.count,
            "HostArray of shape \(shape) needs \(expected ?? 0) floats, got \(floats.count)")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(floats.count * 4)
        for value in floats { bytes.appendLittleEndian(value.bitPattern) }
        self.init(shape: shape, dtype: .float32, bytes: bytes)
    }

    /// An integer (or `bool`) array holding `integers` in C order, each of which must fit `dtype`.
    public init(shape: [Int], integers: [Int], dtype: DType = .int64) {
        let expected = CheckedSize.elementCount(shape)
        precondition(
            expected == integers.count,
            "HostArray of shape \(shape) needs \(expected ?? 0) integers, got \(integers.count)")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(integers.count * dtype.byteSize)
        for value in integers {
            switch dtype {
            case .int64: bytes.appendLittleEndian(Int64(value))
            case .int32: bytes.appendLittleEndian(Int32(value))
            case .int16: bytes.appendLittleEndian(Int16(value))
            case .int8: bytes.appendLittleEndian(Int8(value))
            case .uint8: bytes.appendLittleEndian(UInt8(value))
            case .bool:
                precondition(value == 0 || value == 1, "bool HostArray element \(value) is not 0 or 1")
                bytes.append(UInt8(value))
            case .float32, .float64, .bfloat16, .float16:
                preconditionFailure("HostArray(shape:integers:dtype:) needs an integer dtype, got \(dtype)")
            }
        }
        self.init(shape: shape, dtype: dtype, bytes: bytes)
    }

    /// Number of elements, the product of `shape`.
    public var count: Int { CheckedSize.elementCount(shape) ?? 0 }

    public var description: String { "HostArray(\(dtype) \(shape), \(bytes.count) bytes)" }
}

// MARK: - Conversions

extension HostArray {
    /// The elements converted to `Float`: floating types are rounded to nearest, integers
    /// converted (rounding above 2^24), `bool` gives 0 or 1.
    public func floats() -> [Float] {
        switch dtype {
        case .float32: elements(UInt32.self) { Float(bitPattern: $0) }
        case .float64: elements(UInt64.self) { Float(Double(bitPattern: $0)) }
        case .bfloat16: elements(UInt16.self) { HalfConversion.float(bfloat16: $0) }
        case .float16: elements(UInt16.self) { HalfConversion.float(float16: $0) }
        case .int64: elements(UInt64.self) { Float(Int64(bitPattern: $0)) }
        case .int32: elements(UInt32.self) { Float(Int32(bitPattern: $0)) }
        case .int16: elements(UInt16.self) { Float(Int16(bitPattern: $0)) }
        case .int8: elements(UInt8.self) { Float(Int8(bitPattern: $0)) }
        case .uint8: elements(UInt8.self) { Float($0) }
        case .bool: elements(UInt8.self) { $0 == 0 ? 0 : 1 }
        }
    }

    /// The elements as `Int`. Integer and `bool` arrays always convert; floating arrays
    /// convert when every element is a finite whole number that fits `Int`.
    ///
    /// - Parameter source: the file or field the array came from, used in the error.
    /// - Throws: `FormatError` naming the first element that is not a whole number.
    public func ints(source: String = "array") throws -> [Int] {
        switch dtype {
        case .int64: return elements(UInt64.self) { Int(truncatingIfNeeded: Int64(bitPattern: $0)) }
        case .int32: return elements(UInt32.self) { Int(Int32(bitPattern: $0)) }
        case .int16: return elements(UInt16.self) { Int(Int16(bitPattern: $0)) }
        case .int8: return elements(UInt8.self) { Int(Int8(bitPattern: $0)) }
        case .uint8: return elements(UInt8.self) { Int($0) }
        case .bool: return elements(UInt8.self) { $0 == 0 ? 0 : 1 }
        case .float64:
            return try wholeNumbers(elements(UInt64.self) { Double(bitPattern: $0) }, source: source)
        case .float32, .bfloat16, .float16:
            return try wholeNumbers(floats().map(Double.init), source: source)
        }
    }

    private func wholeNumbers(_ values: [Double], source: String) throws -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(values.count)
        for (index, value) in values.enumerated() {
            guard let whole = Int(exactly: value) else {
                throw FormatError(
                    file: source,
                    message: "element \(index) of \(dtype) shape \(shape) is \(value), expected an integer value")
            }
            result.append(whole)
        }
        return result
    }

    /// Decodes each element's little-endian bits with `transform`. Reads only whole
    /// elements inside `bytes`, so a hand-edited `shape` cannot make it read out of range.
    private func elements<Bits: FixedWidthInteger, Result>(
        _: Bits.Type, _ transform: (Bits) -> Result
    ) -> [Result] {
        let size = MemoryLayout<Bits>.size
        let available = Swift.min(count, bytes.count / size)
        return bytes.withUnsafeBytes { raw in
            (0..<available).map { index in
                transform(Bits(littleEndian: raw.loadUnaligned(fromByteOffset: index * size, as: Bits.self)))
            }
        }
    }
}
