import Foundation
import TandemParallel

// MARK: - One result line, read leniently

/// A result line that is not a usable result: which field, and what was expected.
public struct ResultRecordError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The dotted field path (`step_ms.median`), or nil when the line as a whole is wrong.
    public var field: String?
    public var message: String
    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { field.map { "field \($0): \(message)" } ?? message }
}

/// One line of a results file, decoded into a ``RunResult`` however much of the schema
/// it carries, with a record of what was filled in.
///
/// `RunResult` requires fields that `bench/torch_bench.py` does not always print (and
/// nested objects it prints in part), so the line is read as a JSON tree, patched, and
/// then decoded by `RunResult`'s own `Codable` conformance, which keeps any field
/// `RunResult` gains later. Extra fields are ignored (``mode`` is kept).
///
/// **Required**: `model` (string), `workers` (integer ≥ 1), `samples_per_s` (number
/// > 0), and one of `batch_per_worker` / `global_batch` (integers ≥ 1).
///
/// **Filled in when absent** (and listed in ``imputed``):
/// - `batch_per_worker` = global_batch / workers, or `global_batch` = batch_per_worker × workers;
/// - `step_ms`: a bare number is taken as the mean; a missing `mean` is
///   1000 · global_batch / samples_per_s (the step time throughput implies); a missing
///   `median` is the mean, missing `p10` and `p90` the median (as `torch_bench.py --device cuda`
///   prints only the mean);
/// - `engine`, `backend`, `device`, `device_name`: "unknown"; `engine_version`: "";
///   `precision`: "fp32"; `params`, `steps`, `warmup`: 0;
/// - `seconds` = steps · global_batch / samples_per_s; `loss`: NaN.
///
/// **Left out when incomplete** (listed in ``dropped``): `breakdown_ms`, `comm` and
/// `memory` objects missing one of their fields — a made-up zero would read as a
/// measurement. `memory.peak_bytes` survives in ``peakBytes``.
///
/// `NaN` and `Infinity`, which Python's `json.dumps` writes for a diverged loss, are
/// accepted.
public struct ResultRecord: Sendable {
    public var result: RunResult
    /// `torch_bench.py`'s execution mode ("eager", "graph", "compile"), if given.
    public var mode: String?
    /// Peak bytes per worker, kept even when `memory` was incomplete.
    public var peakBytes: Int?
    /// Dotted paths of the fields filled in, in schema order.
    public var imputed: [String]
    /// Nested objects left out because they were incomplete.
    public var dropped: [String]

