import TandemCore
import TandemNN
import TandemOptim
import TandemCollectives

// MARK: - Sharded optimizer step (ZeRO stage 1)

/// An optimizer step sharded over the ranks of a ``DistributedDataParallel``: each rank
/// keeps the optimizer state of only its 1/N of the parameters and updates only those;
/// the gradients are reduce-scattered instead of all-reduced, and the updated weights are
/// all-gathered. Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
/// Parameter Models", SC 2020 (stage 1); PyTorch's `ZeroRedundancyOptimizer`.
///
/// ```swift
/// let ddp = try DistributedDataParallel(model, group: group)
/// let optimizer = try ShardedOptimizer(SGD(learningRate: 0.01, momentum: 0.9), ddp: ddp)
/// let loss = tape.record { model.loss(batch) }
/// model.zeroGradients()
/// tape.backward(loss)          // buckets start their reduce-scatter as gradients become final
/// try ddp.synchronize()        // this rank now holds its shard of the averaged gradients
/// try optimizer.step()         // update that shard, then every rank gets every shard's weights
/// ```
///
/// Each bucket of C elements (the buckets of the ``DistributedDataParallel``) is split into
/// N slices of S = ⌈C/N⌉ elements over the bucket's parameters laid end to end; rank r owns
/// elements [r·S, min((r+1)·S, C)), so any C works, divisible by N or not. The update per
/// rank and the optimizer state per rank shrink by N; the result is the same as the
/// unsharded step's: bit for bit where the reduce-scatter sums the ranks in the same order
/// as the all-reduce (the threads backend, whose fused pass sums as its all-reduce does,
/// pairwise for small buckets and in rank order for large ones); clipping's global norm is
/// summed shard by shard, so it can differ from the unsharded norm in its last bit.
///
/// On groups whose ranks share memory (``SharedMemoryGroup``: the threads backend) the three
/// phases are fused into one pass: the owner of a slice sums every rank's gradient tile,
/// updates its weights and writes them into every replica. Elsewhere (MPI, NCCL) it uses the
/// group's `reduceScatter` and `allGather` on packed, padded copies of each bucket, started
/// from the autodiff hooks so they overlap backward. Compressed gradients (bf16, fp16) take
/// the second path on every backend (the weights always travel in float32).
///
/// Checkpoints hold the full state: ``gatherState()`` collects every shard into
/// `state.slots` (a collective), and ``loadState()`` takes this rank's slices from there, so a
/// checkpoint moves between sharded and unsharded runs and between worker counts.
///
/// - Complexity: per rank and step, C·(N−1)/N elements reduce-scattered and as many
///   all-gathered (as one all-reduce), C/N elements updated, C/N elements of each state slot kept.
public final class ShardedOptimizer {
    public let ddp: DistributedDataParallel
    /// The update rule, the step count and, only between ``gatherState()`` and
    /// ``releaseGatheredState()`` or before ``loadState()``, the full state.
    public let state: OptimizerState
    /// Clip the averaged gradients to this global L2 norm before the update. Set it before
    /// backward: without clipping, each bucket's fused step starts as soon as its gradients are final.
    public var clipNorm: Float?
    /// The global gradient norm of the last step, when it was clipped.
    public private(set) var lastGradientNorm: Float?
    /// Whether the fused shared-memory pass is used (else the group's reduce-scatter and all-gather).
    public let usesSharedMemory: Bool

    let rule: any ElementwiseOptimizer
    let shards: [Shard]
    var group: any ProcessGroup { ddp.group }
    /// Shards whose reduce-scatter has been started (collectives path), in order.
    var launched = 0
    /// Whether ``reduceGradients()`` has run for the current step.
    var reduced = false
    /// One tile of averaged gradient (the fused pass), used only by this rank's communication thread.
    let tile: UnsafeMutablePointer<Float>
    /// Partial sums of the pairwise reduction, one tile per tree level (more than 3 ranks only).
    var pairwiseScratch: [UnsafeMutablePointer<Float>] = []
    /// 64 KiB: the tile and the tiles of gradients, weights and state it meets stay in L2,
    /// and the per-tile calls are paid once per 16 Ki elements.
    static let tileCount = 16384

    /// Shards the update of `optimizer` over `ddp`'s ranks.
    ///
    /// - Parameter sharedMemory: fuse the reduction, update and gather where the group's
    ///   ranks share memory; `false` always uses the group's reduce-scatter and all-gather
    ///   (the path of MPI and NCCL; kept selectable to compare the two).
    public convenience init(_ optimizer: any Optimizer, ddp: DistributedDataParallel, sharedMemory: Bool = true) throws {
        try self.init(state: OptimizerState(optimizer), ddp: ddp, sharedMemory: sharedMemory)
    }

