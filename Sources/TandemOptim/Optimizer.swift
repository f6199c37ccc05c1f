import TandemCore
import TandemNN

// MARK: - Optimizer

/// A per-parameter update rule. State is kept per parameter path, so the same tree
/// serves checkpoints and data-parallel replicas.
public protocol Optimizer: AnyObject {
    /// The learning rate of the next step (schedules set it).
    var learningRate: Float { get set }
    /// Names of the state tensors one parameter carries (`["momentum_buffer"]`, `["exp_avg", "exp_avg_sq"]`).
    var stateNames: [String] { get }
    /// Updates `parameter.value` in place from `gradient`, with this parameter's `state`
    /// (empty before its first step) and the 1-based step count.
    func update(parameter: Parameter, gradient: Tensor, state: inout [Tensor], step: Int)
}

// MARK: - Element-wise update rules

/// An update rule in which each weight's new value depends only on that weight, its
/// gradient and its own state (SGD, AdamW): any slice of a parameter can be updated apart
/// from the rest, which is what a sharded optimizer step (ZeRO stage 1) needs, where each
/// rank updates only its part of the flattened parameters.
public protocol ElementwiseOptimizer: Optimizer {
    /// Updates `count` weights in place from their gradients and their state (one pointer
    /// per name of `stateNames`, each `count` long, zero before the first step); `step` is 1-based.
    func update(weights: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
                state: [UnsafeMutablePointer<Float>], count: Int, step: Int)
}

extension ElementwiseOptimizer {
    /// The whole-parameter update through the slice rule: one code path for both, so a
    /// sharded step computes the same bits as an unsharded one. State starts at zero.
    public func updateElementwise(parameter: Parameter, gradient: Tensor, state: inout [Tensor], step: Int) {
        if state.isEmpty { state = stateNames.map { _ in Tensor(zeros: parameter.shape) } }
        update(weights: parameter.value.pointer, gradient: gradient.pointer, state: state.map(\.pointer),
               count: parameter.count, step: step)
    }
}

/// Drives an `Optimizer` over a module's named parameters, keeping state and the step count.
public final class OptimizerState {
    public let optimizer: any Optimizer
    /// Per parameter path, the optimizer's state tensors.
    public var slots: [String: [Tensor]] = [:]
    /// Steps taken so far.
    public var step = 0

    public init(_ optimizer: any Optimizer) { self.optimizer = optimizer }

    /// Applies one update to every parameter that has a gradient.
    public func apply(to parameters: [(name: String, parameter: Parameter)]) {
        step += 1
        for (name, parameter) in parameters {
            guard let gradient = parameter.gradient else { continue }
            var state = slots[name] ?? []
            optimizer.update(parameter: parameter, gradient: gradient, state: &state, step: step)
            slots[name] = state
        }
    }
}

/// Why a hyperparameter was refused.
public struct HyperparameterError: Error, CustomStringConvertible, Equatable {
    public let name: String, value: Float, expected: String
    public var description: String { "\(name) \(value) is invalid: expected \(expected)" }

    static func check(_ name: String, _ value: Float, _ expected: String, _ ok: (Float) -> Bool) throws(HyperparameterError) {
        guard value.isFinite && ok(value) else { throw HyperparameterError(name: name, value: value, expected: expected) }
    }
}

// MARK: - SGD

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay,
/// exactly as `torch.optim.SGD` (dampening 0): g ← g + λw; b ← μb + g (b = g at the first
/// step); step along g + μb (Nesterov) or b. Sutskever et al., ICML 2013.
public final class SGD: ElementwiseOptimizer {
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float, nesterov: Bool

    public init(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) throws(HyperparameterError) {
        try HyperparameterError.check("learning rate", learningRate, "a finite number ≥ 0") { $0 >= 0 }
        try HyperparameterError.check("momentum", momentum, "a number in [0, 1)") { $0 >= 0 && $0 < 1 }
        try HyperparameterError.check("weight decay", weightDecay, "a finite number ≥ 0") { $0 >= 0 }
        if nesterov && momentum == 0 { throw HyperparameterError(name: "momentum", value: 0, expected: "momentum > 0 with Nesterov") }
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public var stateNames: [String] { momentum == 0 ? [] : ["momentum_buffer"] }

    public func update(parameter: Parameter, gradient: Tensor, state: inout [Tensor], step: Int) {
        updateElementwise(parameter: parameter, gradient: gradient, state: &state, step: step)
    }

    /// The momentum buffer starts at zero, so the first step's b = μ·0 + g + λw is exactly
    /// PyTorch's b = g + λw.
    public func update(weights w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                       state: [UnsafeMutablePointer<Float>], count n: Int, step: Int) {
        let lr = learningRate, mu = momentum, wd = weightDecay
        if mu == 0 {
            for i in 0..<n { w[i] -= lr * (g[i] + wd * w[i]) }
            return
        }
        let b = state[0]
        if nesterov {
            for i in 0..<n { let d = g[i] + wd * w[i]; b[i] = mu * b[i] + d; w[i] -= lr * (d + mu * b[i]) }
        } else {
            for i in 0..<n { b[i] = mu * b[i] + g[i] + wd * w[i]; w[i] -= lr * b[i] }
        }
    }
}

// MARK: - AdamW

/// Adam with decoupled weight decay, as `torch.optim.AdamW` (Loshchilov & Hutter, ICLR 2019):
/// w ← w(1 − ηλ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// w ← w − η·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε).
public final class AdamW: ElementwiseOptimizer {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) throws(HyperparameterError) {
        try HyperparameterError.check("learning rate", learningRate, "a finite number ≥ 0") { $0 >= 0 }
        try HyperparameterError.check("beta1", beta1, "a number in [0, 1)") { $0 >= 0 && $0 < 1 }
        try HyperparameterError.check("beta2", beta2, "a number in [0, 1)") { $0 >= 0 && $0 < 1 }
        try HyperparameterError.check("eps", eps, "a finite number > 0") { $0 > 0 }
        try HyperparameterError.check("weight decay", weightDecay, "a finite number ≥ 0") { $0 >= 0 }
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }

    public var stateNames: [String] { ["exp_avg", "exp_avg_sq"] }

    public func update(parameter: Parameter, gradient: Tensor, state: inout [Tensor], step: Int) {
        updateElementwise(parameter: parameter, gradient: gradient, state: &state, step: step)
    }

    public func update(weights w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                       state: [UnsafeMutablePointer<Float>], count n: Int, step: Int) {
        let m = state[0], v = state[1]
        let lr = learningRate, b1 = beta1, b2 = beta2
        let correction1 = 1 - Float(Double(b1).power(step)), correction2 = 1 - Float(Double(b2).power(step))
        let stepSize = lr / correction1, root2 = correction2.squareRoot()
        let decay = 1 - lr * weightDecay
        for i in 0..<n {
            w[i] *= decay
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            w[i] -= stepSize * m[i] / (v[i].squareRoot() / root2 + eps)
        }
    }
}

extension Double {
    func power(_ n: Int) -> Double { (0..<n).reduce(1) { r, _ in r * self } }
}
