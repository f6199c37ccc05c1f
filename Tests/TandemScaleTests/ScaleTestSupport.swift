import Foundation
import TandemParallel
import TandemScale
import Testing

// MARK: - Closeness

/// Requires `actual` to be within `tolerance` of `expected` (absolute, or relative when
/// `relative` is set), naming `what` and the caller's line on failure.
func expectScaleClose(_ actual: Double, _ expected: Double, tolerance: Double = 1e-12, relative: Bool = false,
                      _ what: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    let scale = relative ? max(abs(expected), .leastNormalMagnitude) : 1
    let error = abs(actual - expected) / scale
    #expect(error <= tolerance, "\(what()): \(actual) is not within \(tolerance)\(relative ? " (relative)" : "") of \(expected)",
            sourceLocation: sourceLocation)
}

/// The same for two arrays: counts first, then each value.
func expectScaleClose(_ actual: [Double], _ expected: [Double], tolerance: Double = 1e-12, relative: Bool = false,
                      _ what: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(what()): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return }
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        expectScaleClose(a, e, tolerance: tolerance, relative: relative, "\(what())[\(i)]", sourceLocation: sourceLocation)
    }
}

// MARK: - Seeded noise

/// SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) with Box–Muller normals: reproducible
/// noise for the fitting tests.
struct ScaleRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
    /// Standard normal.
    mutating func normal() -> Double {
        (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform())
    }
}

// MARK: - Results

enum ScaleFixture {
    /// A result decoded from the JSON of WORKLOADS.md's schema, with `extra` fields
    /// (raw JSON text after a comma) added.
    static func run(model: String = "mlp", workers: Int, batch: Int = 64, global: Int? = nil, samplesPerSecond: Double,
                    stepMs: Double, extra: String = "", sourceLocation: SourceLocation = #_sourceLocation) -> RunResult {
        let line = """
            {"engine": "tandem", "engine_version": "0.1.0", "model": "\(model)", "params": 1000, "backend": "threads", \
            "device": "cpu", "device_name": "test", "workers": \(workers), "batch_per_worker": \(batch), \
            "global_batch": \(global ?? batch * workers), "precision": "fp32", "steps": 10, "warmup": 1, "seconds": 1.0, \
            "samples_per_s": \(samplesPerSecond), \
            "step_ms": {"mean": \(stepMs), "median": \(stepMs), "p10": \(stepMs), "p90": \(stepMs)}, "loss": 2.0\(extra)}
            """
        do {
            return try ResultRecord(json: line).result
        } catch {
            Issue.record("fixture did not decode: \(error)", sourceLocation: sourceLocation)
            preconditionFailure("fixture")
        }
    }

    /// The example line of WORKLOADS.md.
    static let workloadsExample = """
        {"engine": "tandem", "engine_version": "0.1.0", "model": "mlp", "params": 1863690, \
        "backend": "threads", "device": "cpu", "device_name": "AMD EPYC", "workers": 2, \
        "batch_per_worker": 64, "global_batch": 128, "precision": "fp32", \
        "steps": 50, "warmup": 5, "seconds": 1.02, "samples_per_s": 6274.5, \
        "step_ms": {"mean": 20.4, "median": 20.1, "p10": 19.8, "p90": 21.3}, \
        "breakdown_ms": {"data": 0.1, "forward": 6.0, "backward": 12.1, "comm_exposed": 0.9, "optimizer": 1.2}, \
        "comm": {"bytes_per_step": 7454760, "algbw_gbps": 9.1, "busbw_gbps": 9.1, "overlap": 0.82}, \
        "memory": {"peak_bytes": 52000000, "params": 7454760, "grads": 7454760, "optimizer": 7454760, "activations": 1200000}, \
        "per_rank_step_ms": [20.0, 20.2], "loss": 2.03}
        """

    /// What `torch_bench.py` prints on a CPU (every field it measures, plus `mode`).
    static let torchCPU = """
        {"engine": "pytorch", "engine_version": "2.15.0", "model": "mlp", "params": 1863690, "backend": "gloo", \
        "device": "cpu", "device_name": "cpu", "workers": 2, "batch_per_worker": 64, "global_batch": 128, \
        "precision": "fp32", "mode": "eager", "steps": 50, "warmup": 5, "seconds": 1.0027, "samples_per_s": 6383.0, \
        "step_ms": {"mean": 20.05, "median": 19.9, "p10": 19.5, "p90": 20.8}, "loss": 2.2994}
        """

    /// What `torch_bench.py --device cuda` prints: only a mean step, memory only in part.
    static let torchCUDA = """
        {"engine": "pytorch", "engine_version": "2.11.0", "model": "gpt", "params": 27443200, "backend": "none", \
        "device": "cuda", "device_name": "NVIDIA H200", "workers": 1, "batch_per_worker": 16, "global_batch": 16, \
        "precision": "bf16", "mode": "graph", "steps": 50, "warmup": 5, "seconds": 0.222, "samples_per_s": 3603.6, \
        "step_ms": {"mean": 4.44}, "loss": 9.01, "memory": {"peak_bytes": 3000000000}}
        """
}
