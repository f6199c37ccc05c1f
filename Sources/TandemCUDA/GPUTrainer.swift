#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemNN
import TandemModels

// MARK: - Precision

/// How a GPU step computes: true fp32, fp32 with tf32 tensor-core GEMMs, or 16-bit activations and
/// GEMM operands (bf16, or fp16 with dynamic loss scaling) over fp32 master weights.
public enum GPUPrecision: String, CaseIterable, Sendable {
    case fp32, tf32, bf16, fp16

    /// Suffix of the typed kernels for activations.
    var suffix: String {
        switch self {
        case .fp32, .tf32: "_f32"
        case .bf16: "_bf16"
        case .fp16: "_f16"
        }
    }
    var dataType: CuBLAS.DataType {
        switch self {
        case .fp32, .tf32: .f32
        case .bf16: .bf16
        case .fp16: .f16
        }
    }
    var compute: CuBLAS.Compute { self == .tf32 ? .f32FastTF32 : .f32 }
    /// Bytes of one activation element.
    var bytes: Int { self == .fp32 || self == .tf32 ? 4 : 2 }
    /// Whether a 16-bit copy of the weights feeds the GEMMs.
    var usesShadow: Bool { bytes == 2 }
}

/// The optimizer of a GPU step (PyTorch semantics, as TandemOptim's).
public enum GPUOptimizer: Sendable {
    case sgd(learningRate: Float, momentum: Float, weightDecay: Float, nesterov: Bool)
    case adamw(learningRate: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float)
}

// MARK: - Trainer

/// Trains one reference model on one GPU: flat fp32 parameters, gradients and optimizer state
/// on the device, an explicit forward and backward per layer, the loss, and the optimizer, all
/// queued on one stream; optionally the whole step captured once in a CUDA graph and replayed.
///
/// Weights come from (and go back to) a CPU ``Model`` with PyTorch's parameter names, so a GPU
/// step can be checked against the CPU step on the same weights and data, and checkpoints use
/// the CPU writers.
public final class GPUTrainer {
    public let gpu: CUDAContext
    public let precision: GPUPrecision
    public let batch: Int
    /// The optimizer; its learning rate may change between eager steps (a captured graph keeps the one it saw), its
    /// momentum may not (gpt's token embedding keeps momentum × its buffer: ``scaledMomentum(under:)``).
    public var optimizer: GPUOptimizer
    /// Clip the global gradient norm to this (0: no clipping).
    public let clipNorm: Float
    public let names: [String]
    public let shapes: [[Int]]
    let offsets: [Int]
    /// Where each parameter's aligned slice ends (slices need not follow the model's order).
    let ends: [Int]
    public let parameterCount: Int
    let flatCount: Int
    let params: DevicePointer, grads: DevicePointer, slot1: DevicePointer, slot2: DevicePointer
    let shadow: DevicePointer
    /// Step state: see the optimizer kernels (multiplier, overflow flag, loss scale, norm, clean steps, steps).
    let state: DevicePointer
    let lossValue: DevicePointer
    let normPartial: DevicePointer
    /// Partial sums of the kernels that reduce in two steps, one buffer per stream (the main one, the side one):
    /// ``scratch`` is the current stream's.
    let scratches: (main: DevicePointer, side: DevicePointer)
    var scratch: DevicePointer { gpu.currentStream == gpu.sideStream ? scratches.side : scratches.main }
    static let scratchFloats = 4 << 20
    /// Ones in the activation type, for bias gradients as a GEMM (`dyᵀ · 1`).
    let ones: DevicePointer
    let onesCount = 1 << 16
    /// Ticket counters of the kernels that finish their own reductions (`last_ticket` in the kernel source): zero
    /// between launches, each launch leaves them so. Like `scratch`, one set per stream, used by one launch at a time.
    let ticketSets: (main: DevicePointer, side: DevicePointer)
    var tickets: DevicePointer { gpu.currentStream == gpu.sideStream ? ticketSets.side : ticketSets.main }
    static let ticketCount = 4096
    var network: any GPUNetwork
    /// What runs beside what in a step: chosen by timing when the trainer is made (``chooseSchedule()``); may be set
    /// before a step (graphs capture the schedule of their step).
    public var schedule = Schedule(weightGradientsBeside: false, optimizerBeside: false)
    /// How ``schedule`` was chosen, for ``engine``.
    var scheduleNote = ""
    private var graph: CUDAGraph?
    /// The optimizer and fold flag of the updates a step left to the next (``defersUpdates``): nil when none is pending.
    /// Non-nil, they may be applied already (right after ``captureGraph()``, whose step has not run): the device's skip
    /// flag decides.
    var pending: (optimizer: GPUOptimizer, folded: Bool)?
    /// The self-test's probe: the deferred updates start 1 ms late, so a forward that reads a group before waiting for it
    /// reads the old weights every time instead of by chance.
    var delaysDeferredUpdates = false
    /// `pending` after a replay of the captured step.
    private var graphPending: (optimizer: GPUOptimizer, folded: Bool)?
    /// Where the main stream waits for each update group's deferred update in the step being queued (nil: nothing to wait for).
    var deferredMarks: [StreamMark?] = []
    /// The flat runs of each update group: fixed by the network, so worked out once.
    lazy var groupRuns: [[Range<Int>]] = network.updateGroups.map { flatRuns($0) }
    /// The deferred groups' parameters, and the flat runs of every other parameter (those a deferring step updates itself):
    /// fixed by the network, so worked out once.
    lazy var deferralPlan: (parameters: Set<Int>, nowRuns: [Range<Int>]) = {
        let parameters = Set(deferredGroups.flatMap { network.updateGroups[$0] })
        return (parameters, flatRuns(offsets.indices.filter { !parameters.contains($0) }))
    }()
    /// The parameters of the update groups the step being queued defers (backward hands them to no optimizer).
    var deferredParameters: Set<Int> = []
    public let model: any Model
    public let workload: ReferenceModel

    public static let lossScaleInterval: Float = 2000
    static let normBlocks = 264

    /// Builds the device copy of `model` (a reference workload) for batches of `batch`.
    public init(gpu: CUDAContext, workload: ReferenceModel, model: any Model, batch: Int, precision: GPUPrecision,
                optimizer: GPUOptimizer, clipNorm: Float = 0) throws {
        let before = gpu.allocator.livePointers
        self.gpu = gpu
        self.workload = workload
        self.model = model
        self.batch = batch
        self.precision = precision
        self.optimizer = optimizer
        self.clipNorm = clipNorm
        let named = model.namedParameters
        names = named.map(\.name)
        shapes = named.map(\.parameter.shape)
        let layout = Self.layout(workload, names: names, counts: named.map(\.parameter.count))
        (offsets, ends, flatCount, foldFrom) = (layout.offsets, layout.ends, layout.total, layout.foldFrom)
        scatteredRange = layout.scatteredFrom..<layout.foldFrom
        parameterCount = named.reduce(0) { $0 + $1.parameter.count }
        params = try gpu.allocate(bytes: 4 * flatCount, category: .parameters)
        grads = try gpu.allocate(bytes: 4 * flatCount, category: .gradients)
        slot1 = try gpu.allocate(bytes: 4 * flatCount, category: .optimizer)
        if case .adamw = optimizer { slot2 = try gpu.allocate(bytes: 4 * flatCount, category: .optimizer) } else { slot2 = 0 }
        shadow = precision.usesShadow ? try gpu.allocate(bytes: 2 * flatCount, category: .parameters) : 0
        state = try gpu.allocate(bytes: 64, category: .optimizer)
        lossValue = try gpu.allocate(bytes: 4, category: .activations)
        normPartial = try gpu.allocate(bytes: 4 * Self.normBlocks, category: .workspace)
        scratches = (try gpu.allocate(bytes: 4 * Self.scratchFloats, category: .workspace), try gpu.allocate(bytes: 4 * Self.scratchFloats, category: .workspace))
        ones = try gpu.allocate(bytes: precision.bytes * onesCount, category: .workspace)
        ticketSets = (try gpu.allocate(bytes: 4 * Self.ticketCount, category: .workspace), try gpu.allocate(bytes: 4 * Self.ticketCount, category: .workspace))
        for t in [ticketSets.main, ticketSets.side] { try gpu.fill(t, words: Self.ticketCount, pattern: 0) }
        // (1) 1.0 is 0x3F800000 in fp32, 0x3F80 in bf16 and 0x3C00 in fp16; two 16-bit ones per word.
        switch precision {
        case .fp32, .tf32: try gpu.fill(ones, words: onesCount, pattern: 0x3F80_0000)
        case .bf16: try gpu.fill(ones, words: onesCount / 2, pattern: 0x3F80_3F80)
        case .fp16: try gpu.fill(ones, words: onesCount / 2, pattern: 0x3C00_3C00)
        }
        try gpu.fill(params, words: flatCount, pattern: 0)   // the padding between slices stays zero
        switch workload {
        case .mlp, .mlpWide: network = try MLPNetwork(model: model, gpu: gpu, batch: batch, precision: precision)
        case .gpt: network = try GPTNetwork(model: model, gpu: gpu, batch: batch, precision: precision)
        case .cnn: network = try CNNNetwork(model: model, gpu: gpu, batch: batch, precision: precision)
        case .lstm: network = try LSTMNetwork(model: model, gpu: gpu, batch: batch, precision: precision)
        }
        try restoreInitialState()
        try network.prepare(self)
        try chooseSchedule()
        owned = gpu.allocator.livePointers.subtracting(before)
    }

