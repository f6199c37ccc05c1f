import Foundation
import Testing
import TandemCore
@testable import TandemMPI

#if canImport(Glibc)
import Glibc
#endif

// MARK: - The heap an MPI rank's peers map

/// The heap on its own, in the test process (not installed as the storage source): blocks,
/// their reuse, and a second mapping of it through /proc seeing the same bytes — what a
/// peer on the host does. The all-reduce through mapped heaps is checked under mpirun by
/// `CollectivesOverMPITests` (`TANDEM_MPI_HEAP=require`).
@Suite struct SharedHeapTests {
    @Test func blocksArePageAlignedAndReused() throws {
        let heap = try #require(SharedHeap(), "memfd_create and a shared mapping are available on Linux")
        let a = try #require(heap.allocate(bytes: 100_000)), b = try #require(heap.allocate(bytes: 100_000))
        #expect(a != b)
        for block in [a, b] {
            #expect(UInt(bitPattern: block) % 4096 == 0)
            #expect(heap.contains(block) && heap.contains(block + 99_999))
        }
        #expect(heap.release(a, bytes: 100_000))
        #expect(heap.allocate(bytes: 100_000) == a, "a freed block of the same size comes back")
        let outside = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        defer { outside.deallocate() }
        #expect(!heap.release(outside, bytes: 64), "a block from the C heap is not taken")
        #expect(heap.allocate(bytes: heap.capacity) == nil, "more than the heap holds falls back to the C heap")
    }

    @Test func anotherMappingSeesTheSameBytes() throws {
        let heap = try #require(SharedHeap())
        let block = try #require(heap.allocate(bytes: 1 << 20)).bindMemory(to: Float.self, capacity: 1 << 18)
        for i in 0..<(1 << 18) { block[i] = Float(i) }
        let peer = try #require(PeerHeap.map(pid: getpid(), fd: heap.fd, remoteBase: UInt64(UInt(bitPattern: heap.base)), capacity: heap.capacity))
        let address = UInt64(UInt(bitPattern: block))
        let there = try #require(peer.local(address, bytes: 1 << 20)).bindMemory(to: Float.self, capacity: 1 << 18)
        #expect(UnsafeMutableRawPointer(there) != UnsafeMutableRawPointer(block))
        #expect(there[12345] == 12345)
        there[7] = -1   // a peer's write lands in this process's block
        #expect(block[7] == -1)
        #expect(peer.local(UInt64(UInt(bitPattern: heap.base)) + UInt64(heap.capacity) - 8, bytes: 16) == nil, "a range past the heap is not mapped")
        // A file that is not a heap (a page of zeros) is refused by its cookie.
        let path = NSTemporaryDirectory() + "tandem-heap-test-\(getpid())"
        try Data(count: 4096).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let other = open(path, O_RDWR)
        defer { close(other) }
        #expect(PeerHeap.map(pid: getpid(), fd: other, remoteBase: 0, capacity: 4096) == nil, "a file that is not a heap is refused")
    }
}
