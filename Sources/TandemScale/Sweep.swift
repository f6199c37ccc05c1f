import TandemCore
import TandemCollectives
import TandemModels
import TandemParallel

// MARK: - Running a scaling sweep

/// A sweep over worker counts for one or more workloads, each configuration repeated.
///
/// Weak scaling keeps the batch per worker (the CPU batch of WORKLOADS.md unless given);
/// strong scaling keeps the global batch (per-worker batch × the largest worker count)
/// and splits it over the workers.
public struct Sweep: Sendable {
    public var models: [ReferenceModel]
    public var workers: [Int]
    public var mode: ScalingMode
    public var steps: Int?
    public var warmup: Int
    public var repeats: Int
    public var batch: Int?
    /// Runs one configuration elsewhere (say, as an MPI job of `workers` processes) instead
    /// of on threads of this process: (benchmark, workers, record events) → its measurement.
    public var runner: (@Sendable (Benchmark, Int, Bool) throws -> Benchmark.Measurement)?
    /// The batch per worker of a workload when `batch` is not given (the CPU batch of
    /// WORKLOADS.md; a GPU sweep passes the GPU batch).
    public var defaultBatch: @Sendable (ReferenceModel) -> Int = { $0.cpuBatch }
    /// Replicas in each workload's contention probe (``probe(_:workers:)``), nil for none.
    /// The probe runs once per repeat, right after that repeat's configurations, so whatever
    /// else the host does at the time weighs on the probe and the runs it explains alike.
    public var probeReplicas: Int?

    public init(models: [ReferenceModel], workers: [Int], mode: ScalingMode, steps: Int? = nil, warmup: Int = 1, repeats: Int = 3, batch: Int? = nil) {
        self.models = models
        self.workers = workers
        self.mode = mode
        self.steps = steps
        self.warmup = warmup
        self.repeats = repeats
        self.batch = batch
    }

    /// Timed steps per run when not given: enough to see a median, few enough that
    /// `--model all --workers 1,2` stays within three minutes on two cores. (mlp's 13 ms
    /// steps need more of them: at 20, one slow step moves a 2-worker run by 10%.)
    public static func defaultSteps(_ model: ReferenceModel) -> Int {
        switch model {
        case .mlp: 50
        case .mlpWide: 10
        case .cnn: 10
        case .lstm: 5
        case .gpt: 2
        }
    }

    /// The batch per worker of `model` at `n` workers.
    public func batchPerWorker(_ model: ReferenceModel, workers n: Int) throws(SweepError) -> Int {
        let base = batch ?? defaultBatch(model)
        guard mode == .strong else { return base }
        let global = base * (workers.max() ?? 1)
        guard global % n == 0 else {
            throw SweepError("strong scaling splits a global batch of \(global) over \(n) workers unevenly; choose worker counts that divide it")
        }
        return global / n
    }

    /// One configuration and what it measured, every repeat.
    public struct Configuration: Sendable {
        public var model: ReferenceModel
        public var workers: Int
        public var batchPerWorker: Int
        public var runs: [Benchmark.Measurement]
    }

    /// What a sweep measured: every configuration, and every run of the contention probe.
    public struct Outcome: Sendable {
        public var configurations: [Configuration]
        public var probes: [Benchmark.Measurement]
    }

    /// Runs every configuration: model by model, each repeat going once through the worker
    /// counts (and the probe, with ``probeReplicas``), so the repeats of one configuration
    /// are spread over the model's time rather than bunched; calls
    /// `progress(done, total, label, secondsLeft)` before each run.
    public func run(clock: any TimeSource = MonotonicClock(),
                    progress: (Int, Int, String, Double?) -> Void = { _, _, _, _ in }) throws -> Outcome {
        let replicas = probeReplicas.flatMap { $0 > 1 ? $0 : nil }
        let total = models.count * (workers.count + (replicas == nil ? 0 : 1)) * repeats
        var done = 0
        let start = clock.now()
        func show(_ label: String) {
            let elapsed = clock.now() - start
            progress(done, total, label, done > 0 ? elapsed / Double(done) * Double(total - done) : nil)
        }
        var outcome = Outcome(configurations: [], probes: [])
        for model in models {
            var configurations = try workers.map { n in
                Configuration(model: model, workers: n, batchPerWorker: try batchPerWorker(model, workers: n), runs: [])
            }
            for r in 0..<repeats {
                for i in configurations.indices {
                    let (n, b) = (configurations[i].workers, configurations[i].batchPerWorker)
                    show("\(model.rawValue) × \(n) worker\(n == 1 ? "" : "s"), repeat \(r + 1)/\(repeats)")
                    let benchmark = Benchmark(workload: model, batch: b, steps: steps ?? Self.defaultSteps(model), warmup: warmup)
                    configurations[i].runs.append(try runner?(benchmark, n, r == 0) ?? benchmark.measure(workers: n, recordEvents: r == 0))
                    done += 1
                }
                if let replicas {
                    show("\(model.rawValue): contention probe, \(replicas) replicas in lock-step, repeat \(r + 1)/\(repeats)")
                    outcome.probes.append(try probe(model, workers: replicas))
                    done += 1
                }
            }
            outcome.configurations += configurations
        }
        progress(done, total, "done", 0)
        return outcome
    }
}

extension Sweep {
    /// The host's contention probe for `model`: `workers` independent replicas training at
    /// once in lock-step with no communication (see ``HostContention``), each with the one-worker
    /// configuration's batch. Its step over the one-worker run's is the slowdown the α-β
    /// model cannot see.
    public func probe(_ model: ReferenceModel, workers: Int) throws -> Benchmark.Measurement {
        let benchmark = Benchmark(workload: model, batch: try batchPerWorker(model, workers: 1), steps: steps ?? Self.defaultSteps(model),
                                  warmup: warmup)
        return try benchmark.measure(workers: workers, independent: true)
    }
}

/// Why a sweep cannot run as asked.
public struct SweepError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
