import TandemCore
import TandemNN
import TandemModels
import TandemCollectives

// MARK: - Distributed data parallel

/// Gradient payload precision on the wire.
public enum GradientCompression: String, Sendable, CaseIterable {
    case none, bf16, fp16
    var dtype: DType { self == .bf16 ? .bfloat16 : self == .fp16 ? .float16 : .float32 }
}

/// One replica of a model per rank; gradients averaged over ranks by all-reduce, started
/// bucket by bucket from the autodiff hooks while the rest of backward runs.
///
/// ```swift
/// let ddp = try DistributedDataParallel(model, group: group)
/// let loss = tape.record { model.loss(batch) }
/// model.zeroGradients()
/// tape.backward(loss)          // buckets start their all-reduce as gradients become final
/// try ddp.synchronize()        // wait; every rank now holds the same averaged gradients
/// optimizer.apply(to: model.namedParameters)
/// ```
public final class DistributedDataParallel {
    public let model: any Model
    public let group: any ProcessGroup
    public let compression: GradientCompression
    let buckets: [Bucket]
    /// While true (gradient accumulation), backward only accumulates locally.
    public var synchronizesGradients = true
    /// Seconds spent blocked in `synchronize` during the last step (exposed communication).
    public private(set) var lastWaitSeconds = 0.0
    /// Bytes all-reduced per synchronised step (under a ``ShardedOptimizer``, reduce-scattered
    /// and all-gathered).
    public var bytesPerStep: Int { sharding?.bytesPerStep ?? buckets.reduce(0) { $0 + $1.count * compression.dtype.byteSize } }
    var nextLaunch = 0
    let clock: any TimeSource
    /// The bucket size asked for at construction.
    public let bucketBytes: Int
    /// Set by a ``ShardedOptimizer``: it reduce-scatters the gradients instead of the
    /// all-reduce here (weak: the optimizer holds this object).
    weak var sharding: ShardedOptimizer?

    final class Bucket {
        let parameters: [Parameter]
        let offsets: [Int]
        let count: Int
        /// The 16-bit staging buffer when gradients are compressed; uncompressed buckets
        /// reduce the gradients where they lie.
        let storage16: UnsafeMutablePointer<UInt16>?
        var ready = 0
        /// Which parameters' hooks fired in this synchronised backward.
        var marked: [Bool]
        var handle: (any CollectiveHandle)?

        init(parameters: [Parameter], compressed: Bool) {
            self.parameters = parameters
            var offsets: [Int] = [], total = 0
            for p in parameters { offsets.append(total); total += p.count }
            self.offsets = offsets
            count = total
            storage16 = compressed ? .allocate(capacity: max(total, 1)) : nil
            marked = Array(repeating: false, count: parameters.count)
        }

        deinit { storage16?.deallocate() }
    }

    /// Checks that every rank holds the same parameter shapes, copies rank 0's weights to
    /// every rank, and groups parameters into buckets of about `bucketBytes`, last
    /// registered first (the order backward finishes them).
    public init(_ model: any Model, group: any ProcessGroup, bucketBytes: Int = 25 << 20,
                compression: GradientCompression = .none, clock: any TimeSource = MonotonicClock()) throws {
        self.model = model
        self.group = group
        self.compression = compression
        self.clock = clock
        let parameters = model.parameters
        try Self.verifyShapes(model, group: group)
        for p in parameters {
            try group.broadcast(CollectiveBuffer(p.value.pointer, count: p.count), root: 0).wait()
        }
        self.bucketBytes = bucketBytes
        // One rank has nothing to average: no buckets, no hooks.
        buckets = group.size > 1 ? Self.partition(parameters, bucketBytes: bucketBytes).map { Bucket(parameters: $0, compressed: compression != .none) } : []
        for (b, bucket) in buckets.enumerated() {
            for (i, p) in bucket.parameters.enumerated() {
                p.onGradientReady = { [unowned self] parameter in self.gradientReady(parameter, bucket: b, index: i) }
            }
        }
    }

