import Foundation
import TandemCore
import TandemCollectives

// MARK: - Messages between ranks, bounded by the timeout

/// One message of a collective: to or from `peer`, `bytes` at `pointer`.
struct Transfer {
    var peer: Int
    var receive: Bool
    var pointer: UnsafeMutableRawPointer?
    var bytes: Int
}

extension MPIGroup {
    /// Posts every transfer (receives first), then polls them with `MPI_Test` until all are
    /// done, the timeout passes, or another rank's abort notice arrives. A timeout names the
    /// ranks whose messages to this rank did not arrive (or, when all did, those that did not
    /// take this rank's): the ranks that have not reached collective `sequence`.
    ///
    /// While a caller waits on a handle, polling runs flat out for 50 µs after the last
    /// progress, then backs off up to 100 µs between rounds; while the caller computes, it
    /// backs off at once, up to 500 µs, so an all-reduce overlapping backward costs that
    /// backward little.
    func exchange(_ transfers: [Transfer], tag: Int32, operation: String, sequence: Int) throws(CollectiveError) {
        guard !transfers.isEmpty else { return }
        let n = transfers.count
        // (3) one zeroed 8-byte slot per request; the library writes 4 or 8 bytes into it.
        let slots = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
        slots.initialize(repeating: 0, count: n)
        // (4) MPI_Status fits in 64 bytes for both families.
        let status = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        var done = [Bool](repeating: false, count: n)
        var remaining = n
        // Armed before posting: a post that blocks is bounded too.
        let begun = monotonicSeconds()
        let deadline = begun + timeout
        watchdog.exchange(operation, deadline: deadline, transfers: transfers, done: done)
        do throws(CollectiveError) {
            try world.call { (lib: MPILibrary) throws(CollectiveError) in
                // Receives first, then sends, each in peer order.
                for k in 0..<2 * n where transfers[k % n].receive == (k < n) {
                    let i = k % n
                    let t = transfers[i]
                    guard t.bytes <= Int(Int32.max) else {
                        throw .invalid("\(operation) #\(sequence): a message of \(t.bytes) bytes exceeds MPI's 2 GiB count; use smaller buckets")
                    }
                    let pointer = t.pointer ?? UnsafeMutableRawPointer(Self.empty)
                    let code = (t.receive ? lib.irecv : lib.isend)(pointer, Int32(t.bytes), lib.constants.byte, Int32(t.peer), tag, world.dataComm, UnsafeMutableRawPointer(slots + i))
                    if code != 0 {
                        throw .invalid("\(operation) #\(sequence): \(t.receive ? "MPI_Irecv from" : "MPI_Isend to") rank \(t.peer) failed: \(lib.message(for: code))")
                    }
                }
            }
            var pause = 1.0e-6
            var round = 0
            // While polling flat out, the clock and the abort notice are read every
            // `checkEvery` rounds (and after progress or a pause): a round is a few hundred
            // nanoseconds, and reading the clock each time took a fifth of a small all-reduce.
            var check = false
            var lastProgress = begun
            // Whether a caller waits for this, read again with the clock.
            var waiting = world.someoneWaits
            while remaining > 0 {
                round += 1
                let progressed = try world.call { (lib: MPILibrary) throws(CollectiveError) -> Bool in
                    var progressed = false
                    for i in 0..<n where !done[i] {
                        var flag: Int32 = 0
                        let t = transfers[i]
                        if t.receive { status.initializeMemory(as: UInt8.self, repeating: 0, count: 64) }
                        let code = lib.test(UnsafeMutableRawPointer(slots + i), &flag, t.receive ? status : lib.family.statusIgnore)
                        if code != 0 {
                            done[i] = true; remaining -= 1
                            throw .invalid("\(operation) #\(sequence): the message \(t.receive ? "from" : "to") rank \(t.peer) failed: \(lib.message(for: code))" +
                                           (t.receive ? " (ranks called different collectives? run with --debug-collectives)" : ""))
                        }
                        guard flag != 0 else { continue }
                        done[i] = true; remaining -= 1; progressed = true
                        if t.receive {
                            var count: Int32 = 0
                            _ = lib.getCount(status, lib.constants.byte, &count)
                            if Int(count) != t.bytes {
                                throw .invalid("\(operation) #\(sequence): rank \(t.peer) sent \(count) bytes where rank \(rank) expected \(t.bytes) (ranks called different collectives; run with --debug-collectives to see each rank's call)")
                            }
                        }
                    }
                    if remaining > 0 && check, let notice = world.pollNotice(lib) {
                        // A rank this collective still waits for gave up elsewhere (say, one
                        // collective ahead, having skipped this one): name it as the missing one.
                        if case .aborted(let from, let message) = notice, Self.unheard(transfers, done).contains(from) {
                            throw .invalid("\(operation) #\(sequence): rank \(from) did not arrive (it stopped: \(message))")
                        }
                        throw notice
                    }
                    return progressed
                }
                if remaining == 0 { break }
                if progressed { watchdog.update(done: done) }
                let now = check || progressed ? monotonicSeconds() : nil
                if let now, now > deadline {
                    throw .timeout(operation: operation, sequence: sequence, missing: Self.unheard(transfers, done), seconds: timeout)
                }
                if progressed { lastProgress = now ?? lastProgress; pause = 1.0e-6 }
                // While the caller waits for this, poll flat out for `spinSeconds` after the
                // last progress (a small collective's reply comes within that), then back off
                // too: on a host whose cores all compute, a rank spinning for a late peer
                // takes the core that peer needs to catch up. While the caller computes,
                // back off at once, so the computation this overlaps keeps the core.
                if check || progressed { waiting = world.someoneWaits }
                let spinning = waiting && (now.map { $0 - lastProgress < Self.spinSeconds } ?? true)
                let idle = !progressed && !spinning
                if idle {
                    usleep(UInt32(pause * 1e6))
                    pause = min(pause * 2, waiting ? Self.waitingPause : Self.computingPause)
                }
                check = idle || round % Self.checkEvery == 0
            }
        } catch {
            // Requests still pending are cancelled and released; their memory is never freed,
            // since the library may still write into it. (7)
            _ = try? world.call { (lib: MPILibrary) throws(MPIError) in
                // A posted request's slot holds the library's handle, never 0 in either family.
                for i in 0..<n where !done[i] && slots[i] != 0 {
                    if transfers[i].receive { _ = lib.cancel(UnsafeMutableRawPointer(slots + i)) }
                    _ = lib.requestFree(UnsafeMutableRawPointer(slots + i))
                }
            }
            throw error
        }
        // Disarmed until the next exchange: reducing what arrived is this rank's own work.
        watchdog.exchange(operation, deadline: .infinity, transfers: [], done: [])
        slots.deallocate()
        status.deallocate()
    }

