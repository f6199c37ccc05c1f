import Foundation
import TandemCore
import TandemFormats
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Finding and running the `tandem` binary

/// Runs the real `tandem` executable that `swift build --build-tests` puts next to the test bundle.
enum CLI {
    /// The directories searched for `tandem`: where the test bundle and the test executable
    /// live, and their parents.
    static let searchedDirectories: [URL] = {
        var directories: [URL] = []
        func add(_ url: URL?) {
            guard let url else { return }
            let directory = url.standardizedFileURL
            directories.append(directory)
            directories.append(directory.deletingLastPathComponent())
        }
        add(Bundle.main.bundleURL)
        add(Bundle.main.executableURL?.deletingLastPathComponent())
        if let first = CommandLine.arguments.first {
            add(URL(fileURLWithPath: first).deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            add(bundle.bundleURL)
            add(bundle.bundleURL.deletingLastPathComponent())
        }
        var seen: Set<String> = []
        return directories.filter { seen.insert($0.path).inserted }
    }()

    /// The `tandem` executable, or nil when it has not been built.
    static let binary: URL? = {
        for directory in searchedDirectories {
            let candidate = directory.appendingPathComponent("tandem")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate.path)
            {
                return candidate
            }
        }
        return nil
    }()

    /// The binary, or a test failure that says how to build it.
    static func requireBinary(sourceLocation: SourceLocation = #_sourceLocation) throws -> URL {
        try #require(
            binary,
            """
            the 'tandem' executable was not found next to the test bundle (searched \
            \(searchedDirectories.map(\.path).joined(separator: ", "))); run `swift build --build-tests` \
            (with the same --scratch-path) before `swift test --skip-build`
            """,
            sourceLocation: sourceLocation)
    }

    /// What one run of `tandem` did.
    struct Outcome: CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var reason: Process.TerminationReason
        var timedOut: Bool
        var stdout: String
        var stderr: String

        var exitedNormally: Bool { reason == .exit && !timedOut }

        var description: String {
            let how = timedOut ? "timed out" : reason == .exit ? "exit \(status)" : "signal \(status)"
            return "tandem \(arguments.joined(separator: " ")) → \(how)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)"
        }
    }

    /// Runs `tandem arguments…`, killing it after `timeout` seconds. Output goes through
    /// files rather than pipes, so a chatty child can never block on a full pipe.
    static func run(
        _ arguments: [String], timeout: Double = 120, environment: [String: String] = [:],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Outcome {
        let binary = try requireBinary(sourceLocation: sourceLocation)
        let capture = try TemporaryDirectory(prefix: "tandem-cli-out")
        defer { capture.remove() }
        let outURL = capture.url.appendingPathComponent("stdout")
        let errURL = capture.url.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)

        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        try process.run()
        try? out.close()
        try? err.close()

        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        var timedOut = false
        if process.isRunning {
            timedOut = true
            process.terminate()
            let grace = Date().addingTimeInterval(5)
            while process.isRunning && Date() < grace { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        let stdout = String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self)
        let stderr = String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self)
        return Outcome(
            arguments: arguments, status: process.terminationStatus, reason: process.terminationReason,
            timedOut: timedOut, stdout: stdout, stderr: stderr)
    }

    /// The repository root (this file is `<root>/Tests/TandemCLITests/CLISupport.swift`).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Arguments of a small, fast `train` run on synthetic data: mlp 784 → 8 → 10.
    static let smallTrain = ["train", "--model", "mlp", "--hidden", "8", "--batch", "4", "--steps", "1", "--quiet"]
}

// MARK: - Checking a failed run

/// Words that only a crash, a trap or a stack trace print.
private let crashMarkers = [
    "fatal error", "precondition failed", "assertion failed", "stack dump", "backtrace", "crashed", "segmentation fault",
    "illegal instruction", "current stack trace", "0x0000",
]