    deinit { for p in model.parameters { p.onGradientReady = nil } }

    /// Parameters grouped into buckets of about `bucketBytes`, last registered first.
    static func partition(_ parameters: [Parameter], bucketBytes: Int) -> [[Parameter]] {
        var buckets: [[Parameter]] = [], current: [Parameter] = [], bytes = 0
        for p in parameters.reversed() {
            current.append(p)
            bytes += p.count * 4
            if bytes >= bucketBytes { buckets.append(current); current = []; bytes = 0 }
        }
        if !current.isEmpty { buckets.append(current) }
        return buckets
    }

    /// Every rank must have the same number of parameters with the same shapes.
    static func verifyShapes(_ model: any Model, group: any ProcessGroup) throws {
        let shapes = model.namedParameters.map { "\($0.name)\($0.parameter.shape)" }.joined(separator: ";")
        var signature = [Float(model.parameters.count), Float(model.parameterCount % 16_777_216), Float(fnv1a(shapes) % 16_777_216)]
        var all = [Float](repeating: 0, count: 3 * group.size)
        try signature.withUnsafeMutableBufferPointer { s in
            try all.withUnsafeMutableBufferPointer { a in
                try group.allGather(send: CollectiveBuffer(s.baseAddress!, count: 3), receive: CollectiveBuffer(a.baseAddress!, count: a.count)).wait()
            }
        }
        for r in 0..<group.size where Array(all[(3 * r)..<(3 * r + 3)]) != signature {
            throw CollectiveError.invalid("rank \(r) holds a different model (\(Int(all[3 * r])) parameters) from rank \(group.rank) (\(model.parameters.count) parameters, \(model.parameterCount) elements)")
        }
    }

