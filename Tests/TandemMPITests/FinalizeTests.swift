import Foundation
import Testing
@testable import TandemCollectives
@testable import TandemMPI

#if canImport(Glibc)
import Glibc
#endif

// MARK: - After MPI_Finalize: a clear error, not the library's abort

/// MPI started in the test process itself, as a world of one (a singleton, no launcher), so
/// that this process can finalise it and then call again. No other test starts MPI in-process.
@Suite struct FinalizeTests {
    @Test func callsAfterFinalizeAreRefused() throws {
        // Open MPI refuses root without these; the test runner is root in CI.
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0)
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0)
        guard (try? MPILibrary.shared()) != nil else { return }
        let world = try MPIWorld.shared()
        #expect(world.size == 1 && world.rank == 0)
        let group = MPIGroup(world: world, timeout: 10)
        var values: [Float] = [1, 2, 3]
        try values.withUnsafeMutableBufferPointer { v throws(CollectiveError) in
            try group.allReduce(CollectiveBuffer(v.baseAddress!, count: 3), operation: .sum).wait()
        }
        #expect(values == [1, 2, 3])
        try group.barrier().wait()
        var reference: [Float] = [0, 0, 0]
        try group.libraryAllReduce(&values, into: &reference, count: 3)
        #expect(reference == [1, 2, 3])

        world.finalize()
        #expect(world.isFinalized)
        let refused = CollectiveError.invalid(MPIError.finalized.description)
        #expect(throws: refused) { try group.barrier().wait() }
        #expect(throws: refused) {
            try values.withUnsafeMutableBufferPointer { v throws(CollectiveError) in
                try group.allReduce(CollectiveBuffer(v.baseAddress!, count: 3), operation: .sum).wait()
            }
        }
        #expect(throws: refused) { try group.libraryAllReduce(&values, into: &reference, count: 3) }
        // A group made afterwards is refused too, and finalising twice is harmless.
        #expect(throws: refused) { try MPIGroup(world: world, timeout: 10).barrier().wait() }
        world.finalize()
        #expect(refused.description.contains("MPI_Finalize"))
    }
}
