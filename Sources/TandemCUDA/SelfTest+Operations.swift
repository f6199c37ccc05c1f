import TandemCore
import TandemNN
import TandemOptim

extension GPUSelfTest {
    func tolerance(_ p: GPUPrecision) -> Double {
        switch p {
        case .fp32: 2e-5
        case .tf32: 3e-3
        case .bf16: 1e-2
        case .fp16: 2e-3
        }
    }

    func erf(_ x: Double) -> Double { libmErf(x) }

    /// Ticket counters not back at zero (the kernels that finish their own reductions leave them at zero).
    func ticketsLeft(_ tickets: DevicePointer, count: Int) throws -> Double {
        Double(try gpu.downloadFloats(tickets, count: count).filter { $0.bitPattern != 0 }.count)
    }

    // MARK: - GEMM

    func gemmChecks(_ p: GPUPrecision) throws {
        let (m, n, k) = (67, 130, 259)
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = rounded(random(m * k), p), b = rounded(random(k * n), p)
            let da = try device(a, p), db = try device(b, p)
            let dc = try gpu.allocate(bytes: 4 * m * n, category: .workspace)
            let lda = ta ? m : k, ldb = tb ? k : n
            try gpu.blas.gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: da, lda: lda, b: db, ldb: ldb, c: dc, ldc: n,
                              types: (p.dataType, p.dataType, .f32), compute: p.compute)
            let out = try gpu.downloadFloats(dc, count: m * n)
            var ref = [Double](repeating: 0, count: m * n)
            for i in 0..<m { for j in 0..<n {
                var s = 0.0
                for l in 0..<k { s += Double(ta ? a[l * m + i] : a[i * k + l]) * Double(tb ? b[j * k + l] : b[l * n + j]) }
                ref[i * n + j] = s
            } }
            record("gemm \(ta ? "T" : "N")\(tb ? "T" : "N") \(m)×\(n)×\(k)", p.rawValue, Self.relativeError(out, ref), p == .tf32 ? 3e-3 : 2e-5)
            gpu.free(da); gpu.free(db); gpu.free(dc)
        }
        if p != .tf32 {
            // Batched, strided, with alpha (as the attention uses it).
            let (batch, t, hd) = (3, 33, 16)
            let q = rounded(random(batch * t * hd), p), kk = rounded(random(batch * t * hd), p)
            let dq = try device(q, p), dk = try device(kk, p)
            let ds = try gpu.allocate(bytes: 4 * batch * t * t, category: .workspace)
            try gpu.blas.gemm(transA: false, transB: true, m: t, n: t, k: hd, a: dq, lda: hd, b: dk, ldb: hd, c: ds, ldc: t,
                              types: (p.dataType, p.dataType, .f32), alpha: 0.25, batch: batch, strides: (t * hd, t * hd, t * t))
            let out = try gpu.downloadFloats(ds, count: batch * t * t)
            var ref = [Double](repeating: 0, count: batch * t * t)
            for z in 0..<batch { for i in 0..<t { for j in 0..<t {
                var s = 0.0
                for l in 0..<hd { s += Double(q[z * t * hd + i * hd + l]) * Double(kk[z * t * hd + j * hd + l]) }
                ref[z * t * t + i * t + j] = 0.25 * s
            } } }
            record("gemm batched NT ×\(batch)", p.rawValue, Self.relativeError(out, ref), 2e-5)
            gpu.free(dq); gpu.free(dk); gpu.free(ds)
        }
    }

    // MARK: - Element-wise and reductions

    func operations(_ p: GPUPrecision) throws {
        try gemmChecks(p)
        let s = p.suffix, tol = tolerance(p)
        let rows = 37
        // bias + ReLU
        do {
            let cols = 300, n = rows * cols
            let x = rounded(random(n), p), b = random(cols)
            let dx = try device(x, p), dbias = try device(b, .fp32)
            try gpu.launch1D("bias_act" + s, count: n, [.pointer(dx), .pointer(dbias), .int(Int32(rows)), .int(Int32(cols)), .int(1)])
            let ref = (0..<n).map { max(0, Double(x[$0]) + Double(b[$0 % cols])) }
            record("bias + relu", p.rawValue, Self.relativeError(try host(dx, n, p), ref), tol)
            gpu.free(dx); gpu.free(dbias)
        }
        // Rows of whole 16-byte vectors (264 columns: a strip of 256 and one of 8) and rows that are not (300).
        for (cols, accumulate) in [(300, false), (264, true)] {
            let n = rows * cols, tag = cols % 8 == 0 ? " (16-byte rows)" : ""
            let x = rounded(random(n), p), b = random(cols)
            let dz = try device(x, p), dbias = try device(b, .fp32)
            let dy = try gpu.allocate(bytes: p.bytes * n, category: .workspace)
            try gpu.launch1D("bias_gelu" + s, count: n, [.pointer(dz), .pointer(dbias), .pointer(dy), .int(Int32(rows)), .int(Int32(cols))])
            let pre = (0..<n).map { Double(x[$0]) + Double(b[$0 % cols]) }
            let ref = pre.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
            func geluGrad(_ z: Double) -> Double { 0.5 * (1 + erf(z / 2.0.squareRoot())) + z * exp(-0.5 * z * z) / (2 * Double.pi).squareRoot() }
            record("bias + gelu" + tag, p.rawValue, Self.relativeError(try host(dy, n, p), ref), tol)
            // bias_gelu leaves GELU'(z + b) in z for backward (act 3).
            record("bias + gelu: derivative kept" + tag, p.rawValue, Self.relativeError(try host(dz, n, p), pre.map(geluGrad)), tol)
            let dPre = try device(pre.map { Float($0) }, p)
            // GELU backward with the bias gradient (column sums), finished in the kernel from 5 partial rows (one block adds
            // them) or 40 (groups of 7, then the groups).
            let g = rounded(random(n), p), before = random(cols)
            let dg = try device(g, p), dbGrad = try device(before, .fp32)
            let chunks = accumulate ? 40 : 5
            let partial = try gpu.allocate(bytes: 4 * chunks * cols, category: .workspace)
            let tickets = try gpu.allocate(bytes: 4 * GPUTrainer.ticketCount, category: .workspace)
            try gpu.fill(tickets, words: GPUTrainer.ticketCount, pattern: 0)
            try GPUTrainer.launchActivationBackward(gpu, p, dy: dg, ref: dPre, act: 2, rows: rows, cols: cols, columnSums: dbGrad, accumulate: accumulate,
                                                    partial: partial, partialFloats: chunks * cols, tickets: tickets, chunks: chunks)
            let zr = try host(dPre, n, p).map(Double.init)
            let dref = (0..<n).map { Double(g[$0]) * geluGrad(zr[$0]) }
            record("gelu backward" + tag, p.rawValue, Self.relativeError(try host(dg, n, p), dref), tol)
            // From the kept derivative, no column sums.
            let dg3 = try device(g, p)
            try GPUTrainer.launchActivationBackward(gpu, p, dy: dg3, ref: dz, act: 3, rows: rows, cols: cols, columnSums: nil, accumulate: false,
                                                    partial: 0, partialFloats: 0, tickets: 0)
            let kept = try host(dz, n, p)
            record("gelu backward from the kept derivative" + tag, p.rawValue,
                   Self.relativeError(try host(dg3, n, p), (0..<n).map { Double(g[$0]) * Double(kept[$0]) }), tol)
            gpu.free(dg3); gpu.free(dPre)
            let gpuMasked = try host(dg, n, p).map(Double.init)
            let colRef = (0..<cols).map { c in (accumulate ? Double(before[c]) : 0) + (0..<rows).reduce(0.0) { $0 + gpuMasked[$1 * cols + c] } }
            // The sums are taken before the gradient is rounded to the storage type, the reference after.
            record("bias gradient (column sums\(accumulate ? ", accumulated" : ""))" + tag, p.rawValue,
                   Self.relativeError(try gpu.downloadFloats(dbGrad, count: cols), colRef), p == .fp32 ? 2e-5 : tol)
            record("bias gradient tickets reset" + tag, p.rawValue, try ticketsLeft(tickets, count: GPUTrainer.ticketCount), 0)
            for ptr in [dz, dbias, dy, dg, partial, dbGrad, tickets] { gpu.free(ptr) }
            // ReLU backward mask, no column sums.
            let y = rounded(random(n), p).map { max(0, $0) }, h = rounded(random(n), p)
            let dyv = try device(y, p), dh = try device(h, p)
            try GPUTrainer.launchActivationBackward(gpu, p, dy: dh, ref: dyv, act: 1, rows: rows, cols: cols, columnSums: nil, accumulate: false,
                                                    partial: 0, partialFloats: 0, tickets: 0)
            record("relu backward" + tag, p.rawValue, Self.relativeError(try host(dh, n, p), (0..<n).map { y[$0] > 0 ? Double(h[$0]) : 0 }), tol)
            gpu.free(dyv); gpu.free(dh)
        }
        try lossChecks(p)
        try transformerChecks(p)
        if p.bytes == 2 { try attentionChecks(p) }
        try convolutionChecks(p)
        try recurrentChecks(p)
    }

    func lossChecks(_ p: GPUPrecision) throws {
        let s = p.suffix, tol = tolerance(p)
        // Rows held in registers (8192, 1000: 16-byte vectors) and read three times (10 columns); blocks that take several
        // rows (4 blocks for 45 rows, 2 for 7) and one row each; dlogits over the logits (gpt's way: the row loaded ahead
        // must be the logits, never a gradient written already).
        for (rows, cols, blocks, inPlace) in [(45, 10, 4, false), (7, 8192, 2, false), (7, 8192, 2, true), (6, 1000, 6, false)] {
            let x = rounded(random(rows * cols, scale: 3), p), bias = random(cols)
            let labels = (0..<rows).map { _ in Int32(generator.next() % UInt64(cols)) }
            let dx = try device(x, p), dbias = try device(bias, .fp32)
            let dl = try gpu.allocate(bytes: 4 * rows, category: .workspace)
            try gpu.upload(labels, to: dl)
            let dgrad = inPlace ? dx : try gpu.allocate(bytes: p.bytes * rows * cols, category: .workspace)
            let losses = try gpu.allocate(bytes: 4 * rows, category: .workspace), mean = try gpu.allocate(bytes: 4, category: .workspace)
            let tickets = try gpu.allocate(bytes: 4, category: .workspace)
            try gpu.fill(tickets, words: 1, pattern: 0)
            let sums = try gpu.allocate(bytes: 4 * blocks * cols, category: .workspace), dsum = try gpu.allocate(bytes: 4 * cols, category: .workspace)
            let chunks = try GPUTrainer.launchCrossEntropy(gpu, p, logits: dx, bias: dbias, labels: dl, dlogits: dgrad, losses: losses, rows: rows,
                                                           cols: cols, state: 0, tickets: tickets, mean: mean, columnSums: sums, blocks: blocks)
            try gpu.launch("sum_partials", grid: ((cols + 31) / 32, 1, 1), block: (32, GPUTrainer.columnLanes, 1),
                           [.pointer(sums), .int(Int32(chunks)), .int(Int32(cols)), .pointer(dsum), .int(0)])
            var lossRef = 0.0
            var gradRef = [Double](repeating: 0, count: rows * cols)
            for r in 0..<rows {
                let row = (0..<cols).map { Double(x[r * cols + $0]) + Double(bias[$0]) }
                let m = row.max()!
                let z = row.reduce(0.0) { $0 + exp($1 - m) }
                lossRef += (log(z) + m - row[Int(labels[r])]) / Double(rows)
                for c in 0..<cols { gradRef[r * cols + c] = (exp(row[c] - m) / z - (c == Int(labels[r]) ? 1 : 0)) / Double(rows) }
            }
            let tag = "\(rows)×\(cols)" + (inPlace ? " in place" : "")
            record("cross-entropy loss \(tag)", p.rawValue, abs(Double(try gpu.downloadFloats(mean, count: 1)[0]) - lossRef) / abs(lossRef), 1e-5)
            record("cross-entropy gradient \(tag)", p.rawValue, Self.relativeError(try host(dgrad, rows * cols, p), gradRef), tol)
            record("cross-entropy ticket reset \(tag)", p.rawValue, try ticketsLeft(tickets, count: 1), 0)
            let sumRef = (0..<cols).map { c in (0..<rows).reduce(0.0) { $0 + gradRef[$1 * cols + c] } }
            record("cross-entropy bias gradient \(tag) (\(chunks) blocks)", p.rawValue,
                   Self.relativeError(try gpu.downloadFloats(dsum, count: cols), sumRef), 1e-4)
            for ptr in [dx, dbias, dl, losses, mean, tickets, sums, dsum] + (inPlace ? [] : [dgrad]) { gpu.free(ptr) }
        }
        // The narrow head: the last Linear layer and the loss in one launch (k split over blocks for k = 4096, a row group
        // of fewer rows last), then its input's gradient dlogits · W formed by act_backward_product.
        for (rows, k, classes) in [(7, 4096, 10), (66, 4096, 10), (33, 1024, 16), (4, 64, 3)] {
            let a = rounded(random(rows * k), p), w = rounded(random(classes * k, scale: 0.05), p), bias = random(classes)
            let labels = (0..<rows).map { _ in Int32(generator.next() % UInt64(classes)) }
            let da = try device(a, p), dw = try device(w, p), db = try device(bias, .fp32), dl = try gpu.allocate(bytes: 4 * rows, category: .workspace)
            try gpu.upload(labels, to: dl)
            let dlogits = try gpu.allocate(bytes: p.bytes * rows * classes, category: .workspace)
            let dlogits32 = try gpu.allocate(bytes: 4 * rows * classes, category: .workspace)
            let dinput = try gpu.allocate(bytes: p.bytes * rows * k, category: .workspace)
            let losses = try gpu.allocate(bytes: 4 * rows, category: .workspace), mean = try gpu.allocate(bytes: 4, category: .workspace)
            let partialFloats = GPUTrainer.headLayout(inputs: k).splits * rows * GPUTrainer.headClasses
            let partial = try gpu.allocate(bytes: 4 * partialFloats, category: .workspace)
            let ticketWords = 64
            let tickets = try gpu.allocate(bytes: 4 * ticketWords, category: .workspace)
            try gpu.fill(tickets, words: ticketWords, pattern: 0)
            try GPUTrainer.launchHeadCrossEntropy(gpu, p, input: da, weight: dw, bias: db, labels: dl, dlogits: dlogits, dlogits32: dlogits32,
                                                  losses: losses, rows: rows, classes: classes, inputs: k, state: 0, partial: partial,
                                                  partialFloats: partialFloats, tickets: tickets, mean: mean)
            try GPUTrainer.launchActivationBackward(gpu, p, dy: dinput, ref: dinput, act: 0, rows: rows, cols: k, columnSums: nil, accumulate: false,
                                                    partial: partial, partialFloats: partialFloats, tickets: tickets,
                                                    product: .init(dlogits: dlogits32, weight: dw, classes: classes))
            var lossRef = 0.0, gradRef = [Double](repeating: 0, count: rows * classes), inputRef = [Double](repeating: 0, count: rows * k)
            for r in 0..<rows {
                let z = (0..<classes).map { c in (0..<k).reduce(Double(bias[c])) { $0 + Double(a[r * k + $1]) * Double(w[c * k + $1]) } }
                let m = z.max()!, sum = z.reduce(0.0) { $0 + exp($1 - m) }
                lossRef += (log(sum) + m - z[Int(labels[r])]) / Double(rows)
                for c in 0..<classes {
                    let g = (exp(z[c] - m) / sum - (c == Int(labels[r]) ? 1 : 0)) / Double(rows)
                    gradRef[r * classes + c] = g
                    for j in 0..<k { inputRef[r * k + j] += g * Double(w[c * k + j]) }
                }
            }
            let tag = "\(rows)×\(k) → \(classes)"
            record("head cross-entropy loss " + tag, p.rawValue, abs(Double(try gpu.downloadFloats(mean, count: 1)[0]) - lossRef) / abs(lossRef), 1e-5)
            record("head cross-entropy dlogits " + tag, p.rawValue, Self.relativeError(try host(dlogits, rows * classes, p), gradRef), tol)
            record("head cross-entropy dlogits in fp32 " + tag, p.rawValue,
                   Self.relativeError(try gpu.downloadFloats(dlogits32, count: rows * classes), gradRef), 1e-5)
            record("head input gradient dlogits · W " + tag, p.rawValue, Self.relativeError(try host(dinput, rows * k, p), inputRef), tol)
            record("head cross-entropy ticket reset " + tag, p.rawValue, try ticketsLeft(tickets, count: ticketWords), 0)
            for ptr in [da, dw, db, dl, dlogits, dlogits32, dinput, losses, mean, partial, tickets] { gpu.free(ptr) }
        }
        // MSE
        let n = 300
        let pred = rounded(random(n), p), target = random(n)
        let dp = try device(pred, p), dt = try device(target, .fp32)
        let dd = try gpu.allocate(bytes: p.bytes * n, category: .workspace), losses = try gpu.allocate(bytes: 4 * n, category: .workspace)
        let mean = try gpu.allocate(bytes: 4, category: .workspace)
        try gpu.launch1D("mse" + s, count: n, [.pointer(dp), .pointer(dt), .pointer(dd), .pointer(losses), .long(Int64(n)), .float(1 / Float(n)), .pointer(0)])
        try gpu.launch("sum_scaled", grid: (1, 1, 1), block: (1024, 1, 1), [.pointer(losses), .long(Int64(n)), .float(1 / Float(n)), .pointer(mean)])
        let ref = (0..<n).reduce(0.0) { $0 + pow(Double(pred[$1]) - Double(target[$1]), 2) } / Double(n)
        record("mse loss", p.rawValue, abs(Double(try gpu.downloadFloats(mean, count: 1)[0]) - ref) / ref, 1e-5)
        record("mse gradient", p.rawValue, Self.relativeError(try host(dd, n, p), (0..<n).map { 2 * (Double(pred[$0]) - Double(target[$0])) / Double(n) }), tol)
        for ptr in [dp, dt, dd, losses, mean] { gpu.free(ptr) }
    }
}

#if canImport(Glibc)
import Glibc
func libmErf(_ x: Double) -> Double { Glibc.erf(x) }
#elseif canImport(Darwin)
import Darwin
func libmErf(_ x: Double) -> Double { Darwin.erf(x) }
#endif
