#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore

// MARK: - Clock

/// Seconds on a monotonic clock; injected where timing matters so tests need not sleep.
public protocol TimeSource: Sendable {
    func now() -> Double
}

public struct MonotonicClock: TimeSource {
    public init() {}
    public func now() -> Double { monotonicSeconds() }
}

// MARK: - Result schema

/// One configuration's result, in the schema of WORKLOADS.md (absent fields are nil).
public struct RunResult: Codable, Sendable {
    public struct Quantiles: Codable, Sendable { public var mean, median, p10, p90: Double }
    public struct Breakdown: Codable, Sendable {
        public var data, forward, backward, comm_exposed, optimizer: Double
        public init(data: Double, forward: Double, backward: Double, comm_exposed: Double, optimizer: Double) {
            self.data = data; self.forward = forward; self.backward = backward; self.comm_exposed = comm_exposed; self.optimizer = optimizer
        }
    }
    public struct Communication: Codable, Sendable { public var bytes_per_step: Int; public var algbw_gbps, busbw_gbps, overlap: Double }
    public struct MemoryUse: Codable, Sendable {
        public var peak_bytes, params, grads, optimizer, activations: Int
        public init(peak_bytes: Int, params: Int, grads: Int, optimizer: Int, activations: Int) {
            self.peak_bytes = peak_bytes; self.params = params; self.grads = grads; self.optimizer = optimizer; self.activations = activations
        }
    }

    public var engine = "tandem"
    public var engine_version = Tandem.version
    public var model: String
    public var params: Int
    public var backend: String
    public var device = "cpu"
    public var device_name: String
    public var workers: Int
    public var batch_per_worker: Int
    public var global_batch: Int
    public var precision = "fp32"
    public var steps: Int
    public var warmup: Int
    public var seconds: Double
    public var samples_per_s: Double
    public var step_ms: Quantiles
    public var breakdown_ms: Breakdown?
    public var comm: Communication?
    public var memory: MemoryUse?
    public var per_rank_step_ms: [Double]?
    /// Every timed step of every rank (ms), for distributions and jitter.
    public var per_rank_steps_ms: [[Double]]?
    /// Each rank's mean compute (forward + backward) per step (ms), for load imbalance.
    public var per_rank_compute_ms: [Double]?
    public var loss: Double
    public var flops_per_step: Double?
    /// What the always-on spans and collective records cost, as a fraction of the median step.
    public var instrumentation_overhead: Double?
    /// How well the ranks' clocks are aligned for the trace: the largest uncertainty (µs).
    public var clock_uncertainty_us: Double?
    public var eval_loss: Double?
    public var accuracy: Double?
    /// Whether each rank updated only its shard of the weights (``ShardedOptimizer``).
    public var optimizer_sharded: Bool?

    public init(model: String, params: Int, backend: String, device_name: String, workers: Int, batch_per_worker: Int,
                global_batch: Int, steps: Int, warmup: Int, seconds: Double, samples_per_s: Double, step_ms: Quantiles,
                breakdown_ms: Breakdown? = nil, memory: MemoryUse? = nil, loss: Double, flops_per_step: Double? = nil) {
        self.model = model; self.params = params; self.backend = backend; self.device_name = device_name
        self.workers = workers; self.batch_per_worker = batch_per_worker; self.global_batch = global_batch
        self.steps = steps; self.warmup = warmup; self.seconds = seconds; self.samples_per_s = samples_per_s
        self.step_ms = step_ms; self.breakdown_ms = breakdown_ms; self.memory = memory; self.loss = loss
        self.flops_per_step = flops_per_step
    }
}

public enum Tandem {
    public static let version = "0.1.0"
}

extension RunResult.Quantiles {
    /// Mean, median and the 10th/90th percentiles (nearest rank) of `values`.
    public init(_ values: [Double]) {
        let sorted = values.sorted()
        let n = sorted.count
        func at(_ q: Double) -> Double { n == 0 ? 0 : sorted[min(n - 1, Int(q * Double(n)))] }
        self.init(mean: n == 0 ? 0 : sorted.reduce(0, +) / Double(n), median: at(0.5), p10: at(0.1), p90: at(0.9))
    }
}

/// The CPU's model name from /proc/cpuinfo, or "cpu".
public func cpuName() -> String {
    guard let file = fopen("/proc/cpuinfo", "r") else { return "cpu" }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 1024)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("model name"), let colon = text.firstIndex(of: ":") {
            return String(text[text.index(after: colon)...]).filter { $0 != "\n" }.trimmingSpaces()
        }
    }
    return "cpu"
}

extension String {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
