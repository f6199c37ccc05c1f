import Foundation
import TandemCore
import TandemCollectives

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Ranks on one host: reducing in each other's memory

/// Cross-memory attach (`process_vm_readv`/`process_vm_writev`), looked up once. Linux only;
/// nil elsewhere, or where the C library lacks it.
enum CrossMemory {
    typealias Call = @convention(c) (pid_t, UnsafePointer<iovec>?, UInt, UnsafePointer<iovec>?, UInt, UInt) -> Int

    static let readv: Call? = lookup("process_vm_readv")
    static let writev: Call? = lookup("process_vm_writev")

    private static func lookup(_ name: String) -> Call? {
        // (1) the symbol is glibc's wrapper of the system call of that name.
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), name).map { unsafeBitCast($0, to: Call.self) }
    }

    /// Copies `bytes` from `remote` in process `pid` to `local` (or the other way with
    /// `write`); nil on success, else errno.
    static func copy(pid: pid_t, local: UnsafeMutableRawPointer, remote: UInt64, bytes: Int, write: Bool) -> Int32? {
        guard let call = write ? writev : readv else { return ENOSYS }
        var done = 0
        while done < bytes {
            var mine = iovec(iov_base: local + done, iov_len: bytes - done)
            var theirs = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(remote) + UInt(done)), iov_len: bytes - done)
            let moved = call(pid, &mine, 1, &theirs, 1, 0)
            if moved < 0 { return errno }
            if moved == 0 { return EFAULT }
            done += moved
        }
        return nil
    }
}

/// This rank's view of the others when all of them share its host: their process ids, for
/// cross-memory attach. Settled once per group, at its first large all-reduce.
struct DirectPeers {
    var pids: [pid_t]
    /// Each peer's heap mapped here (nil for this rank, and where mapping failed): buffers in
    /// it are read and written in place, the others through the kernel.
    var heaps: [PeerHeap?]
}

/// What a rank tells the others when the group decides whether it may reduce in their memory.
struct DirectIntroduction {
    static let bytes = 56
    var pid: Int64
    var host: UInt64
    var probe: UInt64
    var willing: Int64
    /// The rank's ``SharedHeap`` (file descriptor −1 when it has none).
    var heapFD: Int64, heapBase: UInt64, heapCapacity: Int64

    func write(to p: UnsafeMutableRawPointer) {
        for (i, word) in [UInt64(bitPattern: pid), host, probe, UInt64(bitPattern: willing),
                          UInt64(bitPattern: heapFD), heapBase, UInt64(bitPattern: heapCapacity)].enumerated() {
            p.storeBytes(of: word, toByteOffset: 8 * i, as: UInt64.self)
        }
    }

    init(pid: Int64, host: UInt64, probe: UInt64, willing: Int64, heap: SharedHeap?) {
        self.pid = pid; self.host = host; self.probe = probe; self.willing = willing
        heapFD = Int64(heap?.fd ?? -1)
        heapBase = UInt64(UInt(bitPattern: heap?.base))
        heapCapacity = Int64(heap?.capacity ?? 0)
    }

    init(from p: UnsafeRawPointer) {
        func word(_ i: Int) -> UInt64 { p.load(fromByteOffset: 8 * i, as: UInt64.self) }
        pid = Int64(bitPattern: word(0)); host = word(1); probe = word(2); willing = Int64(bitPattern: word(3))
        heapFD = Int64(bitPattern: word(4)); heapBase = word(5); heapCapacity = Int64(bitPattern: word(6))
    }
}

extension MPIGroup {
    /// The word every rank's peers read to check that cross-memory attach works between them.
    nonisolated(unsafe) static let probeWord: UnsafeMutablePointer<UInt64> = {
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        p.initialize(to: 0x7461_6e64_656d_2121 ^ UInt64(getpid()))
        return p
    }()

