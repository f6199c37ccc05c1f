import Foundation

// MARK: - A link in the α-β model

/// A link between workers in the α-β (latency–bandwidth) model of Hockney: sending one
/// message of n bytes takes α + n·β seconds, α the per-message latency and β = 1/bandwidth
/// the seconds per byte (R. W. Hockney, "The communication challenge for MPP: Intel
/// Paragon and Meiko CS-2", *Parallel Computing* 20(3), 1994).
///
/// The presets are nominal per-direction link rates with latencies typical of the
/// software that drives them; measured all-reduce bandwidth is lower (NCCL reaches about
/// 80% of NVLink's rate), so for predictions of a real machine prefer an interconnect
/// calibrated from its own measurements (``Calibration/interconnect(samples:)``).
///
/// For scale, NCCL's own tuning model (`src/graph/tuning.cc`) charges per ring hop
/// 0.47 / 1.9 / 3.4 µs on NVLink, 1.0 / 2.5 / 5.7 µs on PCIe and 2.7 / 4.0 / 9.6 µs over
/// the network for its LL / LL128 / Simple protocols.
public struct Interconnect: Sendable, Equatable, Codable, CustomStringConvertible {
    public var name: String
    /// α: seconds per message.
    public var latency: Double
    /// 1/β: bytes per second, one direction.
    public var bandwidth: Double

    /// A link of `latency` seconds per message and `bandwidth` bytes per second.
    public init(name: String = "custom", latency: Double, bandwidth: Double) {
        precondition(latency >= 0 && latency.isFinite, "latency must be a finite number of seconds ≥ 0, got \(latency)")
        precondition(bandwidth > 0, "bandwidth must be positive bytes per second, got \(bandwidth)")
        self.name = name
        self.latency = latency
        self.bandwidth = bandwidth
    }

    /// A link given by Hockney's parameters: α seconds per message, β seconds per byte.
    public init(name: String = "custom", alpha: Double, beta: Double) {
        precondition(beta > 0 && beta.isFinite, "β must be positive seconds per byte, got \(beta)")
        self.init(name: name, latency: alpha, bandwidth: 1 / beta)
    }

    /// α, seconds per message.
    public var alpha: Double { latency }
    /// β, seconds per byte.
    public var beta: Double { 1 / bandwidth }

    /// α + n·β: one point-to-point message of `bytes`.
    public func messageSeconds(bytes: Double) -> Double { latency + bytes / bandwidth }

    /// "NVLink 4 (α 3 µs, 450 GB/s)".
    public var description: String {
        "\(name) (α \(String(format: "%.3g", latency * 1e6)) µs, \(String(format: "%.4g", bandwidth / 1e9)) GB/s)"
    }

    // MARK: - Presets

    /// NVLink 4 (H100/H200 SXM): 18 links × 25 GB/s = 450 GB/s per direction per GPU
    /// (900 GB/s both ways, NVIDIA H100 Tensor Core GPU datasheet); α = 3 µs, NCCL's
    /// per-hop cost between its LL128 (1.9 µs) and Simple (3.4 µs) protocols.
    public static let nvlink4 = Interconnect(name: "NVLink 4", latency: 3e-6, bandwidth: 450e9)

    /// PCI Express 5.0 ×16: 32 GT/s × 16 lanes × 128/130 encoding ÷ 8 = 63.0 GB/s per
    /// direction (PCI-SIG base specification 5.0); α = 5 µs, about NCCL's 5.7 µs per hop
    /// for Simple over PCIe.
    public static let pcie5x16 = Interconnect(name: "PCIe 5.0 x16", latency: 5e-6, bandwidth: 63.0e9)

    /// InfiniBand NDR, one 400 Gb/s port: 50 GB/s per direction (IBTA); α = 1.5 µs,
    /// an MPI ping-pong half round trip through one switch (GPU-initiated transfers in
    /// NCCL cost more, see above).
    public static let infinibandNDR400 = Interconnect(name: "InfiniBand NDR 400G", latency: 1.5e-6, bandwidth: 50e9)

    /// 100 Gigabit Ethernet (IEEE 802.3): 12.5 GB/s; α = 10 µs, a kernel TCP stack's
    /// one-way small-message latency (RoCE reaches a few µs).
    public static let ethernet100G = Interconnect(name: "100 GbE", latency: 10e-6, bandwidth: 12.5e9)

    /// 25 Gigabit Ethernet (IEEE 802.3by): 3.125 GB/s; α = 15 µs over kernel TCP.
    public static let ethernet25G = Interconnect(name: "25 GbE", latency: 15e-6, bandwidth: 3.125e9)

    /// Every preset, fastest first.
    public static let presets: [Interconnect] = [.nvlink4, .pcie5x16, .infinibandNDR400, .ethernet100G, .ethernet25G]
}