    /// The device blocks this trainer allocated (its network's and its staged batches included),
    /// returned to the context's cache when the trainer goes, so the next one reuses them.
    private var owned: Set<DevicePointer> = []

    deinit {
        // Work still queued on the stream runs before anything queued later reuses these blocks
        // (one stream), and the cache hands nothing back to the driver, so a graph destroyed
        // after this point still references valid memory.
        for p in owned { gpu.allocator.free(p) }
    }

    /// Device address of parameter `i` (fp32 master), its gradient, and its 16-bit copy (or the master).
    func weight(_ i: Int) -> DevicePointer { params + DevicePointer(4 * offsets[i]) }
    func gradient(_ i: Int) -> DevicePointer { grads + DevicePointer(4 * offsets[i]) }
    func momentum(_ i: Int) -> DevicePointer { slot1 + DevicePointer(4 * offsets[i]) }
    /// The copy GEMMs read: 16-bit when the precision has one, else the master.
    func operand(_ i: Int) -> DevicePointer { precision.usesShadow ? shadow + DevicePointer(2 * offsets[i]) : weight(i) }

    // MARK: Weights

    /// Makes the 16-bit copy of the weights (bf16/fp16 steps) match the fp32 ones, and waits.
    func refreshShadow() throws {
        if precision.usesShadow {
            try gpu.launch1D("cast_from_f32" + precision.suffix, count: min(flatCount, 1 << 20),
                             [.pointer(params), .pointer(shadow), .long(Int64(flatCount))])
        }
        try gpu.synchronize()
    }

    /// Copies the CPU model's weights to the device (and refreshes the 16-bit copy), after any deferred update.
    public func uploadWeights() throws {
        try flushDeferredUpdates()
        for (i, p) in model.namedParameters.enumerated() {
            try gpu.upload(UnsafeRawPointer(p.parameter.value.pointer), to: weight(i), bytes: 4 * p.parameter.count)
        }
        try refreshShadow()
    }

    /// Copies the device weights back into the CPU model (for checkpoints and checks), after any deferred update.
    public func downloadWeights() throws {
        try flushDeferredUpdates()
        for (i, p) in model.namedParameters.enumerated() {
            try gpu.download(weight(i), to: UnsafeMutableRawPointer(p.parameter.value.pointer), bytes: 4 * p.parameter.count)
        }
    }

    /// The gradient of every parameter after the last step, by name. A step that folded the momentum into its weight-gradient
    /// GEMMs kept no weight gradient: set ``keepsGradients`` before the step (and capture the graph again after).
    public func downloadGradients() throws -> [String: [Float]] {
        if folds {
            throw CUDAError.unsupported("the last step folded its weight gradients into the momentum and kept none: set keepsGradients = true "
                                        + "before the step (a captured graph keeps folding until captureGraph() runs again)")
        }
        var out: [String: [Float]] = [:]
        for (i, name) in names.enumerated() {
            out[name] = try gpu.downloadFloats(gradient(i), count: shapes[i].reduce(1, *))
        }
        return out
    }

    // MARK: Data

    /// Copies a batch into the fixed input buffers the step reads; once a graph is captured, into the block its copy
    /// node reads (``captureGraph()``).
    public func load(_ batch: Batch) throws {
        guard graph != nil, let batchBlock else { return try network.io.upload(batch, to: network.io.inputs, gpu: gpu) }
        try network.io.upload(batch, to: batchBlock, gpu: gpu)
        batchSource = batchBlock
    }

    /// Device-resident batches, to be copied into the input buffers without the host (benchmarks).
    public func stage(_ batch: Batch) throws -> StagedBatch {
        let staged = try network.io.stage(batch, owner: ObjectIdentifier(self), gpu: gpu)
        owned.insert(staged.block)
        return staged
    }

    /// Makes `staged` the next step's batch: copied into the input buffers now, or, once a graph is captured, by the
    /// graph's first node at its next launch.
    public func load(staged: StagedBatch) throws {
        guard staged.owner == ObjectIdentifier(self) else {
            throw CUDAError.unsupported("a staged batch is loaded by the trainer that staged it (its block goes with that trainer)")
        }
        try network.io.check(staged)
        if graph == nil { try gpu.copy(staged.block, to: network.io.inputs, bytes: staged.bytes) } else { batchSource = staged.block }
    }

    /// Where a captured step copies its batch from, and the block a host batch goes to for it (``captureGraph()``).
    private var batchSource: DevicePointer = 0
    private var batchBlock: DevicePointer?

    // MARK: Step

    /// Queues one whole training step: forward, loss, backward, optimizer.
    /// Parameters whose optimizer update is already queued (on the side stream) this step.
    var updated: Set<Int> = []
    /// Whether each parameter may be updated as soon as backward is done with it, on the side
    /// stream, overlapping the rest of backward: only when nothing global stands between the
    /// gradient and the update (no clipping, no loss scaling, no all-reduce).
    /// Whether it is wanted is part of the step's ``Schedule``, chosen by timing.
    var overlapsOptimizer: Bool { clipNorm == 0 && precision != .fp16 && !averagesGradients && schedule.optimizerBeside }

    // MARK: Gradient buckets over NCCL

    /// Bytes of gradient per all-reduce started while backward runs (over NCCL): as soon as the
    /// gradients at the end of the flat buffer are final and reach this size, they are averaged
    /// on the communication stream, under the rest of backward; 0 gives one all-reduce after backward. Set it before
    /// the first step (a captured graph keeps the buckets it was captured with). `TANDEM_NCCL_BUCKET_MB` sets the
    /// default; a value that is not a number from 0 to 1048576 leaves 25.
    public var bucketBytes = GPUTrainer.defaultBucketBytes
    static let defaultBucketBytes: Int = {
        guard let text = getenv("TANDEM_NCCL_BUCKET_MB").map({ String(cString: $0) }), let mb = Double(text), mb >= 0, mb <= 1_048_576 else {
            return 25 << 20
        }
        return Int(mb * 1_048_576)
    }()
    /// The flat gradient from this offset to the end is averaged (queued) this step.
    var reducedFrom = 0
    /// Parameters whose gradients backward has finished this step (when bucketing).
    var finished: Set<Int> = []
    /// Parameter indices by their slice's offset, last slice first.
    lazy var byOffsetDescending: [Int] = offsets.indices.sorted { offsets[$0] > offsets[$1] }
    var bucketsGradients: Bool { averagesGradients && bucketBytes > 0 }
    /// Whether each step averages its gradient over the group: a group of several ranks (or ``averagesAlone``). A group
    /// of one has nothing to average, so its step is the plain one (momentum folded, updates beside or deferred).
    var averagesGradients: Bool { guard let collective else { return false }; return collective.size > 1 || averagesAlone }
    /// Averages over a group of one too (exactly: the average of one): the self-test's way to run the all-reduce's
    /// stream order, bucketed or not, on one GPU. Set before the first step.
    var averagesAlone = false

    /// Averages gradients `range` of the flat buffer over the group on the communication stream, after everything
    /// backward has queued so far on the main stream and, with weight gradients beside, on the side stream (one stream
    /// keeps the collectives in the same order on every rank).
    func reduceBeside(_ range: Range<Int>) throws {
        guard !range.isEmpty else { return }
        try gpu.order(gpu.commStream, after: gpu.stream)
        if sideHasWeightGradients { try gpu.order(gpu.commStream, after: gpu.sideStream) }
        try gpu.onCommStream { try average(range) }
    }

