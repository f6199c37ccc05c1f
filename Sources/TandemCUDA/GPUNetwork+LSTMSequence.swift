/// The whole-sequence ways of running an ``LSTMNetwork``'s recurrence: all steps of one layer's
/// forward, and of its backward, in one launch each (Kernels+LSTMSequence.swift), instead of a GEMM
/// and a cell launch per step. Everything around the recurrence — the input projections, the head,
/// the weight gradients over all steps — is the step-by-step path's.
extension LSTMNetwork {
    /// The whole-sequence kernels: blocks of `rows` batch rows that meet at a counter in global memory
    /// after each step, so all of a launch's blocks must be resident at once (offered only when they fit).
    enum SequenceKernels {
        case grid(rows: Int)

        var name: String {
            switch self {
            case .grid(let rows): "whole-sequence kernels (\(rows)-row blocks)"
            }
        }
    }

    /// Hidden sizes the kernels are compiled for (Kernels+LSTMSequence.swift instantiates these).
    static let sequenceHiddenSizes = [128, 256]

    func sequenceKernel(_ direction: String) -> String {
        switch sequence {
        case .grid(let rows): "lstm_seq_\(direction)_\(H)x\(rows)" + precision.suffix
        case nil: preconditionFailure("no whole-sequence kernels chosen")
        }
    }

    /// The whole-sequence kernels that can run here, as options for ``prepare(_:)``.
    func sequenceOptions(_ gpu: CUDAContext, notes: inout [String]) throws -> [Recurrence] {
        guard Self.sequenceHiddenSizes.contains(H) else {
            notes.append("no whole-sequence kernels for hidden size \(H) (only \(Self.sequenceHiddenSizes))")
            return []
        }
        guard gpu.device.computeCapability.major >= 7 else { return [] }   // ld.acquire needs sm_70
        var options: [Recurrence] = []
        for rows in [16, 8] {
            sequence = .grid(rows: rows)
            let blocks = (B + rows - 1) / rows * (H / 16)
            let fit = min(try gpu.residentBlocks(sequenceKernel("fwd"), threads: H), try gpu.residentBlocks(sequenceKernel("bwd"), threads: H))
            if blocks <= fit { options.append(.sequence(.grid(rows: rows))) } else { notes.append("\(SequenceKernels.grid(rows: rows).name): \(blocks) blocks, \(fit) fit at once") }
        }
        sequence = nil
        return options
    }

    private var rowBlocks: Int {
        switch sequence {
        case .grid(let rows): (B + rows - 1) / rows
        case nil: 0
        }
    }

    private func launch(_ t: GPUTrainer, _ direction: String, layer l: Int, _ arguments: [KernelArgument]) throws {
        let counters = sync + DevicePointer(4 * ((direction == "bwd" ? layers.count : 0) + l) * rowBlocks)
        try t.gpu.launch(sequenceKernel(direction), grid: (rowBlocks, H / 16, 1), block: (H, 1, 1), arguments + [.pointer(counters)])
    }

    /// Every forward step of `layer` (index `l`): its gates hold `x·W_ihᵀ` on entry.
    func sequenceForward(_ t: GPUTrainer, _ layer: Layer, _ l: Int) throws {
        try launch(t, "fwd", layer: l, [.pointer(layer.gates), .pointer(t.operand(layer.whh)), .pointer(t.weight(layer.bih)),
                                        .pointer(t.weight(layer.bhh)), .pointer(layer.c), .pointer(layer.h), .int(Int32(B)), .int(Int32(T))])
    }

    /// Every backward step of `layer` into ``dGates``: the gradient from above is `dLast` at the last step
    /// (the top layer) or `dSequence` at every step (the layers below); the other is 0.
    func sequenceBackward(_ t: GPUTrainer, _ layer: Layer, _ l: Int, dLast: DevicePointer, dSequence: DevicePointer) throws {
        try launch(t, "bwd", layer: l, [.pointer(layer.gates), .pointer(layer.c), .pointer(t.operand(layer.whh)), .pointer(dLast),
                                        .pointer(dSequence), .pointer(dGates), .int(Int32(B)), .int(Int32(T))])
    }
}
