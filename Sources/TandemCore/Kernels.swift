#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Kernels

/// Plain CPU kernels on raw pointers: the hot loops under every tensor operation.
public enum Kernels {
    /// When true, `gemm` ignores BLAS (tests compare the two paths).
    nonisolated(unsafe) public static var forcePortableGEMM = false

    /// C[m×n] = alpha · op(A) · op(B) + beta · C, all row-major; op transposes when asked.
    /// `lda`, `ldb`, `ldc` default to the packed leading dimensions.
    ///
    /// - Complexity: 2·m·n·k floating-point operations.
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        if m == 0 || n == 0 { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        if !forcePortableGEMM, let blas = BLAS.loaded {
            // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
            blas.sgemm(101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k),
                       alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
            return
        }
        portableGEMM(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                     a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// The Swift fallback: packs op(B) row-major, then runs an i-k-j loop whose inner
    /// loop over j the compiler vectorises.
    static func portableGEMM(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
        defer { packed.deallocate() }
        for p in 0..<k {
            for j in 0..<n { packed[p * n + j] = transB ? b[j * ldb + p] : b[p * ldb + j] }
        }
        let row = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { row.deallocate() }
        for i in 0..<m {
            row.initialize(repeating: 0, count: n)
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bp = packed + p * n
                for j in 0..<n { row[j] += av * bp[j] }
            }
            let cp = c + i * ldc
            if beta == 0 {
                for j in 0..<n { cp[j] = alpha * row[j] }
            } else {
                for j in 0..<n { cp[j] = alpha * row[j] + beta * cp[j] }
            }
        }
    }

    // MARK: Element-wise

    @inlinable public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] + b[i] }
    }

    @inlinable public static func addInPlace(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { a[i] += b[i] }
    }

    @inlinable public static func scale(_ a: UnsafeMutablePointer<Float>, by s: Float, count: Int) {
        for i in 0..<count { a[i] *= s }
    }

    /// y += alpha · x
    @inlinable public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += alpha * x[i] }
    }

    /// out = a ⊙ b
    @inlinable public static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] * b[i] }
    }

    /// c = f ⊙ c₋₁ + i ⊙ g, reading activated gates laid out i, f, g, o (each `count` long).
    @inlinable public static func lstmCell(gates: UnsafePointer<Float>, previousCell: UnsafePointer<Float>?,
                                           cell: UnsafeMutablePointer<Float>, count h: Int) {
        let i = gates, f = gates + h, g = gates + 2 * h
        if let previous = previousCell {
            for j in 0..<h { cell[j] = f[j] * previous[j] + i[j] * g[j] }
        } else {
            for j in 0..<h { cell[j] = i[j] * g[j] }
        }
    }

    /// dx = g where y > 0, else 0 (branch-free so it vectorises).
    @inlinable public static func reluBackward(output y: UnsafePointer<Float>, gradient g: UnsafePointer<Float>,
                                               into dx: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { dx[i] = g[i] * Float(y[i] > 0 ? 1 : 0) }
    }

    /// Sum of squares, accumulated in Double so long vectors keep their precision.
    @inlinable public static func sumOfSquares(_ a: UnsafePointer<Float>, count: Int) -> Double {
        var total = 0.0
        var i = 0
        while i < count {
            let end = min(i + 4096, count)
            var block: Float = 0
            for j in i..<end { block += a[j] * a[j] }
            total += Double(block)
            i = end
        }
        return total
    }
}
