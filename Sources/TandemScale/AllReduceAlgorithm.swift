import Foundation

// MARK: - Cost of one all-reduce

/// The time of an all-reduce of n bytes over N workers in the α-β model. Every formula
/// here is affine in n, t = a(N) + b(N)·n (``AffineCost``), which is what lets the cost
/// model split a gradient into buckets. N = 1 costs nothing: there is nothing to reduce.
///
/// - **ring** (reduce-scatter then all-gather around a ring, Patarasuk & Yuan,
///   "Bandwidth optimal all-reduce algorithms for clusters of workstations", *JPDC*
///   69(2), 2009): 2(N−1)α + 2(N−1)/N · nβ. Bandwidth-optimal; latency grows with N.
/// - **tree** (binomial-tree reduce, then binomial-tree broadcast of the whole message,
///   Thakur, Rabenseifner & Gropp, "Optimization of collective communication operations
///   in MPICH", *IJHPCA* 19(1), 2005): 2⌈log₂N⌉(α + nβ). Latency-optimal; moves the
///   whole message at every level.
/// - **hierarchical** (g workers per node, M = ⌈N/g⌉ nodes; ring reduce-scatter inside
///   each node over the fast link (α₁, β₁), then a ring all-reduce across nodes of each
///   local rank's n/g shard, all g shards sharing the node's slow link (α₂, β₂), then a
///   ring all-gather — the broadcast back — inside the node; as Horovod's hierarchical
///   all-reduce and NCCL's tree/ring hybrids):
///   (g−1)α₁ + (g−1)/g·nβ₁  +  2(M−1)α₂ + 2(M−1)/M·nβ₂  +  (g−1)α₁ + (g−1)/g·nβ₁.
///   The middle term moves g shards of n/g bytes over one node link, n bytes in all; g = 1
///   gives the ring over (α₂, β₂), M = 1 the ring over (α₁, β₁). A last node that is only
///   partly filled is counted as full.
/// - **parameter server** (N workers, S servers each owning n/S of the parameters; Li et
///   al., "Scaling distributed machine learning with the parameter server", OSDI 2014):
///   every worker pushes its gradient shards to all servers, then pulls the updated
///   shards. Per phase, a server's link carries N·n/S bytes and a worker's link n bytes;
///   messages go out concurrently, so one α per phase:
///   2(α + max(1, N/S) · nβ).
///   With S = N (colocated servers) this is 2α + 2nβ, about the ring's bandwidth term
///   without its N-fold latency; with S = 1 the server's link is the bottleneck at N·n.
public enum AllReduceAlgorithm: Sendable, Equatable {
    case ring(Interconnect)
    case tree(Interconnect)
    case hierarchical(workersPerNode: Int, intraNode: Interconnect, interNode: Interconnect)
    case parameterServer(servers: Int, link: Interconnect)

    /// t(n) = latency + secondsPerByte · n.
    public struct AffineCost: Sendable, Equatable {
        /// a(N), seconds independent of the message size.
        public var latency: Double
        /// b(N), seconds per byte of the message.
        public var secondsPerByte: Double
        public init(latency: Double, secondsPerByte: Double) {
            self.latency = latency
            self.secondsPerByte = secondsPerByte
        }
        /// a + b·n.
        public func seconds(bytes: Double) -> Double { latency + secondsPerByte * bytes }
    }

    /// The affine cost of one all-reduce over `workers`.
    public func cost(workers n: Int) -> AffineCost {
        precondition(n >= 1, "an all-reduce needs at least one worker, got \(n)")
        guard n > 1 else { return AffineCost(latency: 0, secondsPerByte: 0) }
        let N = Double(n)
        switch self {
        case .ring(let link):
            return AffineCost(latency: 2 * (N - 1) * link.alpha, secondsPerByte: 2 * (N - 1) / N * link.beta)
        case .tree(let link):
            let levels = Double(AllReduceAlgorithm.ceilLog2(n))
            return AffineCost(latency: 2 * levels * link.alpha, secondsPerByte: 2 * levels * link.beta)
        case .hierarchical(let perNode, let intra, let inter):
            precondition(perNode >= 1, "a node holds at least one worker, got \(perNode)")
            let g = Double(min(perNode, n))
            let m = Double((n + perNode - 1) / perNode)
            return AffineCost(latency: 2 * (g - 1) * intra.alpha + 2 * (m - 1) * inter.alpha,
                              secondsPerByte: 2 * (g - 1) / g * intra.beta + 2 * (m - 1) / m * inter.beta)
        case .parameterServer(let servers, let link):
            precondition(servers >= 1, "a parameter server setup needs at least one server, got \(servers)")
            return AffineCost(latency: 2 * link.alpha, secondsPerByte: 2 * max(1, N / Double(servers)) * link.beta)
        }
    }

    /// Seconds for one all-reduce of `bytes` over `workers`.
    public func seconds(bytes: Double, workers: Int) -> Double { cost(workers: workers).seconds(bytes: bytes) }

    /// A short name for tables.
    public var name: String {
        switch self {
        case .ring(let l): return "ring over \(l.name)"
        case .tree(let l): return "tree over \(l.name)"
        case .hierarchical(let g, let a, let b): return "hierarchical (\(g) per node, \(a.name) inside, \(b.name) across)"
        case .parameterServer(let s, let l): return "parameter server (\(s) servers, \(l.name))"
        }
    }

    /// ⌈log₂ n⌉ for n ≥ 1.
    static func ceilLog2(_ n: Int) -> Int {
        precondition(n >= 1)
        return n == 1 ? 0 : Int.bitWidth - (n - 1).leadingZeroBitCount
    }
}
