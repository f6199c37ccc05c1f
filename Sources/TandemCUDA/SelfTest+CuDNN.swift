import TandemCore
import TandemModels

extension GPUSelfTest {
    // MARK: - cuDNN against the CPU and against Tandem's own kernels

    /// cuDNN's convolution (forward, input gradient, filter gradient) against direct CPU loops in
    /// double precision, the two epilogue kernels of the cuDNN path, and one training step of cnn and
    /// lstm through cuDNN against the same step through Tandem's own kernels. Without cuDNN each is
    /// one line saying so.
    func cudnnChecks(_ p: GPUPrecision) throws {
        guard let dnn = gpu.dnn else {
            record("cuDNN checks skipped", p.rawValue, 0, 0, note: gpu.dnnUnavailable ?? "no cuDNN")
            return
        }
        let tol = tolerance(p), e = p.bytes
        let (N, C, K, H, W, R) = (2, 3, 4, 6, 5, 3)
        func index(_ n: Int, _ c: Int, _ y: Int, _ x: Int, _ channels: Int) -> Int { ((n * channels + c) * H + y) * W + x }
        // The search fills its buffers with a pattern: search on scratch buffers, run on the real ones.
        let scratch = try (0..<4).map { _ in try gpu.allocate(bytes: e * N * max(C, K) * H * W, category: .workspace) }
        let conv = try CuDNNConvolution(gpu: gpu, dnn: dnn, precision: p, batch: N, cin: C, cout: K, h: H, w: W, kernel: R,
                                        x: scratch[0], y: scratch[1], dy: scratch[2], dx: scratch[3], searchBytes: 16 << 20)
        for s in scratch { gpu.free(s) }
        let x = rounded(random(N * C * H * W), p), w = rounded(random(K * C * R * R), p), g = rounded(random(N * K * H * W), p)
        let dx = try device(x, p), dw = try device(w, p), dg = try device(g, p)
        let y = try gpu.allocate(bytes: e * N * K * H * W, category: .workspace)
        let gx = try gpu.allocate(bytes: e * N * C * H * W, category: .workspace), gw = try gpu.allocate(bytes: e * K * C * R * R, category: .workspace)
        let workspace = try gpu.allocate(bytes: max(256, conv.workspaceBytes), category: .workspace)
        try gpu.fill(y, words: N * K * H * W * e / 4, pattern: 0x7FC0_7FC0)   // NaN: every output must be written
        try conv.forward(x: dx, w: dw, y: y, workspace: workspace)
        try conv.backwardData(w: dw, dy: dg, dx: gx, workspace: workspace)
        try conv.backwardFilter(x: dx, dy: dg, dw: gw, workspace: workspace)
        var yRef = [Double](repeating: 0, count: N * K * H * W), gxRef = [Double](repeating: 0, count: N * C * H * W)
        var gwRef = [Double](repeating: 0, count: K * C * R * R)
        for n in 0..<N { for k in 0..<K { for oy in 0..<H { for ox in 0..<W { for c in 0..<C { for ky in 0..<R { for kx in 0..<R {
            let iy = oy + ky - 1, ix = ox + kx - 1
            guard iy >= 0 && iy < H && ix >= 0 && ix < W else { continue }
            let wi = ((k * C + c) * R + ky) * R + kx
            yRef[index(n, k, oy, ox, K)] += Double(x[index(n, c, iy, ix, C)]) * Double(w[wi])
            gxRef[index(n, c, iy, ix, C)] += Double(g[index(n, k, oy, ox, K)]) * Double(w[wi])
            gwRef[wi] += Double(g[index(n, k, oy, ox, K)]) * Double(x[index(n, c, iy, ix, C)])
        } } } } } } }
        let note = conv.summary
        record("cuDNN convolution forward (\(p == .fp32 ? "FMA math: true fp32" : "tensor-op math"))", p.rawValue,
               Self.relativeError(try host(y, N * K * H * W, p), yRef), tol, note: note)
        record("cuDNN convolution input gradient", p.rawValue, Self.relativeError(try host(gx, N * C * H * W, p), gxRef), tol)
        record("cuDNN convolution filter gradient", p.rawValue, Self.relativeError(try host(gw, K * C * R * R, p), gwRef), tol)
        for ptr in [dx, dw, dg, y, gx, gw, workspace] { gpu.free(ptr) }

        // The epilogues: bias + ReLU in place, and the ReLU mask fused with the per-channel bias-gradient sums.
        do {
            let (N, C, HW) = (5, 3, 37)
            let v = rounded(random(N * C * HW), p), b = random(C), d = rounded(random(N * C * HW), p)
            let dv = try device(v, p), db = try device(b, .fp32), dd = try device(d, p)
            try gpu.launchPlanes("bias_relu_nchw" + p.suffix, pixels: HW, planes: C, images: N, [.pointer(dv), .pointer(db)] + args(C, HW))
            let out = try host(dv, N * C * HW, p)
            let ref = (0..<N * C * HW).map { max(0, Double(v[$0]) + Double(b[($0 / HW) % C])) }
            record("bias + relu in place (NCHW)", p.rawValue, Self.relativeError(out, ref), tol)
            let chunks = 2
            let partial = try gpu.allocate(bytes: 4 * chunks * C, category: .workspace), sums = try gpu.allocate(bytes: 4 * C, category: .workspace)
            try gpu.launch("relu_bwd_channel_sums" + p.suffix, grid: (C, chunks, 1), block: (256, 1, 1),
                           [.pointer(dd), .pointer(dv), .pointer(partial)] + args(N, C, HW))
            try gpu.launch("sum_partials", grid: ((C + 31) / 32, 1, 1), block: (32, GPUTrainer.columnLanes, 1), [.pointer(partial), .int(Int32(chunks)), .int(Int32(C)), .pointer(sums), .int(0)])
            let masked = (0..<N * C * HW).map { out[$0] > 0 ? Double(d[$0]) : 0 }
            let sumRef = (0..<C).map { c in (0..<N * C * HW).filter { ($0 / HW) % C == c }.reduce(0.0) { $0 + masked[$1] } }
            record("relu backward in place (NCHW)", p.rawValue, Self.relativeError(try host(dd, N * C * HW, p), masked), 0)
            record("relu backward: per-channel bias gradient", p.rawValue, Self.relativeError(try gpu.downloadFloats(sums, count: C), sumRef), tol)
            for ptr in [dv, db, dd, partial, sums] { gpu.free(ptr) }
        }

        // Bias + ReLU + max-pool in one pass, and its backward fused with the bias-gradient sums.
        do {
            let (N, C, H, W) = (3, 2, 6, 8)
            let (OH, OW) = (H / 2, W / 2)
            let v = rounded(random(N * C * H * W), p), b = random(C), d = rounded(random(N * C * OH * OW), p)
            let dv = try device(v, p), db = try device(b, .fp32), dd = try device(d, p)
            let pooled = try gpu.allocate(bytes: e * N * C * OH * OW, category: .workspace), arg = try gpu.allocate(bytes: N * C * OH * OW, category: .workspace)
            let back = try gpu.allocate(bytes: e * N * C * H * W, category: .workspace)
            let partial = try gpu.allocate(bytes: 4 * 2 * C, category: .workspace), sums = try gpu.allocate(bytes: 4 * C, category: .workspace)
            try gpu.launch1D("bias_relu_maxpool" + p.suffix, count: N * C * OH * OW, [.pointer(dv), .pointer(db), .pointer(pooled), .pointer(arg)] + args(N * C, C, H, W))
            try gpu.launch("maxpool_relu_bwd_sums" + p.suffix, grid: (C, 2, 1), block: (256, 1, 1),
                           [.pointer(dd), .pointer(pooled), .pointer(arg), .pointer(back), .pointer(partial)] + args(N, C, H, W))
            try gpu.launch("sum_partials", grid: ((C + 31) / 32, 1, 1), block: (32, GPUTrainer.columnLanes, 1), [.pointer(partial), .int(2), .int(Int32(C)), .pointer(sums), .int(0)])
            var pooledRef: [Double] = [], backRef = [Double](repeating: 0, count: N * C * H * W), sumRef = [Double](repeating: 0, count: C)
            for plane in 0..<N * C { for oy in 0..<OH { for ox in 0..<OW {
                let idx = [(0, 0), (0, 1), (1, 0), (1, 1)].map { (plane * H + 2 * oy + $0.0) * W + 2 * ox + $0.1 }
                var best = idx[0]
                for i in idx.dropFirst() where v[i] > v[best] { best = i }
                let out = max(0, Double(v[best]) + Double(b[plane % C]))
                pooledRef.append(out)
                let g = out > 0 ? Double(d[(plane * OH + oy) * OW + ox]) : 0
                backRef[best] = g
                sumRef[plane % C] += g
            } } }
            record("bias + relu + max-pool in one pass", p.rawValue, Self.relativeError(try host(pooled, N * C * OH * OW, p), pooledRef), tol)
            record("max-pool + relu backward", p.rawValue, Self.relativeError(try host(back, N * C * H * W, p), backRef), tol)
            record("max-pool + relu backward: per-channel bias gradient", p.rawValue, Self.relativeError(try gpu.downloadFloats(sums, count: C), sumRef), tol)
            for ptr in [dv, db, dd, pooled, arg, back, partial, sums] { gpu.free(ptr) }
        }
        // The small weight-gradient GEMM.
        do {
            let (M, Nn, Kk) = (10, 70, 33)
            let a = rounded(random(Kk * M), p), bb = rounded(random(Kk * Nn), p)
            let da = try device(a, p), dbb = try device(bb, p), dc = try gpu.allocate(bytes: 4 * M * Nn, category: .workspace)
            let threads = 96
            try gpu.launch("gemm_tn_small" + p.suffix, grid: ((Nn + threads - 1) / threads, M, 1), block: (threads, 1, 1),
                           [.pointer(da), .pointer(dbb), .pointer(dc)] + args(M, Nn, Kk))
            let ref = (0..<M * Nn).map { i in (0..<Kk).reduce(0.0) { $0 + Double(a[$1 * M + i / Nn]) * Double(bb[$1 * Nn + i % Nn]) } }
            record("small GEMM Aᵀ·B (weight gradient)", p.rawValue, Self.relativeError(try gpu.downloadFloats(dc, count: M * Nn), ref), 2e-5)
            for ptr in [da, dbb, dc] { gpu.free(ptr) }
        }

        // A whole step of cnn and lstm: cuDNN against Tandem's own kernels on the same weights and batch.
        for w in [ReferenceModel.cnn, .lstm] {
            let batchSize = Self.testBatch(w)
            var generator = SeededGenerator(seed: 17)
            let batch = w.syntheticBatch(size: batchSize, generator: &generator)
            let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false)
            var gradients: [[Float]] = [], engines: [String] = []
            for useDNN in [true, false] {
                gpu.dnnEnabled = useDNN
                defer { gpu.dnnEnabled = true }
                let trainer = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
                try trainer.load(batch)
                try trainer.step()
                let grads = try trainer.downloadGradients()
                gradients.append(trainer.names.flatMap { grads[$0]! })
                engines.append(trainer.engine)
            }
            // Both sum the same products in different orders; bf16 rounds the intermediate activations differently too.
            record("\(w.rawValue) step: cuDNN gradients vs Tandem's kernels", p.rawValue, Self.relativeError(gradients[0], gradients[1]),
                   p == .fp32 ? 1e-4 : 3e-2, note: engines[0])
        }
    }

    /// Every way the LSTM can run its recurrence (one layer after the other, side by side on two streams,
    /// each cuDNN algorithm), forced in turn, against the CPU step's gradients on the same weights and batch.
    func lstmPathChecks(_ p: GPUPrecision) throws {
        let w = ReferenceModel.lstm, batchSize = Self.testBatch(w)
        var generator = SeededGenerator(seed: 23)
        let batch = w.syntheticBatch(size: batchSize, generator: &generator)
        let model = w.make(seed: 0)
        let tape = Tape()
        let loss = tape.record { model.loss(batch) }
        model.zeroGradients()
        tape.backward(loss)
        let reference = model.namedParameters.flatMap { Array($0.parameter.gradient!.buffer) }
        var names = ["step by step", "step by step, layers side by side", "whole-sequence kernels (16-row", "whole-sequence kernels (8-row"]
        if p.bytes == 2 { names += ["whole-sequence kernels on tensor cores", "whole-sequence kernels on tensor cores, layers side by side"] }
        names.append("whole-sequence kernels (16-row blocks), layers side by side")
        if gpu.dnn != nil { names += ["cuDNN standard", "cuDNN persistStatic", "cuDNN persistDynamic"] }
        let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false)
        for name in names {
            LSTMNetwork.only = name
            defer { LSTMNetwork.only = nil }
            let trainer: GPUTrainer
            do {
                trainer = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
            } catch let error {
                // A cuDNN algorithm may refuse a shape or precision; Tandem's own paths must not.
                record("lstm step, \(name): gradients", p.rawValue, name.hasPrefix("cuDNN") ? 0 : .nan, 0, note: "not available: \(error)")
                continue
            }
            try trainer.load(batch)
            try trainer.step()
            let grads = try trainer.downloadGradients()
            record("lstm step, \(name): gradients", p.rawValue, Self.relativeError(trainer.names.flatMap { grads[$0]! }, reference),
                   p == .fp32 ? 1e-4 : 8e-2)
        }
    }
}
