import TandemCore
import Testing

// MARK: - SeededGenerator

@Suite("SeededGenerator")
struct SeededGeneratorTests {
    /// Reference outputs written by a direct Python port of Blackman & Vigna's C code
    /// (splitmix64 seeding, then xoshiro256**).
    @Test("matches the reference xoshiro256** and SplitMix64 streams", arguments: [
        (0, [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F, 0xF88B_B8A8_724C_81EC],
         [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0, 0x6AA5_94F1_262D_2D2C]),
        (42, [0xBDD7_3226_2FEB_6E95, 0x28EF_E333_B266_F103, 0x4752_6757_130F_9F52, 0x581C_E1FF_0E4A_E394],
         [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1, 0xECB8_AD47_03B3_60A1]),
    ] as [(UInt64, [UInt64], [UInt64])])
    func reference(seed: UInt64, state: [UInt64], outputs: [UInt64]) {
        var g = SeededGenerator(seed: seed)
        #expect(g.stateWords == state)
        #expect((0..<4).map { _ in g.next() } == outputs)
    }

    @Test("xoshiro256** from state {1, 2, 3, 4} gives the published first outputs")
    func publishedState() {
        var g = SeededGenerator(state: [1, 2, 3, 4])
        #expect((0..<3).map { _ in g.next() } == [11520, 0, 1_509_978_240])
        #expect(g.stateWords == [211_106_635_448_322, 211_106_232_532_999, 211_140_593_188_866, 9_223_547_958_715_220_736])
    }

    @Test("the same seed gives the same stream, another seed another")
    func determinism() {
        var a = SeededGenerator(seed: 123), b = SeededGenerator(seed: 123), c = SeededGenerator(seed: 124)
        let sa = (0..<100).map { _ in a.next() }, sb = (0..<100).map { _ in b.next() }, sc = (0..<100).map { _ in c.next() }
        #expect(sa == sb)
        #expect(sa != sc)
        #expect(Set(sa).count == 100)
        var t1 = SeededGenerator(seed: 5), t2 = SeededGenerator(seed: 5)
        #expect(Tensor.normal([50], generator: &t1).scalars == Tensor.normal([50], generator: &t2).scalars)
    }

    @Test("state round-trips through stateWords and init(state:) mid-stream")
    func stateRoundTrip() {
        var g = SeededGenerator(seed: 77)
        for _ in 0..<37 { _ = g.next() }
        var restored = SeededGenerator(state: g.stateWords)
        #expect(restored == g)
        #expect((0..<20).map { _ in restored.next() } == (0..<20).map { _ in g.next() })
        #expect(restored.nextNormal() == g.nextNormal())
        #expect(restored.nextUniform() == g.nextUniform())
    }

    @Test("uniform values lie in [0, 1) with mean ½; normal values have mean 0 and variance 1")
    func distributions() {
        var g = SeededGenerator(seed: 2024)
        let n = 100_000
        let u = (0..<n).map { _ in g.nextUniform() }
        #expect(u.allSatisfy { $0 >= 0 && $0 < 1 })
        let uMean = u.reduce(0.0) { $0 + Double($1) } / Double(n)
        #expect(abs(uMean - 0.5) < 0.005)
        let z = (0..<n).map { _ in g.nextNormal() }
        #expect(z.allSatisfy { $0.isFinite })
        let mean = z.reduce(0.0) { $0 + Double($1) } / Double(n)
        let variance = z.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.02)
        let t = Tensor.uniform([1000], low: -3, high: -1, generator: &g)
        #expect(t.scalars.allSatisfy { $0 >= -3 && $0 <= -1 })
    }
}

// MARK: - Half-width conversions

