import Testing
@testable import TandemCore

/// The causal attention kernel works in blocks of query rows; sequences longer than one
/// block must give what the plain, composed formula gives.
@Suite("Causal attention in blocks")
struct AttentionBlockTests {
    /// Attention written with generic ops: split heads, Q·Kᵀ·scale + mask, softmax, ·V, merge.
    static func reference(_ qkv: Tensor, heads: Int) -> Tensor {
        let b = qkv.shape[0], t = qkv.shape[1], d = qkv.shape[2] / 3, hd = d / heads
        func split(_ i: Int) -> Tensor {
            qkv.slice(axis: 2, (i * d)..<((i + 1) * d)).reshaped([b, t, heads, hd]).permuted([0, 2, 1, 3])
        }
        let q = split(0), k = split(1), v = split(2)
        var mask = [Float](repeating: 0, count: t * t)
        for i in 0..<t { for j in (i + 1)..<max(t, i + 1) { mask[i * t + j] = -1e9 } }
        let scores = Tensor.matmul(q, k.transposed()) * (1 / Float(hd).squareRoot()) + Tensor(mask, shape: [t, t])
        let o = Tensor.matmul(scores.softmax(), v)
        return o.permuted([0, 2, 1, 3]).reshaped([b, t, d])
    }

    @Test(arguments: [(1, 150, 2, 4), (2, 64, 1, 3), (2, 65, 2, 2), (1, 200, 3, 2)])
    func blockedMatchesComposed(_ shape: (Int, Int, Int, Int)) throws {
        let (b, t, heads, hd) = shape
        var g = SeededGenerator(seed: 7)
        let x = Parameter(.normal([b, t, 3 * heads * hd], generator: &g))
        let r = Tensor.normal([b, t, heads * hd], generator: &g)
        func run(_ f: (Tensor) -> Tensor) -> (Tensor, Tensor) {
            x.zeroGradient()
            let tape = Tape()
            let out = tape.record { f(x.variable) }
            let loss = tape.record { (out * r).sum() }
            tape.backward(loss)
            return (out.detached, x.gradient!)
        }
        let (fast, fastGrad) = run { Tensor.causalAttention($0, heads: heads) }
        let (slow, slowGrad) = run { Self.reference($0, heads: heads) }
        for (a, e) in [(fast, slow), (fastGrad, slowGrad)] {
            #expect(a.shape == e.shape)
            let worst = zip(a.scalars, e.scalars).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 2e-5 * max(1, e.scalars.map(abs).max() ?? 0), "max difference \(worst) for B=\(b) T=\(t) H=\(heads) hd=\(hd)")
        }
    }
}
