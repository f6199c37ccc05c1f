#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemModels

// MARK: - Timing a training step

/// Times the training step of a reference workload on one GPU as `bench/torch_bench.py
/// --device cuda` does: four synthetic batches made up front (here staged on the device and
/// copied into the step's input buffers, one per step), SGD (learning rate 0.01, momentum 0.9),
/// `warmup` untimed steps, then `steps` timed ones; with `graph`, the whole step is captured
/// once after the warm-up and replayed.
public struct GPUBenchmark {
    public var workload: ReferenceModel
    public var batch: Int
    public var steps: Int
    public var warmup: Int
    public var precision: GPUPrecision
    public var graph: Bool
    /// Data parallel over NCCL: this process is one rank, its synthetic batches seeded by its rank.
    public var collective: NCCLGroup?
    /// Gradient bytes per all-reduce over `collective` (``GPUTrainer/bucketBytes``); nil: the trainer's default.
    public var bucketBytes: Int?
    /// The gradient's 16-bit type between ranks (``GPUTrainer/compressGradients(to:)``); nil: fp32.
    public var wireType: DType?

    public init(workload: ReferenceModel, batch: Int, steps: Int, warmup: Int, precision: GPUPrecision, graph: Bool) {
        self.workload = workload; self.batch = batch; self.steps = steps; self.warmup = warmup
        self.precision = precision; self.graph = graph
    }

    public struct Measurement: Sendable {
        /// Wall-clock seconds of the timed steps (host clock, synchronised at the end).
        public var seconds: Double
        /// Each timed step's milliseconds, from device events between steps.
        public var stepMilliseconds: [Double]
        public var loss: Double
        public var parameters: Int
        public var peakBytes: Int
        public var bytes: [MemoryCategory: Int]
        public var flopsPerStep: Double
        /// How the layers are computed and the step's schedule (``GPUTrainer/engine``).
        public var engine: String
    }

    /// Eager steps with every kernel and GEMM timed: (label, total ms per step, launches per step), largest first,
    /// the last step's launches in queue order (``KernelProfiler/timeline``) and how the model's layers are computed
    /// (``GPUTrainer/engine``).
    public func profile(gpu: CUDAContext, steps: Int = 5) throws -> (rows: [(label: String, ms: Double, count: Int)],
                                                                     timeline: [KernelProfiler.Launch], engine: String) {
        let model = workload.make(seed: 0)
        var generator = SeededGenerator(seed: 0)
        let trainer = try GPUTrainer(gpu: gpu, workload: workload, model: model, batch: batch, precision: precision,
                                     optimizer: .sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false))
        try trainer.load(workload.syntheticBatch(size: batch, generator: &generator))
        for _ in 0..<2 { try trainer.step() }
        let profiler = KernelProfiler()
        gpu.profiler = profiler
        defer { gpu.profiler = nil }
        for _ in 0..<steps { try trainer.step(); try profiler.collect(gpu) }
        return (profiler.ranked.map { ($0.label, $0.ms / Double(steps), $0.count / steps) }, profiler.timeline, trainer.engine)
    }

    public func run(gpu: CUDAContext) throws -> Measurement {
        let model = workload.make(seed: 0)
        var generator = SeededGenerator(seed: UInt64(collective?.rank ?? 0))
        let trainer = try GPUTrainer(gpu: gpu, workload: workload, model: model, batch: batch, precision: precision,
                                     optimizer: .sgd(learningRate: 0.01, momentum: 0.9, weightDecay: 0, nesterov: false))
        if let collective { try trainer.join(collective) }
        if let bucketBytes { trainer.bucketBytes = bucketBytes }
        if let wireType { try trainer.compressGradients(to: wireType) }
        let staged = try (0..<4).map { _ in try trainer.stage(workload.syntheticBatch(size: batch, generator: &generator)) }
        var i = 0
        func oneStep() throws {
            try trainer.load(staged: staged[i % 4])
            try trainer.step()
            i += 1
        }
        for _ in 0..<max(warmup, graph ? 1 : 0) { try oneStep() }
        if graph { try trainer.captureGraph() }
        try gpu.synchronize()
        gpu.allocator.resetPeak()
        let times = try gpu.timeline(steps) { _ in try oneStep() }
        try collective?.checkHealth()
        return Measurement(seconds: times.wall, stepMilliseconds: times.steps, loss: Double(try trainer.loss()),
                           parameters: trainer.parameterCount, peakBytes: gpu.allocator.peakTotal, bytes: gpu.allocator.inUse,
                           flopsPerStep: 3 * model.forwardFLOPsPerSample * Double(batch), engine: trainer.engine)
    }
}

