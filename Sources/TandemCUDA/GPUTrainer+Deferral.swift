// MARK: - Updates deferred into the next step's forward

extension GPUTrainer {
    var usesSGD: Bool { if case .sgd = optimizer { true } else { false } }

    /// Whether this step leaves the updates of every update group after the first (``GPUNetwork/updateGroups``) to the next
    /// (``Schedule/updatesDeferred``): they run there on the side stream, beside the forward of the layers before them,
    /// since a layer's weights are not read again until its forward. SGD only (AdamW's bias correction counts steps),
    /// with nothing global between the gradient and the update (no clipping, no loss scaling, no all-reduce).
    ///
    /// The same kernels on the same values as updating within the step: the same weights, bit for bit, once
    /// ``flushDeferredUpdates()`` has run, which everything that reads or replaces the weights does first.
    var defersUpdates: Bool { canDeferUpdates && schedule.updatesDeferred }
    /// Whether this trainer could defer its updates under a schedule that asks for it (``defersUpdates``).
    var canDeferUpdates: Bool { usesSGD && clipNorm == 0 && precision != .fp16 && !averagesGradients && network.updateGroups.count > 1 }

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
    /// for, then sets the skip flag. When this step defers none, applies the pending ones now instead.
    func launchDeferredUpdates() throws {
        deferredMarks = []
        deferredParameters = defersUpdates ? deferralPlan.parameters : []
        guard defersUpdates else { return try flushDeferredUpdates() }
        let (opt, folded) = pending ?? (optimizer, folds)
        var marks = [StreamMark?](repeating: nil, count: network.updateGroups.count)
        try gpu.onSideStream {
            if delaysDeferredUpdates { try gpu.launch("spin_wait", grid: (1, 1, 1), block: (1, 1, 1), [.long(1_000_000)]) }
            for g in deferredGroups {
                try launchDeferredUpdate(group: g, optimizer: opt, folded: folded)
                // Applied: the flag set before the last mark, which forward waits for before the step's end clears it.
                if g == deferredGroups.last { try gpu.launch("fill_f32", grid: (1, 1, 1), block: (32, 1, 1), [.pointer(skipFlag), .long(1), .float(1)]) }
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
        // The main stream's forward only: a forward split over both streams defers nothing (``splitsForward``).
        precondition(gpu.currentStream == gpu.stream, "deferred updates waited for on the side stream")
        try gpu.wait(gpu.stream, for: mark)
        deferredMarks[g] = nil
    }

    /// The end of a step that defers, its updates not run beside backward: every parameter's but the deferred groups' now
    /// (``deferralPlan``), then ``leaveUpdatesPending()``.
    func launchUpdatesDeferring() throws {
        for run in deferralPlan.nowRuns { try launchOptimizer(from: run.lowerBound, count: run.count) }
        try leaveUpdatesPending()
    }

    /// Marks the deferred groups' updates pending (the device's skip flag cleared, in stream order after this step's use).
    func leaveUpdatesPending() throws {
        try gpu.fill(skipFlag, words: 1, pattern: 0)
        pending = (optimizer, folds)
    }

    /// The update groups a deferring step leaves to the next: every group after the first.
    var deferredGroups: Range<Int> { 1..<max(1, network.updateGroups.count) }

    /// Applies the updates a step left pending, now, on the main stream: before the weights are read or replaced. Nothing
    /// when none can be pending.
    public func flushDeferredUpdates() throws {
        guard let (opt, folded) = pending else { return }
        for g in deferredGroups { try launchDeferredUpdate(group: g, optimizer: opt, folded: folded) }
        try gpu.fill(skipFlag, words: 1, pattern: 0x3F80_0000)   // (1) 1.0 in fp32: nothing pending
        pending = nil
    }

    /// Update group `g`'s deferred update on the current stream, with the optimizer and fold flag of the step that left it.
    func launchDeferredUpdate(group g: Int, optimizer opt: GPUOptimizer, folded: Bool) throws {
        for run in groupRuns[g] { try launchOptimizer(from: run.lowerBound, count: run.count, optimizer: opt, folded: folded, state: deferredState) }
    }
}
