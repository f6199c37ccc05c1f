import Foundation
import TandemCollectives

// MARK: - Gathering arbitrary values from every rank

extension ProcessGroup {
    /// Every rank's `bytes`, in rank order, on every rank. Built on float32 all-gathers (two
    /// bytes per float, exact), so it works on any backend.
    /// - Complexity: two all-gathers; size · (longest/2) floats received per rank.
    public func allGatherBytes(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var length = [Float(bytes.count & 0xffff), Float(bytes.count >> 16)]
        var lengths = [Float](repeating: 0, count: 2 * size)
        try length.withUnsafeMutableBufferPointer { l in
            try lengths.withUnsafeMutableBufferPointer { all in
                try allGather(send: CollectiveBuffer(l.baseAddress!, count: 2), receive: CollectiveBuffer(all.baseAddress!, count: all.count)).wait()
            }
        }
        let counts = (0..<size).map { Int(lengths[2 * $0]) | (Int(lengths[2 * $0 + 1]) << 16) }
        let width = (counts.max() ?? 0) / 2 + 1
        var mine = [Float](repeating: 0, count: width)
        for i in stride(from: 0, to: bytes.count, by: 2) {
            mine[i / 2] = Float(UInt16(bytes[i]) | (i + 1 < bytes.count ? UInt16(bytes[i + 1]) << 8 : 0))
        }
        var all = [Float](repeating: 0, count: width * size)
        try mine.withUnsafeMutableBufferPointer { m in
            try all.withUnsafeMutableBufferPointer { a in
                try allGather(send: CollectiveBuffer(m.baseAddress!, count: width), receive: CollectiveBuffer(a.baseAddress!, count: a.count)).wait()
            }
        }
        return (0..<size).map { r in
            (0..<counts[r]).map { i in
                let word = UInt16(all[r * width + i / 2])
                return UInt8(truncatingIfNeeded: i % 2 == 0 ? word : word >> 8)
            }
        }
    }

    /// Every rank's `value` (JSON on the wire), in rank order, on every rank.
    public func allGatherCodable<T: Codable>(_ value: T) throws -> [T] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try allGatherBytes(Array(try encoder.encode(value))).map { try decoder.decode(T.self, from: Data($0)) }
    }
}

// MARK: - Values that travel between ranks

extension ClockAlignment: Codable {
    enum CodingKeys: String, CodingKey { case offset, uncertainty }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(offset: try c.decode(Double.self, forKey: .offset), uncertainty: try c.decode(Double.self, forKey: .uncertainty))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(offset, forKey: .offset)
        try c.encode(uncertainty, forKey: .uncertainty)
    }
}
