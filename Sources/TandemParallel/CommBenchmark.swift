import TandemCore
import TandemCollectives

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
    }

    public var operation: Operation
    public var workers: Int
    public var sizes: [Int]
    public var iterations: Int
    public var warmup = 3

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
        let (operation, workers, sizes, iterations, warmup) = (self.operation, self.workers, self.sizes, self.iterations, self.warmup)
        let perRank = try ThreadLauncher.run(workers: workers) { rank, group in
            let clock = MonotonicClock()
            var times: [[Double]] = []
            for bytes in sizes {
                let count = max(bytes / 4, 1)
                let send = Tensor(repeating: Float(rank + 1), shape: [count])
                let receive = Tensor(zeros: [operation == .allGather ? count * workers : count])
                var samples: [Double] = []
                for i in 0..<(warmup + iterations) {
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
            }
            return times
        }
        return sizes.enumerated().map { s, bytes in
            let slowest = (0..<iterations).map { i in perRank.map { $0[s][i] }.max()! }.sorted()
            let median = slowest[slowest.count / 2]
            let algbw = Double(bytes) / median / 1e9
            return Row(operation: operation.rawValue, workers: workers, bytes: bytes, microseconds: median * 1e6,
                       algbw_gbps: algbw, busbw_gbps: algbw * Self.busFactor(operation, workers: workers))
        }
    }
}