    static func fnv1a(_ s: String) -> UInt64 {
        s.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    // MARK: Hooks and launches

    func gradientReady(_ parameter: Parameter, bucket b: Int, index i: Int) {
        guard synchronizesGradients, let gradient = parameter.gradient else { return }
        if let sharding { sharding.gradientReady(bucket: b, index: i); return }
        let bucket = buckets[b]
        stage(gradient, bucket: bucket, index: i)
        if !bucket.marked[i] { bucket.marked[i] = true; bucket.ready += 1 }
        launchReadyBuckets()
    }

    /// Copies a gradient into its bucket's 16-bit staging buffer (compressed buckets only).
    func stage(_ gradient: Tensor, bucket: Bucket, index i: Int) {
        guard let half = bucket.storage16 else { return }
        let g = gradient.pointer, offset = bucket.offsets[i]
        if compression == .bf16 { for j in 0..<gradient.count { half[offset + j] = HalfConversion.bfloat16Bits(g[j]) } }
        else { for j in 0..<gradient.count { half[offset + j] = HalfConversion.float16Bits(g[j]) } }
    }

    /// Starts every bucket that is full, strictly in bucket order, so all ranks issue the
    /// same all-reduces in the same order whatever order hooks fired in.
    func launchReadyBuckets() {
        while nextLaunch < buckets.count, buckets[nextLaunch].ready == buckets[nextLaunch].parameters.count {
            let bucket = buckets[nextLaunch]
            let buffers = bucket.storage16.map { [CollectiveBuffer($0, count: bucket.count, dtype: compression.dtype)] }
                ?? bucket.parameters.map { CollectiveBuffer($0.gradient!.pointer, count: $0.count) }
            bucket.handle = group.allReduce(buffers, operation: .average)
            nextLaunch += 1
        }
    }

    /// Waits for every bucket and writes the averaged gradients back into the parameters.
    /// Parameters that got no gradient this step contribute zeros.
    ///
    /// Under a ``ShardedOptimizer``, this rank ends with its shard of the averaged gradients
    /// instead (see ``ShardedOptimizer/reduceGradients()``).
    public func synchronize() throws {
        let start = clock.now()
        if let sharding {
            defer { lastWaitSeconds = clock.now() - start }
            return try sharding.reduceGradients()
        }
        // Parameters whose hook did not fire in this backward: unused (zeros), or used only in
        // an earlier micro-batch under `withoutSync` (their accumulated gradient is staged now).
        for bucket in buckets where bucket.ready < bucket.parameters.count {
            for (i, p) in bucket.parameters.enumerated() where !bucket.marked[i] {
                if p.gradient == nil { p.gradient = Tensor(zeros: p.shape) }
                stage(p.gradient!, bucket: bucket, index: i)
                bucket.marked[i] = true
            }
            bucket.ready = bucket.parameters.count
        }
        launchReadyBuckets()
        defer {
            for bucket in buckets { bucket.ready = 0; bucket.handle = nil; bucket.marked = Array(repeating: false, count: bucket.parameters.count) }
            nextLaunch = 0
        }
        for bucket in buckets {
            do {
                try bucket.handle?.wait()
            } catch {
                // Let every collective in flight finish before the gradients can be freed.
                for other in buckets { try? other.handle?.wait() }
                throw error
            }
            guard let half = bucket.storage16 else { continue }
            for (i, p) in bucket.parameters.enumerated() {
                let g = p.gradient!.pointer, offset = bucket.offsets[i]
                if compression == .bf16 { for j in 0..<p.count { g[j] = HalfConversion.float(bfloat16: half[offset + j]) } }
                else { for j in 0..<p.count { g[j] = HalfConversion.float(float16: half[offset + j]) } }
            }
        }
        lastWaitSeconds = clock.now() - start
    }

    /// Runs `body` (a forward and backward) without communicating: gradients accumulate
    /// locally until a later backward with synchronisation on (PyTorch's `no_sync`).
    public func withoutSync<R>(_ body: () throws -> R) rethrows -> R {
        synchronizesGradients = false
        defer { synchronizesGradients = true }
        return try body()
    }

    // MARK: Replica consistency

    /// All-gathers a checksum of every rank's weights and names the ranks whose replica
    /// differs from the majority's (from rank 0's when there is no majority, as with two ranks).
    ///
    /// The checksum is a 64-bit FNV-1a hash of the weights' bit patterns, so a change of one
    /// bit anywhere is seen (a sum, rounded to float, would miss a change of one ulp), and
    /// NaN weights compare equal to themselves. It travels as four 16-bit pieces, each exact in a float.
    public func verifyReplicas() throws {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for p in model.parameters {
            let w = p.value.pointer
            for j in 0..<p.count { hash = (hash ^ UInt64(w[j].bitPattern)) &* 0x100_0000_01b3 }
        }
        var mine = (0..<4).map { Float(UInt16(truncatingIfNeeded: hash >> (16 * $0))) }
        var all = [Float](repeating: 0, count: 4 * group.size)
        try mine.withUnsafeMutableBufferPointer { m in
            try all.withUnsafeMutableBufferPointer { a in
                try group.allGather(send: CollectiveBuffer(m.baseAddress!, count: 4), receive: CollectiveBuffer(a.baseAddress!, count: a.count)).wait()
            }
        }
        let checksums = (0..<group.size).map { Array(all[(4 * $0)..<(4 * $0 + 4)]) }
        // The checksum most ranks hold; on a tie, the one the lowest of those ranks holds.
        let reference = checksums.max { a, b in
            let (na, nb) = (checksums.filter { $0 == a }.count, checksums.filter { $0 == b }.count)
            return na != nb ? na < nb : checksums.firstIndex(of: a)! > checksums.firstIndex(of: b)!
        }!
        let drifted = (0..<group.size).filter { checksums[$0] != reference }
        if !drifted.isEmpty {
            let agreeing = (0..<group.size).filter { checksums[$0] == reference }
            throw CollectiveError.invalid("replica check: rank\(drifted.count == 1 ? "" : "s") \(drifted.map(String.init).joined(separator: ", ")) drifted from rank\(agreeing.count == 1 ? "" : "s") \(agreeing.map(String.init).joined(separator: ", ")) (weight checksums differ)")
        }
    }
}
