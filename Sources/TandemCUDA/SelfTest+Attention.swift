#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension GPUSelfTest {
    // MARK: - Fused attention

    /// The fused causal attention kernels (``FlashAttention``, 16-bit only) against attention computed in Double
    /// from the same rounded inputs: a partial tile (T 48), a partial last tile after a full one (T 80), and a
    /// GPT-sized sequence (T 256).
    func attentionChecks(_ p: GPUPrecision) throws {
        for (B, H, T) in [(2, 3, 48), (1, 1, 80), (1, 2, 256)] { try attentionCheck(p, B: B, H: H, T: T) }
    }

    func attentionCheck(_ p: GPUPrecision, B: Int, H: Int, T: Int) throws {
        let hd = FlashAttention.headSize, C = H * hd, N = B * T, tol = tolerance(p)
        let scale = 1 / Float(hd).squareRoot()
        let qkv = rounded(random(3 * N * C), p), dOut = rounded(random(N * C), p)
        let dqkv = try device(qkv, p), ddOut = try device(dOut, p)
        let out = try gpu.allocate(bytes: p.bytes * N * C, category: .workspace)
        let lse = try gpu.allocate(bytes: 4 * B * H * T, category: .workspace)
        let grad = try gpu.allocate(bytes: p.bytes * 3 * N * C, category: .workspace)
        let rowDots = try gpu.allocate(bytes: 4 * B * H * T, category: .workspace)
        try FlashAttention.forward(gpu, p, qkv: dqkv, out: out, lse: lse, B: B, T: T, H: H, scale: scale)
        try FlashAttention.backward(gpu, p, qkv: dqkv, out: out, dOut: ddOut, lse: lse, rowDots: rowDots, dqkv: grad, B: B, T: T, H: H, scale: scale)

        // Reference, head by head: S = q·kᵀ·scale over keys j ≤ i, P = softmax(S), O = P·v; backward
        // dv = Pᵀ·dO, dS = P ∘ (dO·vᵀ − rowsum(P ∘ dO·vᵀ)), dq = dS·k·scale, dk = dSᵀ·q·scale.
        var oRef = [Double](repeating: 0, count: N * C), lseRef = [Double](repeating: 0, count: B * H * T)
        var gRef = [Double](repeating: 0, count: 3 * N * C)   // [B, T, 3, H, hd] like qkv
        let s = Double(scale)
        for b in 0..<B { for h in 0..<H {
            // Where time t's q (part 0), k (1) or v (2) starts in qkv (and its gradient), and its output (and dO).
            func at(_ t: Int, _ part: Int) -> Int { (b * T + t) * 3 * C + part * C + h * hd }
            func outAt(_ t: Int) -> Int { (b * T + t) * C + h * hd }
            for i in 0..<T {
                var scores = [Double](repeating: 0, count: i + 1)
                for j in 0...i {
                    var dot = 0.0
                    for d in 0..<hd { dot += Double(qkv[at(i, 0) + d]) * Double(qkv[at(j, 1) + d]) }
                    scores[j] = s * dot
                }
                let m = scores.max()!
                let z = scores.reduce(0) { $0 + exp($1 - m) }
                lseRef[(b * H + h) * T + i] = m + log(z)
                let prob = scores.map { exp($0 - m) / z }
                var dP = [Double](repeating: 0, count: i + 1), dot = 0.0
                for j in 0...i {
                    for d in 0..<hd {
                        let vjd = Double(qkv[at(j, 2) + d])
                        oRef[outAt(i) + d] += prob[j] * vjd
                        dP[j] += Double(dOut[outAt(i) + d]) * vjd
                        gRef[at(j, 2) + d] += prob[j] * Double(dOut[outAt(i) + d])
                    }
                    dot += prob[j] * dP[j]
                }
                for j in 0...i {
                    let dS = prob[j] * (dP[j] - dot) * s
                    for d in 0..<hd {
                        gRef[at(i, 0) + d] += dS * Double(qkv[at(j, 1) + d])
                        gRef[at(j, 1) + d] += dS * Double(qkv[at(i, 0) + d])
                    }
                }
            }
        } }
        let shape = "B \(B) H \(H) T \(T)"
        record("flash attention forward \(shape)", p.rawValue, Self.relativeError(try host(out, N * C, p), oRef), tol)
        record("flash attention log-sum-exp \(shape)", p.rawValue, Self.relativeError(try gpu.downloadFloats(lse, count: B * H * T), lseRef), tol)
        let g = try host(grad, 3 * N * C, p)
        for (part, name) in ["dq", "dk", "dv"].enumerated() {
            let rows = (0..<N).flatMap { r in (0..<C).map { (r * 3 + part) * C + $0 } }
            record("flash attention backward \(name) \(shape)", p.rawValue, Self.relativeError(rows.map { g[$0] }, rows.map { gRef[$0] }), tol)
        }
        for ptr in [dqkv, ddOut, out, lse, rowDots, grad] { gpu.free(ptr) }
    }
}
