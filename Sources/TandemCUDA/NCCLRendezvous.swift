import Foundation
import TandemCollectives

// MARK: - Meeting through a folder

/// A folder every rank of one job can read and write — one host's /tmp, or a shared file
/// system — through which the ranks of an NCCL job meet without MPI: rank 0 publishes the
/// communicator's id there, the others wait for it, and every rank leaves the number of
/// the last collective it started, so a rank that times out can name the ranks that fell
/// behind. `tandem launch` makes a fresh folder per job and passes it as
/// `TANDEM_RENDEZVOUS`, with `RANK`, `WORLD_SIZE` and `LOCAL_RANK` (as torchrun does).
public final class NCCLRendezvous: @unchecked Sendable {
    // Safe: `progress` is written only by this rank's thread that issues collectives; other
    // files are read-only after their atomic rename.
    public let directory: String
    public let rank: Int
    public let size: Int
    private let progress: Int32

    /// Joins the folder as `rank` of `size`; throws when it is missing or not writable.
    public init(directory: String, rank: Int, size: Int) throws {
        guard size >= 1, (0..<size).contains(rank) else {
            throw CUDAError.unsupported("rendezvous: rank \(rank) is outside a job of \(size) ranks")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CUDAError.unsupported("rendezvous folder \(directory) does not exist (expected a folder shared by every rank of the job)")
        }
        self.directory = directory
        self.rank = rank
        self.size = size
        let path = (directory as NSString).appendingPathComponent("rank-\(rank).progress")
        progress = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard progress >= 0 else {
            throw CUDAError.unsupported("rendezvous folder \(directory) is not writable (\(String(cString: strerror(errno))))")
        }
        announce(-1)   // here, but not yet joining: progress 0 is written when joining starts
    }

    /// The rendezvous of a process started by `tandem launch` (or by hand with the same
    /// variables); nil when `TANDEM_RENDEZVOUS` is unset.
    public static func fromEnvironment() throws -> NCCLRendezvous? {
        let env = ProcessInfo.processInfo.environment
        guard let directory = env["TANDEM_RENDEZVOUS"] else { return nil }
        guard let rank = env["RANK"].flatMap(Int.init), let size = env["WORLD_SIZE"].flatMap(Int.init) else {
            throw CUDAError.unsupported("TANDEM_RENDEZVOUS is set but RANK and WORLD_SIZE are not both integers (RANK=\(env["RANK"] ?? "unset"), WORLD_SIZE=\(env["WORLD_SIZE"] ?? "unset"))")
        }
        return try NCCLRendezvous(directory: directory, rank: rank, size: size)
    }

    deinit { close(progress) }

    // MARK: Publishing and waiting

    /// Writes `bytes` as `name`, whole or not at all (temporary file, then rename).
    public func publish(_ bytes: [UInt8], as name: String) throws {
        let path = (directory as NSString).appendingPathComponent(name)
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else {
            throw CUDAError.unsupported("rendezvous: cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            throw CUDAError.unsupported("rendezvous: cannot rename \(temporary) to \(path) (\(String(cString: strerror(errno))))")
        }
    }

    /// Waits until `name` (published by rank `from`) exists with `count` bytes, up to `timeout` seconds.
    public func await(_ name: String, count: Int, from: Int, timeout: Double) throws -> [UInt8] {
        let path = (directory as NSString).appendingPathComponent(name)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let data = FileManager.default.contents(atPath: path), data.count == count { return [UInt8](data) }
            if Date() > deadline {
                throw CollectiveError.timeout(operation: "rendezvous (\(name) in \(directory))", sequence: 0, missing: [from], seconds: timeout)
            }
            usleep(2_000)
        }
    }

    // MARK: Progress

    /// Records that this rank has started collective number `sequence` (one small write).
    public func announce(_ sequence: Int) {
        var value = Int64(sequence).littleEndian
        _ = withUnsafeBytes(of: &value) { pwrite(progress, $0.baseAddress, 8, 0) }
    }

    /// The ranks that have not started collective `sequence` (or left no progress at all).
    public func behind(_ sequence: Int) -> [Int] {
        (0..<size).filter { r in
            let path = (directory as NSString).appendingPathComponent("rank-\(r).progress")
            guard let data = FileManager.default.contents(atPath: path), data.count >= 8 else { return true }
            let reached = data.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
            return reached < sequence
        }
    }
}
