#if canImport(Glibc)
import Glibc
#endif
import TandemCore

extension GPUSelfTest {
    // MARK: - cuBLASLt bias epilogues

    /// cuBLASLt's fused bias work as the GPT step uses it, against the CPU: a projection with its bias added
    /// (C and the bias in the activation type; fp32 for fp32 and tf32) and a weight gradient `dyᵀ · x` with its bias gradient `Σ dy` (both fp32), on
    /// small odd shapes and the step's own. C and the bias gradient start as NaN: both must be written, not added to.
    /// Large shapes are checked on a sample of C's rows (the bias gradient in full).
    func cublasLtChecks(_ p: GPUPrecision) throws {
        guard let lt = gpu.blasLt else {
            // The table prints notes of failures only: the name says what the step does instead.
            record("cuBLASLt unavailable: cuBLAS + separate bias launches", p.rawValue, 0, 0, note: gpu.blasLtUnavailable ?? "unknown")
            return
        }
        let version = (try? CuBLASLt.library().version).map { "cuBLASLt \($0)" } ?? "cuBLASLt"
        if p == .fp32 { record("\(version) loaded: bias epilogues in the GEMMs", "-", 0, 0) }
        let ws = gpu.currentWorkspace
        let t = p.dataType
        // Forward: C[m, n] = x[m, k] · W[n, k]ᵀ + b[n] (the qkv projection at m = B·T 4096, n = 3C 1536, k = C 512).
        for (m, n, k, sampled) in [(37, 130, 67, 37), (4096, 1536, 512, 16)] {
            // The bias as the step passes it: its copy in the activation type in 16-bit precisions, else fp32.
            let biasType: GPUPrecision = p.usesShadow ? p : .fp32
            let x = rounded(random(m * k), p), w = rounded(random(n * k), p), bias = rounded(random(n), biasType)
            let dx = try device(x, p), dw = try device(w, p), db = try device(bias, biasType)
            let dc = try nanFilled(bytes: p.bytes * m * n)
            let label = "cuBLASLt gemm + bias NT \(m)×\(n)×\(k)"
            let ran = try lt.matmul(transA: false, transB: true, m: m, n: n, k: k, a: dx, lda: k, b: dw, ldb: k, c: dc, ldc: n,
                                    types: (t, t, t), compute: p.compute, epilogue: .bias(db, type: biasType.dataType),
                                    stream: gpu.currentStream, workspace: ws.pointer, workspaceBytes: ws.bytes)
            if ran {
                let out = try host(dc, m * n, p)
                let rows = Self.sampleRows(m, sampled)
                var got: [Float] = [], ref: [Double] = []
                for i in rows {
                    for j in 0..<n {
                        var s = Double(bias[j])
                        for l in 0..<k { s += Double(x[i * k + l]) * Double(w[j * k + l]) }
                        ref.append(s)
                        got.append(out[i * n + j])
                    }
                }
                record(label, p.rawValue, Self.relativeError(got, ref), tolerance(p), note: "\(version); \(rows.count) of \(m) rows")
            } else {
                record(label + ": refused, cuBLAS + bias_act", p.rawValue, 0, 0, note: lt.refusals.values.joined(separator: "; "))
            }
            for ptr in [dx, dw, db, dc] { gpu.free(ptr) }
        }
        // Backward: dW[m, n] = dy[k, m]ᵀ · x[k, n] in fp32 with db[m] = Σₗ dy[l, m] (mlp.2 at out C 512, in 4C 2048, k = B·T 4096;
        // in_proj at out 3C 1536, in C 512).
        let fp32Tolerance = p == .tf32 ? 3e-3 : 2e-5
        for (m, n, k, sampled) in [(66, 35, 259, 66), (512, 2048, 4096, 4), (1536, 512, 4096, 4)] {
            let dy = rounded(random(k * m), p), x = rounded(random(k * n), p)
            let ddy = try device(dy, p), dx = try device(x, p)
            let dc = try nanFilled(bytes: 4 * m * n), dbias = try nanFilled(bytes: 4 * m)
            let label = "cuBLASLt gemm + bias gradient TN \(m)×\(n)×\(k)"
            let ran = try lt.matmul(transA: true, transB: false, m: m, n: n, k: k, a: ddy, lda: m, b: dx, ldb: n, c: dc, ldc: n,
                                    types: (t, t, .f32), compute: p.compute, epilogue: .biasGradient(dbias),
                                    stream: gpu.currentStream, workspace: ws.pointer, workspaceBytes: ws.bytes)
            if ran {
                let out = try gpu.downloadFloats(dc, count: m * n), sums = try gpu.downloadFloats(dbias, count: m)
                let rows = Self.sampleRows(m, sampled)
                var got: [Float] = [], ref: [Double] = []
                for i in rows {
                    var s = [Double](repeating: 0, count: n)
                    for l in 0..<k {
                        let a = Double(dy[l * m + i])
                        for j in 0..<n { s[j] += a * Double(x[l * n + j]) }
                    }
                    ref += s
                    got += out[(i * n)..<(i * n + n)]
                }
                var sumRef = [Double](repeating: 0, count: m)
                for l in 0..<k { for i in 0..<m { sumRef[i] += Double(dy[l * m + i]) } }
                record(label + ": weight gradient", p.rawValue, Self.relativeError(got, ref), fp32Tolerance,
                       note: "\(version); \(rows.count) of \(m) rows")
                record(label + ": bias gradient", p.rawValue, Self.relativeError(sums, sumRef), fp32Tolerance, note: version)
            } else {
                record(label + ": refused, cuBLAS + dyᵀ·1 GEMM", p.rawValue, 0, 0, note: lt.refusals.values.joined(separator: "; "))
            }
            for ptr in [ddy, dx, dc, dbias] { gpu.free(ptr) }
        }
    }

