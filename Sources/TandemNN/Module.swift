import TandemCore

// MARK: - Module

/// Anything that owns parameters, named by their PyTorch `state_dict` paths.
public protocol Module: AnyObject {
    /// Parameters in registration order, with their paths (`"0.weight"`, `"rnn.bias_hh_l1"`).
    var namedParameters: [(name: String, parameter: Parameter)] { get }
}

/// A module that maps one tensor to another.
public protocol Layer: Module {
    func callAsFunction(_ x: Tensor) -> Tensor
}

extension Module {
    public var parameters: [Parameter] { namedParameters.map(\.parameter) }
    public var parameterCount: Int { namedParameters.reduce(0) { $0 + $1.parameter.count } }
    public func zeroGradients() { for p in parameters { p.zeroGradient() } }

    /// The weights by name (copies, not tracked).
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: namedParameters.map { ($0.name, $0.parameter.value.copy()) })
    }

    /// Replaces every weight from `state`; names and shapes must match exactly, and
    /// nothing changes unless all of them do.
    public func load(stateDict state: [String: Tensor]) throws(ModuleError) {
        try validate(stateDict: state)
        for (name, parameter) in namedParameters { parameter.value = state[name]!.copy() }
    }

    /// Throws unless `state` holds exactly this module's names with its shapes; changes nothing.
    public func validate(stateDict state: [String: Tensor]) throws(ModuleError) {
        let own = namedParameters
        let expected = Set(own.map(\.name))
        if let extra = state.keys.sorted().first(where: { !expected.contains($0) }) {
            throw .unexpectedTensor(name: extra, expected: own.map(\.name))
        }
        for (name, parameter) in own {
            guard let value = state[name] else { throw .missingTensor(name: name) }
            guard value.shape == parameter.shape else { throw .shapeMismatch(name: name, found: value.shape, expected: parameter.shape) }
        }
    }
}

/// Why a set of weights does not fit a module.
public enum ModuleError: Error, CustomStringConvertible, Equatable {
    case missingTensor(name: String)
    case unexpectedTensor(name: String, expected: [String])
    case shapeMismatch(name: String, found: [Int], expected: [Int])

    public var description: String {
        switch self {
        case .missingTensor(let name): "weights lack tensor '\(name)' that the model needs"
        case .unexpectedTensor(let name, let expected):
            "weights hold tensor '\(name)' that the model does not have (expected names like \(expected.prefix(3).joined(separator: ", ")))"
        case .shapeMismatch(let name, let found, let expected): "tensor '\(name)' has shape \(found), expected \(expected)"
        }
    }
}

// MARK: - Sequential

/// Layers applied in order, named "0", "1", … as PyTorch's `nn.Sequential`.
public final class Sequential: Layer {
    public let layers: [any Layer]
    public init(_ layers: [any Layer]) { self.layers = layers }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        layers.enumerated().flatMap { index, layer in
            layer.namedParameters.map { (name: "\(index).\($0.name)", parameter: $0.parameter) }
        }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        layers.reduce(x) { $1($0) }
    }
}

/// Prefixes a child's parameter names with `prefix.`.
public func prefixed(_ prefix: String, _ module: any Module) -> [(name: String, parameter: Parameter)] {
    module.namedParameters.map { (name: "\(prefix).\($0.name)", parameter: $0.parameter) }
}
