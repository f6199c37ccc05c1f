/// A multi-layer LSTM through cuDNN's RNN API (`cudnnRNNForward`, `cudnnRNNBackwardData_v8`,
/// `cudnnRNNBackwardWeights_v8`) in training mode: PyTorch's cell (gates i, f, g, o; two bias
/// vectors per layer, `CUDNN_RNN_DOUBLE_BIAS`), time-major (`[T, B, features]`) input and output,
/// zero initial states.
///
/// cuDNN keeps every weight in one "weight space". Its layout, per layer, is the four input
/// matrices, the four recurrent ones, then the eight bias vectors, which is exactly the order of
/// PyTorch's (and Tandem's) `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh` with each gate's rows
/// together; ``segments(base:)`` asks cuDNN where each piece lives so a caller can check that
/// before pointing cuDNN at its own parameters.
final class CuDNNLSTM {
    let dnn: CuDNN
    let algorithm: CuDNN.RNNAlgorithm
    let batch: Int, steps: Int, inputSize: Int, hidden: Int, layers: Int
    let rnn: CuDNN.Descriptor, dropout: CuDNN.Descriptor
    let xData: CuDNN.Descriptor, yData: CuDNN.Descriptor, state: CuDNN.Descriptor
    let weightSpaceBytes: Int, workBytes: Int, reserveBytes: Int
    /// Scratch the calls need between forward and backward (from the caching allocator).
    let work: DevicePointer, reserve: DevicePointer
    /// `steps` for every sequence, on the device (the API reads the lengths from device memory).
    let sequenceLengths: DevicePointer
    let gpu: CUDAContext

    init(gpu: CUDAContext, dnn: CuDNN, precision: GPUPrecision, algorithm: CuDNN.RNNAlgorithm,
         batch: Int, steps: Int, inputSize: Int, hidden: Int, layers: Int) throws {
        self.gpu = gpu
        self.dnn = dnn
        self.algorithm = algorithm
        self.batch = batch; self.steps = steps; self.inputSize = inputSize; self.hidden = hidden; self.layers = layers
        let t = dnn.table
        let type = CuDNN.dataType(precision)
        dropout = try CuDNN.Descriptor(dnn, create: t.createDropout, destroy: t.destroyDropout, "Dropout")
        // No dropout: no random states are needed, so none are given.
        try dnn.check(t.setDropout(dropout.raw, dnn.handle, 0, nil, 0, 0), "cudnnSetDropoutDescriptor")
        rnn = try CuDNN.Descriptor(dnn, create: t.createRNN, destroy: t.destroyRNN, "RNN")
        try dnn.check(t.setRNN(rnn.raw, algorithm.rawValue, CuDNN.lstmMode, CuDNN.doubleBias, CuDNN.unidirectional, CuDNN.linearInput,
                               type.rawValue, CuDNN.DataType.float.rawValue, CuDNN.mathType(precision).rawValue,
                               Int32(inputSize), Int32(hidden), Int32(hidden), Int32(layers), dropout.raw, 0),
                      "cudnnSetRNNDescriptor_v8(\(algorithm), \(precision.rawValue))")
        if algorithm == .persistDynamic {
            try dnn.check(t.buildDynamic(dnn.handle, rnn.raw, Int32(batch)), "cudnnBuildRNNDynamic")
        }
        let lengths = [Int32](repeating: Int32(steps), count: batch)
        func data(_ width: Int) throws -> CuDNN.Descriptor {
            let d = try CuDNN.Descriptor(dnn, create: t.createRNNData, destroy: t.destroyRNNData, "RNNData")
            try dnn.check(t.setRNNData(d.raw, type.rawValue, CuDNN.seqMajorUnpacked, Int32(steps), Int32(batch), Int32(width), lengths, nil),
                          "cudnnSetRNNDataDescriptor")
            return d
        }
        xData = try data(inputSize)
        yData = try data(hidden)
        state = try dnn.tensor([layers, batch, hidden], type)
        var ws = 0, work = 0, reserve = 0
        try dnn.check(t.weightSpaceSize(dnn.handle, rnn.raw, &ws), "cudnnGetRNNWeightSpaceSize")
        try dnn.check(t.tempSpaceSizes(dnn.handle, rnn.raw, CuDNN.forwardTraining, xData.raw, &work, &reserve), "cudnnGetRNNTempSpaceSizes")
        weightSpaceBytes = ws; workBytes = work; reserveBytes = reserve
        self.work = try gpu.allocate(bytes: max(work, 256), category: .workspace)
        self.reserve = try gpu.allocate(bytes: max(reserve, 256), category: .activations)
        sequenceLengths = try gpu.allocate(bytes: 4 * batch, category: .workspace)
        try gpu.upload(lengths, to: sequenceLengths)
    }

