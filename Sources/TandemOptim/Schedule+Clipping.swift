#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemCore
import TandemNN

// MARK: - Learning-rate schedules

/// The learning rate as a function of the 0-based step.
public enum LearningRateSchedule: Sendable, Equatable {
    case constant
    /// Multiplies by `factor` every `every` steps.
    case step(every: Int, factor: Float)
    /// Cosine decay from the base rate to `minimum` over `steps` (Loshchilov & Hutter, SGDR).
    case cosine(steps: Int, minimum: Float)

    /// The rate at `step`, after `warmup` steps of linear warm-up from base/warmup to base.
    public func rate(base: Float, step: Int, warmup: Int = 0) -> Float {
        if warmup > 0 && step < warmup { return base * Float(step + 1) / Float(warmup) }
        let s = step - warmup
        switch self {
        case .constant: return base
        case .step(let every, let factor): return base * Float(Double(factor).power(s / max(every, 1)))
        case .cosine(let steps, let minimum):
            let t = min(Double(s) / Double(max(steps, 1)), 1)
            return minimum + (base - minimum) * Float(0.5 * (1 + cos(Double.pi * t)))
        }
    }
}

// MARK: - Clipping

/// Scales all gradients so their global L2 norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_`; returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let total = Float(globalGradientNorm(parameters))
    let scale = maxNorm / (total + 1e-6)
    if scale < 1 {
        for p in parameters { if let g = p.gradient { Kernels.scale(g.pointer, by: scale, count: g.count) } }
    }
    return total
}

/// √(Σ‖g‖²) over every parameter that has a gradient.
public func globalGradientNorm(_ parameters: [Parameter]) -> Double {
    parameters.reduce(0.0) { sum, p in sum + (p.gradient.map { Kernels.sumOfSquares($0.pointer, count: $0.count) } ?? 0) }.squareRoot()
}
