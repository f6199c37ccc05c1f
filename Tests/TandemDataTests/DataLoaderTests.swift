import TandemCore
import TandemData
import Testing

// MARK: - Loader sweep

/// One labelled loader configuration.
struct LoaderCase: CustomTestStringConvertible, Sendable {
    var strategy: DistributedSampler.Strategy
    var worldSize: Int
    var batchSize: Int
    var dropLast: Bool
    var testDescription: String { "\(strategy) worldSize=\(worldSize) batchSize=\(batchSize) dropLast=\(dropLast)" }

    static let all: [LoaderCase] = [DistributedSampler.Strategy.block, .cyclic, .hash].flatMap { strategy in
        [1, 3].flatMap { worldSize in
            [1, 7, 64].flatMap { batchSize in
                [false, true].map { LoaderCase(strategy: strategy, worldSize: worldSize, batchSize: batchSize, dropLast: $0) }
            }
        }
    }
}

@Suite("DataLoader")
struct DataLoaderTests {
    @Test("batches equal dataset.batch(indices:) of the sampler's order, whatever the prefetch depth", arguments: LoaderCase.all)
    func deterministicAcrossPrefetch(_ c: LoaderCase) throws {
        let data = try numberedDataset(count: 100)
        let rank = c.worldSize - 1
        let sampler = try DistributedSampler(
            count: data.count, rank: rank, worldSize: c.worldSize, strategy: c.strategy, seed: 5)
        var reference: [[Int]]?
        for prefetch in [0, 1, 4] {
            let loader = try DataLoader(
                dataset: data, sampler: sampler, batchSize: c.batchSize, dropLast: c.dropLast, prefetch: prefetch)
            for epoch in [0, 1] {
                let plan = loader.batchIndices(epoch: epoch)
                let batches = Array(loader.epoch(epoch))
                #expect(batches.count == loader.batchesPerEpoch, "prefetch \(prefetch) epoch \(epoch): batch count")
                #expect(batches.map(\.indices) == plan, "prefetch \(prefetch) epoch \(epoch): order")
                for (batch, indices) in zip(batches, plan) {
                    expectSameBatch(batch, data.batch(indices: indices), "prefetch \(prefetch) epoch \(epoch)")
                }
                // The batches cut the sampler's list in order: all of it, or all but a short tail.
                let flat = plan.flatMap { $0 }
                let mine = sampler.indices(epoch: epoch)
                #expect(Array(mine.prefix(flat.count)) == flat)
                #expect(c.dropLast ? mine.count - flat.count < c.batchSize : flat.count == mine.count)
                #expect(plan.dropLast().allSatisfy { $0.count == c.batchSize } && (plan.last?.count ?? 1) >= 1)
                if epoch == 1 {
                    if let reference { #expect(plan == reference, "prefetch \(prefetch) changed the plan") }
                    reference = plan
                }
            }
            #expect(loader.waitSeconds >= 0 && loader.lastWaitSeconds >= 0)
        }
    }

    @Test("one worker reads every sample once per epoch, shuffled differently each epoch", arguments: [0, 2])
    func singleWorker(prefetch: Int) throws {
        let data = try numberedDataset(count: 50)
        let loader = try DataLoader(dataset: data, batchSize: 8, seed: 1, prefetch: prefetch)
        #expect(loader.batchesPerEpoch == 7)
        let first = loader.epoch(0).flatMap(\.indices), second = loader.epoch(1).flatMap(\.indices)
        #expect(first.sorted() == Array(0..<50) && second.sorted() == Array(0..<50))
        #expect(first != second)
        let inOrder = try DataLoader(dataset: data, batchSize: 8, shuffle: false, dropLast: true, prefetch: prefetch)
        #expect(inOrder.batchesPerEpoch == 6 && inOrder.epoch(3).flatMap(\.indices) == Array(0..<48))
    }

    @Test("waitSeconds adds up the time spent in next(), measured on the injected clock", arguments: [0, 1, 3])
    func waitTime(prefetch: Int) throws {
        let clock = SteppingClock(step: 0.25)
        let loader = try DataLoader(
            dataset: try numberedDataset(count: 20), batchSize: 4, prefetch: prefetch, clock: { clock.read() })
        #expect(loader.waitSeconds == 0)
        var batches = 0
        for _ in loader.epoch(0) { batches += 1 }
        #expect(batches == 5)
        #expect(loader.waitSeconds == 0.25 * 5 && loader.lastWaitSeconds == 0.25)
        loader.resetWaitSeconds()
        #expect(loader.waitSeconds == 0)
        _ = loader.next()
        #expect(loader.waitSeconds == 0.25)

        let real = try DataLoader(dataset: try numberedDataset(count: 20), batchSize: 4, prefetch: prefetch)
        _ = Array(real.epoch(0))
        #expect(real.waitSeconds >= 0 && real.waitSeconds < 60)
    }

    @Test("next() runs epoch after epoch; seek resumes at the same batch", arguments: [0, 2])
    func stream(prefetch: Int) throws {
        let data = try numberedDataset(count: 30)
        let sampler = try DistributedSampler(count: 30, rank: 1, worldSize: 2, strategy: .cyclic, seed: 9)
        let loader = try DataLoader(dataset: data, sampler: sampler, batchSize: 4, prefetch: prefetch)
        #expect(loader.batchesPerEpoch == 4)
        let expected = (0..<3).flatMap { loader.batchIndices(epoch: $0) }
        var seen: [[Int]] = []
        var positions: [DataLoader.Position] = []
        while loader.position.epoch < 3, let batch = loader.next() {
            seen.append(batch.indices)
            positions.append(loader.position)
        }
        #expect(seen == expected)
        #expect(positions[3] == DataLoader.Position(epoch: 1, batch: 0) && positions[5] == DataLoader.Position(epoch: 1, batch: 2))

        let resumed = try DataLoader(dataset: data, sampler: sampler, batchSize: 4, prefetch: prefetch)
        try resumed.seek(to: positions[5])
        #expect(resumed.next()?.indices == expected[6])
        try resumed.seek(to: DataLoader.Position(epoch: 2, batch: 4))  // the end of epoch 2 is the start of 3
        #expect(resumed.position == DataLoader.Position(epoch: 3, batch: 0))
        #expect(resumed.next()?.indices == loader.batchIndices(epoch: 3)[0])

        let partial = try loader.epoch(1, startingAtBatch: 2)
        #expect(partial.map(\.indices) == Array(loader.batchIndices(epoch: 1)[2...]))
        #expect(try loader.epoch(1, startingAtBatch: 4).map(\.indices).isEmpty)
    }

    @Test("abandoning or cancelling an epoch stops its thread without hanging", arguments: [1, 2, 8])
    func stopsCleanly(prefetch: Int) throws {
        let data = try numberedDataset(count: 1000)
        let loader = try DataLoader(dataset: data, batchSize: 3, prefetch: prefetch)
        for epoch in 0..<200 {
            let batches = loader.epoch(epoch)
            _ = batches.next()
            if epoch % 2 == 0 {
                batches.cancel()
                #expect(batches.next()?.indices == nil, "epoch \(epoch): a batch after cancel")
            }
        }
        // Epochs made and dropped without reading, and an early break from a loop.
        for epoch in 0..<50 { _ = loader.epoch(epoch) }
        for batch in loader.epoch(0) where batch.indices.count == 3 { break }
        _ = loader.next()
        loader.cancel()
        #expect(loader.next()?.indices != nil, "the stream restarts after cancel")
    }

    @Test("an empty data set gives no batches and next() returns nil")
    func empty() throws {
        let loader = try DataLoader(dataset: try numberedDataset(count: 0), batchSize: 4)
        #expect(loader.batchesPerEpoch == 0 && Array(loader.epoch(0)).isEmpty && loader.next()?.indices == nil)
        let small = try DataLoader(dataset: try numberedDataset(count: 3), batchSize: 4, dropLast: true)
        #expect(small.batchesPerEpoch == 0 && small.next()?.indices == nil)
    }

    @Test("regression batches carry target tensors")
    func regression() throws {
        let data = try Dataset(features: (0..<10).map(Float.init), sampleShape: [2], targets: [1, 2, 3, 4, 5], targetShape: [])
        let loader = try DataLoader(dataset: data, batchSize: 2, shuffle: false)
        let batches = Array(loader.epoch(0))
        #expect(batches.map { $0.targets?.shape ?? [] } == [[2], [2], [1]])
        #expect(batches[2].targets?.scalars == [5] && batches[2].inputs.scalars == [8, 9])
    }

    @Test("bad arguments are thrown errors")
    func badArguments() throws {
        let data = try numberedDataset(count: 10)
        expectDataError("DataLoader", "batch size 0") { _ = try DataLoader(dataset: data, batchSize: 0) }
        expectDataError("prefetch depth -1") { _ = try DataLoader(dataset: data, batchSize: 2, prefetch: -1) }
        expectDataError("sampler covers 11 samples", "has 10") {
            _ = try DataLoader(dataset: data, sampler: try DistributedSampler(count: 11), batchSize: 2)
        }
        let loader = try DataLoader(dataset: data, batchSize: 4)
        expectDataError("resume at batch 4", "0...3") { _ = try loader.epoch(0, startingAtBatch: 4) }
        expectDataError("resume at epoch 0, batch -1") { try loader.seek(to: .init(epoch: 0, batch: -1)) }
    }
}
