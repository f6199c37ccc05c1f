import Foundation
import TandemCollectives
import TandemCore
import TandemParallel
import Testing

// MARK: - Collectives of the threads backend

/// Which all-reduce algorithm a world is forced to take.
enum Algorithm: String, CaseIterable, Sendable, CustomStringConvertible {
    case tree, ring
    var description: String { rawValue }
    /// `treeThresholdBytes` that sends every all-reduce (even an empty one) down this path.
    var threshold: Int { self == .tree ? Int.max : -1 }
}

/// Rank `rank`'s input at element `i`: quarters in [−2, 2], so that every sum of up to eight
/// of them is exact in float32, bfloat16 and float16, whatever the order of addition.
func input(rank: Int, _ i: Int) -> Float { Float((i &* 7 &+ rank &* 13 &+ (i / 5) &* 3) % 17 - 8) / 4 }

/// `input(rank:_:)` for elements `0..<count`, cached per rank (the sweeps ask for the same rows many times).
func inputs(rank: Int, count: Int) -> [Float] {
    let row = inputRows.withLock { rows -> [Float] in
        if let row = rows[rank], row.count >= count { return row }
        let n = Swift.max(count, 70_001)
        let row = [Float](unsafeUninitializedCapacity: n) { out, initialized in
            var i = 0
            while i < n { out[i] = input(rank: rank, i); i += 1 }
            initialized = n
        }
        rows[rank] = row
        return row
    }
    return count == row.count ? row : Array(row[..<count])
}

let inputRows = Locked([Int: [Float]]())

/// The 16-bit formats' unit roundoff (relative distance to the nearest neighbour / 2, ×2 for slack).
func halfTolerance(_ dtype: DType) -> Tolerance {
    switch dtype {
    case .bfloat16: Tolerance(relative: 1.0 / 128, absolute: 0)
    case .float16: Tolerance(relative: 1.0 / 1024, absolute: 0)
    default: Tolerance(relative: 1e-6, absolute: 0)
    }
}

/// Inputs that are not exact in 16 bits.
func inexact(_ r: Int, _ i: Int) -> Float { sin(Float(i) * 0.37 + Float(r)) * 3 + 0.01 * Float(r) }

let collectiveDTypes: [DType] = [.float32, .bfloat16, .float16]

extension ParallelTests {
    @Suite("Collectives") struct Collectives {
        static let counts = [0, 1, 2, 3, 7, 1000, 70_001]

        // MARK: All-reduce

        @Test("all-reduce sum, average and max on every rank, tree and ring, float32 and 16-bit", arguments: counts, 1...8)
        func allReduce(count: Int, ranks: Int) throws {
            let cases = collectiveDTypes.flatMap { d in ReduceOperation.allCases.map { (d, $0) } }
            // Expected sums and maxima (exact for these inputs in every dtype).
            var sums = [Float](repeating: 0, count: count), maxima = [Float](repeating: -.infinity, count: count)
            for r in 0..<ranks {
                let row = inputs(rank: r, count: count)
                for i in 0..<count { let v = row[i]; sums[i] += v; maxima[i] = Swift.max(maxima[i], v) }
            }
            for algorithm in Algorithm.allCases {
                let world = ThreadWorld(size: ranks, timeout: 60, treeThresholdBytes: algorithm.threshold)
                let results = runRanks(world) { group -> [[Float]] in
                    try cases.map { dtype, operation in
                        let buffer = RankBuffer(inputs(rank: group.rank, count: count), dtype: dtype)
                        try group.allReduce(buffer.collective, operation: operation).wait()
                        return buffer.values
                    }
                }
                let label = "all-reduce of \(count) on \(ranks) ranks (\(algorithm))"
                let perRank = try values(results, label)
                for (c, (dtype, operation)) in cases.enumerated() {
                    let expected: [Float] = switch operation {
                    case .sum: sums
                    case .max: maxima
                    case .average: sums.map { RankBuffer.rounded($0 * (1 / Float(ranks)), dtype) }
                    }
                    let tolerance = operation == .average ? halfTolerance(dtype) : .exact
                    expectClose([perRank[0][c]], [expected], tolerance, "\(label), \(operation), \(dtype), rank 0")
                    for r in 1..<ranks where perRank[r][c] != perRank[0][c] {
                        expectClose([perRank[r][c]], [perRank[0][c]], .exact, "\(label), \(operation), \(dtype): rank \(r) vs rank 0")
                    }
                }
            }
        }

