import Foundation
import Testing
import TandemCore
import TandemCollectives
@testable import TandemMPI

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Small all-reduces through the shared mailbox, bit for bit against threads

/// The all-reduces checked: every size from empty to the tree threshold (64 KB of float32),
/// odd ones among them, and past it (rank order) up to 1 MB, every operation and precision,
/// and several buffers in one call. Inputs span 16 binary orders of magnitude, so a
/// different summation order shows in the bits.
enum MailboxCases {
    static let counts = [0, 1, 2, 3, 5, 7, 31, 255, 1001, 4097, 16383, 16384, 16385, 65537, 100_003, 262_144]
    static let several: [[Int]] = [[3, 0, 1, 7], [1000, 17, 2, 4099], [70_001, 3, 0, 40_000]]

    struct Case {
        var counts: [Int]
        var dtype: DType
        var operation: ReduceOperation
    }

    static let all: [Case] = {
        var cases: [Case] = []
        for count in counts {
            for dtype in [DType.float32, .bfloat16, .float16] {
                for operation in ReduceOperation.allCases { cases.append(Case(counts: [count], dtype: dtype, operation: operation)) }
            }
        }
        for counts in several { cases.append(Case(counts: counts, dtype: .float32, operation: .sum)) }
        return cases
    }()

    /// Rank r's element i of buffer b of case c: a hash of the four, in ±[2⁻⁸, 2⁸).
    static func value(case c: Int, buffer b: Int, element i: Int, rank r: Int) -> Float {
        var h = UInt64(c) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(b) &* 0xBF58_476D_1CE4_E5B9 ^ UInt64(i) &* 0x94D0_49BB_1331_11EB ^ UInt64(r) &* 0x2545_F491_4F6C_DD1D
        h ^= h >> 31; h &*= 0xD6E8_FEB8_6659_FD93; h ^= h >> 32
        let mantissa = Float(h & 0xFFFFFF) / Float(1 << 24) + 0.5
        let exponent = Int(h >> 24 & 15) - 8
        return (h >> 40 & 1 == 0 ? 1 : -1) * mantissa * Float(sign: .plus, exponent: exponent, significand: 1)
    }

    /// Runs every case on `group` (every rank together) and returns the results' bytes, in order.
    static func run(_ group: any ProcessGroup) throws -> [UInt8] {
        var out: [UInt8] = []
        for (c, item) in all.enumerated() {
            let width = item.dtype.byteSize
            let storage = item.counts.map { UnsafeMutableRawPointer.allocate(byteCount: max($0 * width, 1), alignment: 64) }
            defer { storage.forEach { $0.deallocate() } }
            var buffers: [CollectiveBuffer] = []
            for (b, count) in item.counts.enumerated() {
                for i in 0..<count {
                    let v = value(case: c, buffer: b, element: i, rank: group.rank)
                    switch item.dtype {
                    case .bfloat16: storage[b].storeBytes(of: HalfConversion.bfloat16Bits(v), toByteOffset: 2 * i, as: UInt16.self)
                    case .float16: storage[b].storeBytes(of: HalfConversion.float16Bits(v), toByteOffset: 2 * i, as: UInt16.self)
                    default: storage[b].storeBytes(of: v, toByteOffset: 4 * i, as: Float.self)
                    }
                }
                buffers.append(item.dtype == .float32
                    ? CollectiveBuffer(storage[b].assumingMemoryBound(to: Float.self), count: count)
                    : CollectiveBuffer(storage[b].assumingMemoryBound(to: UInt16.self), count: count, dtype: item.dtype))
            }
            try group.allReduce(buffers, operation: item.operation).wait()
            for (b, count) in item.counts.enumerated() {
                out += UnsafeRawBufferPointer(start: storage[b], count: count * width)
            }
        }
        return out
    }

    /// The threads backend's results on `n` ranks, one byte string per rank.
    static func threads(_ n: Int) throws -> [[UInt8]] {
        let world = ThreadWorld(size: n, timeout: 60)
        let results = ResultBox(n)
        let threads = (0..<n).map { r in
            Thread { results.set(r, Result { try run(world.group(rank: r)) }) }
        }
        threads.forEach { $0.start() }
        return try results.wait()
    }
}

/// The threads' results, handed back to the test's thread.
final class ResultBox: @unchecked Sendable {
    // Safe: `results` is guarded by `condition`.
    private let condition = NSCondition()
    private var results: [Result<[UInt8], any Error>?]
    init(_ n: Int) { results = Array(repeating: nil, count: n) }
    func set(_ r: Int, _ result: Result<[UInt8], any Error>) { condition.lock(); results[r] = result; condition.broadcast(); condition.unlock() }
    func wait() throws -> [[UInt8]] {
        condition.lock()
        while results.contains(where: { $0 == nil }) { condition.wait() }
        let all = results.map { $0! }
        condition.unlock()
        return try all.map { try $0.get() }
    }
}

@Suite(.serialized) struct SharedMemoryPathTests {
    /// Set by `bitIdenticalToThreads` for the processes it starts: the folder they write to.
    static let outputVariable = "TANDEM_MAILBOX_TEST_OUT"