    /// Shards the update of `state`'s optimizer (its step count is kept; any full state in
    /// its `slots` is taken in as by ``loadState()``).
    public init(state: OptimizerState, ddp: DistributedDataParallel, sharedMemory: Bool = true) throws {
        guard let rule = state.optimizer as? any ElementwiseOptimizer else {
            throw ShardingError("a sharded optimizer step needs an element-wise update rule (SGD, AdamW); \(type(of: state.optimizer)) is not one")
        }
        guard ddp.sharding == nil else { throw ShardingError("this DistributedDataParallel already has a sharded optimizer") }
        self.ddp = ddp
        self.state = state
        self.rule = rule
        usesSharedMemory = sharedMemory && ddp.compression == .none && ddp.group is any SharedMemoryGroup
        let names = Dictionary(uniqueKeysWithValues: ddp.model.namedParameters.map { (ObjectIdentifier($0.parameter), $0.name) })
        // The DDP's own buckets (its hooks report by bucket index); one rank has none, so cut them the same way.
        let partition = ddp.buckets.isEmpty
            ? DistributedDataParallel.partition(ddp.model.parameters, bucketBytes: ddp.bucketBytes)
            : ddp.buckets.map(\.parameters)
        let (rank, size, slots) = (ddp.group.rank, ddp.group.size, rule.stateNames.count)
        let (collectives, compressed) = (!usesSharedMemory, ddp.compression != .none)
        shards = partition.map {
            Shard(parameters: $0, names: $0.map { names[ObjectIdentifier($0)]! }, rank: rank, size: size, slots: slots,
                  collectives: collectives, compressed: compressed)
        }
        tile = .allocate(capacity: Self.tileCount)
        ddp.sharding = self
        try loadState()
    }

    deinit {
        tile.deallocate()
        for p in pairwiseScratch { p.deallocate() }
        if ddp.sharding === self { ddp.sharding = nil }
    }

    /// Bytes of optimizer state this rank holds (the unsharded step holds N times as many).
    public var stateBytes: Int { shards.reduce(0) { $0 + $1.state.count * $1.width * 4 } }

    /// Bytes reduce-scattered and all-gathered per step (counted as one all-reduce of the
    /// padded buckets: gradients in their wire precision, weights in float32).
    public var bytesPerStep: Int {
        shards.reduce(0) { $0 + $1.width * group.size * (ddp.compression.dtype.byteSize + 4) }
    }

    // MARK: Reduction

    /// Called from the DDP's hook: parameter `index` of bucket `bucket` has its gradient.
    func gradientReady(bucket b: Int, index i: Int) {
        // Clipping needs every gradient before any update: the fused pass then waits for the end of backward.
        if usesSharedMemory && clipNorm != nil { return }
        let shard = shards[b]
        guard !shard.marked[i] else { return }
        if !usesSharedMemory { shard.pack(i, compression: ddp.compression) }
        shard.marked[i] = true
        shard.ready += 1
        launchReadyShards()
    }

    /// Starts every shard whose gradients are all final (packed, on the collectives path),
    /// strictly in order, so every rank issues the same collectives in the same order: a
    /// reduce-scatter, or on shared memory the whole fused step of the bucket.
    ///
    /// The fused step may run while backward goes on: every rank has posted the bucket, so
    /// every rank's backward is past the leaves of its parameters, and no later node of the
    /// tape reads those weights or gradients (a parameter's leaf precedes all its uses).
    func launchReadyShards() {
        while launched < shards.count, shards[launched].ready == shards[launched].parameters.count {
            let shard = shards[launched]
            let total = shard.width * group.size
            if usesSharedMemory {
                shard.handle = fusedStep(shard, step: state.step + 1, scale: 1)
            } else if let packed16 = shard.packed16, let received16 = shard.received16 {
                let dtype = ddp.compression.dtype
                shard.handle = group.reduceScatter(send: CollectiveBuffer(packed16, count: total, dtype: dtype),
                                                   receive: CollectiveBuffer(received16, count: shard.width, dtype: dtype), operation: .average)
            } else {
                shard.handle = group.reduceScatter(send: CollectiveBuffer(shard.packed!.pointer, count: total),
                                                   receive: CollectiveBuffer(shard.gradient.pointer, count: shard.width), operation: .average)
            }
            launched += 1
        }
    }

