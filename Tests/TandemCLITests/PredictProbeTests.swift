import Foundation
import Testing

// MARK: - tandem predict --probes

@Suite("tandem predict with a contention probe")
struct PredictProbeTests {
    static let alone = #"{"model": "mlp", "params": 1000, "workers": 1, "batch_per_worker": 64, "samples_per_s": 1000, "backend": "none", "step_ms": {"mean": 64, "median": 64, "p10": 64, "p90": 64}, "breakdown_ms": {"data": 0, "forward": 20, "backward": 40, "comm_exposed": 0, "optimizer": 4}}"#
    static let probe = #"{"model": "mlp", "params": 1000, "workers": 2, "batch_per_worker": 64, "samples_per_s": 1700, "backend": "independent", "step_ms": {"mean": 75, "median": 75, "p10": 75, "p90": 75}, "per_rank_step_ms": [75, 77], "breakdown_ms": {"data": 0, "forward": 23, "backward": 47, "comm_exposed": 0, "optimizer": 6}}"#

    func files(results: String, probes: String) throws -> (URL, URL, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-predict-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let r = dir.appendingPathComponent("results.jsonl"), p = dir.appendingPathComponent("probes.jsonl")
        try (results + "\n").write(to: r, atomically: true, encoding: .utf8)
        try (probes + "\n").write(to: p, atomically: true, encoding: .utf8)
        return (dir, r, p)
    }

    @Test("the probe's slowdowns are applied and said")
    func applied() throws {
        let (dir, results, probes) = try files(results: Self.alone, probes: Self.probe)
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = try CLI.run(["predict", "--from", results.path, "--max", "2"])
        let probed = try CLI.run(["predict", "--from", results.path, "--probes", probes.path, "--max", "2"])
        #expect(plain.status == 0 && probed.status == 0, "\(plain)\n\(probed)")
        // Compute 60 → 70 ms per 64 samples (×1.17), optimizer 4 → 6 ms (×1.50).
        #expect(probed.stdout.contains("host contention from 2 lock-step replicas: compute ×1.17, optimizer ×1.50"), "\(probed)")
        // Two workers: the probed step is longer than the plain one.
        func stepAt2(_ out: String) -> Double? {
            out.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("2 ") }
                .flatMap { Double($0.split(separator: " ")[1]) }
        }
        let a = try #require(stepAt2(plain.stdout)), b = try #require(stepAt2(probed.stdout))
        #expect(b > a + 9, "plain \(a) ms, probed \(b) ms")
    }

    @Test("--overlap 0 charges the whole all-reduce; a share outside [0, 1] is refused")
    func overlap() throws {
        // 10 M parameters: 40 MB of gradient in two 25 MiB buckets.
        let big = Self.alone.replacingOccurrences(of: #""params": 1000"#, with: #""params": 10000000"#)
        let (dir, results, _) = try files(results: big, probes: Self.probe)
        defer { try? FileManager.default.removeItem(at: dir) }
        func row(_ out: String) -> [Double]? {
            out.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("2 ") }
                .map { $0.split(separator: " ").compactMap { Double($0) } }
        }
        let hidden = try CLI.run(["predict", "--from", results.path, "--max", "2"])
        let full = try CLI.run(["predict", "--from", results.path, "--max", "2", "--overlap", "0"])
        #expect(hidden.status == 0 && full.status == 0, "\(hidden)\n\(full)")
        // Columns: workers, step, comm, exposed, samples/s, efficiency.
        let a = try #require(row(hidden.stdout)), b = try #require(row(full.stdout))
        #expect(a[3] < a[2], "with overlap the first bucket hides: \(a)")
        #expect(abs(b[3] - b[2]) < 0.01, "without, exposed = all of it: \(b)")
        for bad in ["1.5", "-0.1", "nan"] {
            let r = try CLI.run(["predict", "--from", results.path, "--overlap", bad])
            #expect(r.status != 0 && r.exitedNormally && r.stderr.contains("--overlap"), "\(bad): \(r)")
        }
    }

    @Test("a probes file without the model's probe is a clear error")
    func missingProbe() throws {
        let (dir, results, _) = try files(results: Self.alone, probes: Self.probe)
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["predict", "--from", results.path, "--probes", results.path])
        #expect(r.status != 0 && r.exitedNormally, "\(r)")
        #expect(r.stderr.contains("no contention probe (backend independent) of mlp"), "\(r)")
    }
}
