/// One convolution shape through cuDNN: NCHW input `[N, cin, h, w]`, filter `[cout, cin, k, k]`,
/// same-size output `[N, cout, h, w]` (stride 1, padding `(k − 1) / 2`), in the step's precision.
///
/// The algorithm of each direction is chosen once, by timing every algorithm cuDNN offers on the
/// real buffers (`cudnnFind…AlgorithmEx`, which allocates nothing); the fastest that keeps true fp32
/// on the FMA units in an fp32 step wins. The calls then only queue work on the context's stream
/// with a workspace the caller owns, so they can be captured in the step's CUDA graph.
final class CuDNNConvolution {
    let dnn: CuDNN
    let shape: (n: Int, cin: Int, cout: Int, h: Int, w: Int, k: Int)
    let xDesc: CuDNN.Descriptor, yDesc: CuDNN.Descriptor, wDesc: CuDNN.Descriptor
    /// One descriptor per direction, each with the math type its chosen algorithm reported.
    let forwardConv: CuDNN.Descriptor, dataConv: CuDNN.Descriptor?, filterConv: CuDNN.Descriptor
    let forwardAlgorithm: Int32, dataAlgorithm: Int32, filterAlgorithm: Int32
    /// The workspace the three chosen algorithms need (the largest of them).
    let workspaceBytes: Int
    /// What was chosen, for `--profile` and the notes: "fwd 1 (0.05 ms), data 1 (…), filter 0 (…)".
    let summary: String

    /// The element counts of the input, output and filter.
    var inputCount: Int { shape.n * shape.cin * shape.h * shape.w }
    var outputCount: Int { shape.n * shape.cout * shape.h * shape.w }
    var filterCount: Int { shape.cout * shape.cin * shape.k * shape.k }

