import TandemCore
import Testing

// MARK: - Broadcasting shape rules and sumTo

/// Reads element `index` (of the broadcast shape `target`) from a row-major array of `shape`.
func broadcastRead(_ values: [Float], shape: [Int], at index: [Int], target: [Int]) -> Float {
    let pad = target.count - shape.count
    var flat = 0
    for d in 0..<shape.count {
        flat = flat * shape[d] + (shape[d] == 1 ? 0 : index[d + pad])
    }
    return values[flat]
}

/// Every multi-index of `shape`, row-major.
func indices(of shape: [Int]) -> [[Int]] {
    var result: [[Int]] = [[]]
    for size in shape { result = result.flatMap { prefix in (0..<size).map { prefix + [$0] } } }
    return result
}

@Suite("Broadcasting")
struct BroadcastTests {
    @Test("broadcastShape follows NumPy's rules", arguments: [
        ([3, 4], [4], [3, 4]), ([4], [3, 4], [3, 4]), ([2, 1, 3], [4, 1], [2, 4, 3]), ([], [2, 3], [2, 3]),
        ([1], [5], [5]), ([5, 1, 1], [1, 6, 1], [5, 6, 1]), ([2, 3], [2, 3], [2, 3]), ([1, 1], [], [1, 1]),
        ([3, 0], [1], [3, 0]),
    ] as [([Int], [Int], [Int])])
    func compatible(_ a: [Int], _ b: [Int], _ expected: [Int]) {
        #expect(Tensor.broadcastShape(a, b) == expected)
        #expect(Tensor.broadcastShape(b, a) == expected)
    }

    @Test("incompatible shapes do not broadcast", arguments: [
        ([3], [4]), ([2, 3], [3, 2]), ([2, 3, 4], [3, 1, 4]), ([3, 0], [2]),
    ] as [([Int], [Int])])
    func incompatible(_ a: [Int], _ b: [Int]) {
        #expect(Tensor.broadcastShape(a, b) == nil)
    }

    @Test("broadcast arithmetic matches element-wise indexing", arguments: [
        ([3, 4], [4]), ([4], [3, 4]), ([2, 1, 3], [4, 1]), ([4, 1], [2, 1, 3]), ([], [2, 3]), ([3, 1], [1, 1]),
        ([2, 3, 1], [2, 1, 5]), ([1, 4], [3, 1]),
    ] as [([Int], [Int])])
    func values(_ aShape: [Int], _ bShape: [Int]) throws {
        var g = SeededGenerator(seed: 9)
        let a = Tensor.normal(aShape, generator: &g), b = Tensor.uniform(bShape, low: 0.5, high: 2, generator: &g)
        let shape = try #require(Tensor.broadcastShape(aShape, bShape))
        let ops: [(String, (Tensor, Tensor) -> Tensor, (Float, Float) -> Float)] = [
            ("+", { $0 + $1 }, { $0 + $1 }), ("-", { $0 - $1 }, { $0 - $1 }),
            ("*", { $0 * $1 }, { $0 * $1 }), ("/", { $0 / $1 }, { $0 / $1 }),
        ]
        for (name, op, scalarOp) in ops {
            let expected = indices(of: shape).map {
                scalarOp(broadcastRead(a.scalars, shape: aShape, at: $0, target: shape),
                         broadcastRead(b.scalars, shape: bShape, at: $0, target: shape))
            }
            expectClose(op(a, b), expected, shape: shape, .exact, "\(aShape) \(name) \(bShape)")
        }
    }

    @Test("sumTo adds over the broadcast dimensions", arguments: [
        ([2, 4, 3], [4, 1]), ([2, 4, 3], [3]), ([2, 4, 3], [2, 1, 3]), ([2, 4, 3], []), ([2, 4, 3], [2, 4, 3]),
        ([2, 4, 3], [1, 4, 3]), ([2, 4, 3], [2, 4, 1]), ([3, 4], [1, 1]), ([5], [1]),
    ] as [([Int], [Int])])
    func sumTo(_ shape: [Int], _ target: [Int]) {
        var g = SeededGenerator(seed: 10)
        let x = Tensor.normal(shape, generator: &g)
        var expected = [Double](repeating: 0, count: Tensor.count(of: target))
        let pad = shape.count - target.count
        for (flat, index) in indices(of: shape).enumerated() {
            var t = 0
            for d in 0..<target.count { t = t * target[d] + (target[d] == 1 ? 0 : index[d + pad]) }
            expected[t] += Double(x.scalars[flat])
        }
        expectClose(x.sumTo(target), expected.map(Float.init), shape: target, Tolerance(relative: 1e-5, absolute: 1e-5))
    }
}