    /// Decodes one JSON object (one line of a results file).
    public init(json line: String) throws(ResultRecordError) {
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true   // NaN, Infinity
        let tree: ResultJSON
        do {
            tree = try decoder.decode(ResultJSON.self, from: Data(line.utf8))
        } catch {
            throw ResultRecordError(field: nil, message: "not valid JSON")
        }
        guard var fields = tree.object else {
            throw ResultRecordError(field: nil, message: "expected a JSON object, found \(tree.kind)")
        }
        var imputed: [String] = []
        var dropped: [String] = []

        // MARK: Required

        func need<T>(_ key: String, _ what: String, _ convert: (ResultJSON) -> T?) throws(ResultRecordError) -> T {
            guard let value = fields[key] else { throw ResultRecordError(field: key, message: "missing; expected \(what)") }
            guard let converted = convert(value) else { throw ResultRecordError(field: key, message: "expected \(what), found \(value.kind)") }
            return converted
        }
        _ = try need("model", "a string") { $0.string }
        let workers = try need("workers", "an integer ≥ 1") { $0.integer.flatMap { $0 >= 1 ? $0 : nil } }
        let throughput = try need("samples_per_s", "a positive number") { $0.double.flatMap { $0 > 0 && $0.isFinite ? $0 : nil } }
        func optionalCount(_ key: String) throws(ResultRecordError) -> Int? {
            guard let value = fields[key], value != .null else { return nil }
            guard let i = value.integer, i >= 1 else { throw ResultRecordError(field: key, message: "expected an integer ≥ 1, found \(value.kind == "a number" ? "\(value.double!)" : value.kind)") }
            return i
        }
        let perWorker = try optionalCount("batch_per_worker")
        let global = try optionalCount("global_batch")
        let globalBatch: Int
        switch (perWorker, global) {
        case (nil, nil):
            throw ResultRecordError(field: "batch_per_worker", message: "missing, and so is global_batch; expected an integer ≥ 1")
        case (let b?, nil):
            globalBatch = b * workers
            fields["global_batch"] = .integer(globalBatch); imputed.append("global_batch")
        case (nil, let g?):
            globalBatch = g
            fields["batch_per_worker"] = .integer(g / workers); imputed.append("batch_per_worker")
        case (_, let g?):
            globalBatch = g
        }

        // MARK: Step time

        let impliedMean = 1000 * Double(globalBatch) / throughput
        var step: [String: ResultJSON]
        switch fields["step_ms"] {
        case nil, .null?:
            step = [:]
        case .integer?, .number?:
            step = ["mean": fields["step_ms"]!]
        case .object(let o)?:
            step = o
        case let other?:
            throw ResultRecordError(field: "step_ms", message: "expected an object or a number, found \(other.kind)")
        }
        for key in ["mean", "median", "p10", "p90"] {
            if let v = step[key], v != .null, v.double == nil {
                throw ResultRecordError(field: "step_ms.\(key)", message: "expected a number, found \(v.kind)")
            }
        }
        func fill(_ key: String, from source: @autoclosure () -> ResultJSON) {
            if step[key] == nil || step[key] == .null { step[key] = source(); imputed.append("step_ms.\(key)") }
        }
        fill("mean", from: .number(impliedMean))
        fill("median", from: step["mean"]!)
        fill("p10", from: step["median"]!)
        fill("p90", from: step["median"]!)
        fields["step_ms"] = .object(step)

        // MARK: Defaults

        func fallback(_ key: String, _ value: ResultJSON) {
            if fields[key] == nil || fields[key] == .null { fields[key] = value; imputed.append(key) }
        }
        fallback("engine", .string("unknown"))
        fallback("engine_version", .string(""))
        fallback("params", .integer(0))
        fallback("backend", .string("unknown"))
        fallback("device", .string("unknown"))
        fallback("device_name", .string("unknown"))
        fallback("precision", .string("fp32"))
        fallback("steps", .integer(0))
        fallback("warmup", .integer(0))
        let steps = fields["steps"]?.integer ?? 0
        fallback("seconds", .number(Double(steps) * Double(globalBatch) / throughput))
        fallback("loss", .number(.nan))

        // MARK: Nested objects

        if let peak = fields["memory"]?.object?["peak_bytes"]?.integer { peakBytes = peak } else { peakBytes = nil }
        let nested: [(String, [String])] = [
            ("breakdown_ms", ["data", "forward", "backward", "comm_exposed", "optimizer"]),
            ("comm", ["bytes_per_step", "algbw_gbps", "busbw_gbps", "overlap"]),
            ("memory", ["peak_bytes", "params", "grads", "optimizer", "activations"]),
        ]
        for (key, members) in nested {
            guard let value = fields[key], value != .null else { continue }
            guard let object = value.object else {
                throw ResultRecordError(field: key, message: "expected an object, found \(value.kind)")
            }
            if members.contains(where: { object[$0] == nil || object[$0] == .null }) {
                fields[key] = nil
                dropped.append(key)
            }
        }

        // Integers are checked here: Foundation reports a fractional number where an
        // integer belongs as "not valid JSON", with no field.
        let integers: [(String, [String])] = [
            ("", ["params", "steps", "warmup"]),
            ("comm", ["bytes_per_step"]),
            ("memory", ["peak_bytes", "params", "grads", "optimizer", "activations"]),
        ]
        for (parent, keys) in integers {
            let object = parent.isEmpty ? fields : (fields[parent]?.object ?? [:])
            for key in keys {
                if let value = object[key], value != .null, value.integer == nil {
                    let found = value.double.map { "\($0)" } ?? value.kind
                    throw ResultRecordError(field: parent.isEmpty ? key : "\(parent).\(key)", message: "expected an integer, found \(found)")
                }
            }
        }

        // MARK: Decode with RunResult's own schema

        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "+inf", negativeInfinity: "-inf", nan: "nan")
        let strict = JSONDecoder()
        strict.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "+inf", negativeInfinity: "-inf", nan: "nan")
        do {
            result = try strict.decode(RunResult.self, from: try encoder.encode(ResultJSON.object(fields)))
        } catch let error as DecodingError {
            throw ResultRecord.describe(error)
        } catch {
            throw ResultRecordError(field: nil, message: "\(error)")
        }
        mode = fields["mode"]?.string
        self.imputed = imputed
        self.dropped = dropped
    }

    /// A decoding error as the field it names and what was expected.
    static func describe(_ error: DecodingError) -> ResultRecordError {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
        }
        switch error {
        case .typeMismatch(let type, let context):
            return ResultRecordError(field: path(context.codingPath), message: "expected \(ResultRecord.typeName(type))")
        case .valueNotFound(let type, let context):
            return ResultRecordError(field: path(context.codingPath), message: "is null; expected \(ResultRecord.typeName(type))")
        case .keyNotFound(let key, let context):
            return ResultRecordError(field: path(context.codingPath + [key]), message: "missing")
        case .dataCorrupted(let context):
            guard !context.codingPath.isEmpty else {
                return ResultRecordError(field: nil, message: "does not fit the result schema (a fractional number where an integer belongs?)")
            }
            return ResultRecordError(field: path(context.codingPath), message: context.debugDescription)
        @unknown default:
            return ResultRecordError(field: nil, message: "\(error)")
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "a boolean"
        default:
            let name = String(describing: type)
            return name.hasPrefix("Array") ? "an array" : name.hasPrefix("Dictionary") ? "an object" : "a value of type \(name)"
        }
    }
}
