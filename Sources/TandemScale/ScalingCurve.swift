import TandemParallel

// MARK: - Scaling mode

/// How the work grows with the number of workers (WORKLOADS.md, "Metrics").
public enum ScalingMode: String, Sendable, CaseIterable, Codable {
    /// Batch per worker fixed, so the global batch grows with N:
    /// S(N) = throughput(N) / throughput(1) (Gustafson's view).
    case weak
    /// Global batch fixed and split over N: S(N) = step time(1) / step time(N)
    /// (Amdahl's view).
    case strong
}

// MARK: - One worker count

/// One worker count of a sweep: the spread of its repeats and what scaling they show.
public struct ScalingPoint: Sendable, Equatable {
    /// N.
    public var workers: Int
    /// Samples per second over all workers, one value per repeat.
    public var throughput: Spread
    /// Step time in milliseconds, one value (the run's median step) per repeat.
    public var stepMilliseconds: Spread
    /// S(N): weak scaling throughput(N)/throughput(1); strong scaling step(1)/step(N),
    /// both from the medians over repeats.
    public var speedup: Double
    /// E(N) = S(N) / N.
    public var efficiency: Double
    /// Karp–Flatt experimentally determined serial fraction
    /// e(N) = (1/S − 1/N) / (1 − 1/N), nil at N = 1 (A. H. Karp and H. P. Flatt,
    /// "Measuring parallel processor performance", *Commun. ACM* 33(5), 1990).
    /// A fraction that grows with N points at overhead (communication, imbalance)
    /// rather than at an inherently serial part.
    public var karpFlatt: Double?

    /// How many runs were measured at this worker count.
    public var repeats: Int { throughput.count }
}

// MARK: - Errors

/// A set of results that does not make one scaling curve. Thrown, because results come
/// from files.
public struct ScalingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - The curve

/// Speedup, efficiency and serial fraction per worker count, from the results of a
/// sweep (several repeats per worker count allowed, in any order).
///
/// ```swift
/// let runs = try ResultsFile.read(path: "sweep.jsonl")
/// let curve = try ScalingCurve(results: runs, mode: .weak)
/// for point in curve.points { print(point.workers, point.speedup, point.efficiency) }
/// let amdahl = curve.amdahlFit()   // parallel fraction p and residuals
/// ```
///
/// The baseline is the smallest worker count measured. When it is 1, S(N) follows
/// WORKLOADS.md exactly. When it is N₀ > 1 (a sweep that starts on one 8-GPU node),
/// speedups are relative and scaled so that S(N₀) = N₀, that is the baseline is taken
/// as perfectly efficient; E and Karp–Flatt then measure the loss beyond N₀.
public struct ScalingCurve: Sendable {
    public var mode: ScalingMode
    public var model: String
    /// The smallest worker count measured; S and E are relative to it.
    public var baselineWorkers: Int
    /// One point per worker count, in increasing N.
    public var points: [ScalingPoint]

