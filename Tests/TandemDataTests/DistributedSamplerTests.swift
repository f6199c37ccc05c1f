import TandemCore
import Testing

@testable import TandemData

// MARK: - Sweep over every combination

/// One labelled combination of the sampler sweep.
struct SamplerCase: CustomTestStringConvertible, Sendable {
    var strategy: DistributedSampler.Strategy
    var worldSize: Int
    var count: Int
    var dropLast: Bool
    var shuffle: Bool

    var testDescription: String {
        "\(strategy) worldSize=\(worldSize) count=\(count) dropLast=\(dropLast) shuffle=\(shuffle)"
    }

    static let all: [SamplerCase] = DistributedSampler.Strategy.allCases.flatMap { strategy in
        (1...8).flatMap { worldSize in
            [0, 1, 7, 64, 1797].flatMap { count in
                [false, true].flatMap { dropLast in
                    [false, true].map { shuffle in
                        SamplerCase(strategy: strategy, worldSize: worldSize, count: count, dropLast: dropLast, shuffle: shuffle)
                    }
                }
            }
        }
    }

    func sampler(rank: Int, seed: UInt64 = 1234) throws -> DistributedSampler {
        try DistributedSampler(
            count: count, rank: rank, worldSize: worldSize, strategy: strategy, shuffle: shuffle, seed: seed,
            dropLast: dropLast)
    }
}

