#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemNN
import TandemOptim
import TandemModels

extension GPUSelfTest {
    // MARK: - Optimizers

    func optimizerChecks() throws {
        let n = 1000
        for (label, gpuOpt, cpuOpt) in [
            ("sgd momentum nesterov wd, the second half's momentum kept scaled (16-byte and scalar kernels)", GPUOptimizer.sgd(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true),
             try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true) as any Optimizer),
            ("adamw", GPUOptimizer.adamw(learningRate: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1),
             try AdamW(learningRate: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)),
        ] {
            let w = random(n)
            let parameter = Parameter(Tensor(w, shape: [n]))
            let state = OptimizerState(cpuOpt)
            let dp = try device(w, .fp32), dg = try gpu.allocate(bytes: 4 * n, category: .workspace)
            let m = try device([Float](repeating: 0, count: n), .fp32), v = try device([Float](repeating: 0, count: n), .fp32)
            for step in 0..<3 {
                let g = random(n)
                try gpu.upload(g, to: dg)
                parameter.gradient = Tensor(g, shape: [n])
                state.apply(to: [("w", parameter)])
                switch gpuOpt {
                case .sgd(let lr, let mu, let wd, let nesterov):
                    try gpu.launch1D(step == 1 ? "sgd_f32" : "sgd4_f32", count: step == 1 ? n : n / 4, [.pointer(dp), .pointer(dg), .pointer(m), .pointer(0), .long(Int64(n)),
                                                          .long(Int64(n)), .long(Int64(n / 2)), .long(Int64(n)), .int(0), .float(lr), .float(mu), .float(0), .float(wd),
                                                          .int(nesterov ? 1 : 0), .pointer(0)])
                case .adamw(let lr, let b1, let b2, let eps, let wd):
                    try gpu.launch1D("adamw_f32", count: n, [.pointer(dp), .pointer(dg), .pointer(m), .pointer(v), .pointer(0), .long(Int64(n)), .float(lr),
                                                            .float(b1), .float(b2), .float(eps), .float(wd), .float(Float(step)), .pointer(0)])
                }
            }
            record("optimizer \(label), 3 steps", "fp32", Self.relativeError(try gpu.downloadFloats(dp, count: n), Array(parameter.value.buffer)), 1e-6)
            for ptr in [dp, dg, m, v] { gpu.free(ptr) }
        }
        // A folding step's three kinds of element: a plain gradient before `scaled`, then the momentum kept scaled with the
        // gradient added into it (as the token embedding's atomics leave it) up to `folded`, then the momentum folded in
        // before the update (as a weight-gradient GEMM with beta = momentum leaves it): both kernels against the CPU's SGD
        // with weight decay, the weights and the momentum (the scaled part's slot holding momentum × buf).
        let (lr, mu, wd, scaled, folded) = (Float(0.05), Float(0.9), Float(0.01), 256, 512)
        for kernel in ["sgd_f32", "sgd4_f32"] {
            let w = random(n)
            let parameter = Parameter(Tensor(w, shape: [n]))
            let state = OptimizerState(try SGD(learningRate: lr, momentum: mu, weightDecay: wd))
            var buffer = [Float](repeating: 0, count: n)   // the CPU's momentum, mirrored to fold it in on the host
            let dp = try device(w, .fp32), dg = try gpu.allocate(bytes: 4 * n, category: .workspace), m = try device(buffer, .fp32)
            for _ in 0..<3 {
                let g = random(n)
                parameter.gradient = Tensor(g, shape: [n])
                state.apply(to: [("w", parameter)])
                let weights = try gpu.downloadFloats(dp, count: n)
                var onDevice = try gpu.downloadFloats(m, count: n)
                for i in scaled..<folded { onDevice[i] += g[i] }
                for i in folded..<n { onDevice[i] = mu * onDevice[i] + g[i] }
                try gpu.upload(onDevice, to: m)
                try gpu.upload(g.indices.map { $0 < scaled ? g[$0] : .nan }, to: dg)   // a gradient in the slot is never read again
                try gpu.launch1D(kernel, count: kernel == "sgd_f32" ? n : n / 4, [.pointer(dp), .pointer(dg), .pointer(m), .pointer(0), .long(Int64(n)),
                                                      .long(Int64(folded)), .long(Int64(scaled)), .long(Int64(folded)), .int(1), .float(lr), .float(mu),
                                                      .float(0), .float(wd), .int(0), .pointer(0)])
                for i in 0..<n { buffer[i] = mu * buffer[i] + g[i] + wd * weights[i] }
            }
            let slot = buffer.indices.map { $0 >= scaled && $0 < folded ? mu * buffer[$0] : buffer[$0] }
            record("optimizer sgd, a folding step: plain, scaled momentum from element \(scaled), folded from \(folded) (\(kernel)), 3 steps", "fp32",
                   max(Self.relativeError(try gpu.downloadFloats(dp, count: n), Array(parameter.value.buffer)),
                       Self.relativeError(try gpu.downloadFloats(m, count: n), slot)), 1e-6)
            for ptr in [dp, dg, m] { gpu.free(ptr) }
        }
    }

    // MARK: - A training step against the CPU step

    static func testBatch(_ w: ReferenceModel) -> Int { w == .gpt ? 2 : w == .lstm ? 8 : 32 }

    func modelStep(_ w: ReferenceModel, _ p: GPUPrecision) throws {
        let batchSize = Self.testBatch(w)
        let model = w.make(seed: 0)
        var g = SeededGenerator(seed: 11)
        let batch = w.syntheticBatch(size: batchSize, generator: &g)
        let before = model.namedParameters.map { Array($0.parameter.value.buffer) }
        let trainer = try GPUTrainer(gpu: gpu, workload: w, model: model, batch: batchSize, precision: p,
                                     optimizer: .sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false))
        trainer.keepsGradients = true
        try trainer.load(batch)
        try trainer.step()
        let gpuLoss = Double(try trainer.loss())
        let gpuGrads = try trainer.downloadGradients()
        let gpuAfter = try trainer.downloadParameters()
        // The CPU step on the same weights and data.
        let tape = Tape()
        let loss = tape.record { model.loss(batch) }
        model.zeroGradients()
        tape.backward(loss)
        let cpuLoss = Double(loss.item)
        var gGPU: [Float] = [], gCPU: [Float] = [], dGPU: [Float] = [], dCPU: [Float] = []
        for (i, (name, parameter)) in model.namedParameters.enumerated() {
            gGPU += gpuGrads[name]!
            gCPU += parameter.gradient.map { Array($0.buffer) } ?? [Float](repeating: 0, count: parameter.count)
            dGPU += zip(gpuAfter[name]!, before[i]).map { $0 - $1 }
        }
        // gpt: the plain layers' bias gradients (made inside their weight-gradient GEMMs when cuBLASLt has an
        // algorithm), apart: in the whole gradient an error there could hide under the tolerance.
        var bGPU: [Float] = [], bCPU: [Float] = []
        for (name, parameter) in model.namedParameters where w == .gpt
            && (name.hasSuffix("att.in_proj_bias") || name.hasSuffix("att.out_proj.bias") || name.hasSuffix("mlp.2.bias") || name == "out.bias") {
            bGPU += gpuGrads[name]!
            bCPU += parameter.gradient.map { Array($0.buffer) } ?? [Float](repeating: 0, count: parameter.count)
        }
        OptimizerState(try SGD(learningRate: 0.01, momentum: 0.9)).apply(to: model.namedParameters)
        for (i, (_, parameter)) in model.namedParameters.enumerated() { dCPU += zip(parameter.value.buffer, before[i]).map { $0 - $1 } }
        let lowPrecision = p.usesShadow
        record("\(w.rawValue) step: loss (batch \(batchSize))", p.rawValue, abs(gpuLoss - cpuLoss) / abs(cpuLoss), lowPrecision ? 1e-2 : 1e-5,
               note: "gpu \(gpuLoss) cpu \(cpuLoss); \(trainer.engine)")
        // bf16 against fp32: PyTorch's own autocast bf16 gradients of this mlp differ from its fp32 ones by 5.1%
        // (the hidden layers' gradients, after cancellation); fp16 keeps 3 more bits.
        let lowTolerance = p == .bf16 ? 8e-2 : 1e-2
        record("\(w.rawValue) step: gradients", p.rawValue, Self.relativeError(gGPU, gCPU), lowPrecision ? lowTolerance : 1e-4)
        record("\(w.rawValue) step: weight update", p.rawValue, Self.relativeError(dGPU, dCPU), lowPrecision ? lowTolerance : 1e-4)
        if w == .gpt {
            // How they were made, in the name (the table prints notes of failures only).
            let how = gpu.blasLt == nil ? "cuBLAS + separate launches" : "cuBLASLt, \(gpu.blasLt?.refusals.count ?? 0) call kinds refused"
            record("gpt step: plain layers' bias gradients (\(how))", p.rawValue, Self.relativeError(bGPU, bCPU),
                   lowPrecision ? lowTolerance : 1e-4,
                   note: "\(bGPU.count) values; \(gpu.blasLtUnavailable ?? gpu.blasLt?.refusals.description ?? "")")
        }
    }

    // MARK: - Graph replay against eager

    func graphCheck(_ w: ReferenceModel, _ p: GPUPrecision) throws {
        let batchSize = Self.testBatch(w)
        var g = SeededGenerator(seed: 5)
        let batches = (0..<5).map { _ in w.syntheticBatch(size: batchSize, generator: &g) }
        let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false)
        let eager = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
        let graphed = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
        var eagerLosses: [Float] = [], graphLosses: [Float] = []
        for b in batches + [nil] {   // the last step again on the batch loaded last
            if let b { try eager.load(b) }
            try eager.step(); eagerLosses.append(try eager.loss())
        }
        // The graph's batches: staged (eager), then from the host, staged twice (two blocks), from the host (the graph
        // captured again after that load), the same again: the graph's copy node retargeted each way (CUDAGraph.readBatch(from:)).
        let staged = try batches.map { try graphed.stage($0) }
        try graphed.load(staged: staged[0]); try graphed.step(); graphLosses.append(try graphed.loss())
        try graphed.captureGraph()
        for i in [1, 2, 3, 4, nil] as [Int?] {
            switch i {
            case let i? where i == 2 || i == 3: try graphed.load(staged: staged[i])
            case let i?: try graphed.load(batches[i])
            case nil: break
            }
            if i == 4 { try graphed.captureGraph() }   // captured again after a host load: the graph reads that batch
            try graphed.step(); graphLosses.append(try graphed.loss())
        }
        let a = try eager.downloadParameters(), b = try graphed.downloadParameters()
        var x: [Float] = [], y: [Float] = []
        for name in eager.names { x += a[name]!; y += b[name]! }
        // Token-embedding gradients are summed with atomics, so gpt may differ by rounding; so may a cuDNN
        // algorithm that reports itself non-deterministic.
        let exact = w != .gpt && !eager.engine.hasPrefix("cuDNN")
        record("\(w.rawValue) graph replay vs eager: weights after 6 steps (staged and host batches, the last twice)", p.rawValue, Self.relativeError(y, x), exact ? 0 : 1e-5,
               note: "losses eager \(eagerLosses) graph \(graphLosses); \(eager.engine)")
    }

    // MARK: - Weight gradients on the side stream

    /// The step with the weight-gradient GEMMs and the optimizer on the side stream (``GPUTrainer/Schedule``), and for gpt
    /// with fused attention also with the forward in two halves (``GPUTrainer/Schedule/forwardSplit``), against
    /// everything on the main stream, all graph-captured after the first step: the same kernels in another order of
    /// streams, so the same weights (bit for bit, but for gpt's token-embedding atomics and its half-batch GEMMs, whose
    /// algorithms may sum in another order). Compared as what the three steps changed (w − w₀), so a difference in the
    /// updates is not lost in the size of the weights.
    func sideStreamCheck(_ w: ReferenceModel, _ p: GPUPrecision) throws {
        let batchSize = Self.testBatch(w)
        var g = SeededGenerator(seed: 7)
        let batches = (0..<3).map { _ in w.syntheticBatch(size: batchSize, generator: &g) }
        let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false)
        typealias Schedule = GPUTrainer.Schedule
        let splits = (w.make(seed: 0) as? GPT).map { GPTNetwork.canSplitForward(fused: GPTNetwork.fusesAttention($0, p), batch: batchSize) } ?? false
        let variants: [(String, Schedule)] = [("main", Schedule(weightGradientsBeside: false, optimizerBeside: false)),
                                              ("weight gradients and optimizer on the side stream",
                                               Schedule(weightGradientsBeside: true, optimizerBeside: true))]
            + (splits ? [("the forward in two halves, one on each stream, weight gradients and optimizer on the side stream",
                          Schedule(weightGradientsBeside: true, optimizerBeside: true, forwardSplit: true))] : [])
        let initial = w.make(seed: 0).namedParameters.flatMap { Array($0.parameter.value.buffer) }
        var changes: [[Float]] = [], losses: [[Float]] = [], split: [Bool] = []
        for (_, schedule) in variants {
            let trainer = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
            trainer.schedule = schedule
            var l: [Float] = []
            for (i, b) in batches.enumerated() {
                try trainer.load(b); try trainer.step(); l.append(try trainer.loss())
                if i == 0 { try trainer.captureGraph() }
            }
            split.append(trainer.splitsForward)
            let values = try trainer.downloadParameters()
            changes.append(zip(trainer.names.flatMap { values[$0]! }, initial).map { $0 - $1 })
            losses.append(l)
        }
        for i in variants.indices.dropFirst() {
            // A split asked for and not taken would compare the unsplit step with itself. Its half-batch GEMMs may take
            // other algorithms, whose roundings move the updates by far less than a half of the batch gone wrong would.
            let tolerance = variants[i].1.forwardSplit ? 1e-3 : w == .gpt ? 1e-5 : 0
            record("\(w.rawValue) \(variants[i].0) vs main: weight changes over 3 steps", p.rawValue,
                   split[i] == variants[i].1.forwardSplit ? Self.relativeError(changes[i], changes[0]) : 1, tolerance,
                   note: "losses main \(losses[0]) \(losses[i])")
        }
    }

    // MARK: - Updates deferred into the next step's forward

    /// Updates left to the next step's forward (``GPUTrainer/defersUpdates``) against every update at the end of its step:
    /// the optimizer at the end of the step or beside backward (weight gradients beside and not); and, eager only, the
    /// schedule switched between steps (deferring, deferring with the optimizer beside, not deferring: the pending updates
    /// are applied first). Three SGD steps (momentum, weight decay), the learning rate changed before every
    /// step and before the capture; eager with the weights read (a flush) between the second and third step, and with the
    /// last two graph-captured. The deferred updates start 1 ms late (``GPUTrainer/delaysDeferredUpdates``), so a forward
    /// that read a group before waiting for it would read old weights every time. The same kernels on the same values:
    /// the same weights once the pending updates are flushed (bit for bit, but for gpt's token-embedding atomics and
    /// the weight gradients planned for half the multiprocessors, which may sum in another order).
    func deferralCheck(_ w: ReferenceModel, _ p: GPUPrecision) throws {
        typealias Schedule = GPUTrainer.Schedule
        let batchSize = Self.testBatch(w)
        var g = SeededGenerator(seed: 11)
        let batches = (0..<3).map { _ in w.syntheticBatch(size: batchSize, generator: &g) }
        let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0.01, nesterov: false)
        let end = Schedule(weightGradientsBeside: true, optimizerBeside: false)
        let every = Schedule(weightGradientsBeside: true, optimizerBeside: false, updatesDeferred: true)
        let beside = Schedule(weightGradientsBeside: true, optimizerBeside: true, updatesDeferred: true)
        let besideMain = Schedule(weightGradientsBeside: false, optimizerBeside: true, updatesDeferred: true)
        let share = Schedule(weightGradientsBeside: true, optimizerBeside: false, updatesDeferred: true,
                             sideMultiprocessors: gpu.device.multiprocessors / 2)
        // A name and the schedule of each of the three steps; the first is the reference. The weight gradients planned
        // for half the multiprocessors may take other algorithms (another split of k): the same weights but for rounding.
        let variants: [(String, [Schedule])] = [("at the end of the step", [end, end, end]),
                                                ("updates deferred into the next forward", [every, every, every]),
                                                ("optimizer beside, updates deferred", [beside, beside, beside]),
                                                ("optimizer beside, updates deferred, weight gradients on the main stream", [besideMain, besideMain, besideMain]),
                                                ("updates deferred, weight gradients on half the multiprocessors", [share, share, share]),
                                                ("schedule switched between steps (deferring, deferring beside, not)", [every, beside, end])]
        for graphed in [false, true] {
            var weights: [[Float]] = [], deferred: [Bool] = [], losses: [[Float]] = []
            let run = graphed ? Array(variants.prefix(5)) : variants   // a captured step keeps its schedule
            for (_, steps) in run {
                let trainer = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
                trainer.delaysDeferredUpdates = true
                var l: [Float] = [], any = false
                for (i, b) in batches.enumerated() {
                    trainer.schedule = steps[i]
                    any = any || trainer.defersUpdates
                    trainer.setLearningRate(0.01 * Float(i + 1))
                    try trainer.load(b); try trainer.step(); l.append(try trainer.loss())
                    if graphed && i == 0 { trainer.setLearningRate(0.015); try trainer.captureGraph() }
                    if !graphed && i == 1 { _ = try trainer.downloadParameters() }
                }
                deferred.append(any)
                let values = try trainer.downloadParameters()
                weights.append(trainer.names.flatMap { values[$0]! })
                losses.append(l)
            }
            let how = graphed ? "graph" : "eager, weights read between steps"
            for i in run.indices.dropFirst() {
                let exact = w != .gpt && run[i].1[0].sideMultiprocessors == 0
                record("\(w.rawValue) \(run[i].0) vs at the end of the step (\(how)): weights after 3 steps", p.rawValue,
                       !deferred[0] && deferred[i] && (!exact || losses[0] == losses[i]) ? Self.relativeError(weights[i], weights[0]) : 1,
                       exact ? 0 : 1e-5,
                       note: "deferred \(deferred[i]); losses \(losses[0]) and \(losses[i])")
            }
        }
    }

    // MARK: - Momentum folded into the weight-gradient GEMMs

    /// Three SGD steps (momentum, weight decay; the last two graph-captured) with the momentum folded into the weight-gradient
    /// GEMMs (``GPUTrainer/foldsMomentum``) against the same steps keeping every gradient: the same update, the additions in
    /// another order. And a folded step keeps no gradient to download: asking for one is an error, not stale values.
    func foldCheck(_ w: ReferenceModel, _ p: GPUPrecision) throws {
        let batchSize = Self.testBatch(w)
        var g = SeededGenerator(seed: 9)
        let batches = (0..<3).map { _ in w.syntheticBatch(size: batchSize, generator: &g) }
        let opt = GPUOptimizer.sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0.01, nesterov: false)
        var weights: [[Float]] = [], folded: [Bool] = [], refused = false
        for keep in [true, false] {
            let trainer = try GPUTrainer(gpu: gpu, workload: w, model: w.make(seed: 0), batch: batchSize, precision: p, optimizer: opt)
            trainer.keepsGradients = keep
            for (i, b) in batches.enumerated() {
                try trainer.load(b); try trainer.step()
                if i == 0 { try trainer.captureGraph() }
            }
            folded.append(trainer.folds)
            if !keep { refused = (try? trainer.downloadGradients()) == nil }
            let values = try trainer.downloadParameters()
            weights.append(trainer.names.flatMap { values[$0]! })
        }
        let ok = folded == [false, !GPUTrainer.foldingDisabled] && (refused || GPUTrainer.foldingDisabled)
        record("\(w.rawValue) momentum folded into the weight-gradient GEMMs vs kept gradients: weights after 3 steps", p.rawValue,
               ok ? Self.relativeError(weights[1], weights[0]) : 1, p == .fp32 ? 1e-5 : 1e-3,
               note: "folded \(folded), gradient download refused \(refused)")
    }

    // MARK: - fp16 dynamic loss scaling

    func lossScaling() throws {
        let w = ReferenceModel.mlp, batchSize = 32
        var g = SeededGenerator(seed: 3)
        let batch = w.syntheticBatch(size: batchSize, generator: &g)
        let model = w.make(seed: 0)
        let cpuLoss = Double(model.loss(batch).item)
        let trainer = try GPUTrainer(gpu: gpu, workload: w, model: model, batch: batchSize, precision: .fp16,
                                     optimizer: .sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false))
        try trainer.load(batch)
        try trainer.step()
        let s1 = try trainer.stepState()
        record("fp16 first step: loss", "fp16", abs(Double(try trainer.loss()) - cpuLoss) / cpuLoss, 2e-3)
        record("fp16 first step: scale kept at 65536, step counted", "fp16", (s1[2] == 65536 && s1[5] == 1 && s1[1] == 0) ? 0 : 1, 0,
               note: "state \(s1)")
        // Force an overflow: the step is skipped (weights unchanged) and the scale halves.
        let before = try trainer.downloadParameters()
        try gpu.upload([1 / 3e38, 0, 3e38, 0, 0, s1[5], 0, 0], to: trainer.state)
        try trainer.step()
        let s2 = try trainer.stepState()
        let after = try trainer.downloadParameters()
        let unchanged = trainer.names.allSatisfy { before[$0]! == after[$0]! }
        record("fp16 overflow: step skipped, scale halved", "fp16", (unchanged && s2[2] == 1.5e38 && s2[5] == 1 && s2[1] == 0) ? 0 : 1, 0,
               note: "state \(s2)")
        // After `interval` clean steps the scale doubles.
        try gpu.upload([1 / 1024, 0, 1024, 0, GPUTrainer.lossScaleInterval - 1, s2[5], 0, 0], to: trainer.state)
        try trainer.step()
        let s3 = try trainer.stepState()
        let after3 = try trainer.downloadParameters()
        let changed = trainer.names.contains { after[$0]! != after3[$0]! }
        record("fp16 clean steps: scale doubles after \(Int(GPUTrainer.lossScaleInterval))", "fp16", (changed && s3[2] == 2048 && s3[4] == 0) ? 0 : 1, 0,
               note: "state \(s3)")
    }

    // MARK: - Out of memory

    func outOfMemoryCheck() throws {
        let asked = 1 << 50
        do {
            _ = try gpu.allocate(bytes: asked, category: .activations)
            record("out of memory is a clear error", "-", 1, 0, note: "a petabyte allocation succeeded")
        } catch let error as CUDAError {
            let text = error.description
            let ok: Bool
            if case .outOfMemory(let requested, let free, _, _) = error { ok = requested == asked && free > 0 && text.contains("\(asked) bytes") } else { ok = false }
            record("out of memory is a clear error", "-", ok ? 0 : 1, 0, note: text)
        }
    }
}

extension GPUTrainer {
    /// Every parameter's device value, by name (the CPU model is left alone).
    public func downloadParameters() throws -> [String: [Float]] {
        try flushDeferredUpdates()
        var out: [String: [Float]] = [:]
        for (i, name) in names.enumerated() { out[name] = try gpu.downloadFloats(weight(i), count: shapes[i].reduce(1, *)) }
        return out
    }
}
