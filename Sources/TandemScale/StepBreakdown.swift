import TandemParallel

// MARK: - Where a step's milliseconds go

/// One step split into its phases (WORKLOADS.md, "step breakdown"), in milliseconds
/// averaged over the timed steps and over ranks.
///
/// `other` = step − (data + forward + backward + exposed communication + optimizer): time
/// no phase claims (bucket bookkeeping, gradient averaging, allocator, timer overhead).
/// It is kept signed: a negative `other` means the phases were timed overlapping or the
/// breakdown and the step time come from different averages, and says so rather than
/// being hidden by a clamp.
///
/// The step is `step_ms.mean`, not the median, because the phases are means per step and
/// only means add up: mean(a + b) = mean(a) + mean(b).
public struct StepBreakdown: Sendable, Equatable {
    public enum Phase: String, Sendable, CaseIterable, Codable {
        case data, forward, backward, exposedCommunication, optimizer, other
    }

    public var stepMilliseconds: Double
    /// Waiting for the data loader.
    public var data: Double
    public var forward: Double
    public var backward: Double
    /// Communication not hidden under compute.
    public var exposedCommunication: Double
    public var optimizer: Double

    public init(stepMilliseconds: Double, data: Double, forward: Double, backward: Double,
                exposedCommunication: Double, optimizer: Double) {
        self.stepMilliseconds = stepMilliseconds
        self.data = data
        self.forward = forward
        self.backward = backward
        self.exposedCommunication = exposedCommunication
        self.optimizer = optimizer
    }

    /// The breakdown of `result`, or nil when it has no `breakdown_ms`.
    public init?(result: RunResult) {
        guard let b = result.breakdown_ms else { return nil }
        self.init(stepMilliseconds: result.step_ms.mean, data: b.data, forward: b.forward, backward: b.backward,
                  exposedCommunication: b.comm_exposed, optimizer: b.optimizer)
    }

    /// step − sum of the measured phases (signed).
    public var other: Double { stepMilliseconds - (data + forward + backward + exposedCommunication + optimizer) }

    /// Forward + backward.
    public var compute: Double { forward + backward }

    /// Milliseconds spent in `phase`.
    public func milliseconds(_ phase: Phase) -> Double {
        switch phase {
        case .data: return data
        case .forward: return forward
        case .backward: return backward
        case .exposedCommunication: return exposedCommunication
        case .optimizer: return optimizer
        case .other: return other
        }
    }

    /// The share of the step spent in `phase` (0 when the step is 0). The six shares sum to 1.
    public func fraction(_ phase: Phase) -> Double {
        stepMilliseconds == 0 ? 0 : milliseconds(phase) / stepMilliseconds
    }
}
