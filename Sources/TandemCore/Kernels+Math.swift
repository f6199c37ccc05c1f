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
        let scale = Float(bitPattern: UInt32(truncatingIfNeeded: Int32(n) + 127) << 23)
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
