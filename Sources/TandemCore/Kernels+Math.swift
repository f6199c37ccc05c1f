// MARK: - Vectorisable transcendental functions

/// exp, sigmoid and tanh written without calls into libm, so loops over them vectorise.
/// Accuracy: exp within 2 ulp on [-87, 88]; tanh within 3e-7 absolute everywhere.
extension Kernels {
    /// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 polynomial, 2^n put in the exponent bits.
    @inline(__always) public static func exp(_ x: Float) -> Float {
        let clamped = Swift.min(Swift.max(x, -87.3), 88.3)
        let shifted = clamped * 1.442_695_04 + 12_582_912   // 1.5·2²³: adding it rounds to an integer
        let n = shifted - 12_582_912
        let r = clamped - n * 0.693_145_751_953_125 - n * 1.428_606_765_330_187e-6
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        // 2^n from the low bits of `shifted` (they hold 0x400000 + n): no Float→Int conversion,
        // which would trap on NaN (a diverged loss) in debug builds.
        let scale = Float(bitPattern: (shifted.bitPattern &+ 127) &<< 23)
        return p * scale
    }

    @inline(__always) public static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    /// tanh: an odd Taylor polynomial for |x| < 0.5 (no cancellation near 0), 1 − 2/(e^{2|x|}+1) beyond.
    @inline(__always) public static func tanh(_ x: Float) -> Float {
        let a = Swift.abs(x)
        let x2 = x * x
        var p: Float = 21_844.0 / 6_081_075
        p = p * x2 - 1_382.0 / 155_925
        p = p * x2 + 62.0 / 2_835
        p = p * x2 - 17.0 / 315
        p = p * x2 + 2.0 / 15
        p = p * x2 - 1.0 / 3
        let small = x + x * x2 * p
        let large = 1 - 2 / (exp(2 * a) + 1)
        let signedLarge = x < 0 ? -large : large
        return a < 0.5 ? small : signedLarge
    }
}

// MARK: - Error function and GELU

extension Kernels {
    /// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), vectorisable.
    @inline(__always) public static func erf(_ x: Float) -> Float {
        let a = Swift.abs(x)
        let t = 1 / (1 + 0.327_591_1 * a)
        var p: Float = 1.061_405_429
        p = p * t - 1.453_152_027
        p = p * t + 1.421_413_741
        p = p * t - 0.284_496_736
        p = p * t + 0.254_829_592
        let y = 1 - p * t * exp(-a * a)
        return x < 0 ? -y : y
    }

    /// y = x·Φ(x) with the exact (erf) Gaussian CDF, as PyTorch's default GELU.
    public static func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { let v = x[i]; y[i] = 0.5 * v * (1 + erf(v * 0.707_106_78)) }
    }

    /// As `gelu`, also storing Φ(x) for the backward pass.
    public static func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, cdf: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { let v = x[i]; let c = 0.5 * (1 + erf(v * 0.707_106_78)); cdf[i] = c; y[i] = v * c }
    }

    /// dx = g·(Φ(x) + x·φ(x)), with Φ(x) from the forward pass.
    public static func geluBackward(_ x: UnsafePointer<Float>, cdf: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                    _ dx: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            let pdf = exp(-0.5 * v * v) * 0.398_942_28
            dx[i] = g[i] * (cdf[i] + v * pdf)
        }
    }
}

// MARK: - In-place activations (one pointer each, so the loops vectorise)

extension Kernels {
    public static func sigmoidInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = sigmoid(x[i]) }
    }

    public static func tanhInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = tanh(x[i]) }
    }
}
