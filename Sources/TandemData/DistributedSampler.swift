// MARK: - Distributed sampler

/// Which sample indices each rank of a data-parallel job reads in an epoch.
///
/// Every rank builds the same sampler (same `count`, `seed`, strategy) with its own `rank`
/// and gets a disjoint share of the data, the same number of samples on every rank so that
/// every rank runs the same number of steps: uneven data never deadlocks a collective.
///
/// 1. **Order.** With `shuffle`, the global order is a permutation of `0..<count` drawn from
///    `SeededGenerator(seed: seed &+ epoch)`, identical on every rank; without it, `0..<count`.
/// 2. **Partition** of that order into `worldSize` shards:
///    - `block`: rank r takes positions `r·k ..< (r+1)·k` of the order (k = `samplesPerRank`);
///    - `cyclic`: rank r takes positions `i` with `i mod worldSize == r` (PyTorch's
///      `DistributedSampler`);
///    - `hash`: rank r takes the samples whose id hashes to r (SplitMix64 of the id mixed
///      with `seed`), in the order of step 1. A sample stays on one rank in every epoch
///      (good for per-rank caches), but shards are uneven by nature.
/// 3. **Equalise.** Without `dropLast`, block and cyclic pad the order to
///    `ceil(count / worldSize)` samples per rank by wrapping around to its start, as PyTorch
///    does; hash pads each shard to the largest shard by repeating from the start of the
///    rank's own list (or of the global order when the rank got nothing). With `dropLast`,
///    block and cyclic use only the first `floor(count / worldSize) · worldSize` positions,
///    and hash cuts every shard to the smallest one.
///
/// ```swift
/// let sampler = try DistributedSampler(count: 1797, rank: 2, worldSize: 4, strategy: .cyclic, seed: 7)
/// for epoch in 0..<10 {
///     let mine = sampler.indices(epoch: epoch)   // 450 indices, disjoint from ranks 0, 1, 3 (bar padding)
/// }
/// ```
public struct DistributedSampler: Sendable, Equatable, CustomStringConvertible {
    /// How the global order is partitioned between ranks.
    public enum Strategy: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
        /// Contiguous ranges of the order.
        case block
        /// Round robin over positions of the order.
        case cyclic
        /// By a stable hash of the sample id, fixed across epochs.
        case hash

        public var description: String { rawValue }
    }

    /// Number of samples in the data set.
    public let count: Int
    /// This rank, in `0..<worldSize`.
    public let rank: Int
    /// Number of ranks.
    public let worldSize: Int
    public let strategy: Strategy
    /// Whether each epoch draws a new order.
    public let shuffle: Bool
    /// The seed of the shuffle (`seed &+ epoch` per epoch) and of the hash.
    public let seed: UInt64
    /// Whether to drop samples rather than repeat some to equalise the ranks.
    public let dropLast: Bool
    /// Number of indices every rank gets per epoch.
    public let samplesPerRank: Int

    /// - Throws: `DataError` when `worldSize < 1`, `rank` is outside `0..<worldSize` or `count < 0`.
    public init(
        count: Int, rank: Int = 0, worldSize: Int = 1, strategy: Strategy = .block,
        shuffle: Bool = true, seed: UInt64 = 0, dropLast: Bool = false
    ) throws {
        func fail(_ message: String) -> DataError { DataError(source: "DistributedSampler", message: message) }
        guard worldSize >= 1 else { throw fail("world size \(worldSize), expected at least 1") }
        guard rank >= 0 && rank < worldSize else {
            throw fail("rank \(rank), expected a rank in 0..<\(worldSize) (the world size)")
        }
        guard count >= 0 else { throw fail("sample count \(count), expected 0 or more") }
        self.count = count
        self.rank = rank
        self.worldSize = worldSize
        self.strategy = strategy
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        switch strategy {
        case .block, .cyclic:
            samplesPerRank = dropLast ? count / worldSize : (count + worldSize - 1) / worldSize
        case .hash:
            var sizes = [Int](repeating: 0, count: worldSize)
            for sample in 0..<count { sizes[Self.hashRank(of: sample, seed: seed, worldSize: worldSize)] += 1 }
            samplesPerRank = (dropLast ? sizes.min() : sizes.max()) ?? 0
        }
    }

    /// Indices every rank together reads per epoch, padding included.
    public var totalSize: Int { samplesPerRank * worldSize }

    public var description: String {
        "DistributedSampler(\(strategy), rank \(rank) of \(worldSize), \(samplesPerRank) of \(count) samples per rank"
            + "\(shuffle ? ", shuffled with seed \(seed)" : "")\(dropLast ? ", drop last" : ""))"
    }

    // MARK: - Indices

    /// This rank's sample indices for `epoch`, `samplesPerRank` of them.
    ///
    /// - Complexity: O(count).
    public func indices(epoch: Int) -> [Int] {
        shard(rank, of: order(epoch: epoch))
    }

    /// This rank's indices for `epoch` from position `position` on, to resume an epoch
    /// after `position` samples (so many batches × the batch size) were already consumed.
    ///
    /// - Throws: `DataError` when `position` is outside `0...samplesPerRank` (a checkpoint
    ///   from a job with another world size or data set, say).
    public func indices(epoch: Int, startingAt position: Int) throws -> [Int] {
        guard position >= 0 && position <= samplesPerRank else {
            throw DataError(
                source: "DistributedSampler",
                message: "resume position \(position), expected a position in 0...\(samplesPerRank) (samples per rank)")
        }
        return Array(indices(epoch: epoch)[position...])
    }

    /// Every rank's indices for `epoch`, by rank: what `indices(epoch:)` returns on each.
    public func shards(epoch: Int) -> [[Int]] {
        let order = order(epoch: epoch)
        return (0..<worldSize).map { shard($0, of: order) }
    }

    /// The global order of `epoch` before partitioning, the same on every rank.
    public func order(epoch: Int) -> [Int] {
        shuffle ? Shuffle.permutation(count: count, seed: Shuffle.epochSeed(seed, epoch: epoch)) : Array(0..<count)
    }

    // MARK: - Partitioning

    private func shard(_ rank: Int, of order: [Int]) -> [Int] {
        let perRank = samplesPerRank
        if perRank == 0 { return [] }
        switch strategy {
        case .block:
            let padded = wrapped(order, to: totalSize)
            return Array(padded[(rank * perRank)..<((rank + 1) * perRank)])
        case .cyclic:
            let padded = wrapped(order, to: totalSize)
            return Array(stride(from: rank, to: totalSize, by: worldSize).map { padded[$0] })
        case .hash:
            let own = order.filter { Self.hashRank(of: $0, seed: seed, worldSize: worldSize) == rank }
            return wrapped(own.isEmpty ? order : own, to: perRank)
        }
    }

    /// The first `length` elements of `values` repeated end to end (`values` not empty).
    private func wrapped(_ values: [Int], to length: Int) -> [Int] {
        if length <= values.count { return Array(values[..<length]) }
        return (0..<length).map { values[$0 % values.count] }
    }

    /// The rank that sample `sample` belongs to under `hash`.
    static func hashRank(of sample: Int, seed: UInt64, worldSize: Int) -> Int {
        let key = Shuffle.mix(UInt64(bitPattern: Int64(sample)) ^ Shuffle.mix(seed))
        return Int(key % UInt64(worldSize))
    }
}