/// Checks that `outcome` is a clean refusal: it ran to completion, exited non-zero on its own
/// (no signal, no timeout), printed nothing on stdout, and printed a short error on stderr
/// that contains every one of `words` (case-insensitive) and no sign of a crash.
func expectCleanFailure(
    _ outcome: CLI.Outcome, mentions words: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(!outcome.timedOut, "the run hung: \(outcome)", sourceLocation: sourceLocation)
    #expect(
        outcome.reason == .exit, "the run was killed by signal \(outcome.status): \(outcome)",
        sourceLocation: sourceLocation)
    #expect(outcome.status != 0, "the run succeeded but should have failed: \(outcome)", sourceLocation: sourceLocation)
    #expect(
        outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
        "a failed run printed a result on stdout: \(outcome)", sourceLocation: sourceLocation)
    let stderr = outcome.stderr
    let lower = stderr.lowercased()
    #expect(lower.contains("error"), "stderr does not say 'Error': \(outcome)", sourceLocation: sourceLocation)
    for word in words {
        #expect(lower.contains(word.lowercased()), "stderr does not mention '\(word)': \(outcome)", sourceLocation: sourceLocation)
    }
    for marker in crashMarkers {
        #expect(!lower.contains(marker), "stderr looks like a crash ('\(marker)'): \(outcome)", sourceLocation: sourceLocation)
    }
    let lines = stderr.split(whereSeparator: \.isNewline).filter { !$0.allSatisfy(\.isWhitespace) }
    #expect(!lines.isEmpty, "no error message on stderr: \(outcome)", sourceLocation: sourceLocation)
    // ArgumentParser adds a usage line (possibly wrapped) and a help hint; a trace would be far longer.
    #expect(lines.count <= 12, "stderr is \(lines.count) lines, expected a short error: \(outcome)", sourceLocation: sourceLocation)
}

// MARK: - Temporary directories

/// A fresh directory under the system temporary directory; `remove()` deletes it.
struct TemporaryDirectory {
    let url: URL

    init(prefix: String = "tandem-cli") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @discardableResult
    func write(_ name: String, text: String) throws -> String { try write(name, Array(text.utf8)) }

    /// Every file below the directory (relative path → bytes), and every directory (→ nil).
    func snapshot() throws -> [String: Data?] {
        var result: [String: Data?] = [:]
        let base = url.standardizedFileURL.resolvingSymlinksInPath().path
        guard let enumerator = FileManager.default.enumerator(atPath: base) else { return result }
        for case let relative as String in enumerator {
            let full = base + "/" + relative
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory)
            result[relative] = isDirectory.boolValue ? .some(nil) : .some(try Data(contentsOf: URL(fileURLWithPath: full)))
        }
        return result
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

// MARK: - A failed run must leave everything as it was

/// Runs `arguments` in a directory that already holds a valid weights file `existing.safetensors`
/// (also passed as `--save` for `train`, unless `save` is false), expects a clean failure
/// mentioning `words`, and expects every file in the directory, the fixtures included, to be
/// byte-identical afterwards, with nothing added (no temporary files left behind).
func expectRefusal(
    _ arguments: [String], in directory: TemporaryDirectory, mentions words: [String], save: Bool = true,
    timeout: Double = 120, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let existing = directory.path("existing.safetensors")
    if !FileManager.default.fileExists(atPath: existing) {
        try Safetensors.write(Fixtures.smallMLPWeights(fill: 0.25), metadata: ["note": "must survive"], to: existing)
    }
    var arguments = arguments
    if save && arguments.first == "train" { arguments += ["--save", existing] }
    let before = try directory.snapshot()
    let outcome = try CLI.run(arguments, timeout: timeout, sourceLocation: sourceLocation)
    expectCleanFailure(outcome, mentions: words, sourceLocation: sourceLocation)
    let after = try directory.snapshot()
    #expect(
        Set(after.keys) == Set(before.keys),
        "files appeared or vanished: before \(before.keys.sorted()), after \(after.keys.sorted())",
        sourceLocation: sourceLocation)
    for (name, contents) in before {
        #expect(after[name] == contents, "\(name) changed although the run failed", sourceLocation: sourceLocation)
    }
}

// MARK: - Fixture bytes