        @Test("all-reduce of several buffers of mixed sizes and dtypes in one call", arguments: [1, 2, 3, 5, 8], Algorithm.allCases)
        func allReduceSeveral(ranks: Int, algorithm: Algorithm) throws {
            let layout: [(count: Int, dtype: DType)] = [(3, .float32), (0, .float32), (1000, .bfloat16), (70_001, .float32), (7, .float16), (1, .float32)]
            let world = ThreadWorld(size: ranks, timeout: 60, treeThresholdBytes: algorithm.threshold)
            let results = runRanks(world) { group -> [[Float]] in
                var outputs: [[Float]] = []
                for operation in [ReduceOperation.sum, .max] {
                    let buffers = layout.enumerated().map { k, l in RankBuffer(inputs(rank: group.rank + k, count: l.count), dtype: l.dtype) }
                    try group.allReduce(buffers.map(\.collective), operation: operation).wait()
                    outputs += buffers.map(\.values)
                }
                return outputs
            }
            let got = try values(results, "several buffers on \(ranks) ranks (\(algorithm))")
            for (o, operation) in [ReduceOperation.sum, .max].enumerated() {
                for (k, l) in layout.enumerated() {
                    var expected = inputs(rank: k, count: l.count)
                    for q in 1..<ranks {
                        let row = inputs(rank: q + k, count: l.count)
                        for i in 0..<l.count { expected[i] = operation == .max ? Swift.max(expected[i], row[i]) : expected[i] + row[i] }
                    }
                    for r in 0..<ranks where got[r][o * layout.count + k] != expected {
                        expectClose([got[r][o * layout.count + k]], [expected], .exact,
                                    "\(operation) of buffer \(k) (\(l.count) \(l.dtype)) of several on \(ranks) ranks (\(algorithm)), rank \(r)")
                    }
                }
            }
        }

        @Test("several buffers with one mismatched: .mismatch, and no buffer is touched", arguments: Algorithm.allCases, [false, true])
        func allReduceSeveralMismatch(algorithm: Algorithm, lastBufferDiffers: Bool) {
            let ranks = 3
            let world = ThreadWorld(size: ranks, timeout: 5, treeThresholdBytes: algorithm.threshold)
            let problems = Problems()
            let results = runRanks(world) { group -> Bool in
                let r = group.rank
                let counts = lastBufferDiffers ? [5, 6, r == 1 ? 3 : 4] : (r == 1 ? [5, 6] : [5, 6, 4])
                let originals = counts.enumerated().map { k, n in inputs(rank: r + k, count: n) }
                let buffers = originals.map { RankBuffer($0) }
                defer {
                    for (k, b) in buffers.enumerated() { problems.check(b.values == originals[k], "\(algorithm): rank \(r)'s buffer \(k) was changed by a failed all-reduce") }
                }
                try group.allReduce(buffers.map(\.collective), operation: .sum).wait()
                return true
            }
            problems.report()
            for (r, result) in results.enumerated() {
                guard case .failure(let e) = result, case .mismatch? = e as? CollectiveError else {
                    Issue.record("\(algorithm): rank \(r) expected CollectiveError.mismatch, got \(result)"); continue
                }
            }
            // The world is still usable: a mismatch is reported, not fatal.
            let after = runRanks(world) { group -> Float in
                let b = RankBuffer([1])
                try group.allReduce(b.collective, operation: .sum).wait()
                return b.values[0]
            }
            #expect(after.map { try? $0.get() } == Array(repeating: Float(ranks), count: ranks), "\(algorithm): all-reduce after a mismatch: \(after)")
        }