    /// Groups `results` by worker count and computes each point.
    ///
    /// Throws when `results` is empty, mixes models, or does not hold the batch the mode
    /// keeps fixed (weak: one `batch_per_worker`; strong: one `global_batch`), or has a
    /// throughput or step time that is not a positive number.
    public init(results: [RunResult], mode: ScalingMode) throws(ScalingError) {
        guard let first = results.first else { throw ScalingError("no results to make a scaling curve from") }
        let models = Set(results.map(\.model))
        guard models.count == 1 else {
            throw ScalingError("results mix models \(models.sorted().joined(separator: ", ")); expected one model per curve")
        }
        switch mode {
        case .weak:
            let batches = Set(results.map(\.batch_per_worker))
            guard batches.count == 1 else {
                throw ScalingError("weak scaling keeps batch_per_worker fixed, but results hold \(batches.sorted().map(String.init).joined(separator: ", "))")
            }
        case .strong:
            let batches = Set(results.map(\.global_batch))
            guard batches.count == 1 else {
                throw ScalingError("strong scaling keeps global_batch fixed, but results hold \(batches.sorted().map(String.init).joined(separator: ", "))")
            }
        }
        for r in results {
            guard r.workers >= 1 else { throw ScalingError("\(r.model): workers must be at least 1, got \(r.workers)") }
            guard r.samples_per_s.isFinite, r.samples_per_s > 0 else {
                throw ScalingError("\(r.model) at \(r.workers) workers: samples_per_s must be a positive number, got \(r.samples_per_s)")
            }
            guard r.step_ms.median.isFinite, r.step_ms.median > 0 else {
                throw ScalingError("\(r.model) at \(r.workers) workers: step_ms.median must be a positive number, got \(r.step_ms.median)")
            }
        }
        let byWorkers = Dictionary(grouping: results, by: \.workers)
        let counts = byWorkers.keys.sorted()
        let spreads = counts.map { n in
            (n, Spread(byWorkers[n]!.map(\.samples_per_s))!, Spread(byWorkers[n]!.map(\.step_ms.median))!)
        }
        let base = spreads[0]
        self.mode = mode
        self.model = first.model
        self.baselineWorkers = base.0
        self.points = spreads.map { n, throughput, step in
            let ratio = mode == .weak ? throughput.median / base.1.median : base.2.median / step.median
            let speedup = Double(base.0) * ratio
            return ScalingPoint(workers: n, throughput: throughput, stepMilliseconds: step, speedup: speedup,
                                efficiency: speedup / Double(n), karpFlatt: ScalingCurve.karpFlatt(speedup: speedup, workers: n))
        }
    }

    /// One curve per (engine, model, precision, device, fixed batch) found in `results`,
    /// sorted by engine, then model, then batch.
    public static func curves(from results: [RunResult], mode: ScalingMode) throws(ScalingError) -> [ScalingCurve] {
        struct Key: Hashable { var engine, model, precision, device: String; var batch: Int }
        let groups = Dictionary(grouping: results) {
            Key(engine: $0.engine, model: $0.model, precision: $0.precision, device: $0.device,
                batch: mode == .weak ? $0.batch_per_worker : $0.global_batch)
        }
        let keys = groups.keys.sorted {
            ($0.engine, $0.model, $0.precision, $0.device, $0.batch) < ($1.engine, $1.model, $1.precision, $1.device, $1.batch)
        }
        var curves: [ScalingCurve] = []
        for key in keys { curves.append(try ScalingCurve(results: groups[key]!, mode: mode)) }
        return curves
    }

    /// e(N) = (1/S − 1/N) / (1 − 1/N); nil for N ≤ 1 where it is undefined.
    public static func karpFlatt(speedup s: Double, workers n: Int) -> Double? {
        guard n > 1 else { return nil }
        let inverse = 1 / Double(n)
        return (1 / s - inverse) / (1 - inverse)
    }

    /// The point measured at `workers`, if any.
    public func point(workers: Int) -> ScalingPoint? { points.first { $0.workers == workers } }

    /// (N, S(N)) pairs, the input of the fits.
    public var speedups: [SpeedupSample] { points.map { SpeedupSample(workers: $0.workers, speedup: $0.speedup) } }

    /// Amdahl's law fitted to this curve's speedups (see ``AmdahlFit``).
    public func amdahlFit(objective: AmdahlFit.Objective = .speedup) -> AmdahlFit {
        AmdahlFit(samples: speedups, objective: objective)
    }

    /// Gustafson's law fitted to this curve's speedups (see ``GustafsonFit``).
    public func gustafsonFit() -> GustafsonFit { GustafsonFit(samples: speedups) }

    /// The knee of the measured curve (see ``ScalingKnee``).
    public func knee(efficiencyThreshold: Double = 0.9, minimumGainPerDoubling: Double = 0.1) -> ScalingKnee? {
        ScalingKnee(points: points.map { .init(workers: $0.workers, throughput: $0.throughput.median, efficiency: $0.efficiency) },
                    efficiencyThreshold: efficiencyThreshold, minimumGainPerDoubling: minimumGainPerDoubling)
    }
}
