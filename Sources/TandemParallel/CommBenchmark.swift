import TandemCore
import TandemCollectives
import TandemMPI

// MARK: - Collective latency and bandwidth (as nccl-tests)

/// Times one collective over a sweep of message sizes on `workers` thread ranks:
/// the median over `iterations` of the slowest rank's time, with algbw and busbw as
/// nccl-tests defines them.
public struct CommBenchmark {
    public enum Operation: String, CaseIterable, Sendable { case allReduce = "all-reduce", broadcast, allGather = "all-gather", reduceScatter = "reduce-scatter" }

    public struct Row: Codable, Sendable {
        public var operation: String
        public var workers: Int
        public var bytes: Int
        public var microseconds: Double
        public var algbw_gbps: Double
        public var busbw_gbps: Double
        /// The MPI library's own blocking `MPI_Allreduce` on the same sizes, timed alternately
        /// with ours (``CommBenchmark/compareLibrary``).
        public var library_us: Double?
        public var library_busbw_gbps: Double?
    }

    public var operation: Operation
    public var workers: Int
    public var sizes: [Int]
    public var iterations: Int
    public var warmup = 3
    /// Threads of this process, or this process as one rank of an MPI job (`workers` is then MPI's size).
    public var backend: Backend = .threads
    /// MPI all-reduce only: also time `MPI_Allreduce` (float32, sum) on the same sizes, each
    /// iteration right after ours.
    public var compareLibrary = false

    public init(operation: Operation, workers: Int, sizes: [Int], iterations: Int) {
        self.operation = operation
        self.workers = workers
        self.sizes = sizes
        self.iterations = iterations
    }

    /// busbw = algbw × the fraction of the data each rank must move (nccl-tests' factors).
    public static func busFactor(_ operation: Operation, workers n: Int) -> Double {
        let n = Double(n)
        switch operation {
        case .allReduce: return 2 * (n - 1) / n
        case .allGather, .reduceScatter: return (n - 1) / n
        case .broadcast: return 1
        }
    }

    public func run() throws -> [Row] {
        let (operation, sizes, iterations, warmup, compareLibrary) = (self.operation, self.sizes, self.iterations, self.warmup, self.compareLibrary)
        let perRank = try Launch.run(backend: backend, workers: self.workers) { rank, group in
            let workers = group.size
            let clock = MonotonicClock()
            var times: [[Double]] = []
            var library: [[Double]] = []
            for bytes in sizes {
                let count = max(bytes / 4, 1)
                let send = Tensor(repeating: Float(rank + 1), shape: [count])
                let receive = Tensor(zeros: [operation == .allGather ? count * workers : count])
                var samples: [Double] = [], librarySamples: [Double] = []
                let reference = compareLibrary ? group as? MPIGroup : nil
                let referenceOutput = reference == nil ? nil : Tensor(zeros: [count])
                for i in 0..<(warmup + iterations) {
                    if let reference, let referenceOutput {
                        try group.barrier().wait()
                        let t0 = clock.now()
                        try reference.libraryAllReduce(send.pointer, into: referenceOutput.pointer, count: count)
                        if i >= warmup { librarySamples.append(clock.now() - t0) }
                    }
                    try group.barrier().wait()
                    let t0 = clock.now()
                    switch operation {
                    case .allReduce: try group.allReduce(CollectiveBuffer(send.pointer, count: count), operation: .sum).wait()
                    case .broadcast: try group.broadcast(CollectiveBuffer(send.pointer, count: count), root: 0).wait()
                    case .allGather:
                        try group.allGather(send: CollectiveBuffer(send.pointer, count: count), receive: CollectiveBuffer(receive.pointer, count: count * workers)).wait()
                    case .reduceScatter:
                        let lo = rank * count / workers, hi = (rank + 1) * count / workers
                        try group.reduceScatter(send: CollectiveBuffer(send.pointer, count: count), receive: CollectiveBuffer(receive.pointer, count: hi - lo), operation: .sum).wait()
                    }
                    if i >= warmup { samples.append(clock.now() - t0) }
                }
                times.append(samples)
                library.append(librarySamples)
            }
            return [times, library]
        }
        let workers = perRank.count
        func median(_ table: Int, _ s: Int) -> Double? {
            guard perRank.allSatisfy({ $0[table][s].count == iterations }) else { return nil }
            let slowest = (0..<iterations).map { i in perRank.map { $0[table][s][i] }.max()! }.sorted()
            return slowest[slowest.count / 2]
        }
        return sizes.enumerated().map { s, bytes in
            let ours = median(0, s)!
            let algbw = Double(bytes) / ours / 1e9
            var row = Row(operation: operation.rawValue, workers: workers, bytes: bytes, microseconds: ours * 1e6,
                          algbw_gbps: algbw, busbw_gbps: algbw * Self.busFactor(operation, workers: workers))
            if let theirs = median(1, s) {
                row.library_us = theirs * 1e6
                row.library_busbw_gbps = Double(bytes) / theirs / 1e9 * Self.busFactor(operation, workers: workers)
            }
            return row
        }
    }
}
