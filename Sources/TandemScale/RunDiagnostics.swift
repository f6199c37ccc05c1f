import TandemParallel

// MARK: - Everything one result says about itself

/// The per-configuration diagnostics of one ``RunResult``, each nil where the result
/// lacks the fields it needs (results from `torch_bench.py` carry no breakdown).
///
/// ```swift
/// let d = RunDiagnostics(result: run, peakFLOPSPerWorker: 100e9)
/// d.breakdown?.fraction(.exposedCommunication)
/// d.balance?.stragglers.first?.rank
/// d.utilization?.mfu
/// ```
public struct RunDiagnostics: Sendable, Equatable {
    public var breakdown: StepBreakdown?
    public var overlap: CommunicationOverlap?
    public var balance: LoadBalance?
    public var utilization: Utilization?

    /// Diagnostics of `result`; MFU only when `peakFLOPSPerWorker` is given.
    public init(result: RunResult, peakFLOPSPerWorker: Double? = nil) {
        breakdown = StepBreakdown(result: result)
        overlap = CommunicationOverlap(result: result)
        balance = result.per_rank_step_ms.flatMap { LoadBalance(perRankMilliseconds: $0) }
        utilization = peakFLOPSPerWorker.flatMap { Utilization(result: result, peakFLOPSPerWorker: $0) }
    }
}
