import Foundation
import TandemCollectives
import Testing
@testable import TandemCUDA

// MARK: - NCCL's rendezvous folder and library (no GPU needed)

@Suite("NCCL rendezvous")
struct NCCLRendezvousTests {
    static func folder() throws -> String {
        let path = NSTemporaryDirectory() + "tandem-rdv-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("rank 0 publishes the id; ranks started before or after it read the same 128 bytes")
    func publishAndAwait() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let id = (0..<128).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let waiter = try NCCLRendezvous(directory: dir, rank: 1, size: 3)
        let early = Thread.detachNewThreadResult { try waiter.await("nccl-unique-id", count: 128, from: 0, timeout: 10) }
        usleep(20_000)
        try NCCLRendezvous(directory: dir, rank: 0, size: 3).publish(id, as: "nccl-unique-id")
        #expect(try early.value() == id)
        let late = try NCCLRendezvous(directory: dir, rank: 2, size: 3)
        #expect(try late.await("nccl-unique-id", count: 128, from: 0, timeout: 1) == id)
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }.isEmpty)
    }

    @Test("waiting for an id nobody publishes ends at the timeout, naming rank 0")
    func awaitTimesOut() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try NCCLRendezvous(directory: dir, rank: 1, size: 2)
        do {
            _ = try r.await("nccl-unique-id", count: 128, from: 0, timeout: 0.1)
            Issue.record("expected a timeout")
        } catch let error as CollectiveError {
            guard case .timeout(_, _, let missing, _) = error else { Issue.record("\(error)"); return }
            #expect(missing == [0])
            #expect("\(error)".contains("rank 0 did not arrive"), "\(error)")
        }
    }

    @Test("progress: the ranks that have not started collective s are the ones behind")
    func progress() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ranks = try (0..<4).map { try NCCLRendezvous(directory: dir, rank: $0, size: 4) }
        ranks[0].announce(7); ranks[1].announce(7); ranks[2].announce(6); ranks[3].announce(9)
        #expect(ranks[0].behind(7) == [2])
        #expect(ranks[1].behind(10) == [0, 1, 2, 3])
        #expect(ranks[3].behind(0) == [])
    }

    @Test("bad folders and environments are clear errors")
    func badInput() throws {
        #expect(throws: CUDAError.self) { _ = try NCCLRendezvous(directory: "/nonexistent/tandem-rdv", rank: 0, size: 1) }
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: CUDAError.self) { _ = try NCCLRendezvous(directory: dir, rank: 2, size: 2) }
        #expect(throws: CUDAError.self) { _ = try NCCLRendezvous(directory: dir, rank: -1, size: 2) }
    }

    @Test("without NCCL on the host, opening it says what to install")
    func missingLibrary() throws {
        let empty = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        do {
            _ = try NativeLibrary.open(names: ["libnccl.so.2", "libnccl.so"], what: "NCCL", hint: NCCLLibrary.hint, directories: [empty])
            Issue.record("libnccl opened from an empty folder")
        } catch {
            #expect("\(error)".contains("NCCL (libnccl.so.2, libnccl.so) not found"), "\(error)")
            #expect("\(error)".contains("nvidia-nccl-cu13"), "\(error)")
        }
    }

    @Test("device buffers carry the device address and dtype")
    func deviceBuffers() {
        let b = CollectiveBuffer.device(0x7f00_0000_1000, count: 12, dtype: .bfloat16)
        #expect(UInt(bitPattern: b.base) == 0x7f00_0000_1000)
        #expect(b.count == 12 && b.dtype == .bfloat16)
        #expect(NCCLGroup.type(b) == 9 && NCCLGroup.type(.device(0x1000, count: 1)) == 7 && NCCLGroup.type(.device(0x1000, count: 1, dtype: .float16)) == 6)
        #expect([ReduceOperation.sum, .max, .average].map(NCCLGroup.op) == [0, 2, 4])
    }
}

extension Thread {
    /// Runs `body` on a new thread; `value()` waits for its result.
    final class Result<T: Sendable>: @unchecked Sendable {
        // Safe: `outcome` is written once before `done` is signalled and read after.
        private var outcome: Swift.Result<T, any Error>?
        private let done = DispatchSemaphore(value: 0)
        func set(_ r: Swift.Result<T, any Error>) { outcome = r; done.signal() }
        func value() throws -> T { done.wait(); return try outcome!.get() }
    }

    static func detachNewThreadResult<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> Result<T> {
        let result = Result<T>()
        Thread.detachNewThread { result.set(Swift.Result { try body() }) }
        return result
    }
}