    /// Ends with this rank's slice of the averaged gradients ready for ``step()``: waits for
    /// the reduce-scatters in flight (starting those whose hooks did not fire: unused
    /// parameters count as zeros, parameters used only in earlier micro-batches with their
    /// accumulated gradient). On shared memory without clipping, the reduction is fused into
    /// each bucket's step, started from the hooks during backward: this starts the buckets
    /// still waiting, and ``step()`` waits for all. `DistributedDataParallel.synchronize()` calls this.
    public func reduceGradients() throws {
        guard !reduced else { return }
        reduced = true
        for shard in shards {
            for p in shard.parameters where p.gradient == nil { p.gradient = Tensor(zeros: p.shape) }
        }
        if usesSharedMemory && clipNorm == nil {
            // Start the buckets whose hooks did not all fire; ``step()`` waits for every one.
            for shard in shards where shard.ready < shard.parameters.count {
                shard.marked = Array(repeating: true, count: shard.parameters.count)
                shard.ready = shard.parameters.count
            }
            launchReadyShards()
            return
        }
        if usesSharedMemory {
            let shared = group as! any SharedMemoryGroup
            try Self.waitAll(shards.reversed().map { shard in
                let job = Unchecked((self, shard))
                return shared.exchange(shard.parameters.map { CollectiveBuffer($0.gradient!.pointer, count: $0.count) }, name: "sharded-reduce") { all, rank in
                    job.value.0.reduce(all, shard: job.value.1, rank: rank)
                }
            })
            return
        }
        for shard in shards where shard.ready < shard.parameters.count {
            for i in shard.parameters.indices where !shard.marked[i] {
                shard.pack(i, compression: ddp.compression)
                shard.marked[i] = true
            }
            shard.ready = shard.parameters.count
        }
        launchReadyShards()
        try Self.waitAll(shards.map { $0.handle! })
        for shard in shards { shard.unpackReceived(compression: ddp.compression) }
    }

    // MARK: Update

    /// One optimizer step: (clip,) update this rank's slice of every bucket, and give every
    /// rank the updated weights. Reduces the gradients first if ``reduceGradients()`` has
    /// not run for this step.
    public func step() throws {
        defer {
            reduced = false
            launched = 0
            for shard in shards { shard.ready = 0; shard.handle = nil; shard.marked = Array(repeating: false, count: shard.parameters.count) }
        }
        try reduceGradients()
        if usesSharedMemory && clipNorm == nil {
            // The fused steps started from the hooks (or from `reduceGradients`).
            try Self.waitAll(shards.map { $0.handle! })
            state.step += 1
            return
        }
        state.step += 1
        let scale = try clipScale()
        if usesSharedMemory {
            // Last bucket first (the same order on every rank): it holds the first layers, whose
            // gradients backward wrote last.
            try Self.waitAll(shards.reversed().map { fusedStep($0, step: state.step, scale: scale) })
            return
        }
        var handles: [any CollectiveHandle] = []
        for shard in shards {
            let g = shard.gradient.pointer
            if scale != 1 { Kernels.scale(g, by: scale, count: shard.owned.count) }
            let packed = shard.packed!.pointer, mine = group.rank * shard.width
            shard.pieces(shard.owned) { i, offset, count, flat in
                let w = shard.parameters[i].value.pointer + offset, at = flat - shard.owned.lowerBound
                rule.update(weights: w, gradient: g + at, state: shard.state.map { $0.pointer + at }, count: count, step: state.step)
                (packed + flat).update(from: w, count: count)
            }
            // In place: this rank's slice already sits at its offset of the gathered buffer.
            handles.append(group.allGather(send: CollectiveBuffer(packed + mine, count: shard.width),
                                           receive: CollectiveBuffer(packed, count: shard.width * group.size)))
        }
        try Self.waitAll(handles)
        for shard in shards {
            let packed = shard.packed!.pointer
            for others in [0..<shard.owned.lowerBound, shard.owned.upperBound..<shard.count] {
                shard.pieces(others) { i, offset, count, flat in (shard.parameters[i].value.pointer + offset).update(from: packed + flat, count: count) }
            }
        }
    }

