import TandemCore
import Testing

// MARK: - GEMM against a naive triple loop

/// One `Kernels.gemm` call: sizes, transposes, scalars and leading-dimension padding.
struct GEMMCase: Sendable, CustomTestStringConvertible {
    var transA: Bool, transB: Bool
    var m: Int, n: Int, k: Int
    var alpha: Float = 1, beta: Float = 0
    /// Extra elements per row beyond the packed leading dimension (0: pass nil, the default).
    var padA = 0, padB = 0, padC = 0

    var lda: Int { (transA ? m : k) + padA }
    var ldb: Int { (transB ? k : n) + padB }
    var ldc: Int { n + padC }
    var rowsA: Int { transA ? k : m }
    var rowsB: Int { transB ? n : k }

    var testDescription: String {
        "\(transA ? "Aᵀ" : "A")·\(transB ? "Bᵀ" : "B") m \(m) n \(n) k \(k) α \(alpha) β \(beta) pad \(padA)/\(padB)/\(padC)"
    }

    static let all: [GEMMCase] = {
        var cases: [GEMMCase] = []
        for transA in [false, true] {
            for transB in [false, true] {
                for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 13, 9), (33, 1, 65), (1, 31, 2), (64, 48, 80)] {
                    cases.append(GEMMCase(transA: transA, transB: transB, m: m, n: n, k: k))
                }
                cases.append(GEMMCase(transA: transA, transB: transB, m: 7, n: 9, k: 11, alpha: 0.5, beta: 0.25))
                cases.append(GEMMCase(transA: transA, transB: transB, m: 7, n: 9, k: 11, alpha: -1.5, beta: 1, padA: 3, padB: 2, padC: 5))
                cases.append(GEMMCase(transA: transA, transB: transB, m: 5, n: 3, k: 6, padA: 1, padB: 4, padC: 2))
                cases.append(GEMMCase(transA: transA, transB: transB, m: 4, n: 3, k: 0, beta: 0.5, padC: 1))
                cases.append(GEMMCase(transA: transA, transB: transB, m: 4, n: 3, k: 0, beta: 0))
            }
        }
        return cases
    }()

    /// Runs `gemm` (portable or BLAS) on seeded data; returns C (with its padding) and the
    /// naive result it should equal (padding untouched).
    func run(portable: Bool) -> (c: [Float], expected: [Float]) {
        var g = SeededGenerator(seed: UInt64(m * 10_000 + n * 100 + k))
        let a = g.uniforms(rowsA * lda, in: -1...1)
        let b = g.uniforms(rowsB * ldb, in: -1...1)
        // With β = 0, C's old contents must be ignored, even NaN (BLAS semantics; Tandem hands
        // gemm uninitialised outputs).
        var c = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : g.uniforms(m * ldc, in: -1...1)
        for i in 0..<m { for j in n..<ldc { c[i * ldc + j] = 12345 } }  // padding sentinels
        var expected = c
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(x) * Double(y)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                expected[i * ldc + j] = Float(Double(alpha) * s + old)
            }
        }
        let saved = Kernels.forcePortableGEMM
        Kernels.forcePortableGEMM = portable
        defer { Kernels.forcePortableGEMM = saved }
        let packed = padA == 0 && padB == 0 && padC == 0
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    if packed {
                        Kernels.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!,
                                     b: pb.baseAddress!, beta: beta, c: pc.baseAddress!)
                    } else {
                        Kernels.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: lda,
                                     b: pb.baseAddress!, ldb: ldb, beta: beta, c: pc.baseAddress!, ldc: ldc)
                    }
                }
            }
        }
        return (c, expected)
    }
}

/// `Kernels.forcePortableGEMM` is process-wide, so these run one at a time. (Other suites
/// may run meanwhile on either path; both are correct, which is what this suite checks.)
@Suite("GEMM", .serialized)
struct GEMMTests {
    /// Float32 sums of up to 80 products of values in [-1, 1] against a Double reference.
    static let tolerance = Tolerance(relative: 1e-5, absolute: 1e-5)

    @Test("portable GEMM matches the naive loop", arguments: GEMMCase.all)
    func portable(_ c: GEMMCase) {
        let (result, expected) = c.run(portable: true)
        expectClose(result, shape: [c.m, c.ldc], expected, shape: [c.m, c.ldc], Self.tolerance, "C")
    }

    @Test("BLAS GEMM matches the naive loop", .enabled(if: BLAS.library != nil, "no BLAS library on this machine"),
          arguments: GEMMCase.all)
    func blas(_ c: GEMMCase) {
        let (result, expected) = c.run(portable: false)
        expectClose(result, shape: [c.m, c.ldc], expected, shape: [c.m, c.ldc], Self.tolerance, "C")
    }

    @Test("portable and BLAS agree on a linear layer's forward and backward")
    func linearBothPaths() throws {
        var g = SeededGenerator(seed: 5)
        let x = Parameter(.normal([7, 13], generator: &g)), w = Parameter(.normal([11, 13], generator: &g))
        let b = Parameter(.normal([11], generator: &g)), r = Tensor.normal([7, 11], generator: &g)
        func run(portable: Bool) throws -> [Tensor] {
            let saved = Kernels.forcePortableGEMM
            Kernels.forcePortableGEMM = portable
            defer { Kernels.forcePortableGEMM = saved }
            for p in [x, w, b] { p.zeroGradient() }
            let tape = Tape()
            let y = tape.record { Tensor.linear(x.variable, weight: w.variable, bias: b.variable) }
            tape.backward(y, seed: r)
            return [y.detached.copy(), try #require(x.gradient), try #require(w.gradient), try #require(b.gradient)]
        }
        let portable = try run(portable: true), library = try run(portable: false)
        for (name, (p, l)) in zip(["y", "dx", "dw", "db"], zip(portable, library)) {
            expectClose(p, l, Tolerance(relative: 1e-5, absolute: 1e-5), name)
        }
    }
}
