#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore

// MARK: - The step's schedule, chosen by timing

extension GPUTrainer {
    /// How one step's work is spread over the context's two streams. The kernels and their inputs are the same
    /// under every schedule (so are the weights, bit for bit: the self-test checks it), but for the side stream's GEMMs
    /// held to a share of the multiprocessors and a split forward's half-batch GEMMs, whose algorithms may sum in another
    /// order (the same weights but for rounding); only what runs beside what changes, and which is fastest depends on
    /// the model and the GPU: small GEMMs and memory-bound kernels leave multiprocessors idle that the other stream's
    /// work can fill, while two streams of large GEMMs only contend.
    public struct Schedule: Equatable, Sendable, CustomStringConvertible {
        /// Weight-gradient GEMMs on the side stream, beside the input gradients (``GPUTrainer/weightGradient(last:_:)``).
        public var weightGradientsBeside: Bool
        /// Each parameter's optimizer update on the side stream as soon as backward is done with it.
        public var optimizerBeside: Bool
        /// Every update group after the first (``GPUNetwork/updateGroups``, in forward order) leaves its update to the next
        /// step, where it runs on the side stream beside the forward of the layers before it (``GPUTrainer/defersUpdates``).
        /// With ``optimizerBeside`` too, the first group is updated beside backward.
        public var updatesDeferred: Bool
        /// With ``weightGradientsBeside``: the multiprocessors cuBLASLt plans the side stream's GEMMs for (0: all of them).
        /// Held to a share, a weight gradient leaves the rest to the main stream's kernels beside it instead of taking
        /// every multiprocessor and making them wait (gpt bf16: two streams of GEMMs that each take the whole GPU only
        /// take turns).
        public var sideMultiprocessors: Int
        /// The forward in two halves of the batch, one on each stream (``GPUNetwork/canSplitForward``): GEMMs of half the
        /// rows, and two chains of latency-bound kernels (LayerNorm, attention, GELU) that fill the multiprocessors each
        /// other leaves idle. Not with ``updatesDeferred``, whose updates take the side stream during the forward.
        public var forwardSplit: Bool

        public init(weightGradientsBeside: Bool, optimizerBeside: Bool, updatesDeferred: Bool = false, sideMultiprocessors: Int = 0,
                    forwardSplit: Bool = false) {
            self.weightGradientsBeside = weightGradientsBeside
            self.optimizerBeside = optimizerBeside
            self.updatesDeferred = updatesDeferred
            self.sideMultiprocessors = weightGradientsBeside ? max(0, sideMultiprocessors) : 0
            self.forwardSplit = forwardSplit && !updatesDeferred
        }

        public var description: String {
            let streams = switch (weightGradientsBeside, optimizerBeside) {
            case (false, false): "one stream"
            case (true, false): "weight gradients beside"
            case (false, true): "optimizer beside"
            case (true, true): "weight gradients and optimizer beside"
            }
            return streams + (sideMultiprocessors > 0 ? " (on \(sideMultiprocessors) multiprocessors)" : "")
                + (updatesDeferred ? ", updates deferred into the next forward" : "") + (forwardSplit ? ", forward in two halves" : "")
        }

        /// `schedules` without repeats, in their order.
        static func distinct(_ schedules: [Schedule]) -> [Schedule] {
            var seen: [Schedule] = []
            for s in schedules where !seen.contains(s) { seen.append(s) }
            return seen
        }