    /// Gives the scratch buffers back to the cache (a candidate that lost the timing). The one kept is freed
    /// with its trainer, which frees every block allocated while it was built.
    func release() { for p in [work, reserve, sequenceLengths] { gpu.free(p) } }

    /// One piece of the weight space: `layer`'s matrix or bias `id` (0–3 input gates i, f, g, o; 4–7 recurrent),
    /// at `offset` bytes from the start, `count` elements.
    struct Segment { let layer: Int, id: Int, isBias: Bool, offset: Int, count: Int }

    /// Where cuDNN keeps every matrix and bias of every layer (asked of cuDNN, not assumed).
    func segments() throws -> [Segment] {
        let t = dnn.table
        let m = try CuDNN.Descriptor(dnn, create: t.createTensor, destroy: t.destroyTensor, "Tensor")
        let b = try CuDNN.Descriptor(dnn, create: t.createTensor, destroy: t.destroyTensor, "Tensor")
        // Any aligned base will do: cuDNN only adds offsets to it.
        let base: DevicePointer = 1 << 20
        var out: [Segment] = []
        for layer in 0..<layers {
            for id in 0..<8 {
                var mAddr: UnsafeMutableRawPointer?, bAddr: UnsafeMutableRawPointer?
                try dnn.check(t.weightParams(dnn.handle, rnn.raw, Int32(layer), weightSpaceBytes, constRaw(base), Int32(id), m.raw, &mAddr, b.raw, &bAddr),
                              "cudnnGetRNNWeightParams(layer \(layer), id \(id))")
                let cols = id < 4 ? (layer == 0 ? inputSize : hidden) : hidden
                if let mAddr { out.append(Segment(layer: layer, id: id, isBias: false, offset: Int(bitPattern: mAddr) - Int(base), count: hidden * cols)) }
                if let bAddr { out.append(Segment(layer: layer, id: id, isBias: true, offset: Int(bitPattern: bAddr) - Int(base), count: hidden)) }
            }
        }
        return out
    }

    /// The forward pass over the whole sequence: `y` (`[T, B, hidden]`, the top layer's outputs) from `x`
    /// (`[T, B, inputSize]`), keeping in the reserve space what backward needs.
    func forward(x: DevicePointer, y: DevicePointer, weights: DevicePointer) throws {
        let status = dnn.table.rnnForward(dnn.handle, rnn.raw, CuDNN.forwardTraining, constRaw(sequenceLengths), xData.raw, constRaw(x), yData.raw, raw(y),
                                          state.raw, nil, nil, state.raw, nil, nil, weightSpaceBytes, constRaw(weights),
                                          workBytes, raw(work), reserveBytes, raw(reserve))
        try dnn.check(status, "cudnnRNNForward(\(algorithm))")
    }

    /// Backward through the sequence from `dy` (the gradient of every output; zero final-state gradients),
    /// then the weight gradients added into `weightGradients` (cuDNN only adds: the caller zeroes it first).
    func backward(x: DevicePointer, y: DevicePointer, dy: DevicePointer, dx: DevicePointer,
                  weights: DevicePointer, weightGradients: DevicePointer) throws {
        let t = dnn.table
        var status = t.rnnBackwardData(dnn.handle, rnn.raw, constRaw(sequenceLengths), yData.raw, constRaw(y), constRaw(dy), xData.raw, raw(dx),
                                       state.raw, nil, nil, nil, state.raw, nil, nil, nil, weightSpaceBytes, constRaw(weights),
                                       workBytes, raw(work), reserveBytes, raw(reserve))
        try dnn.check(status, "cudnnRNNBackwardData_v8(\(algorithm))")
        status = t.rnnBackwardWeights(dnn.handle, rnn.raw, CuDNN.gradientAdd, constRaw(sequenceLengths), xData.raw, constRaw(x), state.raw, nil,
                                      yData.raw, constRaw(y), weightSpaceBytes, raw(weightGradients), workBytes, raw(work), reserveBytes, raw(reserve))
        try dnn.check(status, "cudnnRNNBackwardWeights_v8(\(algorithm))")
    }
}