    /// Averages gradients `range` over the group on the current launch stream: in place in fp32, or through the bf16
    /// wire buffer (``compressGradients(to:)``).
    func average(_ range: Range<Int>) throws {
        guard let collective else { return }
        let fp32 = grads + DevicePointer(4 * range.lowerBound), stream = gpu.currentStream
        guard wire != 0 else { return try collective.allReduceInStream([.device(fp32, count: range.count)], operation: .average, stream: stream) }
        let half = wire + DevicePointer(2 * range.lowerBound)
        try gpu.launch1D("cast_from_f32_bf16", count: min(range.count, 1 << 20), [.pointer(fp32), .pointer(half), .long(Int64(range.count))])
        try collective.allReduceInStream([.device(half, count: range.count, dtype: .bfloat16)], operation: .average, stream: stream)
        try gpu.launch1D("cast_to_f32_bf16", count: min(range.count, 1 << 20), [.pointer(half), .pointer(fp32), .long(Int64(range.count))])
    }

    /// The gradient's type between ranks: fp32, or bf16 after ``compressGradients(to:)``.
    public var wireType: DType { wire == 0 ? .float32 : .bfloat16 }
    /// The bf16 copy of the flat gradient that goes over the wire (0: none, fp32 on the wire).
    var wire: DevicePointer = 0

    /// Sends the gradient between ranks as bf16 (`type`): each rank rounds its fp32 gradient, NCCL averages the 16-bit
    /// values (each divided by the ranks before the sum, as `ncclAvg` does; with more than two ranks its partial sums are
    /// rounded to 16 bits too), and the average comes back into the fp32 gradient: half the bytes, as PyTorch DDP's bf16
    /// compression hook. Not fp16: a value past 65504 would reach the weights as infinity. A group of one sends nothing.
    /// Call before the first step.
    public func compressGradients(to type: DType) throws {
        guard type == .bfloat16 else {
            throw CUDAError.unsupported("gradients go between GPUs as bfloat16, not \(type) (fp16 overflows past 65504)")
        }
        guard graph == nil else { throw CUDAError.unsupported("choose the gradients' wire type before capturing the step's graph") }
        if wire == 0 {
            wire = try gpu.allocate(bytes: 2 * flatCount, category: .gradients)
            owned.insert(wire)
        }
    }

    /// Starts the all-reduce of the finished tail of the flat gradient once it holds a bucket.
    func startBucketIfReady() throws {
        var from = reducedFrom
        for i in byOffsetDescending where offsets[i] < reducedFrom {
            guard finished.contains(i) else { break }
            from = offsets[i]
        }
        if 4 * (reducedFrom - from) >= bucketBytes {
            try reduceBeside(from..<reducedFrom)
            reducedFrom = from
        }
    }

    /// Backward calls this once it has made its last use of parameters `indices` (their
    /// gradients final, their values no longer read): their update starts at once on the side
    /// stream, or, over NCCL, their gradients' all-reduce once a bucket is full.
    func parametersDone(_ indices: [Int]) throws {
        if bucketsGradients {
            finished.formUnion(indices)
            try startBucketIfReady()
        }
        let handed = indices.filter { !updated.contains($0) && !deferredParameters.contains($0) }
        guard overlapsOptimizer, !handed.isEmpty else { return }
        try gpu.onSideStream {
            for i in handed {
                try launchOptimizer(from: offsets[i], count: ends[i] - offsets[i])
                updated.insert(i)
            }
        }
    }

    // MARK: Weight gradients beside backward

    /// Whether backward queues weight-gradient GEMMs on the side stream, beside the input-gradient GEMMs and kernels
    /// of the main stream (independent work: small GEMMs and memory-bound kernels leave multiprocessors idle that the
    /// other stream's work fills). Gradient buckets have a stream of their own; beside them, weight gradients stay beside
    /// only on a share of the multiprocessors (``Schedule/sideMultiprocessors``), which leaves room for the all-reduce's
    /// kernels (two H200s: gpt bf16 −6.5% a step with them beside on 66 of 132; mlp-wide, whose schedule gives them every
    /// multiprocessor, +4–5%). `TANDEM_GPU_WGRAD_STREAM=0` keeps everything on the main stream.
    var weightGradientsOnSide: Bool { Self.weightGradientsBeside(schedule, bucketing: bucketsGradients) }

    /// ``weightGradientsOnSide`` under `schedule`, with gradient buckets on the communication stream or without.
    static func weightGradientsBeside(_ schedule: Schedule, bucketing: Bool) -> Bool {
        schedule.weightGradientsBeside && (!bucketing || schedule.sideMultiprocessors > 0)
    }

    /// Whether the step's forward runs in two halves of the batch, the second on the side stream (``Schedule/forwardSplit``).
    var splitsForward: Bool { schedule.forwardSplit && network.canSplitForward && !defersUpdates }

    /// Queues `body` (a weight gradient: it reads activations and an output gradient, writes into the flat gradient)
    /// on the side stream after everything queued on the main stream so far, and returns the point the main stream
    /// must wait for (``beforeOverwriting(_:)``) before it writes over what `body` read. Runs `body` in place (nil)
    /// when weight gradients stay on the main stream, and for the `last` of backward: the main stream has nothing
    /// left for it to run beside, while the side stream's queued updates then run beside it. The step joins the
    /// side stream after backward.
    func weightGradient(last: Bool = false, _ body: () throws -> Void) throws -> StreamMark? {
        guard weightGradientsOnSide, !last else { try body(); return nil }
        queuingWeightGradientBeside = true
        defer { queuingWeightGradientBeside = false }
        try gpu.onSideStream(body)
        sideHasWeightGradients = true
        return try gpu.mark(gpu.sideStream)
    }
    /// Whether this step has queued weight gradients on the side stream (forked it from the main one).
    var sideHasWeightGradients = false
    /// Whether a ``weightGradient(last:_:)`` body is being queued on the side stream now: its GEMMs take the schedule's
    /// share of the multiprocessors (``Schedule/sideMultiprocessors``); other GEMMs on the side stream take them all.
    var queuingWeightGradientBeside = false

    /// Makes the main stream wait for the side-stream work up to `mark` (nil: nothing to wait for).
    func beforeOverwriting(_ mark: StreamMark?) throws {
        if let mark { try gpu.wait(gpu.stream, for: mark) }
    }

    func enqueueStep() throws {
        gpu.resetOrdering()
        folds = foldsMomentum
        updated = []
        finished = []
        reducedFrom = flatCount
        sideHasWeightGradients = false
        // The previous step's deferred updates, beside this forward (or now, when this step defers none).
        try launchDeferredUpdates()
        try network.forwardBackward(self)
        precondition(deferredMarks.allSatisfy { $0 == nil }, "a network's forward did not wait for every deferred update group")
        // The weight gradients queued on the side stream are done before anything reads the gradients.
        if sideHasWeightGradients { try gpu.joinSideStream() }
        if bucketsGradients {
            // The rest of the gradient, then the optimizer waits for every bucket (graph-capturable:
            // the communication stream forks from and joins the main one with events).
            try reduceBeside(0..<reducedFrom)
            try gpu.order(gpu.stream, after: gpu.commStream)
        } else if averagesGradients {
            // Data parallel over NCCL: the averaged gradient, in stream order (graph-capturable).
            try average(0..<flatCount)
        }
        try enqueueOptimizer()
    }

    func enqueueOptimizer() throws {
        let statePtr = KernelArgument.pointer(state)
        if clipNorm > 0 || precision == .fp16 {
            try gpu.launch("sum_squares", grid: (Self.normBlocks, 1, 1), block: (512, 1, 1),
                           [.pointer(grads), .long(Int64(flatCount)), .pointer(normPartial), statePtr])
            try gpu.launch("finish_norm", grid: (1, 1, 1), block: (256, 1, 1),
                           [.pointer(normPartial), .int(Int32(Self.normBlocks)), .float(clipNorm), statePtr])
        }
        if updated.isEmpty {
            if defersUpdates { try launchUpdatesDeferring() } else { try launchOptimizer(from: 0, count: flatCount) }
        } else {
            // The parameters backward did not hand over (but those deferred), then wait for the side stream.
            for i in 0..<offsets.count where !updated.contains(i) && !deferredParameters.contains(i) {
                try launchOptimizer(from: offsets[i], count: ends[i] - offsets[i])
            }
            try gpu.joinSideStream()
            if defersUpdates { try leaveUpdatesPending() }
        }
        try gpu.launch("finish_step", grid: (1, 1, 1), block: (32, 1, 1),
                       [statePtr, .int(precision == .fp16 ? 1 : 0), .float(Self.lossScaleInterval)])
    }

    // MARK: Momentum folded into the weight-gradient GEMMs

