import Foundation
import Synchronization
import TandemCore
import TandemCollectives

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Ranks on one host: small all-reduces through a shared mailbox

/// A memory segment shared by every rank of the job (all on one host), through which
/// all-reduces up to its capacity go without any MPI call: each rank copies its buffers into
/// its slot and raises the slot's sequence number; every rank waits for the others' numbers.
/// A small call (tree order) is then summed whole by every rank from all slots; a larger one
/// (rank order) by shares: rank r sums share r, writes it back into its slot, raises the
/// slot's "reduced" number, and copies the others' shares from theirs. Both sum with the
/// same `ScratchBuffer.combine` as the message path, so the bits are the threads backend's.
///
/// Layout: a 4 KB header (cookie, size, capacity), then per rank two slots, used
/// alternately. A slot: its sequence number, buffer count and reduced number, a table of
/// (bytes, element width) per buffer, then the data from the next 64-byte line (so one
/// buffer's small call is two cache lines: the header with the table, and the data).
///
/// A rank writes only its own slots; its peers only read them. A slot is rewritten two
/// mailbox calls later, and by then every peer has read it: a peer posts a call only after
/// it has read every slot of its previous one, and this rank starts a call only after it
/// saw every peer post the previous one (a failed call fails every later one, stickily).
final class Mailbox: @unchecked Sendable {
    // Safe: used only by the thread that runs the group's collectives (one at a time, in
    // issue order: the communication thread or an inline caller); the segment's shared
    // words are atomics, its other bytes are published by them (release/acquire).
    let base: UnsafeMutableRawPointer
    let segmentBytes: Int
    let rank: Int
    let size: Int
    /// Bytes of data a slot holds (``MPIGroup/mailboxCapacity(size:treeThresholdBytes:)``).
    let capacity: Int
    /// Whether all-reduces past the tree threshold (up to `capacity`) go through it too, in
    /// rank order: on unless a rank set `TANDEM_MPI_DIRECT` (`0`: messages; `require`: the
    /// direct path for every one of them, as before the mailbox).
    let rankOrder: Bool
    /// Which of this rank's slots the next call writes.
    private var next = 0
    /// Each rank's slot and data of the call in progress, in rank order (kept, so a call allocates nothing).
    var slots: [UnsafeMutableRawPointer] = []
    var operands: [Operand] = []

    static let maxBuffers = 512
    static let headerBytes = 4096

    /// Room for the header and table of `maxBuffers`, and `capacity` bytes of data with each buffer padded to 64.
    static func slotBytes(capacity: Int) -> Int { (dataOffset(buffers: maxBuffers) + capacity + 64 * maxBuffers + 127) / 128 * 128 }
    static func rankBytes(capacity: Int) -> Int { (2 * slotBytes(capacity: capacity) + 4095) / 4096 * 4096 }
    static func segmentBytes(size: Int, capacity: Int) -> Int { headerBytes + size * rankBytes(capacity: capacity) }

    init(base: UnsafeMutableRawPointer, segmentBytes: Int, rank: Int, size: Int, capacity: Int, rankOrder: Bool) {
        self.base = base; self.segmentBytes = segmentBytes; self.rank = rank; self.size = size; self.capacity = capacity
        self.rankOrder = rankOrder
        operands.reserveCapacity(size)
        slots.reserveCapacity(size)
    }

    deinit { munmap(base, segmentBytes) }

    // MARK: Addresses