// MARK: - The card's ceilings

/// The measured roofline of the GPU: GEMM rates (true fp32, tf32, bf16) and device copy bandwidth.
public enum GPUCeilings {
    public struct Result: Sendable {
        public var fp32TFLOPs: Double, tf32TFLOPs: Double, bf16TFLOPs: Double, copyTBps: Double
    }

    /// An n×n×n GEMM (random operands) in each mode and a copy of `copyBytes`; medians of `repeats` timed runs after warm-up.
    public static func measure(gpu: CUDAContext, n: Int = 8192, copyBytes: Int = 4 << 30, repeats: Int = 10) throws -> Result {
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        let values = (0..<(n * n)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        let a = try gpu.allocate(bytes: 4 * n * n, category: .workspace), b = try gpu.allocate(bytes: 4 * n * n, category: .workspace)
        let c = try gpu.allocate(bytes: 4 * n * n, category: .workspace)
        try gpu.upload(values, to: a)
        try gpu.upload(values.reversed(), to: b)
        let ah = try gpu.allocate(bytes: 2 * n * n, category: .workspace), bh = try gpu.allocate(bytes: 2 * n * n, category: .workspace)
        try gpu.launch1D("cast_from_f32_bf16", count: min(n * n, 1 << 20), [.pointer(a), .pointer(ah), .long(Int64(n * n))])
        try gpu.launch1D("cast_from_f32_bf16", count: min(n * n, 1 << 20), [.pointer(b), .pointer(bh), .long(Int64(n * n))])
        func rate(_ types: (CuBLAS.DataType, CuBLAS.DataType, CuBLAS.DataType), _ compute: CuBLAS.Compute, _ x: DevicePointer, _ y: DevicePointer) throws -> Double {
            for _ in 0..<2 {
                try gpu.blas.gemm(transA: false, transB: false, m: n, n: n, k: n, a: x, lda: n, b: y, ldb: n, c: c, ldc: n, types: types, compute: compute)
            }
            var times: [Double] = []
            for _ in 0..<repeats {
                times.append(try gpu.time {
                    try gpu.blas.gemm(transA: false, transB: false, m: n, n: n, k: n, a: x, lda: n, b: y, ldb: n, c: c, ldc: n, types: types, compute: compute)
                })
            }
            let median = times.sorted()[times.count / 2]
            return 2 * Double(n) * Double(n) * Double(n) / (median / 1000) / 1e12
        }
        let fp32 = try rate((.f32, .f32, .f32), .f32, a, b)
        let tf32 = try rate((.f32, .f32, .f32), .f32FastTF32, a, b)
        let bf16 = try rate((.bf16, .bf16, .bf16), .f32, ah, bh)
        for p in [a, b, c, ah, bh] { gpu.free(p) }
        let src = try gpu.allocate(bytes: copyBytes, category: .workspace), dst = try gpu.allocate(bytes: copyBytes, category: .workspace)
        try gpu.fill(src, words: copyBytes / 4, pattern: 0x3f80_0000)
        try gpu.copy(src, to: dst, bytes: copyBytes)
        var copies: [Double] = []
        for _ in 0..<repeats { copies.append(try gpu.time { try gpu.copy(src, to: dst, bytes: copyBytes) }) }
        gpu.free(src); gpu.free(dst)
        let copyMs = copies.sorted()[copies.count / 2]
        return Result(fp32TFLOPs: fp32, tf32TFLOPs: tf32, bf16TFLOPs: bf16, copyTBps: 2 * Double(copyBytes) / (copyMs / 1000) / 1e12)
    }
}

// MARK: - What is installed

/// What `tandem doctor` reports about the CUDA stack: each library found (where, which version) or missing.
public enum CUDAInventory {
    public static func report() -> [String] {
        var lines: [String] = []
        do {
            let driver = try CUDADriver.shared()
            let v = try driver.version()
            lines.append("CUDA driver: \(driver.path) (CUDA \(v.major).\(v.minor))")
            let devices = try CUDADeviceInfo.all()
            if devices.isEmpty { lines.append("GPUs: none") }
            for d in devices {
                lines.append("GPU \(d.index): \(d.name), compute capability \(d.computeCapability.major).\(d.computeCapability.minor), "
                             + "\(d.multiprocessors) multiprocessors, \(CUDAError.mib(d.totalMemory)), L2 \(d.l2Bytes >> 20) MiB")
                let off = CUDAContext.programmaticLaunchOff(driver: driver, device: d)
                lines.append("  programmatic dependent launch: " + (off.map { "off: \($0)" } ?? "on (each kernel launched while the one before it ends; TANDEM_PDL=0 turns it off)"))
            }
        } catch let error { lines.append("CUDA driver: \(error.description)") }
        do {
            let nvrtc = try NVRTC.shared()
            lines.append("NVRTC: \(nvrtc.path) (\(nvrtc.version.major).\(nvrtc.version.minor))")
        } catch let error { lines.append("NVRTC: \(error.description)") }
        do {
            let blas = try CuBLAS.library()
            lines.append("cuBLAS: \(blas.path) (\(blas.version))")
        } catch let error { lines.append("cuBLAS: \(error.description)") }
        do {
            let lt = try CuBLASLt.library()
            lines.append("cuBLASLt: \(lt.path) (\(lt.version))" + (CuBLASLt.disabledByEnvironment ? "; turned off by TANDEM_CUBLASLT=0" : ""))
        } catch let error { lines.append("cuBLASLt: \(error.description)") }
        lines += cacheLines()
        do {
            let dnn = try CuDNN.library()
            lines.append("cuDNN: \(dnn.path) (\(dnn.version))")
            lines.append(CuDNN.disabledByEnvironment
                         ? "  convolutions: im2col + cuBLAS, LSTM: step by step (cuDNN turned off by TANDEM_CUDNN=0)"
                         : "  convolutions and LSTM: cuDNN (every entry point found)")
        } catch let error {
            lines.append("cuDNN: \(error.description)")
            lines.append("  convolutions: im2col + cuBLAS, LSTM: step by step")
        }
        lines.append(ncclLine())
        if let dirs = NativeLibrary.overrideDirectories { lines.append("  TANDEM_CUDA_LIBS=\(dirs.joined(separator: ":"))") }
        return lines
    }