    /// Where this process runs, as far as sharing memory goes: the boot, the host name and
    /// the network and process namespaces. Ranks "on other hosts" made with network
    /// namespaces on one machine differ here, so their gradients still cross the links.
    static let hostKey: UInt64 = {
        var parts: [String] = []
        parts.append((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "")
        parts.append(ProcessInfo.processInfo.hostName)
        for ns in ["net", "pid", "uts"] {
            var link = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/self/ns/\(ns)", &link, link.count - 1)
            parts.append(n > 0 ? String(decoding: link.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?")
        }
        return parts.joined(separator: "|").utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }()

    /// `TANDEM_MPI_DIRECT`: `0` turns the direct path off (large all-reduces as messages);
    /// `require` makes a large all-reduce fail, saying why, when it cannot be taken. Either
    /// keeps the large ones out of the mailbox (`MPIGroup+Mailbox.swift`), which otherwise
    /// takes them up to 1 MB; small ones take it unless `TANDEM_MPI_MAILBOX=0`.
    static var directSetting: String { ProcessInfo.processInfo.environment["TANDEM_MPI_DIRECT"] ?? "" }

    /// The peers to reduce directly with, deciding it (collectively, within collective `seq`)
    /// the first time: every rank on this host, each able to read every other's memory, and
    /// none that turned the path off. Every rank reaches the same answer, since each tells
    /// all the others its own verdict and the answer is their conjunction.
    func directPeers(seq: Int) throws(CollectiveError) -> DirectPeers? {
        if let decided = directDecision { return decided.peers }
        let n = size
        let width = DirectIntroduction.bytes
        let table = UnsafeMutableRawPointer.allocate(byteCount: width * n, alignment: 8)
        defer { table.deallocate() }
        table.initializeMemory(as: UInt8.self, repeating: 0, count: width * n)
        let wanted = Self.directSetting != "0" && CrossMemory.readv != nil && CrossMemory.writev != nil
        DirectIntroduction(pid: Int64(getpid()), host: Self.hostKey, probe: UInt64(UInt(bitPattern: Self.probeWord)), willing: wanted ? 1 : 0,
                           heap: SharedHeap.installed)
            .write(to: table + rank * width)
        try exchange(everyPeer(table, width: width), tag: Self.tag(seq, phase: 1), operation: "all-reduce", sequence: seq)
        let all = (0..<n).map { DirectIntroduction(from: table + $0 * width) }
        var reasons: [String] = []
        if !wanted { reasons.append("rank \(rank) has it off (TANDEM_MPI_DIRECT=0, or no process_vm_readv)") }
        let unwilling = (0..<n).filter { $0 != rank && all[$0].willing != 1 }
        if !unwilling.isEmpty { reasons.append("rank\(unwilling.count == 1 ? "" : "s") \(unwilling.map(String.init).joined(separator: ", ")) turned it off") }
        let elsewhere = (0..<n).filter { all[$0].host != Self.hostKey }
        if !elsewhere.isEmpty { reasons.append("rank\(elsewhere.count == 1 ? "" : "s") \(elsewhere.map(String.init).joined(separator: ", ")) run on another host (or network namespace) than rank \(rank)") }
        if reasons.isEmpty {
            for q in 0..<n where q != rank {
                var word: UInt64 = 0
                let failed = withUnsafeMutableBytes(of: &word) { w in
                    CrossMemory.copy(pid: pid_t(all[q].pid), local: w.baseAddress!, remote: all[q].probe, bytes: 8, write: false)
                }
                if let failed {
                    reasons.append("rank \(rank) cannot read rank \(q)'s memory (process_vm_readv: \(String(cString: strerror(failed))); ptrace restrictions?)")
                } else if word != 0x7461_6e64_656d_2121 ^ UInt64(all[q].pid) {
                    reasons.append("rank \(rank) read the wrong value from rank \(q)'s memory (another process namespace?)")
                }
            }
        }
        let able = reasons.isEmpty
        // Second round: every rank's verdict, so that all take the same path.
        for r in 0..<n { (table + r * width).storeBytes(of: Int64(r == rank && able ? 1 : 0), as: Int64.self) }
        try exchange(everyPeer(table, width: width), tag: Self.tag(seq, phase: 1), operation: "all-reduce", sequence: seq)
        let everyone = (0..<n).allSatisfy { (table + $0 * width).load(as: Int64.self) == 1 }
        let peers = everyone ? DirectPeers(pids: all.map { pid_t($0.pid) }, heaps: (0..<n).map { q in
            guard q != rank, all[q].heapFD >= 0, all[q].heapCapacity > 0 else { return nil }
            // A heap that cannot be mapped leaves that peer's buffers to the kernel's copies.
            return PeerHeap.map(pid: pid_t(all[q].pid), fd: Int32(all[q].heapFD), remoteBase: all[q].heapBase,
                                capacity: Int(all[q].heapCapacity))
        }) : nil
        directDecision = DirectDecision(peers: peers)
        if let peers, SharedHeap.setting == "require" {
            let unmapped = (0..<n).filter { $0 != rank && peers.heaps[$0] == nil }
            if SharedHeap.installed == nil || !unmapped.isEmpty {
                let why = SharedHeap.installed == nil ? "rank \(rank) has no heap (memfd_create or mmap failed)"
                    : "rank \(rank) cannot map the heap of rank\(unmapped.count == 1 ? "" : "s") \(unmapped.map(String.init).joined(separator: ", ")) (/proc/PID/fd/FD)"
                throw .invalid("all-reduce #\(seq): TANDEM_MPI_HEAP=require, but \(why)")
            }
        }
        if peers == nil && Self.directSetting == "require" {
            let why = reasons.isEmpty ? "another rank cannot (see its error)" : reasons.joined(separator: "; ")
            throw .invalid("all-reduce #\(seq): TANDEM_MPI_DIRECT=require, but the ranks cannot reduce in each other's memory: \(why)")
        }
        return peers
    }

    /// Each rank's `width` bytes at `table + rank·width`, sent to every other rank, theirs received.
    func everyPeer(_ table: UnsafeMutableRawPointer, width: Int) -> [Transfer] {
        var transfers: [Transfer] = []
        for peer in 0..<size where peer != rank {
            transfers.append(Transfer(peer: peer, receive: true, pointer: table + peer * width, bytes: width))
            transfers.append(Transfer(peer: peer, receive: false, pointer: table + rank * width, bytes: width))
        }
        return transfers
    }

    /// A large all-reduce between ranks of one host, as the threads backend does it: rank r
    /// reads chunk r of every buffer from every other rank, sums the N values of each element
    /// in rank order with its own, writes the result into its own buffer and into every other
    /// rank's. A peer's buffer in its ``SharedHeap`` (mapped here) is read and written in
    /// place, as threads do; any other goes through the kernel (`process_vm_readv`, a tile at
    /// a time into cache-sized scratch, and `process_vm_writev`: 2.5× slower). Messages carry
    /// only the buffers' addresses before, and a "done" after, so no rank returns while
    /// another may still read or write its memory.
    ///
    /// Memory traffic per byte of a rank's chunk: read N, write N — as on threads; the
    /// message path copies each chunk in and out again (7 bytes per byte for N = 2).
    /// - Complexity: each rank reads and writes (N−1)/N of every buffer of each other rank.
    func directAllReduce(_ buffers: [CollectiveBuffer], peers: DirectPeers, operation: ReduceOperation, seq: Int) throws(CollectiveError) {
        let n = size, me = rank
        // Addresses, counts and precisions: three 8-byte words per buffer.
        let width = 24 * buffers.count
        let table = UnsafeMutableRawPointer.allocate(byteCount: max(width * n, 8), alignment: 8)
        defer { table.deallocate() }
        for (i, b) in buffers.enumerated() {
            let p = table + me * width + 24 * i
            p.storeBytes(of: UInt64(UInt(bitPattern: b.base)), as: UInt64.self)
            p.storeBytes(of: Int64(b.count), toByteOffset: 8, as: Int64.self)
            p.storeBytes(of: Int64(b.dtype.byteSize), toByteOffset: 16, as: Int64.self)
        }
        try exchange(everyPeer(table, width: width), tag: Self.tag(seq, phase: 1), operation: "all-reduce", sequence: seq)
        var remote: [[UInt64]] = Array(repeating: [], count: n)
        for q in 0..<n {
            for (i, b) in buffers.enumerated() {
                let p = table + q * width + 24 * i
                let count = Int(p.load(fromByteOffset: 8, as: Int64.self)), bytes = Int(p.load(fromByteOffset: 16, as: Int64.self))
                if count != b.count || bytes != b.dtype.byteSize {
                    throw .invalid("all-reduce #\(seq): rank \(q) passed \(count) elements of \(bytes) bytes in buffer \(i) where rank \(me) passed \(b.count) of \(b.dtype.byteSize) (ranks called different collectives; run with --debug-collectives to see each rank's call)")
                }
                remote[q].append(p.load(as: UInt64.self))
            }
        }
        let tileBytes = Self.directTileBytes
        let slots = scratch.reserve(tileBytes * max(n - 1, 1))
        for (i, b) in buffers.enumerated() where b.count > 0 {
            let w = b.dtype.byteSize
            let (lo, hi) = Self.chunk(me, of: b.count, parts: n)
            let tile = tileBytes / w
            // Each peer's share [lo, hi) of this buffer, mapped here when it lies in the peer's heap (then every tile does).
            let inHeap = (0..<n).map { q in q == me ? nil : peers.heaps[q]?.local(remote[q][i] + UInt64(lo * w), bytes: (hi - lo) * w) }
            var start = lo
            while start < hi {
                let m = min(tile, hi - start)
                let own = b.base! + start * w
                var operands: [Operand] = []
                var k = 0
                for q in 0..<n {
                    if q == me { operands.append(Operand(base: own, dtype: b.dtype)); continue }
                    if let mapped = inHeap[q] {
                        operands.append(Operand(base: mapped + (start - lo) * w, dtype: b.dtype))
                        continue
                    }
                    let address = remote[q][i] + UInt64(start * w)
                    let slot = slots + k * tileBytes
                    k += 1
                    if let code = CrossMemory.copy(pid: peers.pids[q], local: slot, remote: address, bytes: m * w, write: false) {
                        throw Self.crossMemoryError(code, reading: true, rank: q, seq: seq)
                    }
                    operands.append(Operand(base: slot, dtype: b.dtype))
                }
                scratch.combine(operands, count: m, operation: operation, order: .rank, into: operands[me])
                for q in 0..<n where q != me {
                    let address = remote[q][i] + UInt64(start * w)
                    if let mapped = inHeap[q] {
                        (mapped + (start - lo) * w).copyMemory(from: own, byteCount: m * w)
                    } else if let code = CrossMemory.copy(pid: peers.pids[q], local: own, remote: address, bytes: m * w, write: true) {
                        throw Self.crossMemoryError(code, reading: false, rank: q, seq: seq)
                    }
                }
                start += m
            }
        }
        // Done: after this no rank touches another's buffers.
        var done: [Transfer] = []
        for peer in 0..<n where peer != me {
            done.append(Transfer(peer: peer, receive: true, pointer: nil, bytes: 0))
            done.append(Transfer(peer: peer, receive: false, pointer: nil, bytes: 0))
        }
        try exchange(done, tag: Self.tag(seq, phase: 2), operation: "all-reduce", sequence: seq)
    }

    /// Bytes of a rank's buffer read at once: with the tile of each peer and this rank's own
    /// values, a step stays in L2, so the values read are reduced from cache.
    static let directTileBytes = 128 << 10

    static func crossMemoryError(_ code: Int32, reading: Bool, rank q: Int, seq: Int) -> CollectiveError {
        let reason = String(cString: strerror(code))
        let gone = code == ESRCH ? " (rank \(q) is gone)" : ""
        return .invalid("all-reduce #\(seq): \(reading ? "reading" : "writing") rank \(q)'s buffer failed: \(reason)\(gone)")
    }
}

/// Whether a group reduces directly in its peers' memory, once decided.
struct DirectDecision {
    var peers: DirectPeers?
}