    /// The ranks whose messages to this rank have not arrived (or, when all have, those that
    /// have not taken this rank's).
    static func unheard(_ transfers: [Transfer], _ done: [Bool]) -> [Int] {
        func peers(receivesOnly: Bool) -> [Int] {
            var found: [Int] = []
            for (i, t) in transfers.enumerated() where !done[i] && (t.receive || !receivesOnly) && !found.contains(t.peer) {
                found.append(t.peer)
            }
            return found.sorted()
        }
        let late = peers(receivesOnly: true)
        return late.isEmpty ? peers(receivesOnly: false) : late
    }

    /// Rounds of `MPI_Test` between reads of the clock and of the abort notice.
    static let checkEvery = 16
    /// Seconds of flat-out polling after the last progress while a caller waits (as the
    /// threads backend spins before it blocks).
    static let spinSeconds = 50e-6
    /// The longest pause between polls while a caller waits, and while it computes.
    static let waitingPause = 100e-6
    static let computingPause = 500e-6

    /// A valid address for zero-byte messages.
    nonisolated(unsafe) static let empty = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    // MARK: Checking calls match (--debug-collectives)

    /// Every rank sends every other its description of collective `seq`; all ranks compare
    /// the same set, so all of them throw the same mismatch.
    func fingerprint(_ call: String, seq: Int) throws(CollectiveError) {
        let width = 192
        let table = UnsafeMutableRawPointer.allocate(byteCount: width * size, alignment: 8)
        table.initializeMemory(as: UInt8.self, repeating: 0, count: width * size)
        let mine = Array(call.utf8.prefix(width - 1))
        (table + rank * width).copyMemory(from: mine, byteCount: mine.count)
        var transfers: [Transfer] = []
        for peer in 0..<size where peer != rank {
            transfers.append(Transfer(peer: peer, receive: true, pointer: table + peer * width, bytes: width))
            transfers.append(Transfer(peer: peer, receive: false, pointer: table + rank * width, bytes: width))
        }
        try exchange(transfers, tag: Self.tag(seq, phase: 0), operation: "collective", sequence: seq)
        let calls = (0..<size).map { r in
            String(decoding: UnsafeRawBufferPointer(start: table + r * width, count: width).prefix { $0 != 0 }, as: UTF8.self)
        }
        table.deallocate()
        if Set(calls).count > 1 { throw .mismatch(sequence: seq, calls: calls) }
    }
}
