import Foundation
import TandemCollectives
import TandemCore

// MARK: - Failure: sticky, and told to every rank

extension MPIWorld {
    /// The job's failure as this process knows it.
    public var error: CollectiveError? { state.lock(); defer { state.unlock() }; return failure }

    /// Records `error` as the failure of this process's collectives (the first one stays).
    func fail(_ error: CollectiveError) {
        state.lock(); if failure == nil { failure = error }; state.unlock()
    }

    func adjustWaiting(_ delta: Int) { state.lock(); waiting += delta; state.unlock() }
    var someoneWaits: Bool { state.lock(); defer { state.unlock() }; return waiting > 0 }

    /// Tells every other rank that this one gave up with `message` (best effort: waits at
    /// most `patience` seconds for the notices to leave), and fails this process's collectives.
    public func tellOthers(_ message: String, patience: Double = 0.5) {
        fail(.aborted(rank: rank, message: message))
        var payload = [UInt8](repeating: 0, count: NoticeReceiver.capacity)
        withUnsafeBytes(of: Int32(rank).littleEndian) { payload.replaceSubrange(0..<4, with: $0) }
        let text = Array(message.utf8.prefix(NoticeReceiver.capacity - 4))
        payload.replaceSubrange(4..<(4 + text.count), with: text)
        let length = 4 + text.count
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: NoticeReceiver.capacity, alignment: 8)
        buffer.copyMemory(from: payload, byteCount: length)
        let peers = (0..<size).filter { $0 != rank }
        let slots = UnsafeMutablePointer<UInt64>.allocate(capacity: max(peers.count, 1))
        slots.initialize(repeating: 0, count: max(peers.count, 1))
        var posted: [Int] = []
        _ = try? call(within: patience) { (lib: MPILibrary) throws(MPIError) in
            for (i, peer) in peers.enumerated() {
                if lib.isend(buffer, Int32(length), lib.constants.byte, Int32(peer), NoticeReceiver.tag, controlComm, slots + i) == 0 { posted.append(i) }
            }
        }
        let deadline = monotonicSeconds() + patience
        var pending = posted
        while !pending.isEmpty && monotonicSeconds() < deadline {
            _ = try? call(within: patience) { (lib: MPILibrary) throws(MPIError) in
                pending = pending.filter { i in
                    var flag: Int32 = 0
                    return lib.test(slots + i, &flag, lib.family.statusIgnore) != 0 ? false : flag == 0
                }
            }
            if !pending.isEmpty { usleep(200) }
        }
        // Sends that did not leave are left to the library; their buffers are never freed. (7)
    }

    /// An abort notice from another rank, if one has arrived (tested without blocking).
    func pollNotice(_ lib: MPILibrary) -> CollectiveError? {
        guard let (from, message) = notice.test(lib) else { return nil }
        let error = CollectiveError.aborted(rank: from, message: message)
        fail(error)
        return error
    }
}

/// The one receive of abort notices that stays posted for the life of the process.
final class NoticeReceiver: @unchecked Sendable {
    // Safe: used only under `MPIWorld`'s call lock.
    static let capacity = 1024
    static let tag: Int32 = 7
    private let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    private let slot = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let status = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
    private var received: (Int, String)?

    func post(_ lib: MPILibrary, comm: UInt) throws(MPIError) {
        slot.pointee = 0
        try lib.check(lib.irecv(buffer, Int32(Self.capacity), lib.constants.byte, lib.constants.anySource, Self.tag, comm, UnsafeMutableRawPointer(slot)), "MPI_Irecv")
    }

    /// Cancels the posted receive (before `MPI_Finalize`, so no request is left behind).
    func withdraw(_ lib: MPILibrary) {
        guard received == nil else { return }
        _ = lib.cancel(UnsafeMutableRawPointer(slot))
        var flag: Int32 = 0
        for _ in 0..<1000 where flag == 0 {
            if lib.test(UnsafeMutableRawPointer(slot), &flag, status) != 0 { return }
        }
    }

    func test(_ lib: MPILibrary) -> (Int, String)? {
        if let received { return received }
        var flag: Int32 = 0
        status.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        guard lib.test(UnsafeMutableRawPointer(slot), &flag, status) == 0, flag != 0 else { return nil }
        var count: Int32 = 0
        _ = lib.getCount(status, lib.constants.byte, &count)
        let bytes = Array(UnsafeRawBufferPointer(start: buffer, count: Int(max(count, 0))))
        guard bytes.count >= 4 else { return nil }
        // (4) the sender is read from MPI_SOURCE at the family's offset in MPI_Status.
        let from = Int(status.load(fromByteOffset: lib.family.statusSourceOffset, as: Int32.self))
        let message = String(decoding: bytes[4...], as: UTF8.self)
        received = (from, message)
        return received
    }
}