    private func rankBase(_ r: Int) -> UnsafeMutableRawPointer { base + Self.headerBytes + r * Self.rankBytes(capacity: capacity) }
    func slot(_ r: Int, _ k: Int) -> UnsafeMutableRawPointer { rankBase(r) + k * Self.slotBytes(capacity: capacity) }
    /// A slot's sequence number: the collective its table and data belong to.
    static func sequence(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt64>> { slot.assumingMemoryBound(to: Atomic<UInt64>.self) }
    static func count(_ slot: UnsafeMutableRawPointer) -> Int { Int(slot.load(fromByteOffset: 8, as: UInt64.self)) }
    /// The collective whose shares this slot's rank has summed into it (rank order only).
    static func reduced(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt64>> { (slot + 16).assumingMemoryBound(to: Atomic<UInt64>.self) }
    static func table(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<UInt32> { (slot + 24).assumingMemoryBound(to: UInt32.self) }
    /// Where a slot's data starts when it holds `buffers` buffers.
    static func dataOffset(buffers: Int) -> Int { (24 + 8 * buffers + 63) / 64 * 64 }
    static func data(_ slot: UnsafeMutableRawPointer, buffers: Int) -> UnsafeMutableRawPointer { slot + dataOffset(buffers: buffers) }

    /// Whether `buffers` go through the mailbox: the same answer on every rank that makes the same call.
    func fits(_ buffers: [CollectiveBuffer], bytes: Int) -> Bool { bytes <= capacity && buffers.count <= Self.maxBuffers }

    // MARK: One all-reduce

    /// Posts `buffers` as this rank's part of collective `seq`, returning the slot. `skipShare`:
    /// leave out this rank's own share of each buffer (rank order: no peer reads it).
    func post(_ buffers: [CollectiveBuffer], seq: UInt64, skipShare: Bool = false) -> UnsafeMutableRawPointer {
        let mine = slot(rank, next)
        next ^= 1
        let table = Self.table(mine)
        let data = Self.data(mine, buffers: buffers.count)
        var offset = 0
        for (i, b) in buffers.enumerated() {
            let bytes = b.count * b.dtype.byteSize
            table[2 * i] = UInt32(bytes)
            table[2 * i + 1] = UInt32(b.dtype.byteSize)
            if bytes > 0 && !skipShare {
                (data + offset).copyMemory(from: b.base!, byteCount: bytes)
            } else if bytes > 0 {
                let w = b.dtype.byteSize, (lo, hi) = MPIGroup.chunk(rank, of: b.count, parts: size)
                (data + offset).copyMemory(from: b.base!, byteCount: lo * w)
                (data + offset + hi * w).copyMemory(from: b.base! + hi * w, byteCount: bytes - hi * w)
            }
            offset += (bytes + 63) / 64 * 64
        }
        (mine + 8).storeBytes(of: UInt64(buffers.count), as: UInt64.self)
        Self.sequence(mine).pointee.store(seq, ordering: .releasing)
        return mine
    }

    /// Rank q's slot that holds collective `seq`, if it has posted it.
    func posted(by q: Int, seq: UInt64) -> UnsafeMutableRawPointer? {
        for k in 0..<2 {
            let s = slot(q, k)
            if Self.sequence(s).pointee.load(ordering: .acquiring) == seq { return s }
        }
        return nil
    }
}

// MARK: - Setting it up, once per group

/// Whether a group's small all-reduces go through a mailbox, once decided.
struct MailboxDecision {
    var mailbox: Mailbox?
}

extension MPIGroup {
    /// `TANDEM_MPI_MAILBOX`: `0` sends small all-reduces as messages; `require` makes the
    /// first one fail, saying why, when the ranks cannot share a mailbox.
    static var mailboxSetting: String { ProcessInfo.processInfo.environment["TANDEM_MPI_MAILBOX"] ?? "" }

    /// The group's mailbox, deciding it (collectively, within collective `seq`) the first time:
    /// every rank on this host (``hostKey``, as for the direct path), none that turned it off,
    /// and every rank able to map the segment rank 0 made. Rank 0 makes it under /dev/shm and
    /// removes its name once every rank has answered, so nothing is left behind after setup.
    func mailbox(seq: Int) throws(CollectiveError) -> Mailbox? {
        if let decided = mailboxDecision { return decided.mailbox }
        let n = size
        guard n > 1 else { mailboxDecision = MailboxDecision(mailbox: nil); return nil }
        let capacity = Self.mailboxCapacity(size: n, treeThresholdBytes: treeThresholdBytes)
        let bytes = Mailbox.segmentBytes(size: n, capacity: capacity)
        let wanted = Self.mailboxSetting != "0"
        var reasons: [String] = []
        if !wanted { reasons.append("rank \(rank) has it off (TANDEM_MPI_MAILBOX=0)") }
        // Rank 0 makes the segment before the others hear of it.
        var mapped: UnsafeMutableRawPointer?
        var token: UInt64 = 0, cookie: UInt64 = 0
        if rank == 0 && wanted {
            token = UInt64.random(in: 1...UInt64.max)
            cookie = UInt64.random(in: 1...UInt64.max)
            switch Self.mapSegment(Self.segmentPath(pid: Int64(getpid()), token: token), bytes: bytes, create: true) {
            case .success(let p):
                mapped = p
                p.storeBytes(of: cookie, as: UInt64.self)
                p.storeBytes(of: UInt64(n), toByteOffset: 8, as: UInt64.self)
                p.storeBytes(of: UInt64(capacity), toByteOffset: 16, as: UInt64.self)
            case .failure(let why): reasons.append("rank 0 \(why)"); token = 0
            }
        }
        let width = 40
        let table = UnsafeMutableRawPointer.allocate(byteCount: width * n, alignment: 8)
        defer { table.deallocate() }
        table.initializeMemory(as: UInt8.self, repeating: 0, count: width * n)
        let me = table + rank * width
        me.storeBytes(of: Int64(getpid()), as: Int64.self)
        me.storeBytes(of: Self.hostKey, toByteOffset: 8, as: UInt64.self)
        // Bit 0: this rank wants the mailbox; bit 1: for rank-order calls too.
        me.storeBytes(of: Int64(wanted ? 1 : 0) | (Self.directSetting == "" ? 2 : 0), toByteOffset: 16, as: Int64.self)
        me.storeBytes(of: token, toByteOffset: 24, as: UInt64.self)
        me.storeBytes(of: cookie, toByteOffset: 32, as: UInt64.self)
        try exchange(everyPeer(table, width: width), tag: Self.tag(seq, phase: 1), operation: "all-reduce", sequence: seq)
        func field<T>(_ r: Int, _ offset: Int, _ type: T.Type) -> T { (table + r * width).load(fromByteOffset: offset, as: type) }
        let unwilling = (0..<n).filter { $0 != rank && field($0, 16, Int64.self) & 1 == 0 }
        let rankOrder = (0..<n).allSatisfy { field($0, 16, Int64.self) & 2 != 0 }
        if !unwilling.isEmpty { reasons.append("rank\(unwilling.count == 1 ? "" : "s") \(unwilling.map(String.init).joined(separator: ", ")) turned it off") }
        let elsewhere = (0..<n).filter { field($0, 8, UInt64.self) != Self.hostKey }
        if !elsewhere.isEmpty { reasons.append("rank\(elsewhere.count == 1 ? "" : "s") \(elsewhere.map(String.init).joined(separator: ", ")) run on another host (or namespace) than rank \(rank)") }
        if rank != 0 && reasons.isEmpty {
            if field(0, 24, UInt64.self) == 0 {
                reasons.append("rank 0 could not make the segment (see its error)")
            } else {
                switch Self.mapSegment(Self.segmentPath(pid: field(0, 0, Int64.self), token: field(0, 24, UInt64.self)), bytes: bytes, create: false) {
                case .success(let p):
                    mapped = p
                    if p.load(as: UInt64.self) != field(0, 32, UInt64.self) || p.load(fromByteOffset: 8, as: UInt64.self) != UInt64(n)
                        || p.load(fromByteOffset: 16, as: UInt64.self) != UInt64(capacity) {
                        reasons.append("rank \(rank) mapped a segment that is not rank 0's (another /dev/shm, or another tree threshold)")
                    }
                case .failure(let why): reasons.append("rank \(rank) \(why)")
                }
            }
        }
        // Second round: every rank's verdict, so that all take the same path.
        for r in 0..<n { (table + r * width).storeBytes(of: Int64(r == rank && reasons.isEmpty ? 1 : 0), as: Int64.self) }
        try exchange(everyPeer(table, width: width), tag: Self.tag(seq, phase: 1), operation: "all-reduce", sequence: seq)
        if rank == 0 && token != 0 { unlink(Self.segmentPath(pid: Int64(getpid()), token: token)) }
        let everyone = (0..<n).allSatisfy { field($0, 0, Int64.self) == 1 }
        var mailbox: Mailbox?
        if let mapped {
            if everyone { mailbox = Mailbox(base: mapped, segmentBytes: bytes, rank: rank, size: n, capacity: capacity, rankOrder: rankOrder) } else { munmap(mapped, bytes) }
        }
        mailboxDecision = MailboxDecision(mailbox: mailbox)
        if mailbox == nil && Self.mailboxSetting == "require" {
            let why = reasons.isEmpty ? "another rank cannot (see its error)" : reasons.joined(separator: "; ")
            throw .invalid("all-reduce #\(seq): TANDEM_MPI_MAILBOX=require, but the ranks cannot share a mailbox: \(why)")
        }
        return mailbox
    }

    /// The data a slot holds: the tree range and rank-order calls up to `mailboxRankOrderBytes`,
    /// less on many ranks (16 MB of slots in all), never less than the tree range up to 1 MB.
    /// Larger calls go as messages, or through the direct path.
    static func mailboxCapacity(size n: Int, treeThresholdBytes: Int) -> Int {
        let tree = min(treeThresholdBytes, 1 << 20)
        return max(tree, min(mailboxRankOrderBytes, (16 << 20) / (2 * n)))
    }

    /// The largest rank-order all-reduce the mailbox takes (beyond it the direct path moves less).
    static let mailboxRankOrderBytes = 1 << 20

    static func segmentPath(pid: Int64, token: UInt64) -> String { "/dev/shm/tandem-mpi-\(pid)-\(String(token, radix: 16))" }

    /// Maps the segment at `path` (making it, zeroed, when `create`), or says why not.
    static func mapSegment(_ path: String, bytes: Int, create: Bool) -> Result<UnsafeMutableRawPointer, MailboxRefusal> {
        let fd = create ? open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) : open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return .failure(MailboxRefusal("cannot open \(path): \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        // Reserved now, so a full /dev/shm is a refusal here rather than a SIGBUS at first touch.
        if create, case let code = posix_fallocate(fd, 0, off_t(bytes)), code != 0 {
            unlink(path)
            return .failure(MailboxRefusal("cannot reserve \(bytes) bytes for \(path): \(String(cString: strerror(code)))"))
        }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == bytes else { return .failure(MailboxRefusal("\(path) is not \(bytes) bytes long")) }
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            if create { unlink(path) }
            return .failure(MailboxRefusal("cannot map \(path): \(String(cString: strerror(errno)))"))
        }
        return .success(p)
    }

    // MARK: The all-reduce

    /// An all-reduce through the mailbox: post, wait for every peer's post of `seq`, check
    /// every rank passed the same buffers, and sum all ranks' data into this rank's buffers —
    /// whole, in tree order (small calls), or by shares in rank order, exchanged through the
    /// slots a second time (larger ones). No MPI call unless a wait outlasts the spin (then
    /// abort notices are polled); every wait ends by the timeout, naming the ranks not ready.
    /// `inline`: run on the caller's thread by ``mailboxFastPath``, outside the watchdog's
    /// watch until a wait outlasts the spin.
    /// - Complexity: each rank writes its buffers once and reads every rank's once.
    func mailboxAllReduce(_ buffers: [CollectiveBuffer], with box: Mailbox, operation: ReduceOperation, order: ReductionOrder = .tree,
                          seq: Int, started: Double, inline: Bool = false) throws(CollectiveError) {
        let s = UInt64(seq)
        let mine = box.post(buffers, seq: s, skipShare: order == .rank)
        var waiter = MailboxWaiter(group: self, seq: seq, deadline: started + timeout, inline: inline)
        defer { waiter.disarm() }
        try waiter.wait { q in box.posted(by: q, seq: s) != nil }
        // Every rank's slot of this collective, checked against this rank's call.
        let myTable = Mailbox.table(mine)
        box.slots.removeAll(keepingCapacity: true)
        for q in 0..<size {
            let theirs = q == rank ? mine : box.posted(by: q, seq: s)!
            box.slots.append(theirs)
            guard q != rank else { continue }
            let count = Mailbox.count(theirs)
            if count != buffers.count {
                throw .invalid("all-reduce #\(seq): rank \(q) passed \(count) buffers where rank \(rank) passed \(buffers.count) (ranks called different collectives; run with --debug-collectives to see each rank's call)")
            }
            let table = Mailbox.table(theirs)
            for i in 0..<buffers.count where table[2 * i] != myTable[2 * i] || table[2 * i + 1] != myTable[2 * i + 1] {
                let widths = table[2 * i + 1] == myTable[2 * i + 1] ? "" : " of \(table[2 * i + 1])-byte elements, where rank \(rank) passed \(myTable[2 * i + 1])-byte ones,"
                throw .invalid("all-reduce #\(seq): rank \(q) sent \(table[2 * i]) bytes\(widths) where rank \(rank) expected \(myTable[2 * i]) (ranks called different collectives; run with --debug-collectives to see each rank's call)")
            }
        }
        // Tree order: every element, by every rank. Rank order: this rank's share, written
        // back into its slot for the others.
        var offset = Mailbox.dataOffset(buffers: buffers.count)
        for b in buffers {
            let w = b.dtype.byteSize, bytes = b.count * w
            let (lo, hi) = order == .tree ? (0, b.count) : Self.chunk(rank, of: b.count, parts: size)
            if hi > lo {
                box.operands.removeAll(keepingCapacity: true)
                for q in 0..<size {
                    box.operands.append(Operand(base: (q == rank ? b.base! : box.slots[q] + offset) + lo * w, dtype: b.dtype))
                }
                scratch.combine(box.operands, count: hi - lo, operation: operation, order: order, into: box.operands[rank])
                if order == .rank { (mine + offset + lo * w).copyMemory(from: b.base! + lo * w, byteCount: (hi - lo) * w) }
            }
            offset += (bytes + 63) / 64 * 64
        }
        guard order == .rank else { return }
        Mailbox.reduced(mine).pointee.store(s, ordering: .releasing)
        try waiter.wait { q in Mailbox.reduced(box.slots[q]).pointee.load(ordering: .acquiring) == s }
        offset = Mailbox.dataOffset(buffers: buffers.count)
        for b in buffers {
            let w = b.dtype.byteSize
            for q in 0..<size where q != rank {
                let (lo, hi) = Self.chunk(q, of: b.count, parts: size)
                if hi > lo { (b.base! + lo * w).copyMemory(from: box.slots[q] + offset + lo * w, byteCount: (hi - lo) * w) }
            }
            offset += (b.count * w + 63) / 64 * 64
        }
    }

    /// A small all-reduce through the mailbox on the caller's thread, when the communication
    /// thread is idle (so issue order is kept) and the group has a mailbox that fits it: no
    /// closure, handle or lock beyond the queue's, the failure check and the log's. Nil when
    /// it does not apply; the call then takes the general path (``submit``).
    func mailboxFastPath(_ buffers: [CollectiveBuffer], bytes: Int, operation: ReduceOperation) -> (any CollectiveHandle)? {
        guard queue.beginInline() else { return nil }
        defer { queue.endInline() }
        // Owned by whoever runs collectives, which this thread now is.
        guard let box = mailboxDecision?.mailbox, box.fits(buffers, bytes: bytes) else { return nil }
        let seq = nextSequence(allReduce: true)
        let start = monotonicSeconds()
        do throws(CollectiveError) {
            if let failure = world.error { throw failure }
            try mailboxAllReduce(buffers, with: box, operation: operation, seq: seq, started: start, inline: true)
            busy.add(CollectiveRecord(operation: "all-reduce", sequence: seq, start: start, duration: monotonicSeconds() - start, bytes: bytes))
            return FinishedHandle(error: nil)
        } catch {
            world.fail(error)
            return FinishedHandle(error: error)
        }
    }
}

/// Why a rank cannot use the mailbox.
struct MailboxRefusal: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Waiting, bounded

/// Waits for conditions on the peers of collective `seq`: while a caller waits, flat out for
/// ``MPIGroup/spinSeconds``, then yielding the core between rounds of polling until
/// `yieldSeconds` (a sleep costs 50 µs or more here, as much as a 256 KB call); after that, or
/// at once while the caller computes, backing off as `exchange` does (up to 100 µs, or 500 µs),
/// polling abort notices and the job's failure about every millisecond, until the timeout,
/// which names the ranks still not ready.
struct MailboxWaiter {
    let group: MPIGroup
    let seq: Int
    let deadline: Double
    /// On the caller's thread, which waits for it, and which the watchdog does not watch yet.
    let inline: Bool
    private var armed = false

    init(group: MPIGroup, seq: Int, deadline: Double, inline: Bool) {
        self.group = group; self.seq = seq; self.deadline = deadline; self.inline = inline
    }

    mutating func wait(_ ready: (Int) -> Bool) throws(CollectiveError) {
        let n = group.size, me = group.rank
        var q = 0
        var spins = 0
        var started = 0.0
        var pause = 1.0e-6
        var lastCheck = 0.0
        /// The ranks the watchdog was last told of.
        var watched: [Int]?
        func missing() -> [Int] { (q..<n).filter { $0 != me && !ready($0) } }
        while q < n {
            if q == me || ready(q) { q += 1; continue }
            spins += 1
            // More ranks than cores: the rank waited for may need this very core.
            if Self.crowded(group.size) { sched_yield() }
            if spins & 127 != 0 { continue }
            let now = monotonicSeconds()
            if started == 0 { started = now; lastCheck = now }
            if now > deadline { throw .timeout(operation: "all-reduce", sequence: seq, missing: missing(), seconds: group.timeout) }
            let waiting = inline || group.world.someoneWaits
            if waiting && now - started < MPIGroup.spinSeconds && !Self.crowded(group.size) { continue }
            // Yield rather than sleep while a caller waits, and at first while it computes:
            // the caller may be about to wait (a sleep would then cost it 50 µs or more).
            if now - started < (waiting ? Self.yieldSeconds : MPIGroup.spinSeconds) { sched_yield(); continue }
            // Past the spin: the library may be asked for abort notices now, so the watchdog
            // bounds this wait even if the library does not return.
            if !armed {
                armed = true
                if inline { group.watchdog.begin(nil, sequence: seq, inline: true) }
                watched = missing()
                watch(watched!)
            }
            if now - lastCheck > 1e-3 {
                lastCheck = now
                let late = missing()
                if late != watched { watch(late); watched = late }   // the watchdog hears only of changes
                try poll(waitingFor: late)
            }
            usleep(UInt32(pause * 1e6))
            pause = min(pause * 2, waiting ? MPIGroup.waitingPause : MPIGroup.computingPause)
        }
    }

    /// Tells the watchdog the ranks not posted yet, as receives not done: its timeout and a
    /// report on the launcher's SIGTERM name them.
    private func watch(_ missing: [Int]) {
        group.watchdog.exchange("all-reduce", deadline: deadline, transfers: missing.map { Transfer(peer: $0, receive: true, pointer: nil, bytes: 0) },
                                done: missing.map { _ in false })
    }

    /// How long a waiting caller polls without sleeping.
    static let yieldSeconds = 1e-3

    /// Whether `size` ranks (all on this host) outnumber the cores this process may run on:
    /// then every poll yields (as Open MPI does when oversubscribed), since spinning holds
    /// the core a peer needs (4 ranks on 2 cores: 64 B took 125 µs with a 50 µs spin first).
    static func crowded(_ size: Int) -> Bool { size > cores }
    static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// Another rank's abort notice, or this process's failure, ends the wait.
    private func poll(waitingFor missing: [Int]) throws(CollectiveError) {
        if let failure = group.world.error { throw failure }
        let notice = try group.world.call { (lib: MPILibrary) throws(CollectiveError) in group.world.pollNotice(lib) }
        guard let notice else { return }
        if case .aborted(let from, let message) = notice, missing.contains(from) {
            throw .invalid("all-reduce #\(seq): rank \(from) did not arrive (it stopped: \(message))")
        }
        throw notice
    }

    func disarm() {
        guard armed else { return }
        if inline { group.watchdog.end() } else { group.watchdog.exchange("all-reduce", deadline: .infinity, transfers: [], done: []) }
    }
}
