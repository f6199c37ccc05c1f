import TandemCore
import TandemNN
import TandemOptim
import TandemModels

/// One line of the GPU self-test: a GPU op or step against its CPU twin.
public struct SelfTestCase: Sendable {
    public var name: String
    public var precision: String
    /// ‖gpu − cpu‖ / ‖cpu‖ (or the largest absolute difference where noted).
    public var error: Double
    public var tolerance: Double
    public var note: String = ""
    public var passed: Bool { error.isFinite && error <= tolerance }
}

/// Runs every GPU kernel against a CPU reference on fresh random inputs, a training step of
/// each reference model against the CPU step on the same weights and data, graph replay
/// against eager steps, and fp16 loss scaling.
public final class GPUSelfTest {
    let gpu: CUDAContext
    var generator: SeededGenerator
    public private(set) var cases: [SelfTestCase] = []
    /// Called after each case (for printing as the test goes).
    public var report: (SelfTestCase) -> Void = { _ in }

    public init(gpu: CUDAContext, seed: UInt64 = 1) {
        self.gpu = gpu
        generator = SeededGenerator(seed: seed)
    }

    func record(_ name: String, _ precision: String, _ error: Double, _ tolerance: Double, note: String = "") {
        let c = SelfTestCase(name: name, precision: precision, error: error, tolerance: tolerance, note: note)
        cases.append(c)
        report(c)
    }

    func random(_ count: Int, scale: Float = 1) -> [Float] {
        Tensor.normal([count], generator: &generator).buffer.map { $0 * scale }
    }

    static func relativeError(_ a: [Float], _ b: [Double]) -> Double {
        precondition(a.count == b.count, "comparing \(a.count) values with \(b.count)")
        var num = 0.0, den = 0.0
        for i in 0..<a.count { let d = Double(a[i]) - b[i]; num += d * d; den += b[i] * b[i] }
        if a.contains(where: { !$0.isFinite }) { return .nan }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }
    static func relativeError(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }

    /// Uploads floats as the precision's storage type (returns the device buffer).
    func device(_ values: [Float], _ p: GPUPrecision) throws -> DevicePointer {
        let f = try gpu.allocate(bytes: 4 * values.count, category: .workspace)
        try gpu.upload(values, to: f)
        if p.bytes == 4 { return f }
        let h = try gpu.allocate(bytes: 2 * values.count, category: .workspace)
        try gpu.launch1D("cast_from_f32" + p.suffix, count: values.count, [.pointer(f), .pointer(h), .long(Int64(values.count))])
        gpu.free(f)
        return h
    }

    /// Reads a buffer of the precision's storage type back as floats.
    func host(_ pointer: DevicePointer, _ count: Int, _ p: GPUPrecision) throws -> [Float] {
        if p.bytes == 4 { return try gpu.downloadFloats(pointer, count: count) }
        let f = try gpu.allocate(bytes: 4 * count, category: .workspace)
        defer { gpu.free(f) }
        try gpu.launch1D("cast_to_f32" + p.suffix, count: count, [.pointer(pointer), .pointer(f), .long(Int64(count))])
        return try gpu.downloadFloats(f, count: count)
    }

    /// The values as the GPU sees them after rounding to the precision (the CPU twin's inputs).
    func rounded(_ values: [Float], _ p: GPUPrecision) -> [Float] {
        switch p {
        case .fp32, .tf32: values
        case .bf16: values.map { Float(bf16Bits: $0.bf16Bits) }
        case .fp16: values.map { Float(Float16(clamping: $0)) }
        }
    }

    // MARK: - Run everything

    public func runAll(models: [ReferenceModel] = ReferenceModel.allCases) throws {
        for p in [GPUPrecision.fp32, .bf16, .fp16] { try operations(p) }
        try gemmChecks(.tf32)
        for p in GPUPrecision.allCases { try cublasLtChecks(p) }
        for p in GPUPrecision.allCases { try tunedGEMMChecks(p) }
        try optimizerChecks()
        for p in [GPUPrecision.fp32, .bf16] { try cudnnChecks(p); try lstmPathChecks(p) }
        for m in models {
            for p in [GPUPrecision.fp32, .bf16] { try modelStep(m, p) }
        }
        try graphCheck(.mlp, .fp32)
        try graphCheck(.gpt, .bf16)
        try graphCheck(.lstm, .fp32)
        try graphCheck(.lstm, .bf16)
        try graphCheck(.cnn, .fp32)
        try graphCheck(.cnn, .bf16)
        for (w, p) in [(ReferenceModel.mlp, GPUPrecision.fp32), (.mlp, .bf16), (.gpt, .fp32), (.gpt, .bf16)] { try sideStreamCheck(w, p) }
        for (w, p) in [(ReferenceModel.mlp, GPUPrecision.fp32), (.mlp, .bf16), (.mlpWide, .fp32), (.gpt, .fp32), (.gpt, .bf16)] { try foldCheck(w, p) }
        for (w, p) in [(ReferenceModel.mlp, GPUPrecision.fp32), (.mlp, .bf16), (.gpt, .fp32), (.gpt, .bf16)] { try deferralCheck(w, p) }
        try lossScaling()
        try outOfMemoryCheck()
        try ncclChecks()
    }

    public var failures: [SelfTestCase] { cases.filter { !$0.passed } }
}

extension Float {
    init(bf16Bits: UInt16) { self = Float(bitPattern: UInt32(bf16Bits) << 16) }
    /// Round to nearest even, as the kernels do.
    var bf16Bits: UInt16 {
        let u = bitPattern
        if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(u >> 16) | 0x40 }
        return UInt16((u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
    }
}

extension Float16 {
    init(clamping value: Float) { self = Float16(value) }
}