@Suite("DistributedSampler sweep")
struct DistributedSamplerSweepTests {
    @Test("shards are equal, in range, disjoint or covering as promised", arguments: SamplerCase.all)
    func shardProperties(_ c: SamplerCase) throws {
        let samplers = try (0..<c.worldSize).map { try c.sampler(rank: $0) }
        let perRank = samplers[0].samplesPerRank
        for epoch in [0, 1] {
            let shards = samplers.map { $0.indices(epoch: epoch) }
            #expect(shards == samplers[0].shards(epoch: epoch), "indices(epoch:) on each rank differs from shards(epoch:)")
            #expect(samplers.allSatisfy { $0.samplesPerRank == perRank }, "ranks disagree on samplesPerRank")
            #expect(shards.allSatisfy { $0.count == perRank }, "shard sizes \(shards.map(\.count)), expected \(perRank) each")
            let all = shards.flatMap { $0 }
            #expect(all.allSatisfy { $0 >= 0 && $0 < c.count }, "an index is outside 0..<\(c.count)")

            // Expected size of every shard.
            switch c.strategy {
            case .block, .cyclic:
                let expected = c.dropLast ? c.count / c.worldSize : (c.count + c.worldSize - 1) / c.worldSize
                #expect(perRank == expected, "samplesPerRank \(perRank), expected \(expected)")
            case .hash:
                let sizes = (0..<c.worldSize).map { rank in
                    (0..<c.count).filter { DistributedSampler.hashRank(of: $0, seed: 1234, worldSize: c.worldSize) == rank }.count
                }
                #expect(perRank == (c.dropLast ? sizes.min()! : sizes.max()!), "hash shard sizes \(sizes), got \(perRank)")
            }

            let needsPadding: Bool
            switch c.strategy {
            case .block, .cyclic: needsPadding = c.count % c.worldSize != 0
            case .hash: needsPadding = perRank * c.worldSize != c.count
            }
            if c.dropLast || !needsPadding {
                #expect(Set(all).count == all.count, "shards overlap although nothing was padded")
            }
            if !c.dropLast {
                #expect(Set(all) == Set(0..<c.count), "shards do not cover every sample")
            }
            if !needsPadding {
                #expect(all.sorted() == Array(0..<c.count), "shards are not an exact partition")
            }
            if !c.dropLast {
                // Remove the padding: block and cyclic pad exactly total − count repeats;
                // hash keeps each sample on the rank it hashes to.
                switch c.strategy {
                case .block, .cyclic:
                    #expect(all.count - Set(all).count == perRank * c.worldSize - c.count, "unexpected number of padded repeats")
                case .hash:
                    var own: [Int] = []
                    for (rank, shard) in shards.enumerated() {
                        var seen: Set<Int> = []
                        own += shard.filter {
                            DistributedSampler.hashRank(of: $0, seed: 1234, worldSize: c.worldSize) == rank && seen.insert($0).inserted
                        }
                    }
                    #expect(own.sorted() == Array(0..<c.count), "hash shards without padding do not partition the samples")
                }
            } else if c.strategy == .hash {
                for (rank, shard) in shards.enumerated() {
                    #expect(
                        shard.allSatisfy { DistributedSampler.hashRank(of: $0, seed: 1234, worldSize: c.worldSize) == rank },
                        "rank \(rank) got a sample hashed to another rank")
                }
            }
        }
    }

    @Test("same seed, same shards; shuffling changes the order between epochs", arguments: SamplerCase.all)
    func determinismAndEpochs(_ c: SamplerCase) throws {
        for rank in Set([0, c.worldSize - 1]) {
            let a = try c.sampler(rank: rank), b = try c.sampler(rank: rank)
            #expect(a == b)
            for epoch in [0, 3, -2] {
                #expect(a.indices(epoch: epoch) == b.indices(epoch: epoch), "rank \(rank) epoch \(epoch) differs between constructions")
            }
        }
        let sampler = try c.sampler(rank: 0)
        let epoch0 = sampler.shards(epoch: 0).flatMap { $0 }, epoch1 = sampler.shards(epoch: 1).flatMap { $0 }
        if c.shuffle && c.count >= 64 {
            #expect(epoch0 != epoch1, "shuffled order repeats between epochs 0 and 1")
            let otherSeed = try c.sampler(rank: 0, seed: 99).shards(epoch: 0).flatMap { $0 }
            #expect(otherSeed != epoch0, "another seed gives the same order")
        }
        if !c.shuffle {
            #expect(epoch0 == epoch1, "unshuffled order changes between epochs")
        }
        if c.strategy == .hash && !c.dropLast {
            for (rank, (s0, s1)) in zip(sampler.shards(epoch: 0), sampler.shards(epoch: 1)).enumerated() {
                let own = { (shard: [Int]) in Set(shard.filter { DistributedSampler.hashRank(of: $0, seed: 1234, worldSize: c.worldSize) == rank }) }
                #expect(own(s0) == own(s1), "rank \(rank)'s hash shard moved between epochs")
            }
        }
    }

    @Test("resuming mid-epoch returns the rest of the epoch", arguments: SamplerCase.all.filter { $0.count > 0 })
    func resume(_ c: SamplerCase) throws {
        let sampler = try c.sampler(rank: c.worldSize / 2)
        let full = sampler.indices(epoch: 5)
        for position in Set([0, full.count / 2, full.count]) {
            #expect(try sampler.indices(epoch: 5, startingAt: position) == Array(full[position...]), "position \(position)")
        }
    }
}

// MARK: - Fixed examples and errors

@Suite("DistributedSampler")
struct DistributedSamplerTests {
    @Test("unshuffled shards match PyTorch's DistributedSampler (cyclic) and contiguous blocks")
    func knownShards() throws {
        let cyclic = try DistributedSampler(count: 10, worldSize: 3, strategy: .cyclic, shuffle: false)
        #expect(cyclic.shards(epoch: 0) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]])
        let cyclicDrop = try DistributedSampler(count: 10, worldSize: 3, strategy: .cyclic, shuffle: false, dropLast: true)
        #expect(cyclicDrop.shards(epoch: 0) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]])
        let block = try DistributedSampler(count: 10, worldSize: 3, strategy: .block, shuffle: false)
        #expect(block.shards(epoch: 0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]])
        let tiny = try DistributedSampler(count: 2, worldSize: 5, strategy: .block, shuffle: false)
        #expect(tiny.shards(epoch: 0) == [[0], [1], [0], [1], [0]])
    }

