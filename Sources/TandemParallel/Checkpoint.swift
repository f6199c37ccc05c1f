import Foundation
import TandemCore
import TandemFormats
import TandemNN
import TandemOptim
import TandemModels

// MARK: - Checkpoints of the whole training state

/// A training checkpoint: one safetensors file holding the weights under their PyTorch
/// `state_dict` names, the optimizer state under `tandem.optimizer.<name>.<slot>`, and the
/// rest (step, data position, settings) in its metadata. Written atomically (temporary
/// file, fsync, rename), so a kill at any moment leaves the previous checkpoint whole.
///
/// In PyTorch: `sd = safetensors.torch.load_file(path)`, then
/// `model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("tandem.")})`.
public struct Checkpoint: Sendable {
    public static let statePrefix = "tandem."
    public static let fileName = "checkpoint.safetensors"

    /// Optimizer steps taken.
    public var step: Int
    /// Where the data stream stands: batches drawn in total by each rank.
    public var batchesDrawn: Int
    public var workers: Int
    /// Free-form settings that must match on resume (model, optimizer, batch, …).
    public var settings: [String: String]

    public init(step: Int, batchesDrawn: Int, workers: Int, settings: [String: String]) {
        self.step = step
        self.batchesDrawn = batchesDrawn
        self.workers = workers
        self.settings = settings
    }

    public static func path(in directory: String) -> String { (directory as NSString).appendingPathComponent(fileName) }

    /// Writes `model`'s weights, `optimizer`'s state and this record to `directory`.
    public func write(model: any Model, optimizer: OptimizerState, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var tensors: [String: HostArray] = [:]
        for (name, p) in model.namedParameters { tensors[name] = HostArray(shape: p.shape, floats: p.value.scalars) }
        let slotNames = optimizer.optimizer.stateNames
        for (name, slots) in optimizer.slots {
            for (slot, t) in zip(slotNames, slots) {
                tensors["\(Self.statePrefix)optimizer.\(name).\(slot)"] = HostArray(shape: t.shape, floats: t.scalars)
            }
        }
        var metadata = settings.mapKeys { "setting.\($0)" }
        metadata["step"] = "\(step)"
        metadata["batches_drawn"] = "\(batchesDrawn)"
        metadata["workers"] = "\(workers)"
        metadata["optimizer_step"] = "\(optimizer.step)"
        metadata["format"] = "tandem-checkpoint-1"
        try Safetensors.write(tensors, metadata: metadata, to: Self.path(in: directory))
    }

    /// Reads the checkpoint in `directory` into `model` and `optimizer`, after checking that
    /// its settings match `settings`. Nothing is changed unless everything fits.
    public static func resume(from directory: String, model: any Model, optimizer: OptimizerState,
                              settings: [String: String]) throws -> Checkpoint {
        let path = Self.path(in: directory)
        guard FileManager.default.fileExists(atPath: path) else {
            throw FormatError(file: path, message: "no checkpoint to resume from, expected a file written by --checkpoint-dir")
        }
        let file = try Safetensors.read(path: path)
        func number(_ key: String) throws -> Int {
            guard let text = file.metadata[key], let value = Int(text), value >= 0 else {
                throw FormatError(file: path, message: "metadata '\(key)' is missing or not a count, expected a Tandem checkpoint")
            }
            return value
        }
        let record = Checkpoint(step: try number("step"), batchesDrawn: try number("batches_drawn"), workers: try number("workers"),
                                settings: file.metadata.filter { $0.key.hasPrefix("setting.") }.mapKeys { String($0.dropFirst(8)) })
        for (key, value) in settings where record.settings[key] != value {
            throw FormatError(file: path, message: "checkpoint was written with \(key) = \(record.settings[key] ?? "nothing"), this run has \(value)")
        }
        var weights: [String: Tensor] = [:]
        var slots: [String: [String: Tensor]] = [:]
        let optimizerPrefix = "\(statePrefix)optimizer."
        for (name, array) in file.tensors {
            guard array.dtype == .float32 else { throw FormatError(file: path, message: "tensor '\(name)' is \(array.dtype), expected float32") }
            let t = Tensor(array.floats(), shape: array.shape)
            if name.hasPrefix(optimizerPrefix) {
                let rest = name.dropFirst(optimizerPrefix.count)
                guard let dot = rest.lastIndex(of: ".") else { throw FormatError(file: path, message: "optimizer tensor '\(name)' has no slot name") }
                slots[String(rest[..<dot]), default: [:]][String(rest[rest.index(after: dot)...])] = t
            } else {
                weights[name] = t
            }
        }
        do { try model.validate(stateDict: weights) } catch { throw FormatError(file: path, message: error.description) }
        let shapes = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter.shape) })
        let slotNames = optimizer.optimizer.stateNames
        var restored: [String: [Tensor]] = [:]
        for (name, bySlot) in slots {
            guard let shape = shapes[name] else { throw FormatError(file: path, message: "optimizer state for '\(name)', which the model does not have") }
            restored[name] = try slotNames.map { slot in
                guard let t = bySlot[slot] else { throw FormatError(file: path, message: "optimizer state '\(name).\(slot)' is missing") }
                guard t.shape == shape else {
                    throw FormatError(file: path, message: "optimizer state '\(name).\(slot)' has shape \(t.shape), expected \(shape)")
                }
                return t
            }
        }
        let optimizerStep = try number("optimizer_step")  // read before anything changes
        do { try model.load(stateDict: weights) } catch { throw FormatError(file: path, message: error.description) }
        optimizer.slots = restored
        optimizer.step = optimizerStep
        return record
    }
}

extension Dictionary where Key == String {
    func mapKeys(_ transform: (String) -> String) -> [String: Value] {
        Dictionary(uniqueKeysWithValues: map { (transform($0.key), $0.value) })
    }
}