    /// Keep every weight gradient (no ``foldsMomentum``), for ``downloadGradients()``. The step's schedule and its GEMMs'
    /// algorithms were timed folding when the trainer was made: set this right after, before the first step.
    public var keepsGradients = false
    /// `TANDEM_FOLD_MOMENTUM=0` turns ``foldsMomentum`` off (to measure what it gives).
    static let foldingDisabled = getenv("TANDEM_FOLD_MOMENTUM").map { String(cString: $0) == "0" } ?? false

    /// Whether the next step's weight-gradient GEMMs add their product to momentum × the momentum buffer in place (cuBLAS's
    /// beta: buf = μ·buf + dW, the first half of PyTorch's SGD update) instead of writing a gradient that the update reads
    /// back: SGD with momentum, not Nesterov, and nothing else that reads the gradient (no clipping, no loss scaling, no
    /// all-reduce, no ``keepsGradients``). For those weights the update reads the momentum and the weight and writes the
    /// weight, 12 bytes a parameter instead of 20 (plus the 16-bit copy; with weight decay it writes the momentum back
    /// too, 16), while the GEMM reads C besides writing it: 20 bytes in all against 24 (24 against 24 with weight decay).
    /// What it gains is where the bytes move: inside a GEMM that hides them (bf16 here) rather than in a memory-bound
    /// pass of its own; fp32 SIMT GEMMs read C tile by tile in their epilogue and pay for it.
    var foldsMomentum: Bool {
        guard case .sgd(_, let mu, _, let nesterov) = optimizer, mu != 0, !nesterov, foldFrom < flatCount else { return false }
        return clipNorm == 0 && precision != .fp16 && !averagesGradients && !keepsGradients && !Self.foldingDisabled
    }
    /// Where the weights that can be folded start in the flat buffers (`flatCount`: none).
    let foldFrom: Int
    /// The slices of the weights whose gradient is formed by scattered additions (``scatteredWeights(_:_:)``), just before
    /// `foldFrom`.
    let scatteredRange: Range<Int>
    /// Where the momentum slot holds momentum × buf instead of buf (SGD with momentum: the scattered weights; empty
    /// otherwise), so that a folding step's scattered gradient adds into the slot itself (``scatteredGradient(_:)``):
    /// no gradient zeroed, written and read back (gpt's token embedding: 4.2 M parameters, 8 bytes each a step). The
    /// update scales the slot once it has used it (the kernels' `SGD_SCALED`); it is the same buf under every schedule,
    /// folding or not, so steps may switch between the two.
    func scaledMomentum(under optimizer: GPUOptimizer) -> Range<Int> {
        if case .sgd(_, let mu, _, _) = optimizer, mu != 0 { scatteredRange } else { foldFrom..<foldFrom }
    }

    /// Where a gradient formed by scattered additions into zeros (weight `i`, one of ``scatteredWeights(_:_:)``) goes:
    /// into the momentum slot when the step folds (it holds momentum × buf: ``scaledMomentum(under:)``), else into the gradient,
    /// zeroed first.
    func scatteredGradient(_ i: Int) throws -> DevicePointer {
        precondition(scatteredRange.contains(offsets[i]), "parameter \(names[i]) is not laid out as a scattered weight")
        if folds && !scaledMomentum(under: optimizer).isEmpty { return momentum(i) }
        try gpu.fill(gradient(i), words: ends[i] - offsets[i], pattern: 0)
        return gradient(i)
    }
    /// ``foldsMomentum`` for the step being queued, and so for the last one queued (eager or captured); false again
    /// once ``restoreInitialState()`` has run.
    var folds = false

    /// Where each parameter's slice of the flat buffers starts and ends, their total, and where the scattered and the
    /// foldable weights start: 256-byte aligned slices for the GEMMs, in the order the network asks for (cuDNN's LSTM
    /// weight layout for lstm, so cuDNN reads the parameters in place), else in the model's order, with the weights whose
    /// gradient is scattered (``scatteredWeights(_:_:)``) after the rest and those whose gradient GEMM can fold the momentum
    /// in (``foldableWeights(_:_:)``) last: two boundaries, `scatteredFrom` ≤ `foldFrom` (equal: no scattered weights;
    /// `total`: none foldable).
    static func layout(_ workload: ReferenceModel, names: [String], counts: [Int])
        -> (offsets: [Int], ends: [Int], total: Int, scatteredFrom: Int, foldFrom: Int) {
        let folding = foldableWeights(workload, names), scattered = scatteredWeights(workload, names)
        let order = workload == .lstm ? LSTMNetwork.placement(names)
            : names.indices.filter { !folding.contains($0) && !scattered.contains($0) } + names.indices.filter(scattered.contains)
                + names.indices.filter(folding.contains)
        var offsets = [Int](repeating: 0, count: names.count), ends = offsets, total = 0
        for i in order {
            offsets[i] = total
            total += (counts[i] + 63) / 64 * 64
            ends[i] = total
        }
        let foldFrom = folding.map { offsets[$0] }.min() ?? total
        return (offsets, ends, total, scattered.map { offsets[$0] }.min() ?? foldFrom, foldFrom)
    }

    /// The parameters of `workload` whose gradient the network forms by scattered additions into zeros
    /// (``scatteredGradient(_:)``): gpt's token embedding.
    static func scatteredWeights(_ workload: ReferenceModel, _ names: [String]) -> Set<Int> {
        workload == .gpt ? Set(names.indices.filter { names[$0] == "emb.weight" }) : []
    }

    /// The parameters of `workload` whose gradient is one GEMM's output the network computes with
    /// ``weightGradientGEMM(parameter:transA:transB:m:n:k:a:lda:b:ldb:ldc:biasGradient:)``: the Linear weights of mlp and gpt.
    static func foldableWeights(_ workload: ReferenceModel, _ names: [String]) -> Set<Int> {
        switch workload {
        case .mlp, .mlpWide: return Set(names.indices.filter { names[$0].hasSuffix("weight") })
        case .gpt: return Set(names.indices.filter { GPTNetwork.gemmWeights.contains(where: names[$0].hasSuffix) })
        case .cnn, .lstm: return []
        }
    }

