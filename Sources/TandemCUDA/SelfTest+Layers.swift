#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore

extension GPUSelfTest {
    func args(_ values: Int...) -> [KernelArgument] { values.map { .int(Int32($0)) } }

    // MARK: - LayerNorm, embedding, attention pieces

    func transformerChecks(_ p: GPUPrecision) throws {
        let s = p.suffix, tol = tolerance(p)
        // LayerNorm forward and backward: warps that take two rows and one (2 blocks of 8 warps for 33 rows); rows narrower
        // than a warp's columns, accumulating into dx, with the column sums of dx (5 blocks).
        for (rows, cols, blocks, accumulate) in [(33, 512, 2, false), (70, 100, 5, true)] {
            let tag = accumulate ? " (\(cols) columns, accumulated, with Σ dx)" : ""
            let x = random(rows * cols, scale: 2).map { $0 + 0.5 }, w = random(cols), b = random(cols), dy = rounded(random(rows * cols), p)
            let old = accumulate ? random(rows * cols) : [Float](repeating: 0, count: rows * cols)
            let dx = try device(x, .fp32), dw = try device(w, .fp32), db = try device(b, .fp32), ddy = try device(dy, p)
            let y = try gpu.allocate(bytes: p.bytes * rows * cols, category: .workspace)
            let stats = try gpu.allocate(bytes: 8 * rows, category: .workspace)
            try gpu.launch("layernorm_fwd" + s, grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1),
                           [.pointer(dx), .pointer(dw), .pointer(db), .pointer(y), .pointer(stats), .pointer(stats + DevicePointer(4 * rows))] + args(rows, cols))
            var yRef = [Double](), dxRef = [Double](), dwRef = [Double](repeating: 0, count: cols), dbRef = [Double](repeating: 0, count: cols)
            for r in 0..<rows {
                let row = (0..<cols).map { Double(x[r * cols + $0]) }
                let mu = row.reduce(0, +) / Double(cols)
                let v = row.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(cols)
                let rs = 1 / (v + 1e-5).squareRoot()
                let xh = row.map { ($0 - mu) * rs }
                yRef += (0..<cols).map { xh[$0] * Double(w[$0]) + Double(b[$0]) }
                let g = (0..<cols).map { Double(dy[r * cols + $0]) * Double(w[$0]) }
                let m1 = g.reduce(0, +) / Double(cols), m2 = zip(g, xh).reduce(0) { $0 + $1.0 * $1.1 } / Double(cols)
                dxRef += (0..<cols).map { Double(old[r * cols + $0]) + rs * (g[$0] - m1 - xh[$0] * m2) }
                for c in 0..<cols { dwRef[c] += Double(dy[r * cols + c]) * xh[c]; dbRef[c] += Double(dy[r * cols + c]) }
            }
            let dsRef = (0..<cols).map { c in (0..<rows).reduce(0.0) { $0 + dxRef[$1 * cols + c] } }
            record("layernorm forward" + tag, p.rawValue, Self.relativeError(try host(y, rows * cols, p), yRef), tol)
            let gx = try device(old, .fp32)
            let partial = try gpu.allocate(bytes: 4 * blocks * 3 * cols, category: .workspace)
            let gw = try gpu.allocate(bytes: 4 * cols, category: .workspace), gb = try gpu.allocate(bytes: 4 * cols, category: .workspace)
            let gs = try gpu.allocate(bytes: 4 * cols, category: .workspace)
            let gxCast = try gpu.allocate(bytes: p.bytes * rows * cols, category: .workspace)
            let chunks = try LayerNormBackward.launch(gpu, p, dy: ddy, x: dx, weight: dw, stats: stats, dx: gx, dxCast: gxCast, partial: partial,
                                                      rows: rows, cols: cols, accumulate: accumulate, sums: accumulate, blocks: blocks)
            func finish() throws {
                try LayerNormBackward.finish(gpu, partial: partial, chunks: chunks, cols: cols, dw: gw, db: gb, ds: accumulate ? gs : nil)
            }
            try finish()
            record("layernorm backward dx" + tag, p.rawValue, Self.relativeError(try gpu.downloadFloats(gx, count: rows * cols), dxRef), 1e-4)
            record("layernorm backward dx (activation copy)" + tag, p.rawValue, Self.relativeError(try host(gxCast, rows * cols, p), dxRef), tol)
            let dwGPU = try gpu.downloadFloats(gw, count: cols), dbGPU = try gpu.downloadFloats(gb, count: cols)
            record("layernorm backward dw" + tag, p.rawValue, Self.relativeError(dwGPU, dwRef), 1e-4)
            record("layernorm backward db" + tag, p.rawValue, Self.relativeError(dbGPU, dbRef), 1e-5)
            var sums = dwGPU + dbGPU
            if accumulate {
                let dsGPU = try gpu.downloadFloats(gs, count: cols)
                record("layernorm backward Σ dx" + tag, p.rawValue, Self.relativeError(dsGPU, dsRef), 1e-4)
                sums += dsGPU
            }
            // Finished again from the same partial rows: the same bits.
            try finish()
            var again = try gpu.downloadFloats(gw, count: cols) + gpu.downloadFloats(gb, count: cols)
            if accumulate { again += try gpu.downloadFloats(gs, count: cols) }
            record("layernorm backward column sums repeated (bit-identical)" + tag, p.rawValue,
                   zip(again, sums).contains { $0.bitPattern != $1.bitPattern } ? 1 : 0, 0)
            for ptr in [dx, dw, db, ddy, y, stats, gx, partial, gw, gb, gs, gxCast] { gpu.free(ptr) }
        }
        // Residual add: rows of 16-byte vectors (72) and not (70).
        for cols in [70, 72] {
            let rows = 9, tag = cols % 8 == 0 ? " (16-byte rows)" : ""
            let x = random(rows * cols), y = rounded(random(rows * cols), p), b = random(cols)
            let dx = try device(x, .fp32), dy = try device(y, p), db = try device(b, .fp32)
            let out = try gpu.allocate(bytes: 4 * rows * cols, category: .workspace)
            try gpu.launch1D("residual_add" + s, count: rows * cols, [.pointer(dx), .pointer(dy), .pointer(db), .pointer(out)] + args(rows, cols))
            let ref = (0..<rows * cols).map { Double(x[$0]) + Double(y[$0]) + Double(b[$0 % cols]) }
            record("residual add" + tag, p.rawValue, Self.relativeError(try gpu.downloadFloats(out, count: rows * cols), ref), 1e-6)
            for ptr in [dx, dy, db, out] { gpu.free(ptr) }
        }
        // Residual add + LayerNorm in one pass: against the CPU, and bit for bit against residual_add then layernorm_fwd
        // (the same order of additions). Full-width rows (a last block with idle warps), and narrow rows in place.
        for (rows, cols, inPlace) in [(19, 512, false), (11, 100, true)] {
            let tag = " (\(cols) columns\(inPlace ? ", in place" : ""))"
            let x = random(rows * cols, scale: 2).map { $0 + 0.5 }, y = rounded(random(rows * cols), p), b = random(cols)
            let w = random(cols), lb = random(cols)
            let dx = try device(x, .fp32), dy = try device(y, p), db = try device(b, .fp32), dw = try device(w, .fp32), dlb = try device(lb, .fp32)
            let out = inPlace ? dx : try gpu.allocate(bytes: 4 * rows * cols, category: .workspace)
            let ln = try gpu.allocate(bytes: p.bytes * rows * cols, category: .workspace)
            let stats = try gpu.allocate(bytes: 8 * rows, category: .workspace)
            try gpu.launch("residual_layernorm_fwd" + s, grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1),
                           [.pointer(dx), .pointer(dy), .pointer(db), .pointer(out), .pointer(dw), .pointer(dlb), .pointer(ln), .pointer(stats),
                            .pointer(stats + DevicePointer(4 * rows))] + args(rows, cols))
            var sumRef = [Double](), lnRef = [Double]()
            for r in 0..<rows {
                let row = (0..<cols).map { Double(x[r * cols + $0]) + Double(y[r * cols + $0]) + Double(b[$0]) }
                let mu = row.reduce(0, +) / Double(cols)
                let rs = 1 / (row.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(cols) + 1e-5).squareRoot()
                sumRef += row
                lnRef += (0..<cols).map { (row[$0] - mu) * rs * Double(w[$0]) + Double(lb[$0]) }
            }
            let sumGPU = try gpu.downloadFloats(out, count: rows * cols), lnGPU = try host(ln, rows * cols, p)
            let statsGPU = try gpu.downloadFloats(stats, count: 2 * rows)
            record("residual add + layernorm: sum" + tag, p.rawValue, Self.relativeError(sumGPU, sumRef), 1e-6)
            record("residual add + layernorm: layernorm" + tag, p.rawValue, Self.relativeError(lnGPU, lnRef), tol)
            // The two kernels it replaces, from the same inputs.
            let dx2 = try device(x, .fp32), out2 = try gpu.allocate(bytes: 4 * rows * cols, category: .workspace)
            let ln2 = try gpu.allocate(bytes: p.bytes * rows * cols, category: .workspace), stats2 = try gpu.allocate(bytes: 8 * rows, category: .workspace)
            try gpu.launch1D("residual_add" + s, count: rows * cols, [.pointer(dx2), .pointer(dy), .pointer(db), .pointer(out2)] + args(rows, cols))
            try gpu.launch("layernorm_fwd" + s, grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1),
                           [.pointer(out2), .pointer(dw), .pointer(dlb), .pointer(ln2), .pointer(stats2), .pointer(stats2 + DevicePointer(4 * rows))] + args(rows, cols))
            let twoKernels = try gpu.downloadFloats(out2, count: rows * cols) + host(ln2, rows * cols, p) + gpu.downloadFloats(stats2, count: 2 * rows)
            record("residual add + layernorm = residual_add, layernorm_fwd (bit-identical)" + tag, p.rawValue,
                   zip(sumGPU + lnGPU + statsGPU, twoKernels).contains { $0.bitPattern != $1.bitPattern } ? 1 : 0, 0)
            for ptr in [dx, dy, db, dw, dlb, ln, stats, dx2, out2, ln2, stats2] + (inPlace ? [] : [out]) { gpu.free(ptr) }
        }
        try embeddingChecks(p)
        // Head split / merge.
        do {
            let (B, T, H, hd) = (2, 5, 3, 4)
            let C = H * hd, n = B * T * C
            let qkv = rounded(random(3 * n), p)
            let d = try device(qkv, p)
            let q = try gpu.allocate(bytes: p.bytes * n, category: .workspace), k = try gpu.allocate(bytes: p.bytes * n, category: .workspace)
            let v = try gpu.allocate(bytes: p.bytes * n, category: .workspace), back = try gpu.allocate(bytes: p.bytes * 3 * n, category: .workspace)
            try gpu.launch1D("split_heads" + s, count: n, [.pointer(d), .pointer(q), .pointer(k), .pointer(v)] + args(B, T, H, hd, 0))
            var refQ = [Double](repeating: 0, count: n), refV = refQ
            for b in 0..<B { for t in 0..<T { for h in 0..<H { for e in 0..<hd {
                let dst = ((b * H + h) * T + t) * hd + e, src = (b * T + t) * 3 * C + h * hd + e
                refQ[dst] = Double(qkv[src]); refV[dst] = Double(qkv[src + 2 * C])
            } } } }
            let errSplit = max(Self.relativeError(try host(q, n, p), refQ), Self.relativeError(try host(v, n, p), refV))
            record("split heads", p.rawValue, errSplit, 0)
            try gpu.launch1D("split_heads" + s, count: n, [.pointer(back), .pointer(q), .pointer(k), .pointer(v)] + args(B, T, H, hd, 1))
            record("split heads backward (inverse)", p.rawValue, Self.relativeError(try host(back, 3 * n, p), qkv), 0)
            let y = try gpu.allocate(bytes: p.bytes * n, category: .workspace)
            try gpu.launch1D("merge_heads" + s, count: n, [.pointer(q), .pointer(y)] + args(B, T, H, hd, 0))
            let qh = try host(q, n, p)
            var refY = [Double](repeating: 0, count: n)
            for b in 0..<B { for t in 0..<T { for h in 0..<H { for e in 0..<hd {
                refY[(b * T + t) * C + h * hd + e] = Double(qh[((b * H + h) * T + t) * hd + e])
            } } } }
            record("merge heads", p.rawValue, Self.relativeError(try host(y, n, p), refY), 0)
            for ptr in [d, q, k, v, back, y] { gpu.free(ptr) }
        }
        // Causal softmax forward and backward.
        do {
            let (BH, T) = (3, 40)
            let rows = BH * T
            let x = rounded(random(rows * T, scale: 2), p), g = rounded(random(rows * T), p)
            let dsm = try device(x, p), dg = try device(g, p)
            try gpu.launch("causal_softmax" + s, grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1), [.pointer(dsm), .long(Int64(rows)), .int(Int32(T))])
            let probs = try host(dsm, rows * T, p)
            var ref = [Double](repeating: 0, count: rows * T), dref = ref
            for r in 0..<rows {
                let t = r % T
                let row = (0...t).map { Double(x[r * T + $0]) }
                let m = row.max()!, z = row.reduce(0) { $0 + exp($1 - m) }
                for j in 0...t { ref[r * T + j] = exp(row[j] - m) / z }
                let dot = (0...t).reduce(0.0) { $0 + Double(probs[r * T + $1]) * Double(g[r * T + $1]) }
                for j in 0...t { dref[r * T + j] = Double(probs[r * T + j]) * (Double(g[r * T + j]) - dot) }
            }
            record("causal softmax", p.rawValue, Self.relativeError(probs, ref), tol)
            try gpu.launch("causal_softmax_bwd" + s, grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1), [.pointer(dsm), .pointer(dg), .long(Int64(rows)), .int(Int32(T))])
            record("causal softmax backward", p.rawValue, Self.relativeError(try host(dg, rows * T, p), dref), tol)
            gpu.free(dsm); gpu.free(dg)
        }
    }

    /// The embedding with the first block's LayerNorm in one kernel: against the CPU, bit for bit against the embedding's
    /// sum followed by `layernorm_fwd`, and launched as two halves of whole sequences (as the split forward does) bit for
    /// bit against one launch. Both tables' gradients from one pass over dx: B = 10 rows a position (a group of the
    /// kernel's 8, then a short one), 7 tokens (atomics that collide).
    func embeddingChecks(_ p: GPUPrecision) throws {
        let s = p.suffix
        let (B, T, C, V) = (10, 5, 24, 7)
        let N = B * T
        let tokens = (0..<N).map { _ in Int32(generator.next() % UInt64(V)) }
        let wte = random(V * C), wpe = random(T * C), g = random(N * C), w = random(C), b = random(C)
        let dt = try gpu.allocate(bytes: 4 * N, category: .workspace)
        try gpu.upload(tokens, to: dt)
        let dwte = try device(wte, .fp32), dwpe = try device(wpe, .fp32), dg = try device(g, .fp32)
        let dw = try device(w, .fp32), db = try device(b, .fp32)
        func outputs() throws -> (x: DevicePointer, ln: DevicePointer, stats: DevicePointer) {
            (try gpu.allocate(bytes: 4 * N * C, category: .workspace), try gpu.allocate(bytes: p.bytes * N * C, category: .workspace),
             try gpu.allocate(bytes: 8 * N, category: .workspace))
        }
        func forward(_ o: (x: DevicePointer, ln: DevicePointer, stats: DevicePointer), rows r: Range<Int>) throws {
            func at(_ ptr: DevicePointer, _ bytes: Int) -> DevicePointer { ptr + DevicePointer(r.lowerBound * bytes) }
            try gpu.launch("embedding_layernorm_fwd" + s, grid: ((r.count + 7) / 8, 1, 1), block: (256, 1, 1),
                           [.pointer(at(dt, 4)), .pointer(dwte), .pointer(dwpe), .pointer(at(o.x, 4 * C)), .pointer(dw), .pointer(db),
                            .pointer(at(o.ln, p.bytes * C)), .pointer(at(o.stats, 4)), .pointer(at(o.stats + DevicePointer(4 * N), 4))]
                           + args(r.count, T, C))
        }
        func read(_ o: (x: DevicePointer, ln: DevicePointer, stats: DevicePointer)) throws -> [Float] {
            try gpu.downloadFloats(o.x, count: N * C) + host(o.ln, N * C, p) + gpu.downloadFloats(o.stats, count: 2 * N)
        }
        let whole = try outputs(), halves = try outputs(), twoKernels = try outputs()
        try forward(whole, rows: 0..<N)
        try forward(halves, rows: 0..<N / 2)
        try forward(halves, rows: N / 2..<N)
        var sumRef = [Double](), lnRef = [Double]()
        for r in 0..<N {
            let row = (0..<C).map { Double(wte[Int(tokens[r]) * C + $0] + wpe[(r % T) * C + $0]) }
            let mu = row.reduce(0, +) / Double(C)
            let rs = 1 / (row.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(C) + 1e-5).squareRoot()
            sumRef += row
            lnRef += (0..<C).map { (row[$0] - mu) * rs * Double(w[$0]) + Double(b[$0]) }
        }
        let wholeGPU = try read(whole)
        record("embedding + layernorm: embedding", p.rawValue, Self.relativeError(Array(wholeGPU[0..<N * C]), sumRef), 0)
        record("embedding + layernorm: layernorm", p.rawValue, Self.relativeError(Array(wholeGPU[N * C..<2 * N * C]), lnRef), tolerance(p))
        try gpu.copy(whole.x, to: twoKernels.x, bytes: 4 * N * C)
        try gpu.launch("layernorm_fwd" + s, grid: ((N + 7) / 8, 1, 1), block: (256, 1, 1),
                       [.pointer(twoKernels.x), .pointer(dw), .pointer(db), .pointer(twoKernels.ln), .pointer(twoKernels.stats),
                        .pointer(twoKernels.stats + DevicePointer(4 * N))] + args(N, C))
        func same(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).contains { $0.bitPattern != $1.bitPattern } ? 1 : 0 }
        record("embedding + layernorm = embedding, layernorm_fwd (bit-identical)", p.rawValue, same(wholeGPU, try read(twoKernels)), 0)
        record("embedding + layernorm in two halves of the batch = whole (bit-identical)", p.rawValue, same(wholeGPU, try read(halves)), 0)
        for o in [whole, halves, twoKernels] { for ptr in [o.x, o.ln, o.stats] { gpu.free(ptr) } }
        guard p == .fp32 else { for ptr in [dt, dwte, dwpe, dg, dw, db] { gpu.free(ptr) }; return }
        // Backward: the position sums in b order on the CPU are the kernel's bits.
        var positionRef = [Float](repeating: 0, count: T * C), tokenRef = [Double](repeating: 0, count: V * C)
        for r in 0..<N { for c in 0..<C {
            positionRef[(r % T) * C + c] += g[r * C + c]
            tokenRef[Int(tokens[r]) * C + c] += Double(g[r * C + c])
        } }
        let gp = try gpu.allocate(bytes: 4 * T * C, category: .workspace), gt = try gpu.allocate(bytes: 4 * V * C, category: .workspace)
        try gpu.fill(gt, words: V * C, pattern: 0)
        try gpu.launch("embedding_bwd", grid: ((T * C / 4 + 63) / 64, 1, 1), block: (64, 1, 1),
                       [.pointer(dt), .pointer(dg), .pointer(gp), .pointer(gt)] + args(B, T, C))
        record("position embedding backward (Σ over b in order, bit-identical)", "fp32", same(try gpu.downloadFloats(gp, count: T * C), positionRef), 0)
        record("token embedding backward", "fp32", Self.relativeError(try gpu.downloadFloats(gt, count: V * C), tokenRef), 1e-6)
        for ptr in [dt, dwte, dwpe, dg, dw, db, gp, gt] { gpu.free(ptr) }
    }

    // MARK: - Convolution and pooling

    func convolutionChecks(_ p: GPUPrecision) throws {
        let s = p.suffix, tol = tolerance(p)
        let (N, C, H, W, K, pad) = (2, 3, 6, 5, 3, 1)
        let x = rounded(random(N * C * H * W), p)
        let dx = try device(x, p)
        let colCount = C * K * K * N * H * W
        let col = try gpu.allocate(bytes: p.bytes * colCount, category: .workspace)
        try gpu.launchPlanes("im2col" + s, pixels: H * W, planes: C * K * K, images: N, [.pointer(dx), .pointer(col)] + args(N, C, H, W, K, pad))
        var ref = [Double](repeating: 0, count: colCount)
        let cols = N * H * W
        for c in 0..<C { for ky in 0..<K { for kx in 0..<K { for b in 0..<N { for oy in 0..<H { for ox in 0..<W {
            let iy = oy + ky - pad, ix = ox + kx - pad
            let v = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? Double(x[((b * C + c) * H + iy) * W + ix]) : 0
            ref[((c * K + ky) * K + kx) * cols + (b * H + oy) * W + ox] = v
        } } } } } }
        record("im2col", p.rawValue, Self.relativeError(try host(col, colCount, p), ref), 0)
        // col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)>.
        let g = rounded(random(colCount), p)
        let dgcol = try device(g, p)
        let back = try gpu.allocate(bytes: p.bytes * N * C * H * W, category: .workspace)
        try gpu.launchPlanes("col2im" + s, pixels: H * W, planes: C, images: N, [.pointer(dgcol), .pointer(back)] + args(N, C, H, W, K, pad))
        var adj = [Double](repeating: 0, count: N * C * H * W)
        for c in 0..<C { for ky in 0..<K { for kx in 0..<K { for b in 0..<N { for oy in 0..<H { for ox in 0..<W {
            let iy = oy + ky - pad, ix = ox + kx - pad
            if iy >= 0 && iy < H && ix >= 0 && ix < W { adj[((b * C + c) * H + iy) * W + ix] += Double(g[((c * K + ky) * K + kx) * cols + (b * H + oy) * W + ox]) }
        } } } } } }
        record("col2im", p.rawValue, Self.relativeError(try host(back, N * C * H * W, p), adj), tol)
        for ptr in [dx, col, dgcol, back] { gpu.free(ptr) }
        // Bias + ReLU from the GEMM layout to NCHW, and back.
        do {
            let (N, C, HW) = (3, 4, 10)
            let y = rounded(random(C * N * HW), p), b = random(C), dout = rounded(random(N * C * HW), p)
            let dy = try device(y, p), db = try device(b, .fp32), ddout = try device(dout, p)
            let out = try gpu.allocate(bytes: p.bytes * N * C * HW, category: .workspace), gy = try gpu.allocate(bytes: p.bytes * N * C * HW, category: .workspace)
            try gpu.launchPlanes("conv_out" + s, pixels: HW, planes: C, images: N, [.pointer(dy), .pointer(db), .pointer(out)] + args(N, C, HW))
            var r = [Double](repeating: 0, count: N * C * HW), gr = r
            let o = try host(out, N * C * HW, p)
            for n in 0..<N { for c in 0..<C { for q in 0..<HW {
                r[(n * C + c) * HW + q] = max(0, Double(y[c * N * HW + n * HW + q]) + Double(b[c]))
                gr[c * N * HW + n * HW + q] = o[(n * C + c) * HW + q] > 0 ? Double(dout[(n * C + c) * HW + q]) : 0
            } } }
            record("conv bias + relu to NCHW", p.rawValue, Self.relativeError(o, r), tol)
            try gpu.launchPlanes("conv_out_bwd" + s, pixels: HW, planes: C, images: N, [.pointer(ddout), .pointer(out), .pointer(gy)] + args(N, C, HW))
            record("conv relu backward to GEMM layout", p.rawValue, Self.relativeError(try host(gy, N * C * HW, p), gr), 0)
            for ptr in [dy, db, ddout, out, gy] { gpu.free(ptr) }
        }
        // Max-pool and global average pool.
        do {
            let (NC, H, W) = (4, 6, 8)
            let x = rounded(random(NC * H * W), p), g = rounded(random(NC * H * W / 4), p)
            let dx = try device(x, p), dg = try device(g, p)
            let y = try gpu.allocate(bytes: p.bytes * NC * H * W / 4, category: .workspace)
            let arg = try gpu.allocate(bytes: NC * H * W / 4, category: .workspace)
            let back = try gpu.allocate(bytes: p.bytes * NC * H * W, category: .workspace)
            try gpu.launch1D("maxpool" + s, count: NC * H * W / 4, [.pointer(dx), .pointer(y), .pointer(arg)] + args(NC, H, W))
            try gpu.launch1D("maxpool_bwd" + s, count: NC * H * W, [.pointer(dg), .pointer(arg), .pointer(back)] + args(NC, H, W))
            var ref = [Double](), bref = [Double](repeating: 0, count: NC * H * W)
            for pl in 0..<NC { for oy in 0..<H / 2 { for ox in 0..<W / 2 {
                let idx = [(0, 0), (0, 1), (1, 0), (1, 1)].map { (pl * H + 2 * oy + $0.0) * W + 2 * ox + $0.1 }
                var best = idx[0]
                for i in idx.dropFirst() where x[i] > x[best] { best = i }
                ref.append(Double(x[best]))
                bref[best] = Double(g[(pl * H / 2 + oy) * W / 2 + ox])
            } } }
            record("max-pool 2×2", p.rawValue, Self.relativeError(try host(y, NC * H * W / 4, p), ref), 0)
            record("max-pool backward", p.rawValue, Self.relativeError(try host(back, NC * H * W, p), bref), 0)
            let ya = try gpu.allocate(bytes: p.bytes * NC, category: .workspace)
            try gpu.launch("avgpool" + s, grid: ((NC + 7) / 8, 1, 1), block: (256, 1, 1), [.pointer(dx), .pointer(ya)] + args(NC, H * W))
            let aref = (0..<NC).map { pl in (0..<H * W).reduce(0.0) { $0 + Double(x[pl * H * W + $1]) } / Double(H * W) }
            record("global average pool", p.rawValue, Self.relativeError(try host(ya, NC, p), aref), tol)
            try gpu.launch1D("avgpool_bwd" + s, count: NC * H * W, [.pointer(dg), .pointer(back)] + args(NC, H * W))
            let abref = (0..<NC * H * W).map { Double(g[$0 / (H * W)]) / Double(H * W) }
            record("global average pool backward", p.rawValue, Self.relativeError(try host(back, NC * H * W, p), abref), tol)
            for ptr in [dx, dg, y, arg, back, ya] { gpu.free(ptr) }
        }
    }

    // MARK: - LSTM cell

    func recurrentChecks(_ p: GPUPrecision) throws {
        let s = p.suffix, tol = tolerance(p)
        let (B, H) = (3, 8)
        let gates = rounded(random(B * 4 * H), p), bih = random(4 * H), bhh = random(4 * H), c = random(B * H)
        let dh = rounded(random(B * H), p), dhNext = random(B * H), dc = random(B * H)
        let dgates = try device(gates, p), dbih = try device(bih, .fp32), dbhh = try device(bhh, .fp32), dcPrev = try device(c, .fp32)
        let cOut = try gpu.allocate(bytes: 4 * B * H, category: .workspace), h = try gpu.allocate(bytes: p.bytes * B * H, category: .workspace)
        try gpu.launch1D("lstm_cell" + s, count: B * H, [.pointer(dgates), .pointer(dbih), .pointer(dbhh), .pointer(dcPrev), .pointer(cOut), .pointer(h)] + args(B, H))
        func sig(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        var hRef = [Double](), cRef = [Double](), act = [Double](repeating: 0, count: B * 4 * H)
        for b in 0..<B { for j in 0..<H {
            func pre(_ k: Int) -> Double { Double(gates[b * 4 * H + k * H + j]) + Double(bih[k * H + j]) + Double(bhh[k * H + j]) }
            let i = sig(pre(0)), f = sig(pre(1)), g = tanh(pre(2)), o = sig(pre(3))
            let cn = f * Double(c[b * H + j]) + i * g
            cRef.append(cn); hRef.append(o * tanh(cn))
            for (k, v) in [i, f, g, o].enumerated() { act[b * 4 * H + k * H + j] = v }
        } }
        record("lstm cell h", p.rawValue, Self.relativeError(try host(h, B * H, p), hRef), tol)
        record("lstm cell c", p.rawValue, Self.relativeError(try gpu.downloadFloats(cOut, count: B * H), cRef), p == .fp32 ? 1e-5 : tol)
        // Backward from the kernel's own saved gates.
        let saved = try host(dgates, B * 4 * H, p).map(Double.init)
        let ddh = try device(dh, p), ddhNext = try device(dhNext, .fp32), ddc = try device(dc, .fp32)
        let dOut = try gpu.allocate(bytes: p.bytes * B * 4 * H, category: .workspace)
        try gpu.launch1D("lstm_cell_bwd" + s, count: B * H, [.pointer(dgates), .pointer(cOut), .pointer(dcPrev), .pointer(ddh), .pointer(ddhNext), .pointer(ddc), .pointer(dOut)] + args(B, H))
        let cGPU = try gpu.downloadFloats(cOut, count: B * H).map(Double.init)
        var gRef = [Double](repeating: 0, count: B * 4 * H), dcRef = [Double]()
        for b in 0..<B { for j in 0..<H {
            let i = saved[b * 4 * H + j], f = saved[b * 4 * H + H + j], g = saved[b * 4 * H + 2 * H + j], o = saved[b * 4 * H + 3 * H + j]
            let dhv = Double(dhNext[b * H + j]) + Double(dh[b * H + j])
            let tc = tanh(cGPU[b * H + j])
            let dcv = Double(dc[b * H + j]) + dhv * o * (1 - tc * tc)
            gRef[b * 4 * H + j] = dcv * g * i * (1 - i)
            gRef[b * 4 * H + H + j] = dcv * Double(c[b * H + j]) * f * (1 - f)
            gRef[b * 4 * H + 2 * H + j] = dcv * i * (1 - g * g)
            gRef[b * 4 * H + 3 * H + j] = dhv * tc * o * (1 - o)
            dcRef.append(dcv * f)
        } }
        record("lstm cell backward gates", p.rawValue, Self.relativeError(try host(dOut, B * 4 * H, p), gRef), tol)
        record("lstm cell backward c", p.rawValue, Self.relativeError(try gpu.downloadFloats(ddc, count: B * H), dcRef), p == .fp32 ? 1e-5 : tol)
        for ptr in [dgates, dbih, dbhh, dcPrev, cOut, h, ddh, ddhNext, ddc, dOut] { gpu.free(ptr) }
    }
}