    // MARK: - GEMM algorithms chosen by timing

    /// ``GEMMTuner`` on the step's kinds of GEMM: the algorithm chosen by timing computes what cuBLAS computes on the
    /// same operands (within the precision's tolerance), and a fresh cuBLASLt handle reading the record the timing
    /// wrote takes the same algorithm without timing again.
    func tunedGEMMChecks(_ p: GPUPrecision) throws {
        guard gpu.blasLt != nil else { return }
        let ws = gpu.currentWorkspace, t = p.dataType
        let path = "/tmp/tandem-selftest-gemm-\(getpid()).tsv"
        defer { unlink(path) }
        // Forward NT at K = 512 (gpt), weight gradient TN with K = B·T (gpt), forward NT at M = 256 (mlp-wide), odd.
        for (transA, m, n, k) in [(false, 4096, 2048, 512), (true, 512, 512, 4096), (false, 256, 4096, 1024), (false, 37, 130, 67)] {
            let a = rounded(random(m * k), p), b = rounded(random(n * k), p)
            let da = try device(a, p), db = try device(b, p)
            let reference = try nanFilled(bytes: p.bytes * m * n), tuned = try nanFilled(bytes: p.bytes * m * n)
            defer { for ptr in [da, db, reference, tuned] { gpu.free(ptr) } }
            let lda = transA ? m : k
            let label = "tuned GEMM \(transA ? "T" : "N")T \(m)×\(n)×\(k)"
            try gpu.blas.gemm(transA: transA, transB: true, m: m, n: n, k: k, a: da, lda: lda, b: db, ldb: k, c: reference, ldc: n,
                              types: (t, t, t), compute: p.compute)
            func tuner(_ record: GEMMTuningRecord, timing: Bool) -> GEMMTuner {
                GEMMTuner(time: { [gpu] body in
                    if !timing { throw CUDAError.unsupported("timed again although the record holds the choice") }
                    return try gpu.time(on: gpu.currentStream, body)
                }, alternative: nil, record: record)
            }
            func plan(_ lt: CuBLASLt, _ tuner: GEMMTuner) throws -> CuBLASLt.Plan? {
                try lt.plan(transA: transA, transB: true, m: m, n: n, k: k, a: da, lda: lda, b: db, ldb: k, c: tuned, ldc: n,
                            types: (t, t, t), compute: p.compute, epilogue: .none, workspaceBytes: ws.bytes,
                            tuner: tuner, stream: gpu.currentStream, workspace: ws.pointer)
            }
            // A handle of its own, so that no plan made earlier in the process stands in for the timing.
            let own = try CuBLASLt()
            guard let chosen = try plan(own, tuner(GEMMTuningRecord(path: path), timing: true)), let how = own.tuned.last else {
                record(label + ": refused", p.rawValue, 0, 0, note: own.refusals.values.joined(separator: "; "))
                continue
            }
            try own.run(chosen, a: da, b: db, c: tuned, bias: 0, stream: gpu.currentStream, workspace: ws.pointer, workspaceBytes: ws.bytes)
            let got = try host(tuned, m * n, p), want = try host(reference, m * n, p)
            func ms(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "-" }
            record(label + " against cuBLAS", p.rawValue, Self.relativeError(got, want), tolerance(p),
                   note: "algorithm \(how.choice) of \(how.candidates): first \(ms(how.firstMs)) ms, chosen \(ms(how.chosenMs)) ms")
            // A fresh handle reads the record: the same choice, no timing.
            let again = try CuBLASLt()
            var same = 1.0
            do {
                if try plan(again, tuner(GEMMTuningRecord(path: path), timing: false)) != nil, again.tuned.last?.choice == how.choice,
                   again.tuned.last?.firstMs == nil { same = 0 }
            } catch { same = 1 }
            record(label + ": the record gives the same algorithm", "-", same, 0.5)
        }
    }

    /// A device buffer of `bytes` (rounded up to whole words) full of NaN in fp32, bf16 and fp16 alike.
    func nanFilled(bytes: Int) throws -> DevicePointer {
        let words = (bytes + 3) / 4
        let p = try gpu.allocate(bytes: 4 * words, category: .workspace)
        // 0x7FC0 is a quiet NaN as bf16 and as fp16; 0x7FC07FC0 is one as fp32 too.
        try gpu.fill(p, words: words, pattern: 0x7FC0_7FC0)
        return p
    }

    /// About `count` rows of `m`, evenly spread, the last included.
    static func sampleRows(_ m: Int, _ count: Int) -> [Int] {
        guard count < m else { return Array(0..<m) }
        var rows = Array(stride(from: 0, to: m, by: max(1, m / count)))
        if rows.last != m - 1 { rows.append(m - 1) }
        return rows
    }
}
