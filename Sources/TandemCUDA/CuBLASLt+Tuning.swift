#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - GEMM algorithms chosen by timing

/// How a new ``CuBLASLt`` plan picks its algorithm when it is given a tuner: every algorithm the heuristic offers
/// (up to ``CuBLASLt/candidates``), the other tile sizes and stage counts of those algorithms (up to
/// ``CuBLASLt/variantLimit``; `TANDEM_GEMM_VARIANTS=0` leaves them out) and the caller's other way of computing the
/// same call (cuBLAS, or cuBLAS and a kernel for the bias work) are run on the call's own operands and timed; the
/// fastest is kept for the life of the plan. The heuristic's first algorithm stays unless another is more than ``margin`` faster, so noise does not
/// pick among equals, and a configuration the heuristic did not offer must beat all the others by ``variantMargin``.
///
/// The choice is written to a ``GEMMTuningRecord`` and read back by later processes on the same GPU and library, so
/// a machine runs the same algorithms (and computes the same bits) from one run to the next, as PyTorch's TunableOp
/// does with its results file. `TANDEM_GEMM_TUNE=0` turns timing off: plain GEMMs stay on cuBLAS and fused ones take
/// the heuristic's first algorithm.
public struct GEMMTuner {
    /// Milliseconds the stream spends on what `body` queues there.
    public var time: (_ body: () throws -> Void) throws -> Double
    /// The caller's other way of computing the call, timed beside cuBLASLt's algorithms (nil: none to compare).
    public var alternative: (() throws -> Void)?
    /// Where choices are kept between processes (nil: each process times again).
    public var record: GEMMTuningRecord?
    /// Runs the whole timing (the context keeps its profiler out of it).
    public var quietly: (_ body: () throws -> Void) throws -> Void

    public init(time: @escaping (_ body: () throws -> Void) throws -> Double, alternative: (() throws -> Void)?,
                record: GEMMTuningRecord?, quietly: @escaping (_ body: () throws -> Void) throws -> Void = { try $0() }) {
        self.time = time
        self.alternative = alternative
        self.record = record
        self.quietly = quietly
    }

    /// A candidate must beat the heuristic's first algorithm by this fraction to replace it.
    public static let margin = 0.02
    /// A configuration the heuristic did not offer (``CuBLASLt/variantLimit``) must beat every other candidate by this
    /// much: it is timed alone, and small gains alone did not carry into a step where another stream's work runs beside
    /// it (gpt bf16 +0.3%; mlp-wide bf16 +13% from a weight gradient 2% faster alone than the heuristic's best), where
    /// mlp-wide fp32's weight gradient, 9% faster alone, did (−0.8%).
    public static let variantMargin = 0.05
    /// Calls in one timed run, and timed runs per candidate (the fastest run counts; candidates take turns).
    static let callsPerRun = 3, runs = 3

    /// `TANDEM_GEMM_TUNE=0` turns timing off.
    public static var enabledByEnvironment: Bool { getenv("TANDEM_GEMM_TUNE").map { String(cString: $0) != "0" } ?? true }

    /// The index of the fastest of `times` (milliseconds; nil for a candidate that failed to run), the heuristic's
    /// first at 0, the caller's other way at -1 when given: 0 unless another is more than ``margin`` faster, and
    /// one at `offered` or after (not the heuristic's) only when it is more than ``variantMargin`` faster than all the
    /// others, else the choice among them. Nil when nothing ran.
    public static func fastest(first times: [Double?], offered: Int? = nil, alternative: Double?) -> Int? {
        precondition(offered.map { $0 > 0 } ?? true, "GEMMTuner.fastest: the heuristic offers at least one algorithm")
        var all: [(index: Int, ms: Double)] = times.enumerated().compactMap { i, t in t.map { (i, $0) } }
        if let alternative { all.append((-1, alternative)) }
        guard let best = all.min(by: { $0.ms < $1.ms }) else { return nil }
        if let offered, best.index >= offered {
            // A variant: taken when clearly faster than everything else that ran (or when nothing else did).
            guard let rest = all.filter({ $0.index < offered }).map(\.ms).min(), best.ms >= rest * (1 - variantMargin) else { return best.index }
            return fastest(first: Array(times.prefix(offered)), alternative: alternative)
        }
        guard let first = times.first ?? nil else { return best.index }
        return best.ms < first * (1 - margin) ? best.index : 0
    }