    /// Chooses the algorithms on `x`, `y` (an output and an output-gradient buffer) and, when
    /// `needsInputGradient`, `dx`; the filter and its gradient are temporary buffers filled with a
    /// pattern. `searchBytes` of workspace are lent to the search and given back; no algorithm that needs more is taken (one asked
    /// for 220 MiB to save a few microseconds on a 32 → 64-channel convolution).
    init(gpu: CUDAContext, dnn: CuDNN, precision: GPUPrecision, batch: Int, cin: Int, cout: Int, h: Int, w: Int, kernel: Int,
         x: DevicePointer, y: DevicePointer, dy: DevicePointer, dx: DevicePointer?, searchBytes: Int = 64 << 20) throws {
        self.dnn = dnn
        shape = (batch, cin, cout, h, w, kernel)
        let type = CuDNN.dataType(precision), math = CuDNN.mathType(precision)
        let xDesc = try dnn.tensor([batch, cin, h, w], type)
        let yDesc = try dnn.tensor([batch, cout, h, w], type)
        let wDesc = try dnn.filter(out: cout, in: cin, h: kernel, w: kernel, type)
        (self.xDesc, self.yDesc, self.wDesc) = (xDesc, yDesc, wDesc)
        let pad = (kernel - 1) / 2
        let probe = try dnn.convolution(pad: pad, math: math)
        let e = precision.bytes
        let filterBytes = e * cout * cin * kernel * kernel
        let wBuffer = try gpu.allocate(bytes: filterBytes, category: .workspace)
        let dwBuffer = try gpu.allocate(bytes: filterBytes, category: .workspace)
        let search = try gpu.allocate(bytes: searchBytes, category: .workspace)
        defer { gpu.free(wBuffer); gpu.free(dwBuffer); gpu.free(search) }
        // Never search on zeros: 0x3C003C00 is about 0.0078 in fp32 and 1.0 / 0.0078 in the 16-bit types.
        try gpu.fill(wBuffer, words: filterBytes / 4, pattern: 0x3C00_3C00)
        for (p, count) in [(x, batch * cin * h * w), (dy, batch * cout * h * w)] { try gpu.fill(p, words: count * e / 4, pattern: 0x3C00_3C00) }
        try gpu.synchronize()

        // (1) cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t: algo (int) at 0, status (int) at 4, time (float, ms)
        // at 8, memory (size_t) at 16, determinism (int) at 24, mathType (int) at 28, int reserved[3]: 48 bytes.
        // cuDNN returns them sorted by time, fastest first.
        func pick(_ label: String, _ requested: Int32, _ find: (UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> Int32) throws
            -> (algo: Int32, memory: Int, math: Int32, ms: Float) {
            let perf = UnsafeMutableRawPointer.allocate(byteCount: 48 * Int(requested), alignment: 8)
            defer { perf.deallocate() }
            var returned: Int32 = 0
            // Twice: the first search's times include each algorithm's first run (module loads, heuristics), which
            // ranked them differently from one process to the next; the second search's are the steady times.
            for _ in 0..<2 {
                try dnn.check(find(perf, &returned), "cudnnFindConvolution\(label)AlgorithmEx(\(batch)×\(cin)×\(h)×\(w) → \(cout))")
            }
            var usable: [(algo: Int32, memory: Int, math: Int32, ms: Float, deterministic: Bool)] = []
            for i in 0..<Int(returned) {
                let r = perf + 48 * i
                let status = r.load(fromByteOffset: 4, as: Int32.self), mathType = r.load(fromByteOffset: 28, as: Int32.self)
                let memory = r.load(fromByteOffset: 16, as: Int.self)
                guard status == 0, memory <= searchBytes else { continue }
                if precision == .fp32 && (mathType == CuDNN.MathType.tensorOp.rawValue || mathType == CuDNN.MathType.tensorOpAllowConversion.rawValue) { continue }
                // (3) cudnnDeterminism_t: CUDNN_NON_DETERMINISTIC 0, CUDNN_DETERMINISTIC 1.
                usable.append((r.load(fromByteOffset: 0, as: Int32.self), memory, mathType, r.load(fromByteOffset: 8, as: Float.self),
                               r.load(fromByteOffset: 24, as: Int32.self) == 1))
            }
            // The fastest, unless a deterministic one (same result on every run, so graph replay equals eager
            // execution bit for bit) is within 10% of it.
            if let fastest = usable.first {
                let chosen = usable.first { $0.deterministic && $0.ms <= fastest.ms * 1.1 } ?? fastest
                return (chosen.algo, chosen.memory, chosen.math, chosen.ms)
            }
            throw CUDAError.unsupported("cuDNN offered no usable \(label) algorithm for \(batch)×\(cin)×\(h)×\(w) → \(cout) in \(precision.rawValue)")
        }
        let t = dnn.table, hd = dnn.handle
        // (2) Counts of algorithms in cudnn_cnn.h: CUDNN_CONVOLUTION_FWD_ALGO_COUNT 8, BWD_DATA 6, BWD_FILTER 7.
        let fwd = try pick("Forward", 8) { perf, n in
            t.findForward(hd, xDesc.raw, constRaw(x), wDesc.raw, constRaw(wBuffer), probe.raw, yDesc.raw, raw(y), 8, n, perf, raw(search), searchBytes)
        }
        let filt = try pick("BackwardFilter", 7) { perf, n in
            t.findBackwardFilter(hd, xDesc.raw, constRaw(x), yDesc.raw, constRaw(dy), probe.raw, wDesc.raw, raw(dwBuffer), 7, n, perf, raw(search), searchBytes)
        }
        var data: (algo: Int32, memory: Int, math: Int32, ms: Float)?
        if let dx {
            data = try pick("BackwardData", 6) { perf, n in
                t.findBackwardData(hd, wDesc.raw, constRaw(wBuffer), yDesc.raw, constRaw(dy), probe.raw, xDesc.raw, raw(dx), 6, n, perf, raw(search), searchBytes)
            }
        }
        func convolution(_ mathType: Int32) throws -> CuDNN.Descriptor {
            try dnn.convolution(pad: pad, math: CuDNN.MathType(rawValue: mathType) ?? math)
        }
        forwardConv = try convolution(fwd.math)
        filterConv = try convolution(filt.math)
        dataConv = try data.map { try convolution($0.math) }
        forwardAlgorithm = fwd.algo
        filterAlgorithm = filt.algo
        dataAlgorithm = data?.algo ?? -1
        workspaceBytes = max(fwd.memory, filt.memory, data?.memory ?? 0)
        func ms(_ v: Float) -> String { "\(Double(Int(Double(v) * 1000)) / 1000) ms" }
        summary = "fwd algo \(fwd.algo) (\(ms(fwd.ms)))" + (data.map { ", data algo \($0.algo) (\(ms($0.ms)))" } ?? "")
            + ", filter algo \(filt.algo) (\(ms(filt.ms))), workspace \(CUDAError.mib(workspaceBytes))"
    }

    /// `y = conv(x, w)`.
    ///
    /// - Complexity: 2·N·cout·h·w·cin·k² floating-point operations.
    func forward(x: DevicePointer, w: DevicePointer, y: DevicePointer, workspace: DevicePointer) throws {
        var one: Float = 1, zero: Float = 0
        let status = dnn.table.forward(dnn.handle, &one, xDesc.raw, constRaw(x), wDesc.raw, constRaw(w), forwardConv.raw, forwardAlgorithm,
                                       raw(workspace), workspaceBytes, &zero, yDesc.raw, raw(y))
        try dnn.check(status, "cudnnConvolutionForward(algo \(forwardAlgorithm))")
    }

    /// `dx = convᵀ(dy, w)`, the gradient with respect to the input.
    func backwardData(w: DevicePointer, dy: DevicePointer, dx: DevicePointer, workspace: DevicePointer) throws {
        guard let dataConv else { throw CUDAError.unsupported("this convolution was prepared without an input gradient") }
        var one: Float = 1, zero: Float = 0
        let status = dnn.table.backwardData(dnn.handle, &one, wDesc.raw, constRaw(w), yDesc.raw, constRaw(dy), dataConv.raw, dataAlgorithm,
                                            raw(workspace), workspaceBytes, &zero, xDesc.raw, raw(dx))
        try dnn.check(status, "cudnnConvolutionBackwardData(algo \(dataAlgorithm))")
    }

    /// `dw = Σ over the batch of x ⋆ dy`, written (not added) in the step's precision.
    func backwardFilter(x: DevicePointer, dy: DevicePointer, dw: DevicePointer, workspace: DevicePointer) throws {
        var one: Float = 1, zero: Float = 0
        let status = dnn.table.backwardFilter(dnn.handle, &one, xDesc.raw, constRaw(x), yDesc.raw, constRaw(dy), filterConv.raw, filterAlgorithm,
                                              raw(workspace), workspaceBytes, &zero, wDesc.raw, raw(dw))
        try dnn.check(status, "cudnnConvolutionBackwardFilter(algo \(filterAlgorithm))")
    }
}