    /// The MPI side of ``bitIdenticalToThreads(_:_:)``: when started by it under mpirun (the
    /// test bundle itself, filtered to this test), runs every case over MPI and writes this
    /// rank's results, and whether the mailbox was taken. Otherwise does nothing.
    @Test func mpiSide() throws {
        guard let folder = ProcessInfo.processInfo.environment[Self.outputVariable] else { return }
        let world = try MPIWorld.shared()
        let group = MPIGroup(world: world, timeout: 60)
        let bytes = try MailboxCases.run(group)
        try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/rank-\(world.rank).bin"))
        let path = group.mailboxDecision?.mailbox != nil ? "mailbox" : "messages"
        try Data(path.utf8).write(to: URL(fileURLWithPath: "\(folder)/path-\(world.rank).txt"))
        try group.barrier().wait()
    }

    /// Every case over MPI gives the threads backend's bytes on every rank, through the
    /// mailbox (`TANDEM_MPI_MAILBOX=require`) and as messages (`=0`); 1–4 ranks under
    /// Open MPI, 2–4 under MPICH.
    @Test(arguments: Implementation.installed.flatMap { i in (i.name == "Open MPI" ? [1, 2, 3, 4] : [2, 3, 4]).map { (i, $0) } })
    func bitIdenticalToThreads(_ implementation: Implementation, _ n: Int) throws {
        let bundle = try #require(CommandLine.arguments.first.map { URL(fileURLWithPath: $0).path })
        let launcher = try #require(implementation.launcherPath)
        let reference = try MailboxCases.threads(n)
        #expect(Set(reference).count == 1, "the threads backend gave ranks different bytes")
        if n >= 4 {
            // The check can see the order: summing in rank order gives other bits somewhere
            // (for 3 ranks the tree, (v₀ + v₁) + v₂, is the rank order).
            let (offset, rankOrder) = MailboxCases.rankOrderSum(n)
            let differs = rankOrder != Array(reference[0][offset..<(offset + rankOrder.count)])
            #expect(differs, "the inputs do not tell the tree from the rank order")
        }
        for setting in n > 1 ? ["require", "0"] : [""] {
            let scratch = try Scratch()
            defer { scratch.remove() }
            let environment = [Self.outputVariable: scratch.path, "TANDEM_MPI_MAILBOX": setting, "TANDEM_MPI": implementation.library]
            var command = [launcher] + implementation.flags + ["-np", "\(n)"]
            if implementation.name == "Open MPI" { command += environment.keys.sorted().flatMap { ["-x", $0] } }
            command += [bundle, "--testing-library", "swift-testing", "--filter", "SharedMemoryPathTests/mpiSide"]
            let run = try runCommand(command, environment: environment, timeout: 300)
            #expect(run.status == 0 && !run.timedOut, "TANDEM_MPI_MAILBOX=\(setting): \(run)")
            for r in 0..<n {
                let got = try? Data(contentsOf: URL(fileURLWithPath: scratch.file("rank-\(r).bin")))
                let same = got.map { [UInt8]($0) } == reference[r]
                #expect(same, "rank \(r) of \(n) over \(implementation), TANDEM_MPI_MAILBOX=\(setting): not the threads backend's bytes\n\(run)")
                let path = (try? String(contentsOfFile: scratch.file("path-\(r).txt"), encoding: .utf8)) ?? "?"
                #expect(path == (setting == "require" ? "mailbox" : "messages"), "rank \(r): took \(path) with TANDEM_MPI_MAILBOX=\(setting)")
            }
        }
    }

    /// A rank that stops (SIGSTOP) or skips an all-reduce: every other rank's small all-reduce
    /// times out, naming it and the collective's number.
    @Test(arguments: Implementation.installed, ["stop", "skip"])
    func missingRankIsNamed(_ implementation: Implementation, _ fault: String) throws {
        let digits = Tools.root.appendingPathComponent("datasets/digits").path
        let arguments = ["train", "--backend", "mpi", "--model", "mlp", "--data", digits, "--hidden", "16", "--steps", "50",
                         "--batch", "8", "--quiet", "--timeout", "2"]
        let run = try mpirun(implementation, 3, arguments, environment: ["TANDEM_MPI_FAULT": "1:\(fault):4", "TANDEM_MPI_MAILBOX": "require"], timeout: 60)
        #expect(!run.timedOut && run.status != 0, "\(run)")
        #expect(run.seconds < 25, "\(run)")
        for survivor in [0, 2] {
            let named = run.lines("tandem: rank \(survivor): ").contains {
                $0.range(of: #"all-reduce #[0-9]+ timed out after 2\.0 s: rank 1 did not arrive"#, options: .regularExpression) != nil
                    || $0.contains("rank 1 did not arrive (it stopped")
            }
            #expect(named, "rank \(survivor) did not name rank 1: \(run)")
        }
    }
}

extension MailboxCases {
    /// Where case `k`'s results start in `run`'s bytes.
    static func offset(ofCase k: Int) -> Int { all.prefix(k).reduce(0) { $0 + $1.counts.reduce(0, +) * $1.dtype.byteSize } }

    /// A float32 sum of 16383 elements, summed in rank order instead of the tree: its offset
    /// in `run`'s bytes and its bytes, to show that the inputs tell the two orders apart.
    static func rankOrderSum(_ n: Int) -> (offset: Int, bytes: [UInt8]) {
        let k = all.firstIndex { $0.counts == [16383] && $0.dtype == .float32 && $0.operation == .sum }!
        var out: [UInt8] = []
        for i in 0..<16383 {
            var sum = value(case: k, buffer: 0, element: i, rank: 0)
            for r in 1..<n { sum += value(case: k, buffer: 0, element: i, rank: r) }
            withUnsafeBytes(of: sum) { out += $0 }
        }
        return (offset(ofCase: k), out)
    }
}
