import Foundation
import TandemParallel

// MARK: - Two result sets side by side

/// Two sets of results — a baseline (say PyTorch) and a candidate (say Tandem) — matched
/// by configuration (model, workers, batch_per_worker), as `tandem compare` prints them.
///
/// Per configuration and side, repeats are reduced to medians: of `samples_per_s`, and of
/// each run's median step (`step_ms.median`). Ratios are candidate over baseline, so a
/// throughput ratio above 1 and a step ratio below 1 both mean the candidate is faster.
/// As WORKLOADS.md warns, compare only results measured side by side in one session.
///
/// ```swift
/// let table = Comparison(baseline: torch, candidate: tandem).markdown()
/// ```
public struct Comparison: Sendable {
    /// What a configuration is matched by.
    public struct Key: Hashable, Sendable, Comparable {
        public var model: String
        public var workers: Int
        public var batchPerWorker: Int
        public init(model: String, workers: Int, batchPerWorker: Int) {
            self.model = model
            self.workers = workers
            self.batchPerWorker = batchPerWorker
        }
        public init(_ result: RunResult) {
            self.init(model: result.model, workers: result.workers, batchPerWorker: result.batch_per_worker)
        }
        public static func < (a: Key, b: Key) -> Bool {
            (a.model, a.workers, a.batchPerWorker) < (b.model, b.workers, b.batchPerWorker)
        }
    }

    /// One side of one configuration: medians over its repeats.
    public struct Side: Sendable, Equatable {
        public var runs: Int
        public var samplesPerSecond: Double
        public var stepMilliseconds: Double
    }

    /// One configuration measured on both sides.
    public struct Row: Sendable, Equatable {
        public var key: Key
        public var baseline: Side
        public var candidate: Side
        /// candidate / baseline samples per second (> 1: candidate faster).
        public var throughputRatio: Double { candidate.samplesPerSecond / baseline.samplesPerSecond }
        /// candidate / baseline median step time (< 1: candidate faster).
        public var stepRatio: Double { candidate.stepMilliseconds / baseline.stepMilliseconds }
    }

    /// Label of each side in the table.
    public var baselineName: String
    public var candidateName: String
    /// Configurations on both sides, sorted by model, workers, batch.
    public var rows: [Row]
    /// Configurations present on only one side.
    public var onlyInBaseline: [Key]
    public var onlyInCandidate: [Key]

    /// Matches `baseline` and `candidate`. Each side is named by the engine its results
    /// report (joined by "+" if several) unless a name is given.
    public init(baseline: [RunResult], candidate: [RunResult], baselineName: String? = nil, candidateName: String? = nil) {
        func name(_ results: [RunResult], _ fallback: String) -> String {
            let engines = Array(Set(results.map(\.engine))).sorted()
            return engines.isEmpty ? fallback : engines.joined(separator: "+")
        }
        func sides(_ results: [RunResult]) -> [Key: Side] {
            Dictionary(grouping: results, by: Key.init).mapValues { runs in
                Side(runs: runs.count, samplesPerSecond: Spread.quantile(runs.map(\.samples_per_s), 0.5),
                     stepMilliseconds: Spread.quantile(runs.map(\.step_ms.median), 0.5))
            }
        }
        self.baselineName = baselineName ?? name(baseline, "baseline")
        self.candidateName = candidateName ?? name(candidate, "candidate")
        if self.baselineName == self.candidateName, baselineName == nil, candidateName == nil {
            self.baselineName += " (baseline)"
            self.candidateName += " (candidate)"
        }
        let a = sides(baseline), b = sides(candidate)
        rows = a.keys.filter { b[$0] != nil }.sorted().map { Row(key: $0, baseline: a[$0]!, candidate: b[$0]!) }
        onlyInBaseline = a.keys.filter { b[$0] == nil }.sorted()
        onlyInCandidate = b.keys.filter { a[$0] == nil }.sorted()
    }

    /// A GitHub-flavoured markdown table, one row per matched configuration, then a line
    /// for each side's unmatched configurations.
    ///
    ///     | model | workers | batch/worker | torch samples/s | tandem samples/s | × | torch step ms | tandem step ms | × |
    public func markdown() -> String {
        let a = Comparison.cell(baselineName), b = Comparison.cell(candidateName)
        var lines = [
            "| model | workers | batch/worker | \(a) samples/s | \(b) samples/s | \(b)/\(a) | \(a) step ms | \(b) step ms | \(b)/\(a) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in rows {
            let cells = [
                Comparison.cell(row.key.model), "\(row.key.workers)", "\(row.key.batchPerWorker)",
                Comparison.significant(row.baseline.samplesPerSecond), Comparison.significant(row.candidate.samplesPerSecond),
                Comparison.ratio(row.throughputRatio),
                Comparison.significant(row.baseline.stepMilliseconds), Comparison.significant(row.candidate.stepMilliseconds),
                Comparison.ratio(row.stepRatio),
            ]
            lines.append("| " + cells.joined(separator: " | ") + " |")
        }
        func unmatched(_ keys: [Key], _ side: String) {
            guard !keys.isEmpty else { return }
            let list = keys.map { "\($0.model) × \($0.workers) (batch \($0.batchPerWorker))" }.joined(separator: ", ")
            lines.append("")
            lines.append("Only in \(side): \(list).")
        }
        unmatched(onlyInBaseline, baselineName)
        unmatched(onlyInCandidate, candidateName)
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Formatting

    /// Text safe in a table cell: pipes escaped, line breaks as spaces.
    static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }

    /// A ratio with two decimals and a ×.
    static func ratio(_ x: Double) -> String { x.isFinite ? String(format: "%.2f×", (x * 100).rounded() / 100) : "–" }

    /// About four significant figures, no exponent for the magnitudes results have,
    /// thousands grouped with commas (6,274.5 → "6,275", 20.41 → "20.41", 0.2104 → "0.2104").
    static func significant(_ x: Double) -> String {
        guard x.isFinite else { return "–" }
        let magnitude = abs(x)
        let decimals = magnitude >= 1000 ? 0 : magnitude >= 100 ? 1 : magnitude >= 10 ? 2 : magnitude >= 1 ? 3 : 4
        // Round half away from zero first: printf rounds exact halves to even (6274.5 → "6274").
        let scale = pow(10, Double(decimals))
        let text = String(format: "%.\(decimals)f", (x * scale).rounded() / scale)
        guard decimals == 0 else { return text }
        let negative = text.hasPrefix("-")
        let digits = Array(negative ? text.dropFirst() : Substring(text))
        var grouped = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { grouped.append(",") }
            grouped.append(d)
        }
        return (negative ? "-" : "") + grouped
    }
}
