#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Parameter

/// A trainable tensor: its value, its accumulated gradient, and a hook run when that
/// gradient is final during `Tape.backward` (data-parallel bucketing hangs on it).
public final class Parameter {
    public var value: Tensor
    /// Sum of gradients over every backward since the last `zeroGradient()`.
    public var gradient: Tensor?
    /// Called on the backward thread as soon as this parameter's gradient for the
    /// current backward pass has been added to `gradient`.
    public var onGradientReady: ((Parameter) -> Void)?

    public init(_ value: Tensor) {
        self.value = value.detached
    }

    public var shape: [Int] { value.shape }
    public var count: Int { value.count }

    public func zeroGradient() { gradient = nil }

    /// The value as an input to operations: tracked (a leaf of the current tape) while
    /// one records on this thread, plain otherwise.
    public var variable: Tensor {
        guard let tape = Tape.current else { return value }
        return tape.leaf(for: self)
    }
}

// MARK: - Tape

/// Reverse-mode automatic differentiation on an explicit tape.
///
/// Operations on tracked tensors append a node (its inputs' slots and a closure that
/// maps the output's gradient to the inputs'). `backward` walks the nodes in reverse.
/// A parameter's leaf is appended at its first use, before every node that reads it,
/// so when the walk reaches the leaf its gradient is complete: that is where the
/// parameter's `onGradientReady` hook runs, while the rest of backward goes on.
///
/// ```swift
/// let tape = Tape()
/// let loss = tape.record { Tensor.crossEntropy(logits: model.forward(x), labels: y) }
/// tape.backward(loss)   // gradients land in each Parameter.gradient
/// ```
public final class Tape {
    /// Maps the output gradient to one gradient per input (nil where `needs[i]` is false).
    public typealias Backward = (_ gradient: Tensor, _ needs: [Bool]) -> [Tensor?]

    struct Node {
        var inputs: [Int]
        var backward: Backward?
        var parameter: Parameter?
    }

    var nodes: [Node] = []
    var leaves: [ObjectIdentifier: Int] = [:]

    public init() {}

    /// Number of recorded nodes.
    public var count: Int { nodes.count }

    // MARK: Current tape (per thread)

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The tape recording on this thread, if any.
    public static var current: Tape? {
        guard let raw = pthread_getspecific(key) else { return nil }
        return Unmanaged<Tape>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Runs `body` with this tape recording on the current thread.
    public func record<R>(_ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(Tape.key)
        pthread_setspecific(Tape.key, Unmanaged.passUnretained(self).toOpaque())
        defer { pthread_setspecific(Tape.key, previous) }
        return try body()
    }

    // MARK: Recording

    func leaf(for parameter: Parameter) -> Tensor {
        let id = ObjectIdentifier(parameter)
        var t = parameter.value
        if let slot = leaves[id] { t.slot = slot; return t }
        t.slot = nodes.count
        leaves[id] = t.slot
        nodes.append(Node(inputs: [], backward: nil, parameter: parameter))
        return t
    }

    /// Marks `output` as computed from `inputs`; records a node when any input is tracked.
    public func track(_ output: Tensor, inputs: [Tensor], backward: @escaping Backward) -> Tensor {
        guard inputs.contains(where: { $0.isTracked }) else { return output }
        var out = output
        out.slot = nodes.count
        nodes.append(Node(inputs: inputs.map(\.slot), backward: backward, parameter: nil))
        return out
    }

    /// Records `output` on the current tape, if one records on this thread.
    public static func track(_ output: Tensor, inputs: [Tensor], backward: @escaping Backward) -> Tensor {
        guard let tape = current else { return output }
        return tape.track(output, inputs: inputs, backward: backward)
    }

    // MARK: Backward

    /// Back-propagates from `loss` (gradient `seed`, ones by default) to every parameter
    /// used since recording began, adding into `Parameter.gradient`, then clears the tape.
    public func backward(_ loss: Tensor, seed: Tensor? = nil) {
        precondition(loss.isTracked, "backward needs a tensor computed from parameters while this tape recorded")
        var grads = [Tensor?](repeating: nil, count: nodes.count)
        var owned = [Bool](repeating: false, count: nodes.count)
        grads[loss.slot] = seed ?? Tensor(repeating: 1, shape: loss.shape)
        for index in stride(from: loss.slot, through: 0, by: -1) {
            guard var gradient = grads[index] else { continue }
            grads[index] = nil
            let node = nodes[index]
            if let parameter = node.parameter {
                Tape.accumulate(&gradient, into: parameter)
                parameter.onGradientReady?(parameter)
                continue
            }
            guard let backward = node.backward else { continue }
            let needs = node.inputs.map { $0 >= 0 }
            let inputGrads = backward(gradient, needs)
            for (slot, g) in zip(node.inputs, inputGrads) where slot >= 0 {
                guard let g else { continue }
                if let existing = grads[slot] {
                    if owned[slot] {
                        Kernels.addInPlace(existing.pointer, g.pointer, count: g.count)
                    } else {
                        let sum = Tensor(uninitializedShape: existing.shape)
                        Kernels.add(existing.pointer, g.pointer, sum.pointer, count: g.count)
                        grads[slot] = sum
                        owned[slot] = true
                    }
                } else {
                    grads[slot] = g
                }
            }
        }
        nodes.removeAll(keepingCapacity: true)
        leaves.removeAll(keepingCapacity: true)
    }

    /// Forgets everything recorded.
    public func reset() {
        nodes.removeAll(keepingCapacity: true)
        leaves.removeAll(keepingCapacity: true)
    }

    /// Adds `gradient` into the parameter's; adopts its storage when nothing else holds it.
    static func accumulate(_ gradient: inout Tensor, into parameter: Parameter) {
        precondition(gradient.count == parameter.count, "gradient of \(gradient.shape) for a parameter of \(parameter.shape)")
        if let existing = parameter.gradient {
            Kernels.addInPlace(existing.pointer, gradient.pointer, count: gradient.count)
        } else if isKnownUniquelyReferenced(&gradient.storage) {
            parameter.gradient = Tensor(shape: parameter.shape, storage: gradient.storage)
        } else {
            let copy = Tensor(uninitializedShape: parameter.shape)
            copy.pointer.update(from: gradient.pointer, count: gradient.count)
            parameter.gradient = copy
        }
    }
}
