import TandemCore
import TandemFormats
import TandemNN

// MARK: - Weights as safetensors

extension Module {
    /// Writes the weights under their PyTorch `state_dict` names, atomically.
    public func saveWeights(to path: String, metadata: [String: String] = [:]) throws {
        let tensors = Dictionary(uniqueKeysWithValues: namedParameters.map {
            ($0.name, HostArray(shape: $0.parameter.shape, floats: $0.parameter.value.scalars))
        })
        try Safetensors.write(tensors, metadata: metadata, to: path)
    }

    /// Reads weights saved by Tandem or by PyTorch (`safetensors.torch.save_file(model.state_dict())`);
    /// any floating-point dtype is converted to float32. Nothing changes unless every
    /// name and shape fits.
    public func loadWeights(from path: String) throws {
        let file = try Safetensors.read(path: path)
        var state: [String: Tensor] = [:]
        for (name, array) in file.tensors {
            guard array.dtype.isFloatingPoint else {
                throw FormatError(file: path, message: "tensor '\(name)' has dtype \(array.dtype), expected a floating-point type")
            }
            state[name] = Tensor(array.floats(), shape: array.shape)
        }
        do { try load(stateDict: state) } catch { throw FormatError(file: path, message: error.description) }
    }
}
