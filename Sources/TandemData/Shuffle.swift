import TandemCore

// MARK: - Seeded permutations and hashes

/// The randomness behind shuffles, splits and hash sharding, written out here rather than
/// taken from the standard library (whose `shuffle(using:)` algorithm may change between
/// releases) so that every rank, and every later run that resumes a checkpoint, computes
/// the same order from the same seed.
enum Shuffle {
    /// A uniformly random permutation of `0..<count` (Fisher–Yates, Knuth vol. 2 §3.4.2),
    /// drawn from `SeededGenerator(seed: seed)`.
    ///
    /// - Complexity: O(count).
    static func permutation(count: Int, seed: UInt64) -> [Int] {
        var generator = SeededGenerator(seed: seed)
        var order = Array(0..<count)
        if count < 2 { return order }
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, uniform(below: i + 1, using: &generator))
        }
        return order
    }

    /// A uniform integer in `0..<bound` without modulo bias (Lemire, "Fast Random Integer
    /// Generation in an Interval", 2019).
    static func uniform(below bound: Int, using generator: inout SeededGenerator) -> Int {
        precondition(bound > 0, "uniform(below:) needs a positive bound, got \(bound)")
        let range = UInt64(bound)
        var product = generator.next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold { product = generator.next().multipliedFullWidth(by: range) }
        }
        return Int(product.high)
    }

    /// The SplitMix64 finaliser (Steele, Lea & Flood 2014): a stable 64-bit mix in which
    /// every input bit affects every output bit.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The seed of epoch `epoch`: `seed + epoch`, wrapping, so a negative epoch is not a trap.
    static func epochSeed(_ seed: UInt64, epoch: Int) -> UInt64 {
        seed &+ UInt64(bitPattern: Int64(epoch))
    }
}
