import TandemParallel

// MARK: - Model FLOPs utilization

/// Model FLOPs utilization: achieved FLOP/s over the hardware's peak (WORKLOADS.md,
/// "MFU"; the measure of Chowdhery et al., "PaLM: Scaling language modeling with
/// pathways", 2022, appendix B).
///
/// MFU = flops_per_step × steps/s ÷ (workers × peak FLOP/s per worker), with
/// steps/s = samples_per_s / global_batch (every worker runs the steps in lock-step, and
/// this rate counts the whole timed interval).
///
/// `flops_per_step` counts the model's FLOPs (forward and backward, per layer) of one
/// step of *all* workers — `Benchmark` writes one rank's FLOPs × workers — so the
/// denominator is the aggregate peak. For one worker this is the plain
/// flops_per_step × steps/s ÷ peak.
public struct Utilization: Sendable, Equatable {
    /// FLOP/s achieved by all workers together.
    public var achievedFLOPS: Double
    /// Peak FLOP/s of all workers together.
    public var peakFLOPS: Double

    public init(achievedFLOPS: Double, peakFLOPS: Double) {
        self.achievedFLOPS = achievedFLOPS
        self.peakFLOPS = peakFLOPS
    }

    /// The utilization of `result` against a peak of `peakFLOPSPerWorker` per device
    /// (e.g. 100e9 for one core's fp32 GEMM ceiling, 795e12 for an H200 in bf16); nil
    /// when the run has no `flops_per_step` or no positive global batch.
    public init?(result: RunResult, peakFLOPSPerWorker: Double) {
        precondition(peakFLOPSPerWorker > 0, "peak FLOP/s must be positive, got \(peakFLOPSPerWorker)")
        guard let flops = result.flops_per_step, result.global_batch > 0 else { return nil }
        let stepsPerSecond = result.samples_per_s / Double(result.global_batch)
        self.init(achievedFLOPS: flops * stepsPerSecond, peakFLOPS: peakFLOPSPerWorker * Double(max(result.workers, 1)))
    }

    /// achieved / peak.
    public var mfu: Double { achievedFLOPS / peakFLOPS }
}
