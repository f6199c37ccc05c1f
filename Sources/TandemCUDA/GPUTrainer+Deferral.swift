// MARK: - Updates deferred into the next step's forward

extension GPUTrainer {
    var usesSGD: Bool { if case .sgd = optimizer { true } else { false } }

    /// How many update groups after the first (``GPUNetwork/updateGroups``) this step leaves to the next
    /// (``Schedule/deferredGroups``): their updates run there on the side stream, beside the forward of the layers before
    /// them, since a layer's weights are not read again until its forward. SGD only (AdamW's bias correction counts steps),
    /// with nothing global between the gradient and the update (no clipping, no loss scaling, no all-reduce).
    ///
    /// The same kernels on the same values as updating within the step: the same weights, bit for bit, once
    /// ``flushDeferredUpdates()`` has run, which everything that reads or replaces the weights does first.
    var deferredGroupCount: Int { canDeferUpdates ? min(schedule.deferredGroups, network.updateGroups.count - 1) : 0 }
    var defersUpdates: Bool { deferredGroupCount > 0 }
    /// Whether this trainer could defer its updates under a schedule that asks for it (``defersUpdates``).
    var canDeferUpdates: Bool { usesSGD && clipNorm == 0 && precision != .fp16 && collective == nil && network.updateGroups.count > 1 }

    /// The step state the deferred updates read: slot 8, their gradient multiplier (1), and slot 9, their skip flag: 0 exactly
    /// while updates are pending (a deferring step's end clears it; the launch that applies them sets it, in stream order), so
    /// a launch of updates already applied does nothing: a graph's first replay after a flush, an eager step after a replay,
    /// or a step after one that failed part-way.
    var deferredState: DevicePointer { state + 32 }
    var skipFlag: DevicePointer { state + 36 }

    /// Parameters `indices` as runs of the flat buffers, touching slices merged: one update launch a run (``groupRuns``).
    func flatRuns(_ indices: some Sequence<Int>) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        for i in indices.sorted(by: { offsets[$0] < offsets[$1] }) {
            if let last = runs.last, last.upperBound == offsets[i] { runs[runs.count - 1] = last.lowerBound..<ends[i] } else { runs.append(offsets[i]..<ends[i]) }
        }
        return runs
    }

    /// Queues the updates the previous step left (with its optimizer and fold flag; this step's when none is known: they
    /// are skipped then) on the side stream, group by group, with a mark after each that ``beforeForward(group:)`` waits
    /// for, then sets the skip flag. When this step defers none, or other groups than the step that left them, applies
    /// the pending ones now instead (first).
    func launchDeferredUpdates() throws {
        let k = deferredGroupCount
        deferredMarks = []
        deferredParameters = deferralPlan(k).parameters
        if let p = pending, p.groups != k { try flushDeferredUpdates() }
        guard k > 0 else { return }
        let (opt, folded, _) = pending ?? (optimizer, folds, k)
        var marks = [StreamMark?](repeating: nil, count: network.updateGroups.count)
        try gpu.onSideStream {
            if delaysDeferredUpdates { try gpu.launch("spin_wait", grid: (1, 1, 1), block: (1, 1, 1), [.long(1_000_000)]) }
            for g in deferredGroups(k) {
                try launchDeferredUpdate(group: g, optimizer: opt, folded: folded)
                // Applied: the flag set before the last mark, which forward waits for before the step's end clears it.
                if g == k { try gpu.launch("fill_f32", grid: (1, 1, 1), block: (32, 1, 1), [.pointer(skipFlag), .long(1), .float(1)]) }
                marks[g] = try gpu.mark(gpu.sideStream)
            }
        }
        deferredMarks = marks
        pending = nil
    }

    /// Makes the main stream wait for update group `g`'s deferred update: a network calls it before its forward first reads
    /// the group's weights (every group, in order).
    func beforeForward(group g: Int) throws {
        guard g < deferredMarks.count, let mark = deferredMarks[g] else { return }
        try gpu.wait(gpu.stream, for: mark)
        deferredMarks[g] = nil
    }

    /// The end of a step that defers, its updates not run beside backward: every parameter's but the deferred groups' now
    /// (``deferralPlan(_:)``), then ``leaveUpdatesPending()``.
    func launchUpdatesDeferring() throws {
        for run in deferralPlan(deferredGroupCount).nowRuns { try launchOptimizer(from: run.lowerBound, count: run.count) }
        try leaveUpdatesPending()
    }

    /// Marks the deferred groups' updates pending (the device's skip flag cleared, in stream order after this step's use).
    func leaveUpdatesPending() throws {
        try gpu.fill(skipFlag, words: 1, pattern: 0)
        pending = (optimizer, folds, deferredGroupCount)
    }

    /// Update groups 1 … k, those a step deferring k groups leaves to the next.
    func deferredGroups(_ k: Int) -> Range<Int> { 1..<(1 + max(0, min(k, network.updateGroups.count - 1))) }

    /// For a step deferring k groups: their parameters, and the flat runs of every other parameter (those it updates itself).
    func deferralPlan(_ k: Int) -> (parameters: Set<Int>, nowRuns: [Range<Int>]) {
        if let known = deferralPlans[k] { return known }
        let parameters = Set(deferredGroups(k).flatMap { network.updateGroups[$0] })
        let plan = (parameters: parameters, nowRuns: flatRuns(offsets.indices.filter { !parameters.contains($0) }))
        deferralPlans[k] = plan
        return plan
    }

    /// Applies the updates a step left pending, now, on the main stream: before the weights are read or replaced. Nothing
    /// when none can be pending.
    public func flushDeferredUpdates() throws {
        guard let (opt, folded, k) = pending else { return }
        for g in deferredGroups(k) { try launchDeferredUpdate(group: g, optimizer: opt, folded: folded) }
        try gpu.fill(skipFlag, words: 1, pattern: 0x3F80_0000)   // (1) 1.0 in fp32: nothing pending
        pending = nil
    }

    /// Update group `g`'s deferred update on the current stream, with the optimizer and fold flag of the step that left it.
    func launchDeferredUpdate(group g: Int, optimizer opt: GPUOptimizer, folded: Bool) throws {
        for run in groupRuns[g] { try launchOptimizer(from: run.lowerBound, count: run.count, optimizer: opt, folded: folded, state: deferredState) }
    }
}