    /// Where compiled kernels and the GEMM algorithms chosen by timing are kept, and how many there are.
    static func cacheLines() -> [String] {
        func files(_ dir: String, suffix: String) -> [String] {
            guard let d = opendir(dir) else { return [] }
            defer { closedir(d) }
            var names: [String] = []
            while let entry = readdir(d) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name.hasSuffix(suffix) { names.append(name) }
            }
            return names
        }
        var lines: [String] = []
        if let dir = KernelCache.directory {
            lines.append("kernel cache: \(dir) (\(files(dir, suffix: ".cubin").count) compiled modules; TANDEM_KERNEL_CACHE moves it, none turns it off)")
        } else {
            lines.append("kernel cache: off (TANDEM_KERNEL_CACHE=none): kernels are compiled in every process")
        }
        let timing = GEMMTuner.enabledByEnvironment ? "chosen by timing" : "not timed (TANDEM_GEMM_TUNE=0): cuBLAS, and cuBLASLt's first"
        if let dir = GEMMTuningRecord.directoryFromEnvironment {
            let records = files(dir, suffix: ".tsv")
            let kinds = records.reduce(0) { $0 + GEMMTuningRecord(path: dir + "/" + $1).kinds.count }
            lines.append("GEMM algorithms: \(timing); kept in \(dir) (\(kinds) kinds of GEMM in \(records.count) files; delete them to time again)")
        } else {
            lines.append("GEMM algorithms: \(timing); not kept (TANDEM_GEMM_CACHE=none): each process times again")
        }
        return lines
    }

    static func ncclLine() -> String {
        typealias GetVersion = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
        do {
            let (h, path) = try NativeLibrary.open(names: ["libnccl.so.2", "libnccl.so"], what: "NCCL",
                                                   hint: "Needed for several GPUs only (`pip install nvidia-nccl-cu13`).")
            var v: Int32 = 0
            // (2) ncclGetVersion(int*) → major·10000 + minor·100 + patch for NCCL ≥ 2.9.
            guard let f = NativeLibrary.optionalSymbol(h, "ncclGetVersion", as: GetVersion.self), f(&v) == 0 else { return "NCCL: \(path) (version unknown)" }
            return "NCCL: \(path) (\(v / 10000).\(v % 10000 / 100).\(v % 100))"
        } catch let error { return "NCCL: \(error.description)" }
    }
}