@Suite("HalfConversion")
struct HalfConversionTests {
    @Test("every bfloat16 bit pattern round-trips through Float")
    func bfloat16RoundTrip() {
        for bits in UInt16.min...UInt16.max {
            let value = HalfConversion.float(bfloat16: bits)
            if value.isNaN {
                #expect(HalfConversion.bfloat16Bits(value) & 0x7FFF > 0x7F80, "NaN \(bits) did not stay NaN")
            } else if HalfConversion.bfloat16Bits(value) != bits {
                Issue.record("bfloat16 \(String(bits, radix: 16)) → \(value) → \(String(HalfConversion.bfloat16Bits(value), radix: 16))")
            }
        }
    }

    @Test("every float16 bit pattern round-trips through Float")
    func float16RoundTrip() {
        for bits in UInt16.min...UInt16.max {
            let value = HalfConversion.float(float16: bits)
            if value.isNaN {
                #expect(HalfConversion.float16Bits(value) & 0x7FFF > 0x7C00, "NaN \(bits) did not stay NaN")
            } else if HalfConversion.float16Bits(value) != bits {
                Issue.record("float16 \(String(bits, radix: 16)) → \(value) → \(String(HalfConversion.float16Bits(value), radix: 16))")
            }
        }
    }

    @Test("Float → bfloat16 rounds to nearest, ties to even", arguments: [
        (0x3F80_0000, 0x3F80),  // 1
        (0x3F80_7FFF, 0x3F80),  // just below half an ulp: down
        (0x3F80_8000, 0x3F80),  // tie, even below: down
        (0x3F80_8001, 0x3F81),  // just above the tie: up
        (0x3F81_8000, 0x3F82),  // tie, odd below: up to even
        (0xBF81_8000, 0xBF82),  // negative tie: same magnitude rule
        (0x7F7F_FFFF, 0x7F80),  // largest float rounds to infinity
        (0x7F80_0000, 0x7F80),  // +∞
        (0xFF80_0000, 0xFF80),  // −∞
        (0x8000_0000, 0x8000),  // −0
        (0x0000_0001, 0x0000),  // smallest subnormal: to zero
        (0x007F_FFFF, 0x0080),  // largest subnormal: up to the smallest normal
        (0x3FFF_8000, 0x4000),  // tie carrying into the exponent
    ] as [(UInt32, UInt16)])
    func bfloat16Rounding(_ input: UInt32, _ expected: UInt16) {
        #expect(HalfConversion.bfloat16Bits(Float(bitPattern: input)) == expected)
    }

    @Test("NaN stays NaN in bfloat16, even when its payload sits in the dropped bits")
    func bfloat16NaN() {
        for bits: UInt32 in [0x7FC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FFF_FFFF] {
            let b = HalfConversion.bfloat16Bits(Float(bitPattern: bits))
            #expect(HalfConversion.float(bfloat16: b).isNaN, "NaN \(String(bits, radix: 16)) became \(String(b, radix: 16))")
            #expect(b & 0x8000 == UInt16(bits >> 16) & 0x8000, "sign lost")
        }
    }

    @Test("Float → float16 rounds to nearest, ties to even", arguments: [
        (1.0, 0x3C00),
        (1 + 0x1p-11, 0x3C00),  // tie, even below
        (1 + 3 * 0x1p-11, 0x3C02),  // tie, odd below: up
        (1 + 0x1p-11 + 0x1p-20, 0x3C01),  // above the tie
        (65504, 0x7BFF),  // largest half
        (65519, 0x7BFF),  // below the tie with 65536
        (65520, 0x7C00),  // tie with 65536 (even): infinity
        (0x1p-24, 0x0001),  // smallest subnormal
        (0x1p-25, 0x0000),  // tie with zero (even)
        (0x1p-25 * 1.0001, 0x0001),
        (3 * 0x1p-25, 0x0002),  // subnormal tie, odd below: up
        (-2, 0xC000),
        (-0.0, 0x8000),
    ] as [(Float, UInt16)])
    func float16Rounding(_ input: Float, _ expected: UInt16) {
        #expect(HalfConversion.float16Bits(input) == expected)
    }
}