        /// Values that are not exact in 16 bits: the 16-bit paths reduce in float32 and round
        /// once per stored partial result, so they stay within a few half-precision steps.
        @Test("16-bit all-reduce of inexact values stays within half precision", arguments: [DType.bfloat16, .float16], Algorithm.allCases)
        func halfPrecisionRounding(dtype: DType, algorithm: Algorithm) throws {
            let ranks = 5, count = 301
            let world = ThreadWorld(size: ranks, timeout: 60, treeThresholdBytes: algorithm.threshold)
            let results = runRanks(world) { group -> [Float] in
                let buffer = RankBuffer((0..<count).map { inexact(group.rank, $0) }, dtype: dtype)
                try group.allReduce(buffer.collective, operation: .sum).wait()
                return buffer.values
            }
            let got = try values(results, "\(dtype) \(algorithm)")
            // Error bound: every input rounded once, plus ⌈log₂N⌉ + 1 roundings of partial sums,
            // each at most half an ulp of a value ≤ Σ|x|.
            let unit: Double = dtype == .bfloat16 ? 1.0 / 256 : 1.0 / 2048
            for i in 0..<count {
                let exact = (0..<ranks).map { Double(inexact($0, i)) }.reduce(0, +)
                let magnitude = (0..<ranks).map { abs(Double(inexact($0, i))) }.reduce(0, +)
                let bound = unit * magnitude * Double(ranks + 4)
                #expect(abs(Double(got[0][i]) - exact) <= bound, "\(dtype) \(algorithm) element \(i): \(got[0][i]) vs \(exact)")
            }
            for r in 1..<ranks { #expect(got[r] == got[0], "\(dtype) \(algorithm): rank \(r) differs from rank 0") }
        }

        // MARK: Broadcast, all-gather, reduce-scatter, barrier

        @Test("broadcast from every root", arguments: 1...8)
        func broadcast(ranks: Int) throws {
            // Every root with small buffers; the first and last root also with a large one.
            let plan = (0..<ranks).flatMap { root in
                ([0, 1, 7, 1000] + (root == 0 || root == ranks - 1 ? [70_001] : [])).flatMap { count in
                    [DType.float32, .bfloat16].map { (root: root, count: count, dtype: $0) }
                }
            }
            let world = ThreadWorld(size: ranks, timeout: 60)
            let results = runRanks(world) { group -> [[Float]] in
                try plan.map { root, count, dtype in
                    let buffer = RankBuffer(inputs(rank: group.rank + 3 * root, count: count), dtype: dtype)
                    try group.broadcast(buffer.collective, root: root).wait()
                    return buffer.values
                }
            }
            let got = try values(results, "broadcast on \(ranks) ranks")
            for (c, (root, count, dtype)) in plan.enumerated() {
                let expected = inputs(rank: root + 3 * root, count: count)
                for r in 0..<ranks where got[r][c] != expected {
                    expectClose([got[r][c]], [expected], .exact, "broadcast of \(count) \(dtype) from root \(root) of \(ranks), rank \(r)")
                }
            }
        }

        @Test("broadcast from a root outside the world is refused on every rank")
        func broadcastBadRoot() {
            let world = ThreadWorld(size: 3, timeout: 5)
            let results = runRanks(world) { group in
                let buffer = RankBuffer(zeros: 4)
                try group.broadcast(buffer.collective, root: 3).wait()
            }
            for (r, result) in results.enumerated() {
                guard case .failure(let e) = result, case .invalid(let message)? = e as? CollectiveError else {
                    Issue.record("rank \(r): expected CollectiveError.invalid, got \(result)"); continue
                }
                #expect(message.contains("root 3"), "\(message)")
            }
        }

        @Test("all-gather in rank order", arguments: 1...8, [0, 1, 3, 1000])
        func allGather(ranks: Int, count: Int) throws {
            let world = ThreadWorld(size: ranks, timeout: 60)
            let results = runRanks(world) { group -> [[Float]] in
                try [DType.float32, .float16].map { dtype in
                    let send = RankBuffer(inputs(rank: group.rank, count: count), dtype: dtype)
                    let receive = RankBuffer(zeros: count * ranks, dtype: dtype)
                    try group.allGather(send: send.collective, receive: receive.collective).wait()
                    return withExtendedLifetime(send) { receive.values }
                }
            }
            let got = try values(results, "all-gather")
            let expected = (0..<ranks).flatMap { r in (0..<count).map { input(rank: r, $0) } }
            for r in 0..<ranks {
                for (d, dtype) in [DType.float32, .float16].enumerated() {
                    expectClose([got[r][d]], [expected], .exact, "all-gather of \(count) \(dtype) on \(ranks) ranks, rank \(r)")
                }
            }
        }

        @Test("reduce-scatter covers every element once, counts not divisible by the world", arguments: 1...8, [0, 1, 5, 13, 1001])
        func reduceScatter(ranks: Int, count: Int) throws {
            let world = ThreadWorld(size: ranks, timeout: 60)
            let problems = Problems()
            let results = runRanks(world) { group -> [[Float]] in
                try ReduceOperation.allCases.map { operation in
                    let r = group.rank, n = group.size
                    let lo = r * count / n, hi = (r + 1) * count / n
                    let send = RankBuffer((0..<count).map { input(rank: r, $0) })
                    let receive = RankBuffer(zeros: hi - lo)
                    try group.reduceScatter(send: send.collective, receive: receive.collective, operation: operation).wait()
                    problems.check(send.values == (0..<count).map { input(rank: r, $0) }, "reduce-scatter changed rank \(r)'s send buffer")
                    return receive.values
                }
            }
            problems.report()
            let got = try values(results, "reduce-scatter")
            for (o, operation) in ReduceOperation.allCases.enumerated() {
                let whole = (0..<count).map { i -> Float in
                    let all = (0..<ranks).map { input(rank: $0, i) }
                    switch operation {
                    case .sum: return all.reduce(0, +)
                    case .max: return all.max()!
                    case .average: return all.reduce(0, +) * (1 / Float(ranks))
                    }
                }
                let pieces = (0..<ranks).map { got[$0][o] }
                #expect(pieces.map(\.count).reduce(0, +) == count, "reduce-scatter pieces of \(count) on \(ranks) ranks do not add up")
                expectClose([pieces.flatMap { $0 }], [whole], Tolerance(relative: 1e-6, absolute: 0),
                            "reduce-scatter \(operation) of \(count) on \(ranks) ranks, pieces in rank order")
            }
        }

        @Test("reduce-scatter with a receive buffer of the wrong size is refused")
        func reduceScatterWrongReceive() {
            let world = ThreadWorld(size: 1, timeout: 5)
            let results = runRanks(world) { group in
                let send = RankBuffer(zeros: 5), receive = RankBuffer(zeros: 4)
                try group.reduceScatter(send: send.collective, receive: receive.collective, operation: .sum).wait()
            }
            guard case .failure(let e) = results[0], case .invalid? = e as? CollectiveError else {
                Issue.record("expected CollectiveError.invalid, got \(results[0])"); return
            }
        }

        @Test("barrier holds every rank until all arrived", arguments: 1...8)
        func barrier(ranks: Int) throws {
            let world = ThreadWorld(size: ranks, timeout: 60)
            let arrived = Locked(0)
            let results = runRanks(world) { group -> [Int] in
                var seen: [Int] = []
                for round in 1...3 {
                    // The last rank dawdles so that an early release would be seen.
                    if group.rank == group.size - 1 { Thread.sleep(forTimeInterval: 0.02) }
                    arrived.withLock { $0 += 1 }
                    try group.barrier().wait()
                    seen.append(arrived.current)
                    try group.barrier().wait()  // nobody starts the next round before all have looked
                    _ = round
                }
                return seen
            }
            let got = try values(results, "barrier")
            for r in 0..<ranks {
                #expect(got[r] == [ranks, 2 * ranks, 3 * ranks], "rank \(r) left a barrier of \(ranks) early: saw \(got[r])")
            }
        }

        // MARK: Many in flight

        @Test("collectives issued back to back complete in issue order with the right data", arguments: [1, 2, 3, 5, 8])
        func manyInFlight(ranks: Int) throws {
            let sizes = [3, 70_001, 0, 1000, 17]
            let operations: [ReduceOperation] = [.sum, .average, .max, .sum, .max]
            let world = ThreadWorld(size: ranks, timeout: 60)
            let problems = Problems()
            let results = runRanks(world) { group -> [[Float]] in
                let r = group.rank
                let buffers = sizes.enumerated().map { k, n in RankBuffer(inputs(rank: r + k, count: n)) }
                var handles = zip(buffers, operations).map { group.allReduce($0.collective, operation: $1) }
                let root = ranks - 1
                let broadcastBuffer = RankBuffer((0..<9).map { input(rank: 10 * r, $0) })
                handles.append(group.broadcast(broadcastBuffer.collective, root: root))
                let send = RankBuffer((0..<4).map { input(rank: r, $0) }), receive = RankBuffer(zeros: 4 * ranks)
                handles.append(group.allGather(send: send.collective, receive: receive.collective))
                handles.append(group.barrier())
                defer { withExtendedLifetime(send) {} }
                for h in handles.reversed() { try h.wait() }
                for (k, h) in handles.enumerated() { problems.check(h.isComplete, "handle \(k) on rank \(r) not complete after wait") }
                return buffers.map(\.values) + [broadcastBuffer.values, receive.values]
            }
            problems.report()
            let got = try values(results, "in flight on \(ranks) ranks")
            for (k, (n, operation)) in zip(sizes, operations).enumerated() {
                var expected = inputs(rank: k, count: n)
                for q in 1..<ranks {
                    let row = inputs(rank: q + k, count: n)
                    for i in 0..<n { expected[i] = operation == .max ? Swift.max(expected[i], row[i]) : expected[i] + row[i] }
                }
                if operation == .average { expected = expected.map { $0 * (1 / Float(ranks)) } }
                for r in 0..<ranks {
                    expectClose([got[r][k]], [expected], Tolerance(relative: 1e-6, absolute: 0), "all-reduce #\(k + 1) (\(operation), \(n)) on rank \(r)")
                }
            }
            let broadcastExpected = (0..<9).map { input(rank: 10 * (ranks - 1), $0) }
            let gatherExpected = (0..<ranks).flatMap { q in (0..<4).map { input(rank: q, $0) } }
            for r in 0..<ranks {
                expectClose([got[r][5]], [broadcastExpected], .exact, "broadcast in flight on rank \(r)")
                expectClose([got[r][6]], [gatherExpected], .exact, "all-gather in flight on rank \(r)")
            }
        }

        // MARK: Failures

        struct Absence: Sendable, CustomStringConvertible {
            var ranks: Int, missing: Int, before: Int, operation: String
            var description: String { "rank \(missing) of \(ranks) stops after \(before) collectives; the others call \(operation)" }
        }

        @Test("a rank that never arrives: the others time out naming it and the sequence number", arguments: [
            Absence(ranks: 2, missing: 1, before: 1, operation: "all-reduce"),
            Absence(ranks: 2, missing: 0, before: 1, operation: "broadcast"),
            Absence(ranks: 3, missing: 1, before: 2, operation: "all-reduce"),
            Absence(ranks: 4, missing: 3, before: 1, operation: "barrier"),
            Absence(ranks: 5, missing: 0, before: 3, operation: "all-gather"),
            Absence(ranks: 8, missing: 5, before: 1, operation: "all-reduce"),
        ])
        func timeoutNamesMissingRank(_ a: Absence) {
            let timeout = 0.5
            let world = ThreadWorld(size: a.ranks, timeout: timeout)
            let results = runRanks(world) { group -> (seconds: Double, error: CollectiveError?) in
                for _ in 0..<a.before { try group.barrier().wait() }
                if group.rank == a.missing { return (0, nil) }
                let start = now()
                let buffer = RankBuffer(zeros: 8), receive = RankBuffer(zeros: 8 * a.ranks)
                let handle: any CollectiveHandle = switch a.operation {
                case "all-reduce": group.allReduce(buffer.collective, operation: .sum)
                case "broadcast": group.broadcast(buffer.collective, root: a.missing)
                case "all-gather": group.allGather(send: buffer.collective, receive: receive.collective)
                default: group.barrier()
                }
                defer { withExtendedLifetime((buffer, receive)) {} }  // the collective may use them until it ends
                do throws(CollectiveError) { try handle.wait() } catch { return (now() - start, error) }
                return (now() - start, nil)
            }
            let expected = CollectiveError.timeout(operation: a.operation, sequence: a.before + 1, missing: [a.missing], seconds: timeout)
            for (r, result) in results.enumerated() where r != a.missing {
                switch result {
                case .success(let outcome):
                    #expect(outcome.error == expected, "\(a): rank \(r) got \(String(describing: outcome.error)), expected \(expected)")
                    // The first rank to time out waits the full timeout; the others learn from it.
                    #expect(outcome.seconds < timeout + 2, "\(a): rank \(r) took \(outcome.seconds) s to give up (timeout \(timeout) s)")
                case .failure(let e):
                    Issue.record("\(a): rank \(r) threw outside the collective: \(e)")
                }
            }
            #expect(world.error == expected, "\(a): world error \(String(describing: world.error)), expected \(expected)")
            #expect(expected.description.contains("rank \(a.missing) did not arrive"), "\(expected)")
        }

        struct Mismatch: Sendable, CustomStringConvertible {
            var name: String
            var verify: Bool
            var description: String { "\(name)\(verify ? "" : " (no call checks)")" }
        }

        @Test("mismatched calls fail with .mismatch on every rank, leave buffers alone, and do not hang", arguments: [
            Mismatch(name: "all-reduce counts", verify: true),
            Mismatch(name: "all-reduce counts", verify: false),
            Mismatch(name: "all-reduce operations", verify: true),
            Mismatch(name: "all-reduce dtypes", verify: true),
            Mismatch(name: "broadcast counts", verify: true),
            Mismatch(name: "broadcast counts", verify: false),
            Mismatch(name: "all-gather counts", verify: true),
            Mismatch(name: "all-gather counts", verify: false),
            Mismatch(name: "reduce-scatter counts", verify: false),
            Mismatch(name: "all-reduce against barrier", verify: true),
        ])
        func mismatch(_ m: Mismatch) {
            let ranks = 3, odd = 1, timeout = 5.0
            let world = ThreadWorld(size: ranks, timeout: timeout, verifyCalls: m.verify)
            let problems = Problems()
            let start = now()
            let results = runRanks(world) { group -> Bool in
                let r = group.rank
                try group.barrier().wait()
                let count = r == odd && m.name.hasSuffix("counts") ? 4 : 3
                let dtype: DType = r == odd && m.name == "all-reduce dtypes" ? .bfloat16 : .float32
                let original = (0..<count).map { input(rank: r, $0) }
                let buffer = RankBuffer(original, dtype: dtype)
                let receive = RankBuffer(zeros: count * ranks)
                let piece = RankBuffer(zeros: (r + 1) * count / ranks - r * count / ranks)
                let handle: any CollectiveHandle
                defer { withExtendedLifetime((receive, piece)) {} }
                switch m.name {
                case "broadcast counts": handle = group.broadcast(buffer.collective, root: 0)
                case "all-gather counts": handle = group.allGather(send: buffer.collective, receive: receive.collective)
                case "reduce-scatter counts":
                    handle = group.reduceScatter(send: buffer.collective, receive: piece.collective, operation: .sum)
                case "all-reduce against barrier" where r == odd: handle = group.barrier()
                case "all-reduce operations": handle = group.allReduce(buffer.collective, operation: r == odd ? .max : .sum)
                default: handle = group.allReduce(buffer.collective, operation: .sum)
                }
                defer { problems.check(buffer.values == original.map { RankBuffer.rounded($0, dtype) }, "\(m): rank \(r)'s buffer changed") }
                try handle.wait()
                return true
            }
            problems.report()
            #expect(now() - start < timeout, "\(m): took \(now() - start) s, as long as the timeout")
            for (r, result) in results.enumerated() {
                guard case .failure(let e) = result, case .mismatch(let sequence, let calls)? = e as? CollectiveError else {
                    Issue.record("\(m): rank \(r) expected CollectiveError.mismatch, got \(result)"); continue
                }
                #expect(sequence == 2, "\(m): rank \(r) reported collective #\(sequence), expected #2")
                #expect(calls.count == ranks, "\(m): \(calls)")
                #expect(Set(calls).count > 1, "\(m): the reported calls do not differ: \(calls)")
            }
        }

        @Test("abort ends every rank's pending collective with that rank's message")
        func abort() {
            let world = ThreadWorld(size: 4, timeout: 20)
            let start = now()
            let results = runRanks(world) { group -> Bool in
                try group.barrier().wait()
                if group.rank == 2 { Thread.sleep(forTimeInterval: 0.05); group.abort("out of memory"); return true }
                let buffer = RankBuffer(zeros: 10)
                defer { withExtendedLifetime(buffer) {} }
                try group.allReduce(buffer.collective, operation: .sum).wait()
                return true
            }
            #expect(now() - start < 5)
            for (r, result) in results.enumerated() where r != 2 {
                guard case .failure(let e) = result, let error = e as? CollectiveError else { Issue.record("rank \(r): \(result)"); continue }
                #expect(error == .aborted(rank: 2, message: "out of memory"), "rank \(r): \(error)")
            }
            #expect(world.error == .aborted(rank: 2, message: "out of memory"))
        }

        struct Failing: Error, Equatable, CustomStringConvertible {
            let rank: Int
            var description: String { "rank \(rank) failed on purpose" }
        }

        @Test("a rank that throws: ThreadLauncher rethrows that error and every rank ends quickly", arguments: [
            (2, 0), (2, 1), (3, 2), (4, 1), (8, 0), (8, 7),
        ])
        func throwingRank(ranks: Int, thrower: Int) {
            let timeout = 20.0
            let start = now()
            #expect(throws: Failing(rank: thrower), "\(ranks) ranks, rank \(thrower) throws") {
                _ = try ThreadLauncher.run(workers: ranks, timeout: timeout) { rank, group in
                    try group.barrier().wait()
                    if rank == thrower {
                        Thread.sleep(forTimeInterval: 0.05)  // the others are waiting in the all-reduce by now
                        throw Failing(rank: rank)
                    }
                    let buffer = RankBuffer(zeros: 100)
                    defer { withExtendedLifetime(buffer) {} }
                    for _ in 0..<3 { try group.allReduce(buffer.collective, operation: .sum).wait() }
                    return rank
                }
            }
            let elapsed = now() - start
            #expect(elapsed < timeout / 4, "\(ranks) ranks took \(elapsed) s to stop after rank \(thrower) threw (timeout \(timeout) s)")
        }

        @Test("a rank that throws before its first collective still ends the job with its own error")
        func throwingBeforeAnyCollective() {
            let start = now()
            #expect(throws: Failing(rank: 2)) {
                _ = try ThreadLauncher.run(workers: 4, timeout: 20) { rank, group in
                    if rank == 2 { throw Failing(rank: 2) }
                    try group.barrier().wait()
                    return rank
                }
            }
            #expect(now() - start < 5)
        }

        @Test("ThreadLauncher returns every rank's result in rank order", arguments: [1, 2, 5])
        func launcherResults(ranks: Int) throws {
            let problems = Problems()
            let got = try ThreadLauncher.run(workers: ranks) { rank, group -> [Int] in
                problems.check(group.rank == rank && group.size == ranks && group.backend == "threads", "rank \(rank): group says rank \(group.rank) of \(group.size)")
                let buffer = RankBuffer([Float(rank)])
                try group.allReduce(buffer.collective, operation: .sum).wait()
                return [rank, Int(buffer.values[0])]
            }
            problems.report()
            #expect(got == (0..<ranks).map { [$0, ranks * (ranks - 1) / 2] })
        }
    }
}
