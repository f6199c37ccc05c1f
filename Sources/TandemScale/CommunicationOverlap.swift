import TandemParallel

// MARK: - How much communication hides under compute

/// Overlap of gradient communication with compute (WORKLOADS.md):
/// overlap = 1 − exposed communication / total communication.
///
/// ``fraction`` is the value the run reported in `comm.overlap`. When the run also has a
/// positive `comm.algbw_gbps` and a breakdown, the total and hidden milliseconds are
/// reconstructed: total = bytes_per_step / algbw (algbw in GB/s, 10⁹ bytes per second,
/// as nccl-tests and `CommBenchmark` use it; this is how `Benchmark` derives algbw from
/// the collectives' busy time), exposed = `breakdown_ms.comm_exposed`, and
/// ``derivedFraction`` = 1 − exposed/total should agree with ``fraction``.
public struct CommunicationOverlap: Sendable, Equatable {
    /// `comm.overlap` as reported, in [0, 1] for a consistent run.
    public var fraction: Double
    /// Gradient bytes all-reduced per step.
    public var bytesPerStep: Int
    /// Communication time per step in ms (bytes / algbw), nil without a positive algbw.
    public var totalMilliseconds: Double?
    /// Communication time per step not hidden under compute, nil without a breakdown.
    public var exposedMilliseconds: Double?

    public init(fraction: Double, bytesPerStep: Int, totalMilliseconds: Double?, exposedMilliseconds: Double?) {
        self.fraction = fraction
        self.bytesPerStep = bytesPerStep
        self.totalMilliseconds = totalMilliseconds
        self.exposedMilliseconds = exposedMilliseconds
    }

    /// The overlap of `result`, or nil when it has no `comm` (a one-worker run).
    public init?(result: RunResult) {
        guard let comm = result.comm else { return nil }
        let total = comm.algbw_gbps > 0 ? Double(comm.bytes_per_step) / (comm.algbw_gbps * 1e9) * 1000 : nil
        self.init(fraction: comm.overlap, bytesPerStep: comm.bytes_per_step, totalMilliseconds: total,
                  exposedMilliseconds: result.breakdown_ms?.comm_exposed)
    }

    /// Communication time hidden under compute: total − exposed.
    public var hiddenMilliseconds: Double? {
        guard let total = totalMilliseconds, let exposed = exposedMilliseconds else { return nil }
        return total - exposed
    }

    /// 1 − exposed/total from the reconstructed times; nil when either is missing or total is 0.
    public var derivedFraction: Double? {
        guard let total = totalMilliseconds, let exposed = exposedMilliseconds, total > 0 else { return nil }
        return 1 - exposed / total
    }
}
