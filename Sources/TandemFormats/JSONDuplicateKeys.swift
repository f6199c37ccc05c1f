import Foundation

// MARK: - Duplicate JSON keys

/// Finds a key that appears twice in one JSON object, which `JSONSerialization` would
/// silently resolve by keeping one of the values.
///
/// Runs over text that `JSONSerialization` has already accepted, so it only needs to
/// tell strings, containers and separators apart. It keeps an explicit stack rather than
/// recursing, so deep nesting cannot exhaust the call stack.
enum JSONDuplicateKeys {
    /// The first repeated key, and the keys of the objects that enclose it (empty for
    /// the top level); `nil` when every object's keys are distinct.
    static func first(in json: [UInt8]) -> (path: [String], key: String)? {
        struct Container {
            var isObject: Bool
            var name: String
            var keys: Set<String> = []
            var expectingKey: Bool
        }
        var stack: [Container] = []
        var pendingName = ""
        var index = 0
        while index < json.count {
            let byte = json[index]
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let isObject = byte == UInt8(ascii: "{")
                stack.append(Container(isObject: isObject, name: pendingName, expectingKey: isObject))
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
                index += 1
            case UInt8(ascii: ","):
                if let last = stack.indices.last, stack[last].isObject { stack[last].expectingKey = true }
                index += 1
            case UInt8(ascii: "\""):
                let start = index
                index += 1
                while index < json.count, json[index] != UInt8(ascii: "\"") {
                    index += json[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                index += 1
                guard let last = stack.indices.last, stack[last].expectingKey else { continue }
                let key = decodeString(json[start..<min(index, json.count)])
                stack[last].expectingKey = false
                if !stack[last].keys.insert(key).inserted {
                    return (stack.dropFirst().map(\.name), key)
                }
                pendingName = key
            default:
                index += 1
            }
        }
        return nil
    }

    /// The value of a JSON string token, quotes included.
    private static func decodeString(_ token: ArraySlice<UInt8>) -> String {
        guard token.contains(UInt8(ascii: "\\")) else {
            return String(decoding: token.dropFirst().dropLast(), as: UTF8.self)
        }
        let value = try? JSONSerialization.jsonObject(with: Data(token), options: .fragmentsAllowed)
        return value as? String ?? String(decoding: token, as: UTF8.self)
    }
}