enum Fixtures {
    /// Weights that fit `CLI.smallTrain` (mlp 784 → 8 → 10), every value `fill`.
    static func smallMLPWeights(fill: Float = 0.01) -> [String: HostArray] {
        [
            "0.weight": HostArray(shape: [8, 784], floats: Array(repeating: fill, count: 8 * 784)),
            "0.bias": HostArray(shape: [8], floats: Array(repeating: fill, count: 8)),
            "2.weight": HostArray(shape: [10, 8], floats: Array(repeating: fill, count: 80)),
            "2.bias": HostArray(shape: [10], floats: Array(repeating: fill, count: 10)),
        ]
    }

    /// A small classification set: `samples` rows of 4 float features, int64 labels 0…2.
    static func features(samples: Int = 12) -> HostArray {
        HostArray(shape: [samples, 4], floats: (0..<(samples * 4)).map { Float($0 % 7) * 0.5 })
    }

    static func labels(samples: Int = 12) -> HostArray {
        HostArray(shape: [samples], integers: (0..<samples).map { $0 % 3 })
    }

    /// A safetensors file built by hand: the 8-byte size (`declaredSize`, or the true one),
    /// the header text, then `data`.
    static func rawSafetensors(header: String, data: [UInt8], declaredSize: UInt64? = nil) -> [UInt8] {
        let text = Array(header.utf8)
        var bytes = littleEndian(declaredSize ?? UInt64(text.count))
        bytes += text
        bytes += data
        return bytes
    }

    /// A `.npz`: a zip archive whose members `<name>.npy` are stored (method 0), built here
    /// byte by byte (local headers, central directory, end record), as `np.savez` writes it.
    static func npz(_ arrays: [(name: String, array: HostArray)]) throws -> [UInt8] {
        var members: [(name: String, bytes: [UInt8])] = []
        for (name, array) in arrays { members.append(("\(name).npy", try NPY.encode(array, name: name))) }
        return storedZip(members)
    }

    static func storedZip(_ members: [(name: String, bytes: [UInt8])]) -> [UInt8] {
        var archive: [UInt8] = []
        var central: [UInt8] = []
        for member in members {
            let name = Array(member.name.utf8)
            let crc = crc32(member.bytes)
            let size = UInt32(member.bytes.count)
            let offset = UInt32(archive.count)
            // Local file header.
            archive += littleEndian(UInt32(0x0403_4B50))
            archive += littleEndian(UInt16(20))  // version needed
            archive += littleEndian(UInt16(0))  // flags
            archive += littleEndian(UInt16(0))  // method: stored
            archive += littleEndian(UInt16(0)) + littleEndian(UInt16(0x21))  // time, date (1980-01-01)
            archive += littleEndian(crc) + littleEndian(size) + littleEndian(size)
            archive += littleEndian(UInt16(name.count)) + littleEndian(UInt16(0))
            archive += name
            archive += member.bytes
            // Central directory header.
            central += littleEndian(UInt32(0x0201_4B50))
            central += littleEndian(UInt16(20)) + littleEndian(UInt16(20))  // made by, needed
            central += littleEndian(UInt16(0)) + littleEndian(UInt16(0))  // flags, method
            central += littleEndian(UInt16(0)) + littleEndian(UInt16(0x21))
            central += littleEndian(crc) + littleEndian(size) + littleEndian(size)
            central += littleEndian(UInt16(name.count)) + littleEndian(UInt16(0)) + littleEndian(UInt16(0))
            central += littleEndian(UInt16(0)) + littleEndian(UInt16(0))  // disk, internal attributes
            central += littleEndian(UInt32(0))  // external attributes
            central += littleEndian(offset)
            central += name
        }
        let directoryOffset = UInt32(archive.count)
        archive += central
        // End of central directory record.
        archive += littleEndian(UInt32(0x0605_4B50))
        archive += littleEndian(UInt16(0)) + littleEndian(UInt16(0))
        archive += littleEndian(UInt16(members.count)) + littleEndian(UInt16(members.count))
        archive += littleEndian(UInt32(central.count)) + littleEndian(directoryOffset)
        archive += littleEndian(UInt16(0))  // comment length
        return archive
    }

    /// CRC-32 as zip uses it (reflected polynomial 0xEDB88320), bit by bit.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}