        /// The schedules the environment leaves open: `TANDEM_GPU_WGRAD_STREAM`, `TANDEM_OVERLAP_OPTIMIZER`,
        /// `TANDEM_DEFER_UPDATES` and `TANDEM_SPLIT_FORWARD` set to 0 or 1 fix their part; unset (or anything else), both ways
        /// are timed. Deferral with the optimizer beside backward only with `TANDEM_DEFER_UPDATES=1` (measured slower); a
        /// split forward only without deferral. Weight gradients beside take every multiprocessor or `share` of them (when
        /// not 0), or the number `TANDEM_SIDE_SMS` gives (0: all).
        static func allowed(share: Int = 0, environment: (String) -> String? = { getenv($0).map { String(cString: $0) } }) -> [Schedule] {
            func ways(_ name: String) -> [Bool] {
                switch environment(name) {
                case "0": [false]
                case "1": [true]
                default: [false, true]
                }
            }
            let shares = environment("TANDEM_SIDE_SMS").flatMap(Int.init).map { [$0] } ?? (share > 0 ? [0, share] : [0])
            var schedules: [Schedule] = []
            for w in ways("TANDEM_GPU_WGRAD_STREAM") {
                for o in ways("TANDEM_OVERLAP_OPTIMIZER") {
                    for d in ways("TANDEM_DEFER_UPDATES") {
                        // Deferral with the optimizer beside only when asked for (with one group deferred it measured slower:
                        // gpt bf16 +3.8%, mlp-wide fp32 +0.6%).
                        if o && d && environment("TANDEM_DEFER_UPDATES") != "1" { continue }
                        for m in shares {
                            for f in ways("TANDEM_SPLIT_FORWARD") {   // a split with deferral is none (init)
                                schedules.append(Schedule(weightGradientsBeside: w, optimizerBeside: o, updatesDeferred: d, sideMultiprocessors: m,
                                                          forwardSplit: f))
                            }
                        }
                    }
                }
            }
            return distinct(schedules)
        }
    }

    /// Whether the chooser takes the split forward (``Schedule/forwardSplit``) without timing the unsplit schedules: where
    /// the forward can split and updates could be deferred instead (gpt in bf16 with SGD), unless `TANDEM_SPLIT_FORWARD`
    /// is 0 or 1. Side by side the split measured 0.5–0.9% faster than deferral in four calls, and faster than neither
    /// (1.9236 against 1.9319 ms; docs/performance.md), differences the chooser's short replays do not resolve (1.907,
    /// 1.910 and 1.909 ms).
    static func takesSplitUntimed(canSplit: Bool, canDefer: Bool,
                                  environment: (String) -> String? = { getenv($0).map { String(cString: $0) } }) -> Bool {
        canSplit && canDefer && !["0", "1"].contains(environment("TANDEM_SPLIT_FORWARD"))
    }

    /// Replays of the captured step per timing, and rounds (schedules take turns; each keeps its fastest round).
    static let scheduleReplays = 10, scheduleRounds = 3