    /// Times `candidates` runs of `run(i)` and the alternative, round after round, and returns the choice
    /// (see ``fastest(first:offered:alternative:)``; the first `offered` are the heuristic's) with the heuristic's first
    /// and the chosen times. A candidate (or the alternative) whose run throws is left out.
    func choose(candidates: Int, offered: Int? = nil, run: (Int) throws -> Void) throws -> (choice: Int, firstMs: Double?, chosenMs: Double)? {
        var best = [Double?](repeating: nil, count: candidates)
        var failed = Set<Int>()
        var other: Double?
        var otherFailed = alternative == nil
        try quietly {
            for i in 0..<candidates {
                // Warm-up, and the check that the algorithm runs on these operands at all.
                do { try run(i) } catch { failed.insert(i) }
            }
            if let alternative { do { try alternative() } catch { otherFailed = true } }
            for _ in 0..<Self.runs {
                for i in 0..<candidates where !failed.contains(i) {
                    do {
                        let ms = try time { for _ in 0..<Self.callsPerRun { try run(i) } } / Double(Self.callsPerRun)
                        best[i] = min(best[i] ?? .infinity, ms)
                    } catch { failed.insert(i); best[i] = nil }
                }
                if let alternative, !otherFailed {
                    do {
                        let ms = try time { for _ in 0..<Self.callsPerRun { try alternative() } } / Double(Self.callsPerRun)
                        other = min(other ?? .infinity, ms)
                    } catch { otherFailed = true; other = nil }
                }
            }
        }
        guard let choice = Self.fastest(first: best, offered: offered, alternative: other) else { return nil }
        return (choice, best.first ?? nil, choice < 0 ? other ?? 0 : best[choice] ?? 0)
    }
}

// MARK: - Choices kept on disk

/// The algorithm chosen for each GEMM kind on one GPU model with one cuBLASLt version: a text file of lines
/// `kind<TAB>choice<TAB>note`, where choice is the index in the list the tuner timed: the usable algorithms the
/// heuristic gave, then their other configurations (the kind names the list's length, so a list of another length
/// never matches; -1: the caller's other way) and the note says what the timing found. Processes that share the file (ranks of one host) each add their own choices
/// to what the file holds when they write. Lines that do not parse are skipped (and reported once); the file is written
/// whole through ``CacheFile``, so a reader never sees half of it.
///
/// `TANDEM_GEMM_CACHE` names the folder (default `~/.cache/tandem/gemm`); `none` keeps nothing.
public final class GEMMTuningRecord {
    public let path: String
    private var lines: [String: (choice: Int, note: String)] = [:]
    /// Lines of the file that did not parse, with their numbers (the next write drops them).
    public private(set) var skipped: [String] = []

    /// The record at `path`, read now (a missing file is an empty record).
    public init(path: String) {
        self.path = path
        guard let text = CacheFile.read(path) else { return }
        for (number, line) in String(decoding: text, as: UTF8.self).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 2, !fields[0].isEmpty, let choice = Int(fields[1]), choice >= -1, choice < CuBLASLt.longestList else {
                skipped.append("line \(number + 1): \"\(line.prefix(80))\" (expected kind, a tab, and a choice from -1 to \(CuBLASLt.longestList - 1))")
                continue
            }
            lines[String(fields[0])] = (choice, fields.count > 2 ? String(fields[2]) : "")
        }
    }

    /// The record for one GPU model and library version in `directory` (default: ``directoryFromEnvironment``);
    /// nil when records are turned off.
    public static func forDevice(_ device: String, library: String,
                                 directory: String? = GEMMTuningRecord.directoryFromEnvironment) -> GEMMTuningRecord? {
        guard let directory else { return nil }
        let name = "\(device)-\(library)".map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
        return GEMMTuningRecord(path: "\(directory)/\(String(name)).tsv")
    }

    /// `TANDEM_GEMM_CACHE`, or `~/.cache/tandem/gemm`; nil for `none` (or no home).
    public static var directoryFromEnvironment: String? {
        if let dir = getenv("TANDEM_GEMM_CACHE").map({ String(cString: $0) }) { return dir == "none" || dir.isEmpty ? nil : dir }
        guard let home = getenv("HOME").map({ String(cString: $0) }) else { return nil }
        return home + "/.cache/tandem/gemm"
    }

    /// The choice kept for `kind`, if any.
    public func choice(_ kind: String) -> Int? { lines[kind]?.choice }

    /// Every kind kept, sorted.
    public var kinds: [String] { lines.keys.sorted() }

    /// Keeps `choice` for `kind` and writes the file; a folder or file that cannot be written leaves the record
    /// in memory only (returns false).
    @discardableResult
    public func keep(_ kind: String, choice: Int, note: String) -> Bool {
        precondition(!kind.contains("\t") && !kind.contains(where: \.isNewline) && choice >= -1, "GEMMTuningRecord: a kind is one line without tabs")
        lines[kind] = (choice, note.filter { $0 != "\t" && !$0.isNewline })
        // What another process wrote since this one read the file, unless this one has its own choice for it.
        for (other, entry) in GEMMTuningRecord(path: path).lines where lines[other] == nil { lines[other] = entry }
        var text = "# tandem GEMM algorithms chosen by timing: kind, choice (index in the list timed: the heuristic's results, then their other configurations; -1: the other way), note\n"
        for kind in kinds { text += "\(kind)\t\(lines[kind]!.choice)\t\(lines[kind]!.note)\n" }
        guard CacheFile.write(Array(text.utf8), to: path) else { return false }
        skipped = []
        return true
    }
}
