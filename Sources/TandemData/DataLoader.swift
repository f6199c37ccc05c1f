#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore

// MARK: - Data loader

/// Turns a data set and a sampler into batches, assembled on a background thread ahead of
/// use.
///
/// Each epoch's batches are this rank's sampler indices cut into runs of `batchSize` (the
/// last one shorter, or dropped with `dropLast`). A producer thread gathers up to
/// `prefetch` batches ahead of the consumer into a bounded queue; with `prefetch` 0 the
/// consumer gathers each batch itself when it asks. The batches depend only on the data
/// set, the sampler and the batch size, never on `prefetch` or on timing.
///
/// Iterate one epoch, or draw from an endless stream of epochs:
///
/// ```swift
/// let loader = try DataLoader(dataset: train, sampler: sampler, batchSize: 64)
/// for epoch in 0..<10 {
///     for batch in loader.epoch(epoch) { step(batch) }
/// }
/// // or, step by step across epoch boundaries:
/// while loader.position.epoch < 10, let batch = loader.next() { step(batch) }
/// print(loader.waitSeconds)   // time the consumer spent waiting for data
/// ```
///
/// A loader and its epochs belong to the thread that consumes them (they are not
/// `Sendable`). Stopping early is safe: an abandoned or cancelled epoch stops its thread
/// and joins it before returning.
public final class DataLoader {
    /// Where a stream of epochs stands: the next batch `next()` returns.
    public struct Position: Sendable, Equatable, Codable, CustomStringConvertible {
        public var epoch: Int
        /// Batches of `epoch` already handed out.
        public var batch: Int
        public init(epoch: Int, batch: Int) {
            self.epoch = epoch
            self.batch = batch
        }
        public var description: String { "epoch \(epoch), batch \(batch)" }
    }

    public let dataset: Dataset
    public let sampler: DistributedSampler
    /// Samples per batch (the last batch of an epoch may be shorter unless `dropLast`).
    public let batchSize: Int
    /// Whether to drop an epoch's last, incomplete batch.
    public let dropLast: Bool
    /// Batches assembled ahead of the consumer; 0 assembles each on demand.
    public let prefetch: Int
    /// Number of batches in every epoch, the same on every rank.
    public let batchesPerEpoch: Int

    private let meter: WaitMeter
    private var stream: Epoch?
    /// The next batch `next()` returns.
    public private(set) var position = Position(epoch: 0, batch: 0)

    // MARK: - Creating

    /// A loader of `dataset` in the order `sampler` gives this rank.
    ///
    /// - Parameter clock: seconds on a monotonic clock, read on the consumer's thread to
    ///   measure `waitSeconds`; inject a fake one in tests.
    /// - Throws: `DataError` when `batchSize < 1`, `prefetch < 0`, or the sampler was made
    ///   for a different number of samples than `dataset` has.
    public init(
        dataset: Dataset, sampler: DistributedSampler, batchSize: Int, dropLast: Bool = false, prefetch: Int = 2,
        clock: @escaping () -> Double = monotonicSeconds
    ) throws {
        func fail(_ message: String) -> DataError { DataError(source: "DataLoader", message: message) }
        guard batchSize >= 1 else { throw fail("batch size \(batchSize), expected at least 1") }
        guard prefetch >= 0 else { throw fail("prefetch depth \(prefetch), expected 0 or more") }
        guard sampler.count == dataset.count else {
            throw fail("sampler covers \(sampler.count) samples but \(dataset.source) has \(dataset.count), expected the same")
        }
        self.dataset = dataset
        self.sampler = sampler
        self.batchSize = batchSize
        self.dropLast = dropLast
        self.prefetch = prefetch
        let perRank = sampler.samplesPerRank
        self.batchesPerEpoch = dropLast ? perRank / batchSize : (perRank + batchSize - 1) / batchSize
        self.meter = WaitMeter(clock: clock)
    }

    /// A single-worker loader: every sample once per epoch, in a fresh shuffled order per
    /// epoch (`seed &+ epoch`) or in file order.
    public convenience init(
        dataset: Dataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0, dropLast: Bool = false,
        prefetch: Int = 2, clock: @escaping () -> Double = monotonicSeconds
    ) throws {
        let sampler = try DistributedSampler(count: dataset.count, rank: 0, worldSize: 1, shuffle: shuffle, seed: seed)
        try self.init(
            dataset: dataset, sampler: sampler, batchSize: batchSize, dropLast: dropLast, prefetch: prefetch, clock: clock)
    }