    /// Times the whole step, captured in a graph, under each allowed ``Schedule`` (on inputs of ``InputBuffers/fillForTiming(gpu:)``) and keeps the
    /// fastest (``scheduleNote`` says what was measured). Schedules that cannot differ for this trainer are not timed:
    /// the weight-gradient half when the network queues none beside, the optimizer half when it may not move (clipping,
    /// loss scaling); nor, where the forward splits, those that do not (``takesSplitUntimed(canSplit:canDefer:environment:)``).
    /// The weights, gradients, optimizer state and step state are put back as they were.
    func chooseSchedule() throws {
        // Deferral only where this trainer can defer.
        // A share of the multiprocessors as large as the device's (or larger) is all of them.
        let count = gpu.device.multiprocessors
        var candidates = Schedule.allowed(share: count / 2).map {
            Schedule(weightGradientsBeside: $0.weightGradientsBeside, optimizerBeside: $0.optimizerBeside, updatesDeferred: canDeferUpdates && $0.updatesDeferred,
                     sideMultiprocessors: $0.sideMultiprocessors < count ? $0.sideMultiprocessors : 0,
                     forwardSplit: network.canSplitForward && $0.forwardSplit)
        }
        candidates = Schedule.distinct(candidates)
        let splitUntimed = Self.takesSplitUntimed(canSplit: network.canSplitForward, canDefer: canDeferUpdates) && candidates.contains(where: \.forwardSplit)
        if splitUntimed { candidates = candidates.filter(\.forwardSplit) }
        let untimed = splitUntimed ? "; the forward split without timing the unsplit one" : ""
        if let only = candidates.first, candidates.count == 1 { schedule = only; scheduleNote = "schedule: \(only) (set\(untimed))"; return }
        // One eager step under the richest schedule: libraries load and GEMMs choose their algorithms here, and it shows
        // whether the network queues weight gradients beside at all.
        try network.io.fillForTiming(gpu: gpu)
        schedule = candidates.last!
        try enqueueStep()
        try gpu.synchronize()
        // What each schedule does for this trainer: a half it cannot use is off (the same step as without it).
        let besideUsed = sideHasWeightGradients, optimizerMovable = clipNorm == 0 && precision != .fp16
        candidates = candidates.map { Schedule(weightGradientsBeside: $0.weightGradientsBeside && besideUsed,
                                               optimizerBeside: $0.optimizerBeside && optimizerMovable,
                                               updatesDeferred: $0.updatesDeferred, sideMultiprocessors: $0.sideMultiprocessors,
                                               forwardSplit: $0.forwardSplit) }
        let uniqueCandidates = Schedule.distinct(candidates)
        var best: [Double] = Array(repeating: .infinity, count: uniqueCandidates.count)
        var failures: [String] = []
        if uniqueCandidates.count > 1 {
            var graphs: [CUDAGraph?] = []
            for c in uniqueCandidates {
                schedule = c
                do {
                    gpu.resetOrdering()
                    try enqueueStep()   // eager once: plans made on either stream
                    try gpu.synchronize()
                    // Timing only (the state is restored below): no flush of another candidate's deferred updates in this one's graph.
                    pending = nil
                    graphs.append(try gpu.capture { try enqueueStep() })
                } catch let error {
                    try? gpu.synchronize()
                    failures.append("\(c): \(error)")
                    graphs.append(nil)
                }
            }
            for _ in 0..<Self.scheduleRounds {
                for (i, graph) in graphs.enumerated() {
                    guard let graph else { continue }
                    best[i] = min(best[i], try gpu.replayTime(graph, replays: Self.scheduleReplays))
                }
            }
        }
        try restoreInitialState()
        func ms(_ v: Double) -> String { v.isFinite ? String(format: "%.3f ms", v) : "failed" }
        let timed = zip(uniqueCandidates, best).map { "\($0.0) \(ms($0.1))" } + failures
        if uniqueCandidates.count == 1 {
            schedule = uniqueCandidates[0]
            scheduleNote = "schedule: \(schedule)"
        } else if let chosen = best.indices.min(by: { best[$0] < best[$1] }), best[chosen].isFinite {
            schedule = uniqueCandidates[chosen]
            scheduleNote = "schedule: \(schedule) (graph-timed steps: \(timed.joined(separator: "; "))\(untimed))"
        } else {
            // No schedule could be captured here (eager steps may still work): the plainest one.
            schedule = Schedule(weightGradientsBeside: false, optimizerBeside: false)
            scheduleNote = "schedule: \(schedule) (no schedule could be timed: \(timed.joined(separator: "; ")))"
        }
    }

    /// The weights from the CPU model, zero gradients and optimizer state, and the first step's state (loss scale).
    func restoreInitialState() throws {
        try gpu.synchronize()
        folds = false
        pending = nil
        for p in [grads, slot1] { try gpu.fill(p, words: flatCount, pattern: 0) }
        if slot2 != 0 { try gpu.fill(slot2, words: flatCount, pattern: 0) }
        let scale: Float = precision == .fp16 ? 65536 : 1
        // Slots 8 and 9: the deferred updates' multiplier and skip flag (nothing pending).
        try gpu.upload([1 / scale, 0, scale, 0, 0, 0, 0, 0, 1, 1], to: state)
        try uploadWeights()
    }
}