    /// The fp32 gradient of weight `i`, `dW = op(A) · op(B)` (`ldc` the row length of `dW`), and with `biasGradient` the bias
    /// gradient of the same call (see ``gemmBias(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:cF32:bias:beta:scratch:)``): into the
    /// flat gradient, or, when the step folds the momentum (``foldsMomentum``), added to μ × the momentum in place. Its
    /// algorithm is timed on the flat gradient's slice, so the momentum is never written over by a candidate.
    func weightGradientGEMM(parameter i: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DevicePointer, lda: Int,
                            b: DevicePointer, ldb: Int, ldc: Int, biasGradient: DevicePointer? = nil) throws {
        var (c, beta): (DevicePointer, Float) = (gradient(i), 0)
        if folds, offsets[i] >= foldFrom, case .sgd(_, let mu, _, _) = optimizer { (c, beta) = (momentum(i), mu) }
        if let biasGradient {
            try gemmBias(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, cF32: true,
                         bias: .gradient(biasGradient), beta: beta, scratch: gradient(i))
        } else {
            try gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, cF32: true,
                     beta: beta, scratch: gradient(i))
        }
    }

    /// The optimizer over the flat slice [from, from + count) of parameters, gradients and state: this step's (the trainer's
    /// optimizer and fold flag, the step state), or a deferred update's (``launchDeferredUpdates()``).
    func launchOptimizer(from start: Int, count: Int, optimizer: GPUOptimizer? = nil, folded: Bool? = nil, state stepState: DevicePointer? = nil) throws {
        guard count > 0 else { return }
        let folds = folded ?? self.folds, optimizer = optimizer ?? self.optimizer
        // The kernels' folded elements ignore the gradient multiplier, dampening and Nesterov: only what foldsMomentum allows.
        precondition(!folds || (clipNorm == 0 && precision != .fp16 && !averagesGradients), "a folded step with clipping, loss scaling or an all-reduce")
        let statePtr = KernelArgument.pointer(stepState ?? state)
        let blocks = min((count + 255) / 256, 132 * 16)
        func at(_ p: DevicePointer, _ bytes: Int) -> KernelArgument { .pointer(p == 0 ? 0 : p + DevicePointer(bytes * start)) }
        func local(_ flat: Int) -> KernelArgument { .long(Int64(max(0, min(count, flat - start)))) }
        let shadowArg = precision.usesShadow ? at(shadow, 2) : .pointer(0)
        let suffix = precision.usesShadow ? precision.suffix : "_f32"
        switch optimizer {
        case .sgd(let lr, let momentum, let wd, let nesterov):
            // Slices start on 64-element boundaries, so a slice of a multiple of 4 takes the 16-byte kernel.
            let wide = count % 4 == 0, scaled = scaledMomentum(under: optimizer)
            try gpu.launch((wide ? "sgd4" : "sgd") + suffix, grid: (wide ? max(1, min((count / 4 + 255) / 256, 132 * 16)) : blocks, 1, 1), block: (256, 1, 1),
                           [at(params, 4), at(grads, 4), at(slot1, 4), shadowArg, .long(Int64(count)),
                            folds ? local(foldFrom) : .long(Int64(count)), local(scaled.lowerBound), local(scaled.upperBound),
                            .int(folds ? 1 : 0), .float(lr), .float(momentum), .float(0), .float(wd), .int(nesterov ? 1 : 0), statePtr])
        case .adamw(let lr, let b1, let b2, let eps, let wd):
            try gpu.launch("adamw" + suffix, grid: (blocks, 1, 1), block: (256, 1, 1),
                           [at(params, 4), at(grads, 4), at(slot1, 4), at(slot2, 4), shadowArg, .long(Int64(count)),
                            .float(lr), .float(b1), .float(b2), .float(eps), .float(wd), .float(0), statePtr])
        }
    }

    /// Runs one step on the batch already loaded: eagerly, or by replaying the captured graph
    /// once ``captureGraph()`` has run.
    public func step() throws {
        try collective?.checkHealth()   // an aborted communicator is never used again
        if let graph {
            try graph.readBatch(from: batchSource)
            try graph.launch()
            pending = graphPending
        } else {
            try enqueueStep()
        }
        if let collective { try collective.watch(stream: gpu.stream) }
    }

    /// The NCCL group this replica averages its gradients over (nil: one GPU).
    public private(set) var collective: NCCLGroup?

    /// Joins `group`, as DDP does at construction: rank 0's weights become every rank's;
    /// from then on each step averages the gradients over the group (a group of one has nothing to average: its
    /// step stays the plain one).
    public func join(_ group: NCCLGroup) throws {
        guard graph == nil else { throw CUDAError.unsupported("join the group before capturing the step's graph: the graph would keep the step without the all-reduce") }
        try flushDeferredUpdates()
        collective = group
        guard group.size > 1 else { return }
        try group.broadcast(.device(params, count: flatCount), root: 0).wait()
        try refreshShadow()
    }

    /// Captures one whole step into a CUDA graph; later ``step()`` calls replay it. Run a few
    /// eager steps first so every buffer and cuBLAS's choices are settled.
    public func captureGraph() throws {
        // Updates an eager step left pending are applied now with their own learning rate; the graph's step applies the
        // previous replay's (its skip flag set at the graph's end, so its first replay applies none).
        try flushDeferredUpdates()
        // The graph starts by copying its batch into the input buffers (CUDAContext.capture(batch:_:)): from the block a
        // host batch goes to from now on, which holds the batch loaded last, or from a staged batch (load(staged:)).
        // Captured again, the batch loaded last is where the previous graph would have read it.
        let io = network.io
        let block = try batchBlock ?? gpu.allocate(bytes: io.bytes, category: .activations)
        if batchBlock == nil { owned.insert(block); batchBlock = block }
        let loaded = graph == nil ? io.inputs : batchSource
        if loaded != block { try gpu.copy(loaded, to: block, bytes: io.bytes) }
        batchSource = block
        try gpu.synchronize()
        graph = try gpu.capture(batch: (block, io.inputs, io.bytes)) { try enqueueStep() }
        graphPending = pending
    }

    public var usesGraph: Bool { graph != nil }

    /// How the model's layers are computed (cuDNN or Tandem's own kernels, and why), and how the step is scheduled.
    public var engine: String {
        let buckets = !bucketsGradients ? "" : "; gradient all-reduces in buckets on a stream of their own"
            + (schedule.weightGradientsBeside && !weightGradientsOnSide ? ", weight gradients on the main stream" : "")
        let wired = averagesGradients && wire != 0 ? "; gradients as bf16 on the wire" : ""
        return network.engine + "; " + scheduleNote + buckets + wired + (gpu.launchesProgrammatically ? "; programmatic launches" : "")
    }

    /// Sets the learning rate of the following eager steps.
    public func setLearningRate(_ rate: Float) {
        switch optimizer {
        case .sgd(_, let m, let wd, let n): optimizer = .sgd(learningRate: rate, momentum: m, weightDecay: wd, nesterov: n)
        case .adamw(_, let b1, let b2, let eps, let wd): optimizer = .adamw(learningRate: rate, beta1: b1, beta2: b2, eps: eps, weightDecay: wd)
        }
    }

    /// The mean loss of the last step (waits for the GPU).
    public func loss() throws -> Float { try gpu.downloadFloats(lossValue, count: 1)[0] }

    /// The step state: gradient multiplier, overflow flag, loss scale, gradient norm, clean steps, steps taken.
    public func stepState() throws -> [Float] { try gpu.downloadFloats(state, count: 6) }

    // MARK: Helpers for networks

    /// Launches a grid-stride kernel over `count` elements.
    func elementwise(_ name: String, count: Int, _ args: [KernelArgument]) throws {
        let blocks = max(1, min((count + 255) / 256, 132 * 16))
        try gpu.launch(name, grid: (blocks, 1, 1), block: (256, 1, 1), args)
    }

    /// Launches a grid-stride kernel over `count` elements in rows of `rowWidth` that takes eight columns a thread
    /// when the rows are whole 16-byte vectors (`bias_gelu`, `residual_add`).
    func elementwise(_ name: String, count: Int, rowWidth: Int, _ args: [KernelArgument]) throws {
        try elementwise(name, count: rowWidth % 8 == 0 ? count / 8 : count, args)
    }

    /// The input gradient of a fused head (``headCrossEntropy(input:weight:labels:dlogits:dlogits32:losses:rows:classes:inputs:)``),
    /// dy = dlogits · W, formed where `act_backward_colsum` would read dy: `dlogits` fp32 `[rows, classes]`, `weight`
    /// `[classes, cols]` in the step's precision.
    struct Product { let dlogits: DevicePointer, weight: DevicePointer, classes: Int }

    /// `dy *= act'(ref)` in place (dy first formed from `product` when given) and, when `biasGradient` is given, the
    /// column sums of dy there.
    func activationBackward(dy: DevicePointer, ref: DevicePointer, act: Int32, rows: Int, cols: Int, biasGradient: DevicePointer?,
                            accumulate: Bool = false, product: Product? = nil) throws {
        if act == 0 && product == nil {
            guard let biasGradient else { return }
            if rows <= onesCount {
                // A plain layer's bias gradient is dyᵀ · 1: one cuBLAS call reading dy once.
                try gemm(transA: true, transB: false, m: cols, n: 1, k: rows, a: dy, lda: cols, b: ones, ldb: 1,
                         c: biasGradient, ldc: 1, cF32: true, beta: accumulate ? 1 : 0)
                return
            }
        }
        try Self.launchActivationBackward(gpu, precision, dy: dy, ref: ref, act: act, rows: rows, cols: cols, columnSums: biasGradient,
                                          accumulate: accumulate, partial: scratch, partialFloats: Self.scratchFloats, tickets: tickets, product: product)
    }

    /// Ticket counters `finish_partials` may take for `parts` rows of partial sums: one per group (all rows up to 32,
    /// else groups of ⌈√parts⌉ rows) and one for the groups.
    static func ticketsNeeded(parts: Int) -> Int {
        var g = 1
        if parts <= 32 { g = max(parts, 1) } else { while g * g < parts { g += 1 } }
        return (parts + g - 1) / g + 1
    }

    /// One launch of `act_backward_colsum`: `dy *= act'(ref)` in place over [rows, cols] and, when `columnSums` is
    /// given, its column sums into it (added when `accumulate`), finished in the same launch from `chunks` partial
    /// rows in `partial`. Eight columns a thread (16-byte accesses) when the rows are whole vectors. With `product`, dy
    /// is formed as dlogits · W instead of read.
    static func launchActivationBackward(_ gpu: CUDAContext, _ precision: GPUPrecision, dy: DevicePointer, ref: DevicePointer, act: Int32,
                                         rows: Int, cols: Int, columnSums: DevicePointer?, accumulate: Bool, partial: DevicePointer,
                                         partialFloats: Int, tickets: DevicePointer, chunks wanted: Int? = nil, product: Product? = nil) throws {
        let name = (product == nil ? "act_backward_colsum" : "act_backward_product") + precision.suffix
        let vec = cols % 8 == 0 && (dy | ref | (product?.weight ?? 0)) % 16 == 0
        let strips = (cols + (vec ? 255 : 31)) / (vec ? 256 : 32)
        // As many blocks as the GPU holds at once (one wave), at least 16 rows a block: few partial rows.
        var chunks = try wanted ?? max(1, min(rows / 16, gpu.residentBlocks(name, threads: 256) / strips))
        if columnSums != nil {
            chunks = max(1, min(chunks, partialFloats / max(cols, 1)))
            while chunks > 1 && strips * ticketsNeeded(parts: chunks) > ticketCount { chunks /= 2 }
            guard strips * ticketsNeeded(parts: chunks) <= ticketCount else {
                throw CUDAError.unsupported("column sums over \(cols) columns need more than \(ticketCount) tickets")
            }
        }
        try gpu.launch(name, grid: (strips, chunks, 1), block: (32, 8, 1),
                       [.pointer(dy), .pointer(ref), .pointer(columnSums == nil ? 0 : partial), .pointer(tickets), .pointer(columnSums ?? 0),
                        .int(Int32(rows)), .int(Int32(cols)), .int(act), .int(vec ? 1 : 0), .int(accumulate ? 1 : 0)]
                       + (product.map { [.pointer($0.dlogits), .pointer($0.weight), .int(Int32($0.classes))] } ?? []))
    }

    /// Row lanes of a `column_total` block (`sum_partials`, `layernorm_bwd_finish`; at most 32): 32 columns by 32 lanes,
    /// each adding every 32nd partial row (with 8 lanes, each lane's loads four times as deep, gpt bf16 was 0.5% slower).
    static let columnLanes = 32

    /// `out (+)=` the column sums of `chunks` rows of partial sums in `partials` (by default `scratch`, for kernels that
    /// leave their partials there).
    func sumPartials(_ partials: DevicePointer? = nil, chunks: Int, cols: Int, into out: DevicePointer, accumulate: Bool = false) throws {
        try gpu.launch("sum_partials", grid: ((cols + 31) / 32, 1, 1), block: (32, GPUTrainer.columnLanes, 1),
                       [.pointer(partials ?? scratch), .int(Int32(chunks)), .int(Int32(cols)), .pointer(out), .int(accumulate ? 1 : 0)])
    }

    /// Row-major `C[m,n] = op(A)·op(B)` in the step's precision; `cF32` writes a float C (gradients).
    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DevicePointer, lda: Int, b: DevicePointer, ldb: Int,
              c: DevicePointer, ldc: Int, cF32: Bool = false, alpha: Float = 1, beta: Float = 0,
              batch: Int = 1, strides: (Int, Int, Int) = (0, 0, 0), scratch: DevicePointer? = nil) throws {
        let t = precision.dataType
        func viaCuBLAS(_ c: DevicePointer, _ beta: Float) throws {
            try gpu.blas.gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                              types: (t, t, cF32 ? .f32 : t), compute: precision.compute, alpha: alpha, beta: beta, batch: batch,
                              strides: strides)
        }
        func label() -> String { "gemm \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k)\(batch > 1 ? " ×\(batch)" : "")" }
        // A single GEMM takes cuBLASLt's algorithm chosen by timing against cuBLAS's own (GEMMTuner), the candidates
        // writing over C, or adding to `scratch` (C's shape and alignment) when C is added to (beta ≠ 0; without one, cuBLAS);
        // a kind first met where nothing can be timed (inside a graph capture) stays on cuBLAS.
        if batch == 1 && gpu.tunesGEMMs, let timedC = beta == 0 ? c : scratch,
           try throughCuBLASLt(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: timedC, ldc: ldc, cF32: cF32,
                               epilogue: .none, label: label(), alpha: alpha, into: (c, beta), planUntimed: false,
                               otherWay: { try viaCuBLAS(timedC, beta) }) {
            return
        }
        try gpu.profiled(label()) { try viaCuBLAS(c, beta) }
    }

    /// Queues the call through its cuBLASLt plan — made at the first call of its kind, its algorithm timed against
    /// `otherWay` when GEMMs are tuned (see ``CuBLASLt/plan(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:types:compute:epilogue:workspaceBytes:tuner:stream:workspace:planUntimed:)``)
    /// — and returns true; false when there is no plan (no cuBLASLt, refused, `otherWay` faster, or untimed and
    /// `planUntimed` false): the caller then computes it its other way. The timing writes over (or adds to) `c`; the
    /// call itself goes `into` another C of the same alignment, added to times beta, when given.
    private func throughCuBLASLt(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DevicePointer, lda: Int, b: DevicePointer,
                                 ldb: Int, c: DevicePointer, ldc: Int, cF32: Bool, epilogue: CuBLASLt.Epilogue,
                                 label: @autoclosure () -> String, alpha: Float = 1, into: (c: DevicePointer, beta: Float)? = nil,
                                 planUntimed: Bool, otherWay: () throws -> Void) throws -> Bool {
        guard let lt = gpu.blasLt else { return false }
        let (runC, beta) = into ?? (c, 0)
        guard CuBLASLt.alignment(runC) >= CuBLASLt.alignment(c) else { return false }
        let t = precision.dataType, ws = gpu.currentWorkspace
        let share = queuingWeightGradientBeside && gpu.currentStream == gpu.sideStream ? schedule.sideMultiprocessors : 0
        // `otherWay` is only timed while the plan is made, within this call. A call held to a share of the multiprocessors
        // is timed against cuBLASLt's other algorithms for that share only (cuBLAS's would take them all).
        return try withoutActuallyEscaping(otherWay) { otherWay in
            guard let plan = try lt.plan(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                                         types: (t, t, cF32 ? .f32 : t), compute: precision.compute, epilogue: epilogue,
                                         workspaceBytes: ws.bytes, tuner: gpu.gemmTuner(alternative: share > 0 ? nil : otherWay),
                                         stream: gpu.currentStream, workspace: ws.pointer, planUntimed: planUntimed || share > 0,
                                         addsC: beta != 0, multiprocessors: share) else { return false }
            try gpu.profiled(label()) {
                try lt.run(plan, a: a, b: b, c: runC, bias: epilogue.pointer, stream: gpu.currentStream, workspace: ws.pointer,
                           workspaceBytes: ws.bytes, alpha: alpha, beta: beta)
            }
            return true
        }
    }

    /// What ``gemmBias(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:cF32:bias:)`` does with a layer's bias besides the GEMM.
    enum GEMMBias {
        /// `C[i, j] += bias[j]` with parameter `bias` (a projection's forward; C in the activation type, `ldc = n`):
        /// in the epilogue, its copy in the activation type (as autocast casts a linear's bias); else the fp32 value.
        /// With `relu`, then `C[i, j] = max(0, C[i, j])`.
        case add(parameter: Int, relu: Bool = false)
        /// The fp32 bias gradient `Σₗ op(A)[i, l]` over A = the layer's output gradient `[k, m]` (`transA`, `lda = m`):
        /// the column sums of dy, written over (not added to) `m` floats, beside the weight gradient C.
        case gradient(DevicePointer)
    }

    /// ``gemm(transA:transB:m:n:k:a:lda:b:ldb:c:ldc:cF32:alpha:beta:batch:strides:scratch:)`` (alpha 1) with a layer's
    /// bias work in the same cuBLASLt call when cuBLASLt has an algorithm for it (its epilogues BIAS and BGRADB,
    /// see ``CuBLASLt``) and, when GEMMs are tuned, the fused call times faster; otherwise, decided once per shape,
    /// the GEMM and the separate launch (`bias_act`, or the column sums of
    /// ``activationBackward(dy:ref:act:rows:cols:biasGradient:accumulate:)``). C is added to times `beta` (a bias
    /// gradient's call only), the timing writing over `scratch` instead.
    func gemmBias(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DevicePointer, lda: Int, b: DevicePointer, ldb: Int,
                  c: DevicePointer, ldc: Int, cF32: Bool = false, bias: GEMMBias, beta: Float = 0, scratch: DevicePointer? = nil) throws {
        let epilogue: CuBLASLt.Epilogue, kind: String
        switch bias {
        case .add(let i, let relu):
            let type: CuBLAS.DataType = precision.usesShadow ? precision.dataType : .f32
            (epilogue, kind) = relu ? (.biasReLU(operand(i), type: type), "gemm+bias+relu") : (.bias(operand(i), type: type), "gemm+bias")
        case .gradient(let p): (epilogue, kind) = (.biasGradient(p), "gemm+dbias")
        }
        precondition(beta == 0 || scratch != nil, "gemmBias: adding to C needs a scratch C to time the algorithms on")
        // The unfused way: a GEMM, and the bias work in its own launch.
        func separately(_ c: DevicePointer, _ beta: Float) throws {
            switch bias {
            case .add(let i, let relu):
                precondition(!cF32 && ldc == n && beta == 0, "gemmBias: a bias is added to a packed C in the activation type")
                try gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
                try elementwise("bias_act" + precision.suffix, count: m * n, [.pointer(c), .pointer(weight(i)), .int(Int32(m)), .int(Int32(n)),
                                                                             .int(relu ? 1 : 0)])
            case .gradient(let p):
                precondition(transA && lda == m, "gemmBias: the bias gradient sums a packed dy [k, m] (transA)")
                try activationBackward(dy: a, ref: a, act: 0, rows: k, cols: m, biasGradient: p)
                try gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, cF32: cF32,
                         beta: beta, scratch: scratch)
            }
        }
        let timedC = beta == 0 ? c : scratch!
        if try throughCuBLASLt(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: timedC, ldc: ldc, cF32: cF32,
                               epilogue: epilogue, label: "\(kind) \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k)",
                               into: (c, beta), planUntimed: true, otherWay: { try separately(timedC, beta) }) {
            return
        }
        try separately(c, beta)
    }

    /// `C[m, n] = Aᵀ · B` (A `[k, m]`, B `[k, n]` in the activation type, C float): a small weight gradient in one
    /// launch of one thread per output. Use only where m·n is small.
    ///
    /// - Complexity: 2·m·n·k floating-point operations, k dependent per thread.
    func smallGemmTN(a: DevicePointer, b: DevicePointer, c: DevicePointer, m: Int, n: Int, k: Int) throws {
        let threads = min(256, (n + 31) / 32 * 32)
        try gpu.launch("gemm_tn_small" + precision.suffix, grid: ((n + threads - 1) / threads, m, 1), block: (threads, 1, 1),
                       [.pointer(a), .pointer(b), .pointer(c), .int(Int32(m)), .int(Int32(n)), .int(Int32(k))])
    }

    /// Softmax cross-entropy over `rows` of `cols` logits (plus `bias`, fused): dlogits and the mean loss, and with
    /// `columnSums` (room for `maxBlocks` rows of `cols` floats) the launch's partial column sums of dlogits; returns
    /// how many rows of them it wrote.
    @discardableResult
    func crossEntropy(logits: DevicePointer, bias: DevicePointer, labels: DevicePointer, dlogits: DevicePointer, losses: DevicePointer,
                      rows: Int, cols: Int, columnSums: DevicePointer? = nil, maxBlocks: Int? = nil) throws -> Int {
        precondition(columnSums == nil || maxBlocks != nil, "crossEntropy: column sums need the rows their buffer holds (maxBlocks)")
        return try Self.launchCrossEntropy(gpu, precision, logits: logits, bias: bias, labels: labels, dlogits: dlogits, losses: losses,
                                    rows: rows, cols: cols, state: state, tickets: tickets, mean: lossValue, columnSums: columnSums,
                                    blocks: maxBlocks)
    }

    /// Whether ``headCrossEntropy(input:weight:labels:dlogits:dlogits32:losses:rows:classes:inputs:)`` takes a last Linear
    /// layer of `classes` outputs over `inputs` features for `rows` rows (`head_cross_entropy`: at most 16 classes, rows of
    /// whole 16-byte vectors, a ticket a row group and one for the mean, the split partial sums in the scratch buffer);
    /// else the GEMM path takes it.
    static func fusesHead(classes: Int, inputs: Int, rows: Int) -> Bool {
        let splits = headLayout(inputs: inputs).splits, groups = (rows + headRows - 1) / headRows
        return classes <= headClasses && inputs % 8 == 0 && rows * max(classes, inputs) < 1 << 31 && groups + 1 <= ticketCount
            && (splits == 1 || splits * rows * headClasses <= scratchFloats)
    }
    /// The kernel's HEAD_CLASSES and HEAD_ROWS: classes it takes at most, and rows a block.
    static let headClasses = 16, headRows = 4

    /// The last Linear layer (parameters `weight`, `weight + 1`) and the softmax cross-entropy: losses, the mean loss and
    /// dlogits `[rows, classes]`, in the step's precision (for the weight gradient) and in fp32 in `dlogits32`; the layer's
    /// input gradient is then dlogits32 · W (``Product``, see ``fusesHead(classes:inputs:rows:)``).
    func headCrossEntropy(input: DevicePointer, weight i: Int, labels: DevicePointer, dlogits: DevicePointer, dlogits32: DevicePointer,
                          losses: DevicePointer, rows: Int, classes: Int, inputs: Int) throws {
        try Self.launchHeadCrossEntropy(gpu, precision, input: input, weight: operand(i), bias: weight(i + 1), labels: labels, dlogits: dlogits,
                                        dlogits32: dlogits32, losses: losses, rows: rows, classes: classes, inputs: inputs, state: state,
                                        partial: scratch, partialFloats: Self.scratchFloats, tickets: tickets, mean: lossValue)
    }

    /// Threads a block and blocks along k of `head_cross_entropy` over `inputs` features: 128 threads of eight inputs,
    /// so W's 1024-input slices are split over blocks (and every row group is read by enough blocks), at least 64
    /// threads (the kernel's last steps take HEAD_ROWS · HEAD_CLASSES).
    static func headLayout(inputs: Int) -> (threads: Int, splits: Int) {
        let vectors = (inputs + 7) / 8
        let threads = max(64, min(128, (vectors + 31) / 32 * 32))
        return (threads, (vectors + threads - 1) / threads)
    }

    static func launchHeadCrossEntropy(_ gpu: CUDAContext, _ precision: GPUPrecision, input: DevicePointer, weight: DevicePointer, bias: DevicePointer,
                                       labels: DevicePointer, dlogits: DevicePointer, dlogits32: DevicePointer, losses: DevicePointer, rows: Int,
                                       classes: Int, inputs: Int, state: DevicePointer, partial: DevicePointer, partialFloats: Int,
                                       tickets: DevicePointer, mean: DevicePointer?) throws {
        let (threads, splits) = headLayout(inputs: inputs), groups = (rows + headRows - 1) / headRows
        guard fusesHead(classes: classes, inputs: inputs, rows: rows), splits == 1 || splits * rows * headClasses <= partialFloats,
              (input | weight) % 16 == 0 else {
            throw CUDAError.unsupported("the fused head takes at most \(headClasses) classes over rows of whole 16-byte vectors, at most "
                                        + "\(headRows * (ticketCount - 1)) rows and \(partialFloats) floats of partial sums, got \(rows)×\(inputs) → \(classes)")
        }
        try gpu.launch("head_cross_entropy" + precision.suffix, grid: (splits, groups, 1), block: (threads, 1, 1),
                       [.pointer(input), .pointer(weight), .pointer(bias), .pointer(labels), .pointer(dlogits), .pointer(dlogits32), .pointer(losses),
                        .pointer(partial), .int(Int32(rows)), .int(Int32(classes)), .int(Int32(inputs)), .float(1 / Float(rows)), .pointer(state),
                        .pointer(tickets), .pointer(mean ?? 0)])
    }

    /// Whether `cross_entropy` holds a row of `cols` logits in registers (whole 16-byte vectors, 8 · `CE_VECTORS` values a
    /// thread of at most 1024 / `CE_VECTORS`: 8192 whatever the constant): its column sums then cost registers only;
    /// else it adds them up in memory, a pass per row.
    static func crossEntropyHoldsRows(cols: Int) -> Bool { cols % 8 == 0 && cols <= 8 * 1024 }

    /// `CE_VECTORS` of the kernel source: the 16-byte vectors of a row each `cross_entropy` thread holds (16 values at
    /// 512 threads a block: twice the warps of 32 values at 256, −0.3% on gpt bf16).
    static let crossEntropyVectors = 2

    /// The blocks and threads a `cross_entropy` launch over `rows` × `cols` takes: as many blocks as the GPU holds at once
    /// (at most `wanted`), each taking the same number of rows.
    static func crossEntropyGrid(_ gpu: CUDAContext, _ precision: GPUPrecision, rows: Int, cols: Int, wanted: Int? = nil) throws -> (blocks: Int, threads: Int) {
        let values = 8 * gpu.kernelConstant("CE_VECTORS", standard: crossEntropyVectors)   // a thread's share of a row
        let threads = crossEntropyHoldsRows(cols: cols) ? max(128, ((cols + values - 1) / values + 31) / 32 * 32) : (cols >= 1024 ? 256 : 128)
        let resident = try min(wanted ?? .max, max(1, gpu.residentBlocks("cross_entropy" + precision.suffix, threads: threads)))
        let perBlock = (max(rows, 1) + resident - 1) / resident
        return ((rows + perBlock - 1) / perBlock, threads)
    }

    /// One launch of `cross_entropy`: per-row losses, dlogits and, when `mean` is given, the mean loss there. A row of
    /// whole 16-byte vectors (at most 16 values a thread, so up to 8192 with 512 threads) is read once and kept in
    /// registers. The grid of ``crossEntropyGrid(_:_:rows:cols:wanted:)`` (one ticket a block). With `columnSums`, block b
    /// leaves the column sums of its rows' dlogits in row b of it (fp32, `cols` wide; finish with `sum_partials`): room
    /// for as many rows as the grid has blocks. Returns the number of blocks.
    @discardableResult
    static func launchCrossEntropy(_ gpu: CUDAContext, _ precision: GPUPrecision, logits: DevicePointer, bias: DevicePointer, labels: DevicePointer,
                                   dlogits: DevicePointer, losses: DevicePointer, rows: Int, cols: Int, state: DevicePointer,
                                   tickets: DevicePointer, mean: DevicePointer?, columnSums: DevicePointer? = nil, blocks wanted: Int? = nil) throws -> Int {
        guard rows * cols < 1 << 31 else { throw CUDAError.unsupported("cross-entropy over \(rows)×\(cols) logits: 2^31 elements or more") }
        let (blocks, threads) = try crossEntropyGrid(gpu, precision, rows: rows, cols: cols, wanted: wanted)
        try gpu.launch("cross_entropy" + precision.suffix, grid: (blocks, 1, 1), block: (threads, 1, 1),
                       [.pointer(logits), .pointer(bias), .pointer(labels), .pointer(dlogits), .pointer(losses), .int(Int32(rows)), .int(Int32(cols)),
                        .float(1 / Float(rows)), .pointer(state), .pointer(tickets), .pointer(mean ?? 0), .pointer(columnSums ?? 0)])
        return blocks
    }

    /// Device bytes in use and peak, by category.
    public var memory: (inUse: [MemoryCategory: Int], peak: [MemoryCategory: Int], peakTotal: Int) {
        (gpu.allocator.inUse, gpu.allocator.peak, gpu.allocator.peakTotal)
    }
}

