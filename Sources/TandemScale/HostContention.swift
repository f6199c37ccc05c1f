import TandemParallel

// MARK: - Workers of one host slowing each other down

/// How much slower one worker computes when every worker of its host computes at once.
///
/// Workers on one host share its last-level cache, its memory bandwidth and its power
/// budget, so a step that takes t alone takes longer with the host full, with no
/// communication at all; and in lock-step every step waits for the slowest of them. The
/// α-β model knows nothing of this; without it a prediction from one worker is optimistic
/// by that slowdown. It is measured once per workload by a probe: `workersPerHost`
/// replicas training at the same time, each alone in its own one-rank group, meeting at a
/// barrier where gradients would be averaged
/// (``Benchmark/measure(workers:bucketBytes:compression:recordEvents:independent:)``). In
/// phase, their forward passes and optimizer updates hit memory at the same moments, as
/// in data-parallel training; out of phase (without the barrier) they would miss that.
///
/// Between 1 and `workersPerHost` workers the slowdown is taken as growing linearly with
/// the number of busy workers; beyond, hosts are full and it stays at the probe's.
public struct HostContention: Sendable, Equatable {
    public var workersPerHost: Int
    /// Compute time per sample with the host full over the same alone (≥ 0; 1 = none).
    public var computeSlowdown: Double
    /// The optimizer's time with the host full over the same alone.
    public var fixedSlowdown: Double

    public init(workersPerHost: Int, computeSlowdown: Double, fixedSlowdown: Double) {
        precondition(workersPerHost >= 1, "a host has at least one worker")
        precondition(computeSlowdown > 0 && fixedSlowdown > 0, "slowdowns are positive ratios")
        self.workersPerHost = workersPerHost
        self.computeSlowdown = computeSlowdown
        self.fixedSlowdown = fixedSlowdown
    }

    /// The compute factor with `workers` workers in all.
    public func computeFactor(workers: Int) -> Double { interpolate(computeSlowdown, workers) }
    /// The optimizer's factor with `workers` workers in all.
    public func fixedFactor(workers: Int) -> Double { interpolate(fixedSlowdown, workers) }

    private func interpolate(_ full: Double, _ workers: Int) -> Double {
        guard workersPerHost > 1 else { return 1 }
        let busy = Double(min(max(workers, 1), workersPerHost))
        return 1 + (full - 1) * (busy - 1) / Double(workersPerHost - 1)
    }

    /// The contention between a one-worker run and a probe of the same workload and batch
    /// (`backend` "independent", several workers in lock-step, no communication). The
    /// probe's compute includes its wait at the barrier: the straggler's share.
    public init(baseline: RunResult, probe: RunResult) throws(CalibrationError) {
        guard probe.backend == Benchmark.independentBackend, probe.workers > 1 else {
            throw CalibrationError("a contention probe is a run of independent replicas on several workers, got backend \(probe.backend) with \(probe.workers) workers")
        }
        guard baseline.workers == 1, baseline.model == probe.model, baseline.batch_per_worker == probe.batch_per_worker else {
            throw CalibrationError("the probe (\(probe.model), batch \(probe.batch_per_worker)) and the one-worker run (\(baseline.model), batch \(baseline.batch_per_worker), \(baseline.workers) workers) must be the same workload and batch")
        }
        let alone = try Calibration(baseline: baseline)
        let optimizer = (probe.breakdown_ms?.optimizer ?? 0) / 1000
        // Every replica's own mean step (they do not wait for each other), else rank 0's.
        let perRank = probe.per_rank_step_ms ?? []
        let step = (perRank.isEmpty ? probe.step_ms.mean : perRank.reduce(0, +) / Double(perRank.count)) / 1000
        guard step.isFinite, step > optimizer else {
            throw CalibrationError("\(probe.model): the probe's step_ms.mean \(probe.step_ms.mean) must exceed its optimizer's \(optimizer * 1000) ms")
        }
        let compute = (step - optimizer) / Double(probe.batch_per_worker)
        self.init(workersPerHost: probe.workers, computeSlowdown: compute / alone.computeSecondsPerSample,
                  fixedSlowdown: alone.fixedSecondsPerStep > 0 && optimizer > 0 ? optimizer / alone.fixedSecondsPerStep : 1)
    }
}