    deinit { stream?.cancel() }

    // MARK: - Epochs

    /// The sample indices of each batch of `epoch`, in order: what the epoch's batches hold.
    public func batchIndices(epoch: Int) -> [[Int]] {
        let indices = sampler.indices(epoch: epoch)
        return (0..<batchesPerEpoch).map { batch in
            Array(indices[(batch * batchSize)..<Swift.min((batch + 1) * batchSize, indices.count)])
        }
    }

    /// The batches of `epoch`, assembled ahead of use from now on.
    public func epoch(_ epoch: Int) -> Epoch {
        Epoch(epoch: epoch, plan: batchIndices(epoch: epoch)[...], firstBatch: 0, dataset: dataset,
              prefetch: prefetch, meter: meter)
    }

    /// The batches of `epoch` from batch `startingAtBatch` on, to resume an interrupted epoch.
    ///
    /// - Throws: `DataError` when `startingAtBatch` is outside `0...batchesPerEpoch`.
    public func epoch(_ epoch: Int, startingAtBatch: Int) throws -> Epoch {
        guard startingAtBatch >= 0 && startingAtBatch <= batchesPerEpoch else {
            throw DataError(
                source: "DataLoader",
                message: "resume at batch \(startingAtBatch), expected a batch in 0...\(batchesPerEpoch) (batches per epoch)")
        }
        return Epoch(
            epoch: epoch, plan: batchIndices(epoch: epoch)[startingAtBatch...], firstBatch: startingAtBatch,
            dataset: dataset, prefetch: prefetch, meter: meter)
    }

    // MARK: - Stream of epochs

    /// The next batch of an endless stream: epoch after epoch from `position`, with the next
    /// epoch's batches prefetched as soon as the last one of the current epoch is handed out.
    /// `nil` only when an epoch has no batches at all.
    public func next() -> DataBatch? {
        if batchesPerEpoch == 0 { return nil }
        if stream == nil {
            // `position.batch < batchesPerEpoch` always holds here (see below and `seek`).
            stream = try? epoch(position.epoch, startingAtBatch: position.batch)
        }
        guard let batch = stream?.next() else { return nil }
        position.batch += 1
        if position.batch == batchesPerEpoch {
            stream?.cancel()
            position = Position(epoch: position.epoch + 1, batch: 0)
            stream = epoch(position.epoch)
        }
        return batch
    }

    /// Moves the stream to `position`, to resume from a checkpoint.
    ///
    /// - Throws: `DataError` when `position.batch` is outside `0...batchesPerEpoch`.
    public func seek(to position: Position) throws {
        guard position.batch >= 0 && position.batch <= batchesPerEpoch else {
            throw DataError(
                source: "DataLoader",
                message: "resume at \(position), expected a batch in 0...\(batchesPerEpoch) (batches per epoch)")
        }
        cancel()
        self.position =
            position.batch == batchesPerEpoch && batchesPerEpoch > 0
            ? Position(epoch: position.epoch + 1, batch: 0) : position
    }

    /// Stops the stream's background work; the next `next()` starts again at `position`.
    public func cancel() {
        stream?.cancel()
        stream = nil
    }

    // MARK: - Waiting time

    /// Seconds the consumer spent in `next()` waiting for (or, without prefetch,
    /// assembling) batches, over every epoch of this loader: the "data" span of a step.
    public var waitSeconds: Double { meter.total }
    /// Seconds the most recent batch took to arrive.
    public var lastWaitSeconds: Double { meter.last }
    /// Restarts `waitSeconds` from 0 (at the start of a measured window).
    public func resetWaitSeconds() { meter.reset() }
}

// MARK: - Wait meter

/// The consumer's waiting time, shared by a loader and its epochs on the consumer thread.
final class WaitMeter {
    let clock: () -> Double
    private(set) var total: Double = 0
    private(set) var last: Double = 0

    init(clock: @escaping () -> Double) { self.clock = clock }

    /// Runs `body`, adding the time it took (never negative, whatever the clock does)
    /// when it delivered something: learning that an epoch is over is not waiting for data.
    func measure<T>(_ body: () -> T?) -> T? {
        let start = clock()
        guard let result = body() else { return nil }
        last = Swift.max(0, clock() - start)
        total += last
        return result
    }

    func reset() {
        total = 0
        last = 0
    }
}