    /// The factor clipping multiplies the averaged gradients by (1 when not clipping or
    /// under the limit), as `clipGradientNorm`: the norm is √ of the sum over ranks of each
    /// slice's sum of squares, exchanged as two floats per rank and summed in rank order in
    /// double precision, so every rank computes the same factor.
    func clipScale() throws -> Float {
        guard let clipNorm else { lastGradientNorm = nil; return 1 }
        let mine = shards.reduce(0.0) { $0 + Kernels.sumOfSquares($1.gradient.pointer, count: $1.owned.count) }
        let high = Float(mine)
        var send: [Float] = [high, Float(mine - Double(high))]
        var all = [Float](repeating: 0, count: 2 * group.size)
        try send.withUnsafeMutableBufferPointer { s in
            try all.withUnsafeMutableBufferPointer { a in
                try group.allGather(send: CollectiveBuffer(s.baseAddress!, count: 2), receive: CollectiveBuffer(a.baseAddress!, count: a.count)).wait()
            }
        }
        var sum = 0.0
        for r in 0..<group.size { sum += Double(all[2 * r]) + Double(all[2 * r + 1]) }
        let total = Float(sum.squareRoot())
        lastGradientNorm = total
        let scale = clipNorm / (total + 1e-6)
        return scale < 1 ? scale : 1
    }

    // MARK: The fused pass on shared memory

    /// The bucket's fused step as one shared-memory collective: every rank posts its weights,
    /// and its gradients unless clipping already averaged this rank's slice into `shard.gradient`.
    func fusedStep(_ shard: Shard, step: Int, scale: Float) -> any CollectiveHandle {
        let job = Unchecked((self, shard))
        let weights = shard.parameters.map { CollectiveBuffer($0.value.pointer, count: $0.count) }
        let gradients = clipNorm == nil ? shard.parameters.map { CollectiveBuffer($0.gradient!.pointer, count: $0.count) } : []
        return (group as! any SharedMemoryGroup).exchange(gradients + weights, name: "sharded-step") { all, rank in
            job.value.0.update(all, shard: job.value.1, rank: rank, scale: scale, step: step)
        }
    }

    /// Sums every rank's gradients over `count` elements at `offset` of parameter `i` into
    /// `out` and averages them, in the order the group's all-reduce sums a bucket of this size
    /// (rank order, or pairwise for small buckets), so the result has the all-reduce's bits.
    @inline(__always)
    func average(_ all: [[CollectiveBuffer]], _ i: Int, _ offset: Int, _ count: Int, into out: UnsafeMutablePointer<Float>, pairwise: Bool) {
        if pairwise && all.count > 3 {
            sumPairwise(all, i, offset, count, ranks: 0..<all.count, into: out, level: 0)
        } else {
            // Rank order; for 2 and 3 ranks the pairwise tree sums in this order too.
            out.update(from: all[0][i].base!.assumingMemoryBound(to: Float.self) + offset, count: count)
            for q in all.indices.dropFirst() {
                let g = all[q][i].base!.assumingMemoryBound(to: Float.self) + offset
                for j in 0..<count { out[j] += g[j] }
            }
        }
        if all.count > 1 {
            let scale = 1 / Float(all.count)
            for j in 0..<count { out[j] *= scale }
        }
    }

    /// The binary tree of the threads backend's small all-reduce: at stride s, rank i adds
    /// rank i + s (i a multiple of 2s). Over `ranks` that is (left half) + (the rest), the
    /// left half the largest power of two below the count.
    func sumPairwise(_ all: [[CollectiveBuffer]], _ i: Int, _ offset: Int, _ count: Int, ranks: Range<Int>,
                     into out: UnsafeMutablePointer<Float>, level: Int) {
        if ranks.count == 1 {
            out.update(from: all[ranks.lowerBound][i].base!.assumingMemoryBound(to: Float.self) + offset, count: count)
            return
        }
        var half = 1
        while 2 * half < ranks.count { half *= 2 }
        sumPairwise(all, i, offset, count, ranks: ranks.lowerBound..<(ranks.lowerBound + half), into: out, level: level + 1)
        let right: UnsafeMutablePointer<Float>
        if ranks.count - half == 1 {
            right = all[ranks.lowerBound + half][i].base!.assumingMemoryBound(to: Float.self) + offset
        } else {
            while pairwiseScratch.count <= level { pairwiseScratch.append(.allocate(capacity: Self.tileCount)) }
            right = pairwiseScratch[level]
            sumPairwise(all, i, offset, count, ranks: (ranks.lowerBound + half)..<ranks.upperBound, into: right, level: level + 1)
        }
        for j in 0..<count { out[j] += right[j] }
    }