/// Batches already on the device, copied into the input buffers by the step's owner.
public struct StagedBatch {
    /// The inputs, then the targets, laid out as the step's own input block (``InputBuffers``): one copy loads both.
    let block: DevicePointer
    let bytes: Int
    /// The trainer that staged it (and owns the block): no other may load it.
    let owner: ObjectIdentifier
}

/// One model's forward and backward on the GPU.
protocol GPUNetwork {
    /// The step's input and target buffers.
    var io: InputBuffers { get }
    /// Queues forward, loss and backward; gradients land in the trainer's flat gradient buffer.
    func forwardBackward(_ t: GPUTrainer) throws
    /// Runs once the trainer's parameters are on the device, before any step: where a network picks
    /// library algorithms on its real buffers or lays its weights out for a library.
    func prepare(_ t: GPUTrainer) throws
    /// How the network computes its layers, for `--profile` and the self-test ("cuDNN …", "im2col + cuBLAS").
    var engine: String { get }
    /// The parameters in the order forward first reads them, in groups (one a layer): a step may leave the updates of every
    /// group after the first to the next step (``GPUTrainer/defersUpdates``), and forward then calls
    /// ``GPUTrainer/beforeForward(group:)`` before it first reads each group. Empty: no deferral.
    var updateGroups: [[Int]] { get }
    /// Whether forward can run in two halves of the batch, one on each stream (``Schedule/forwardSplit``): the network
    /// then reads ``GPUTrainer/splitsForward``.
    var canSplitForward: Bool { get }
}