    @Test("the shuffle of an epoch is a fixed permutation (pinned so a change of algorithm shows)")
    func pinnedPermutation() throws {
        let sampler = try DistributedSampler(count: 10, seed: 42)
        let order = sampler.order(epoch: 0)
        #expect(order.sorted() == Array(0..<10))
        #expect(order == Shuffle.permutation(count: 10, seed: 42))
        #expect(sampler.order(epoch: 1) == Shuffle.permutation(count: 10, seed: 43))
        #expect(order == pinnedOrder, "permutation for seed 42 changed: \(order)")
    }

    @Test("hash shards hold a rank that got no samples by padding from the global order")
    func hashEmptyRank() throws {
        // With one sample and 8 ranks, 7 ranks own nothing.
        let shards = try DistributedSampler(count: 1, worldSize: 8, strategy: .hash, shuffle: false).shards(epoch: 0)
        #expect(shards == Array(repeating: [0], count: 8))
        let dropped = try DistributedSampler(count: 1, worldSize: 8, strategy: .hash, dropLast: true)
        #expect(dropped.samplesPerRank == 0 && dropped.indices(epoch: 0).isEmpty)
    }

    @Test("uniform(below:) stays in range and reaches every value")
    func uniformBelow() {
        var generator = SeededGenerator(seed: 7)
        for bound in [1, 2, 3, 7, 1000] {
            var seen = Set<Int>()
            for _ in 0..<(bound * 20) {
                let value = Shuffle.uniform(below: bound, using: &generator)
                #expect(value >= 0 && value < bound)
                seen.insert(value)
            }
            #expect(seen.count == bound, "bound \(bound): only \(seen.count) values seen")
        }
    }

    @Test("bad arguments are thrown errors")
    func badArguments() {
        expectDataError("DistributedSampler", "world size 0") { _ = try DistributedSampler(count: 4, rank: 0, worldSize: 0) }
        expectDataError("rank -1", "0..<4") { _ = try DistributedSampler(count: 4, rank: -1, worldSize: 4) }
        expectDataError("rank 4", "0..<4") { _ = try DistributedSampler(count: 4, rank: 4, worldSize: 4) }
        expectDataError("count -1") { _ = try DistributedSampler(count: -1, rank: 0, worldSize: 2) }
        expectDataError("resume position 3", "0...2") {
            _ = try DistributedSampler(count: 4, rank: 0, worldSize: 2).indices(epoch: 0, startingAt: 3)
        }
        expectDataError("resume position -1") {
            _ = try DistributedSampler(count: 4, rank: 0, worldSize: 2).indices(epoch: 0, startingAt: -1)
        }
    }
}

/// `Shuffle.permutation(count: 10, seed: 42)`, as computed independently by this Python
/// (xoshiro256** seeded by SplitMix64, then Fisher–Yates with Lemire's bounded draws):
///
/// ```python
/// M = (1 << 64) - 1
/// def generator(seed):
///     s, state = seed, []
///     for _ in range(4):
///         s = (s + 0x9E3779B97F4A7C15) & M
///         z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & M
///         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
///         state.append(z ^ (z >> 31))
///     while True:
///         r = (state[1] * 5) & M
///         yield ((((r << 7) | (r >> 57)) & M) * 9) & M
///         t = (state[1] << 17) & M
///         state[2] ^= state[0]; state[3] ^= state[1]; state[1] ^= state[2]; state[0] ^= state[3]
///         state[2] ^= t; state[3] = ((state[3] << 45) | (state[3] >> 19)) & M
/// def permutation(n, seed):
///     g, a = generator(seed), list(range(n))
///     for i in range(n - 1, 0, -1):
///         b = i + 1; m = next(g) * b
///         if (m & M) < b:
///             t = ((1 << 64) - b) % b
///             while (m & M) < t: m = next(g) * b
///         j = m >> 64; a[i], a[j] = a[j], a[i]
///     return a
/// print(permutation(10, 42))
/// ```
let pinnedOrder = [9, 1, 4, 2, 8, 7, 6, 5, 3, 0]