    /// Pass one when clipping: this rank's slice of the averaged gradients into `shard.gradient`.
    func reduce(_ all: [[CollectiveBuffer]], shard: Shard, rank: Int) {
        let g = shard.gradient.pointer, pairwise = pairwise(shard)
        shard.pieces(shard.owned) { i, offset, count, flat in
            var done = 0
            while done < count {
                let n = min(Self.tileCount, count - done)
                average(all, i, offset + done, n, into: g + (flat + done - shard.owned.lowerBound), pairwise: pairwise)
                done += n
            }
        }
    }

    /// Whether the group's all-reduce would sum this bucket pairwise (see ``SharedMemoryGroup/treeThresholdBytes``).
    func pairwise(_ shard: Shard) -> Bool {
        4 * shard.count <= (group as! any SharedMemoryGroup).treeThresholdBytes
    }

    /// The fused pass: for each tile of this rank's slice, the averaged gradient (summed here,
    /// or read from `shard.gradient` and scaled when clipping), the update of this rank's
    /// weights, and their copy into every other replica.
    func update(_ all: [[CollectiveBuffer]], shard: Shard, rank: Int, scale: Float, step: Int) {
        let k = shard.parameters.count
        let fused = all[rank].count == 2 * k          // gradients posted too: sum them here
        let weightsAt = fused ? k : 0
        let pairwise = pairwise(shard)
        let states = shard.state.map(\.pointer)
        var slots = states
        let gradients = fused ? tile : shard.gradient.pointer   // the averaged slice, when clipping put it there
        // Last bucket position first: the parameters backward finished last, whose gradients are likeliest still in cache.
        shard.pieces(shard.owned, backward: true) { i, offset, count, flat in
            let w = all[rank][weightsAt + i].base!.assumingMemoryBound(to: Float.self) + offset
            let peers = all.indices.filter { $0 != rank }.map { all[$0][weightsAt + i].base!.assumingMemoryBound(to: Float.self) + offset }
            var done = 0
            while done < count {
                let n = min(Self.tileCount, count - done), at = offset + done
                let position = flat + done - shard.owned.lowerBound
                let g: UnsafeMutablePointer<Float>
                if fused {
                    average(all, i, at, n, into: tile, pairwise: pairwise)
                    g = tile
                } else {
                    g = gradients + position
                    if scale != 1 { Kernels.scale(g, by: scale, count: n) }
                }
                for s in slots.indices { slots[s] = states[s] + position }
                rule.update(weights: w + done, gradient: g, state: slots, count: n, step: step)
                for peer in peers { (peer + done).update(from: w + done, count: n) }
                done += n
            }
        }
    }

    /// Waits for every handle, even after one fails (their buffers must outlive them), then
    /// throws the first error.
    static func waitAll(_ handles: [any CollectiveHandle]) throws {
        var first: (any Error)?
        for h in handles {
            do { try h.wait() } catch { if first == nil { first = error } }
        }
        if let first { throw first }
    }

    // MARK: Checkpoints

    /// Collective: fills `state.slots` with the full state of every parameter, gathered from
    /// every rank's slices, as an unsharded `OptimizerState` holds it (for `Checkpoint.write`).
    public func gatherState() throws {
        var slots: [String: [Tensor]] = [:]
        for shard in shards {
            let total = shard.width * group.size
            for s in shard.state {
                let full = Tensor(uninitializedShape: [total])
                try group.allGather(send: CollectiveBuffer(s.pointer, count: shard.width), receive: CollectiveBuffer(full.pointer, count: total)).wait()
                for (i, p) in shard.parameters.enumerated() {
                    let t = Tensor(uninitializedShape: p.shape)
                    t.pointer.update(from: full.pointer + shard.offsets[i], count: p.count)
                    slots[shard.names[i], default: []].append(t)
                }
            }
        }
        state.slots = slots
    }

    /// Drops the full state ``gatherState()`` collected.
    public func releaseGatheredState() { state.slots = [:] }

    /// Takes this rank's slices from the full state in `state.slots` (a checkpoint's, sharded
    /// or not, of any worker count), zero where a parameter has none, and empties `slots`.
    public func loadState() throws {
        defer { state.slots = [:] }
        let names = rule.stateNames
        for shard in shards {
            for s in shard.state { s.pointer.update(repeating: 0, count: shard.width) }
            shard.pieces(shard.owned) { i, offset, count, flat in
                guard let full = state.slots[shard.names[i]] else { return }
                for (s, t) in zip(shard.state, full) where t.count == shard.parameters[i].count {
                    (s.pointer + (flat - shard.owned.lowerBound)).update(from: t.pointer + offset, count: count)
                }
            }
        }
        for (name, full) in state.slots where full.count != names.count {
            throw ShardingError("optimizer state of '\(name)' has \(full.count) slots, \(type(of: rule)) keeps \(names.count) (\(names.joined(separator: ", ")))")
        }
    }
}