extension GPUNetwork {
    func prepare(_ t: GPUTrainer) throws {}
    var engine: String { "Tandem kernels + cuBLAS" }
    var updateGroups: [[Int]] { [] }
    var canSplitForward: Bool { false }
}

/// Input buffers shared by the networks: float inputs and int32 class ids or float targets, in one block (the targets
/// from the first 256-byte boundary after the inputs), so that a staged batch, laid out the same, loads with one copy:
/// each stream operation between two replays of a captured step is time the GPU waits.
struct InputBuffers {
    let inputs: DevicePointer
    let targets: DevicePointer
    let inputCount: Int
    let targetCount: Int
    let classTargets: Bool
    /// Inputs are token ids (exact floats on the host), stored as int32 on the device.
    let integerInputs: Bool
    /// Where the targets start in the block, in bytes, and the block's size.
    var targetOffset: Int { Int(targets - inputs) }
    var bytes: Int { targetOffset + 4 * targetCount }

    init(gpu: CUDAContext, inputCount: Int, targetCount: Int, classTargets: Bool, integerInputs: Bool = false) throws {
        self.integerInputs = integerInputs
        self.inputCount = inputCount
        self.targetCount = targetCount
        self.classTargets = classTargets
        let offset = (4 * inputCount + 255) / 256 * 256
        inputs = try gpu.allocate(bytes: offset + 4 * targetCount, category: .activations)
        targets = inputs + DevicePointer(offset)
    }

