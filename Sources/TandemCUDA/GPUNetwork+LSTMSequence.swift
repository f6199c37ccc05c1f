/// The whole-sequence ways of running an ``LSTMNetwork``'s recurrence: all steps of one layer's
/// forward, and of its backward, in one launch each (Kernels+LSTMSequence.swift), instead of a GEMM
/// and a cell launch per step. Everything around the recurrence — the input projections, the head,
/// the weight gradients over all steps — is the step-by-step path's.
extension LSTMNetwork {
    /// The whole-sequence kernels. Blocks of batch rows meet at a counter in global memory after each
    /// step, so all of a launch's blocks must be resident at once (offered only when they fit).
    enum SequenceKernels {
        /// `lstm_seq_*`: blocks of `rows` rows, the block GEMMs on the FMA units (every precision).
        case fma(rows: Int)
        /// `lstm_seqtc_*`: blocks of 16 rows, the block GEMMs as tensor-core MMAs (bf16 and fp16).
        case tensorCores

        var name: String {
            switch self {
            case .fma(let rows): "whole-sequence kernels (\(rows)-row blocks)"
            case .tensorCores: "whole-sequence kernels on tensor cores"
            }
        }
        var rows: Int {
            switch self {
            case .fma(let rows): rows
            case .tensorCores: 16
            }
        }
    }

    /// Hidden sizes the kernels are compiled for (Kernels+LSTMSequence.swift instantiates these).
    static let sequenceHiddenSizes = [128, 256]

    /// The kernel of `kernels` for `direction` ("fwd" or "bwd") at this network's hidden size and precision.
    func kernelName(_ kernels: SequenceKernels, _ direction: String) -> String {
        switch kernels {
        case .fma(let rows): "lstm_seq_\(direction)_\(H)x\(rows)" + precision.suffix
        case .tensorCores: "lstm_seqtc_\(direction)_\(H)" + precision.suffix
        }
    }

    /// The whole-sequence kernels that can run here, for ``prepare(_:)``'s options: `twice` when two launches
    /// fit at once (the layers side by side run one per layer concurrently; a launch whose blocks cannot all be
    /// resident would wait on the other's).
    func sequenceOptions(_ gpu: CUDAContext, notes: inout [String]) throws -> [(kernels: SequenceKernels, twice: Bool)] {
        guard Self.sequenceHiddenSizes.contains(H) else {
            notes.append("no whole-sequence kernels for hidden size \(H) (only \(Self.sequenceHiddenSizes))")
            return []
        }
        guard gpu.device.computeCapability.major >= 7 else { return [] }   // ld.acquire needs sm_70
        var options: [(kernels: SequenceKernels, twice: Bool)] = []
        let kinds: [SequenceKernels] = [.fma(rows: 16), .fma(rows: 8)] + (precision.bytes == 2 ? [.tensorCores] : [])
        for kind in kinds {
            let blocks = rowBlocks(kind) * (H / 16)
            let fit = min(try gpu.residentBlocks(kernelName(kind, "fwd"), threads: H), try gpu.residentBlocks(kernelName(kind, "bwd"), threads: H))
            if blocks <= fit { options.append((kind, 2 * blocks <= fit)) } else { notes.append("\(kind.name): \(blocks) blocks, \(fit) fit at once") }
        }
        return options
    }

    private func rowBlocks(_ kernels: SequenceKernels) -> Int { (B + kernels.rows - 1) / kernels.rows }

    /// Forward steps `t0..<t1` of `layer` (index `l`), one launch or one GEMM + cell per step. The gates hold
    /// `x·W_ihᵀ` on entry.
    func forwardSteps(_ t: GPUTrainer, _ layer: Layer, _ l: Int, _ t0: Int, _ t1: Int) throws {
        guard sequence != nil else { for step in t0..<t1 { try cell(t, layer, step) }; return }
        try launch(t, "fwd", layer: l, from: t0, [.pointer(layer.gates), .pointer(t.operand(layer.whh)), .pointer(t.weight(layer.bih)),
                                                  .pointer(t.weight(layer.bhh)), .pointer(layer.c), .pointer(layer.h), .int(Int32(B)),
                                                  .int(Int32(T)), .int(Int32(t0)), .int(Int32(t1))])
    }

    /// Backward steps `t1 - 1` down to `t0` of `layer` into `dGates`. The gradient from above is `dLast` at the
    /// last step (the top layer) or `dSequence` at every step (the layers below); the other is 0. `dhNext` and `dc`
    /// carry the state gradients from one call to the next (zero before the last step).
    func backwardSteps(_ t: GPUTrainer, _ layer: Layer, _ l: Int, _ t0: Int, _ t1: Int, dLast: DevicePointer, dSequence: DevicePointer,
                       dGates: DevicePointer, dhNext: DevicePointer, dc: DevicePointer) throws {
        guard sequence != nil else {
            for step in (t0..<t1).reversed() {
                let dhOut = dSequence != 0 ? at(dSequence, step, H, bytes: precision.bytes) : step == T - 1 ? dLast : 0
                try cellBackward(t, layer, step, dhOut: dhOut, dGates: dGates, dhNext: dhNext, dc: dc)
            }
            return
        }
        try launch(t, "bwd", layer: l, from: t0, [.pointer(layer.gates), .pointer(layer.c), .pointer(t.operand(layer.whh)), .pointer(dLast),
                                                  .pointer(dSequence), .pointer(dGates), .pointer(dhNext), .pointer(dc), .int(Int32(B)),
                                                  .int(Int32(T)), .int(Int32(t0)), .int(Int32(t1))])
    }

    /// Words of step counters a training step needs: one per row block for every launch (a layer, a direction,
    /// a first step), at the most row blocks any kind has (8-row blocks); ``forwardBackward(_:)`` zeroes them once a step.
    var counterWords: Int { 2 * layers.count * T * rowBlocks(.fma(rows: 8)) }

    private func launch(_ t: GPUTrainer, _ direction: String, layer l: Int, from t0: Int, _ arguments: [KernelArgument]) throws {
        guard let sequence else { preconditionFailure("no whole-sequence kernels chosen") }
        let blocks = rowBlocks(sequence), slot = ((direction == "bwd" ? layers.count : 0) + l) * T + t0
        try t.gpu.launch(kernelName(sequence, direction), grid: (blocks, H / 16, 1), block: (H, 1, 1),
                         arguments + [.pointer(sync + DevicePointer(4 * slot * blocks))])
    }
}
