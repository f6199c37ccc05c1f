import TandemCollectives

// MARK: - The library's own collective, for comparison

extension MPIGroup {
    /// The MPI library's blocking `MPI_Allreduce` (float32, sum) of `send` into `receive`,
    /// on the world communicator: the reference `tandem comm --compare-library` times ours
    /// against. Blocking, so not bounded by the timeout; call it only while no collective of
    /// this group is in flight.
    /// - Complexity: whatever algorithm the library picks for `count` floats and this size.
    public func libraryAllReduce(_ send: UnsafeMutablePointer<Float>, into receive: UnsafeMutablePointer<Float>, count: Int) throws(CollectiveError) {
        guard count <= Int(Int32.max) else { throw .invalid("MPI_Allreduce of \(count) floats exceeds MPI's int count") }
        try world.call { (lib: MPILibrary) throws(CollectiveError) in
            let code = lib.allreduce(send, receive, Int32(count), lib.constants.float, lib.constants.sum, lib.constants.commWorld)
            if code != 0 { throw .invalid("MPI_Allreduce failed: \(lib.message(for: code))") }
        }
    }
}