    /// Valid inputs and targets of any model, for timing a step before real batches come: token ids and classes
    /// 0, values 0x3C003C00 (about 0.0078 in fp32: not zeros, which some units run faster on).
    func fillForTiming(gpu: CUDAContext) throws {
        try gpu.fill(inputs, words: inputCount, pattern: integerInputs ? 0 : 0x3C00_3C00)
        try gpu.fill(targets, words: targetCount, pattern: classTargets ? 0 : 0x3C00_3C00)
    }

    func hostArrays(_ batch: Batch) throws -> (inputs: [Float], targets: [Float]?, classes: [Int32]?) {
        guard batch.inputs.count == inputCount else {
            throw CUDAError.unsupported("a batch of \(batch.inputs.count) input values does not fit the GPU step's \(inputCount)")
        }
        switch batch.targets {
        case .classes(let c):
            guard classTargets, c.count == targetCount else { throw CUDAError.unsupported("the batch has \(c.count) class targets, the step expects \(targetCount)") }
            return (Array(batch.inputs.buffer), nil, c)
        case .values(let v):
            guard !classTargets, v.count == targetCount else { throw CUDAError.unsupported("the batch has \(v.count) target values, the step expects \(targetCount)") }
            return (Array(batch.inputs.buffer), Array(v.buffer), nil)
        }
    }

    func uploadInputs(_ x: [Float], to destination: DevicePointer, gpu: CUDAContext) throws {
        if integerInputs { try gpu.upload(x.map { Int32($0) }, to: destination) } else { try gpu.upload(x, to: destination) }
    }

    /// Writes `batch` into `block`, the inputs themselves or a block laid out as they are (a staged batch's).
    func upload(_ batch: Batch, to block: DevicePointer, gpu: CUDAContext) throws {
        try upload(try hostArrays(batch), to: block, gpu: gpu)
    }

    func upload(_ arrays: (inputs: [Float], targets: [Float]?, classes: [Int32]?), to block: DevicePointer, gpu: CUDAContext) throws {
        try uploadInputs(arrays.inputs, to: block, gpu: gpu)
        let targetsAt = block + DevicePointer(targetOffset)
        if let values = arrays.targets { try gpu.upload(values, to: targetsAt) }
        if let classes = arrays.classes { try gpu.upload(classes, to: targetsAt) }
    }

    /// `batch` in a device block of its own, laid out as the inputs (checked before anything is allocated).
    func stage(_ batch: Batch, owner: ObjectIdentifier, gpu: CUDAContext) throws -> StagedBatch {
        let arrays = try hostArrays(batch)
        let block = try gpu.allocate(bytes: bytes, category: .activations)
        do { try upload(arrays, to: block, gpu: gpu) } catch { gpu.allocator.free(block); throw error }
        return StagedBatch(block: block, bytes: bytes, owner: owner)
    }

    /// Refuses a staged batch of another step's shape.
    func check(_ staged: StagedBatch) throws {
        guard staged.bytes == bytes else {
            throw CUDAError.unsupported("a staged batch of \(staged.bytes) bytes does not fit the GPU step's \(bytes)")
        }
    }
}