// MARK: - One bucket's shard

extension ShardedOptimizer {
    /// A bucket's parameters laid end to end (C elements), padded to N·S, and this rank's slice.
    final class Shard {
        let parameters: [Parameter]
        let names: [String]
        /// Where each parameter starts in the bucket.
        let offsets: [Int]
        /// C: the bucket's elements.
        let count: Int
        /// S = ⌈C/N⌉: one rank's slice, padding included.
        let width: Int
        /// This rank's elements: [r·S, min((r+1)·S, C)).
        let owned: Range<Int>
        /// One tensor of S elements per state slot.
        let state: [Tensor]
        /// N·S floats (collectives path): packed gradients, then the gathered weights.
        let packed: Tensor?
        /// This rank's S averaged gradients (collectives path, or clipping on shared memory).
        lazy var gradient = Tensor(zeros: [width])
        /// 16-bit packed gradients and this rank's reduced slice (compressed collectives path).
        let packed16: UnsafeMutablePointer<UInt16>?
        let received16: UnsafeMutablePointer<UInt16>?
        var ready = 0
        var marked: [Bool]
        var handle: (any CollectiveHandle)?

        init(parameters: [Parameter], names: [String], rank: Int, size: Int, slots: Int, collectives: Bool, compressed: Bool) {
            self.parameters = parameters
            self.names = names
            var offsets: [Int] = [], total = 0
            for p in parameters { offsets.append(total); total += p.count }
            self.offsets = offsets
            count = total
            let width = (total + size - 1) / size
            self.width = width
            owned = min(rank * width, total)..<min((rank + 1) * width, total)
            state = (0..<slots).map { _ in Tensor(zeros: [width]) }
            // Padding stays zero: it is reduced and gathered with the rest and never read back.
            packed = collectives ? Tensor(zeros: [width * size]) : nil
            if collectives && compressed {
                packed16 = .allocate(capacity: max(width * size, 1))
                packed16!.initialize(repeating: 0, count: max(width * size, 1))
                received16 = .allocate(capacity: max(width, 1))
                received16!.initialize(repeating: 0, count: max(width, 1))
            } else {
                packed16 = nil
                received16 = nil
            }
            marked = Array(repeating: false, count: parameters.count)
        }

        deinit { packed16?.deallocate(); received16?.deallocate() }

        /// Calls `body(parameter, offset in it, count, position in the bucket)` for each
        /// parameter's part of `range` (bucket positions), in order (`backward`: last first).
        func pieces(_ range: Range<Int>, backward: Bool = false, _ body: (_ index: Int, _ offset: Int, _ count: Int, _ flat: Int) -> Void) {
            guard !range.isEmpty else { return }
            for i in backward ? Array(offsets.indices.reversed()) : Array(offsets.indices) {
                let start = offsets[i]
                let end = start + parameters[i].count
                let lo = max(start, range.lowerBound), hi = min(end, range.upperBound)
                if lo < hi { body(i, lo - start, hi - lo, lo) }
            }
        }

        func pack(_ i: Int, compression: GradientCompression) {
            let p = parameters[i], g = p.gradient!.pointer, at = offsets[i]
            if let half = packed16 {
                if compression == .bf16 { for j in 0..<p.count { half[at + j] = HalfConversion.bfloat16Bits(g[j]) } }
                else { for j in 0..<p.count { half[at + j] = HalfConversion.float16Bits(g[j]) } }
            } else {
                (packed!.pointer + at).update(from: g, count: p.count)
            }
        }

        /// The compressed path's reduced slice, widened into `gradient`.
        func unpackReceived(compression: GradientCompression) {
            guard let half = received16 else { return }
            let g = gradient.pointer
            if compression == .bf16 { for j in 0..<width { g[j] = HalfConversion.float(bfloat16: half[j]) } }
            else { for j in 0..<width { g[j] = HalfConversion.float(float16: half[j]) } }
        }
    }
}

/// Why a sharded optimizer cannot be set up or restored.
public struct ShardingError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A value handed to a collective's body on the communication thread.
struct Unchecked<Value>: @unchecked Sendable {
    // Safe: the rank's own thread blocks on the collective's handle while the body runs,
    // so the value is never used from two threads at once.
    let value: Value
    init(_ value: Value) { self.value = value }
}
