import TandemCore
import Testing

@testable import TandemFormats

// MARK: - HostArray

@Suite struct HostArrayTests {
    @Test func floatsRoundTrip() {
        let values: [Float] = [0, 1.5, -2.25, .greatestFiniteMagnitude, -0.0]
        let array = HostArray(shape: [5], floats: values)
        #expect(array.dtype == .float32)
        #expect(array.count == 5)
        #expect(array.bytes.count == 20)
        #expect(array.floats() == values)
    }

    /// Every dtype converts the same small integers to the same floats and ints.
    @Test(arguments: DType.allCases)
    func conversions(dtype: DType) throws {
        let values: [Int] = dtype == .bool ? [0, 1, 1, 0] : dtype == .uint8 ? [0, 1, 200, 3] : [0, 1, -2, 3]
        var bytes: [UInt8] = []
        for value in values {
            switch dtype {
            case .float32: bytes.appendLittleEndian(Float(value).bitPattern)
            case .float64: bytes.appendLittleEndian(Double(value).bitPattern)
            case .bfloat16: bytes.appendLittleEndian(HalfConversion.bfloat16Bits(Float(value)))
            case .float16: bytes.appendLittleEndian(HalfConversion.float16Bits(Float(value)))
            case .int64: bytes.appendLittleEndian(Int64(value))
            case .int32: bytes.appendLittleEndian(Int32(value))
            case .int16: bytes.appendLittleEndian(Int16(value))
            case .int8: bytes.appendLittleEndian(Int8(value))
            case .uint8, .bool: bytes.append(UInt8(value))
            }
        }
        let array = HostArray(shape: [2, 2], dtype: dtype, bytes: bytes)
        #expect(array.floats() == values.map(Float.init), "dtype \(dtype)")
        #expect(try array.ints() == values, "dtype \(dtype)")
    }

    @Test func integerInitialiser() throws {
        let labels = HostArray(shape: [3], integers: [7, -1, 2])
        #expect(labels.dtype == .int64)
        #expect(try labels.ints() == [7, -1, 2])
        let small = HostArray(shape: [3], integers: [7, -1, 2], dtype: .int8)
        #expect(small.bytes == [7, 0xFF, 2])
    }

    @Test func intsRefusesFractions() {
        let array = HostArray(shape: [3], floats: [1, 2.5, 3])
        expectFormatError("labels.npy", "element 1", "2.5", "expected an integer") {
            _ = try array.ints(source: "labels.npy")
        }
        expectFormatError("nan", "integer") { _ = try HostArray(shape: [1], floats: [.nan]).ints() }
    }

    @Test func scalarAndEmpty() {
        #expect(HostArray(shape: [], floats: [4]).count == 1)
        #expect(HostArray(shape: [0, 5], floats: []).count == 0)
        #expect(HostArray(shape: [0, 5], floats: []).floats().isEmpty)
    }

    @Test func checkedSizesRefuseOverflowAndNegatives() {
        #expect(CheckedSize.elementCount([1 << 40, 1 << 30]) == nil)
        #expect(CheckedSize.elementCount([3, -1]) == nil)
        #expect(CheckedSize.byteCount([1 << 61], elementSize: 8) == nil)
        #expect(CheckedSize.byteCount([2, 3], elementSize: 4) == 24)
        #expect(CheckedSize.elementCount([]) == 1)
    }

    @Test func crc32KnownValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }
}
