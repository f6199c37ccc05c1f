#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - The two ABI families

/// How an MPI library represents its handles. The C API is the same everywhere; the binary
/// interface is not.
public enum MPIFamily: String, Sendable {
    /// Open MPI: a handle is a pointer; the predefined ones are addresses of exported
    /// globals (`MPI_COMM_WORLD` is `&ompi_mpi_comm_world`).
    case openMPI = "Open MPI"
    /// MPICH and its ABI-compatible derivatives (Intel MPI, MVAPICH, Cray MPICH): a handle is
    /// a 32-bit `int`; the predefined ones are constants of `mpi.h`.
    case mpich = "MPICH family"

    /// Bytes a handle occupies in memory (`MPI_Request`, `MPI_Comm` written by the library).
    var handleBytes: Int { self == .openMPI ? 8 : 4 }

    /// Byte offset of `MPI_SOURCE` in `MPI_Status`: Open MPI's `ompi_status_public_t` starts
    /// with it; MPICH's `MPI_Status` has `count_lo` and `count_hi_and_cancelled` first.
    var statusSourceOffset: Int { self == .openMPI ? 0 : 8 }

    /// The largest message the family's shared-memory transport sends at once, without a
    /// handshake, by default (Open MPI's vader: `btl_vader_eager_limit`, 4096 bytes with its
    /// header; MPICH 4: somewhat over 8 KB, as measured). Used only to choose between
    /// equally exact algorithms for small all-reduces.
    var eagerBytes: Int { self == .openMPI ? 4000 : 8192 }

    /// `MPI_STATUS_IGNORE`: `(MPI_Status *) 0` in Open MPI, `(MPI_Status *) 1` in MPICH.
    var statusIgnore: UnsafeMutableRawPointer? { self == .openMPI ? nil : UnsafeMutableRawPointer(bitPattern: 1) }
}

/// The predefined handles Tandem uses, for one library.
///
/// The MPICH values are those of MPICH 4.0's `mpi.h` (Debian 12's `libmpich-dev`), which the
/// MPICH ABI compatibility initiative keeps fixed across MPICH ≥ 3.1, Intel MPI ≥ 5 and
/// MVAPICH2 ≥ 2: `MPI_COMM_WORLD` 0x44000000, `MPI_BYTE` 0x4c00010d, `MPI_FLOAT` 0x4c00040a,
/// `MPI_SUM` 0x58000003, `MPI_MAX` 0x58000001, `MPI_ERRORS_RETURN` 0x54000001.
struct MPIConstants: Sendable {
    var commWorld: UInt
    var byte: UInt
    var float: UInt
    var sum: UInt
    var max: UInt
    var errorsReturn: UInt
    /// `MPI_ANY_SOURCE`: −1 in Open MPI, −2 in MPICH.
    var anySource: Int32
    /// `MPI_THREAD_SERIALIZED`: 2 in both (an enum in Open MPI, a #define in MPICH).
    var threadSerialized: Int32 = 2

    init(family: MPIFamily, handle: UnsafeMutableRawPointer) throws(MPIError) {
        switch family {
        case .openMPI:
            func global(_ name: String) throws(MPIError) -> UInt {
                // (5) the handle is the address of the exported predefined object.
                guard let address = dlsym(handle, name) else { throw .missingSymbol(name) }
                return UInt(bitPattern: address)
            }
            commWorld = try global("ompi_mpi_comm_world")
            byte = try global("ompi_mpi_byte")
            float = try global("ompi_mpi_float")
            sum = try global("ompi_mpi_op_sum")
            max = try global("ompi_mpi_op_max")
            errorsReturn = try global("ompi_mpi_errors_return")
            anySource = -1
        case .mpich:
            commWorld = 0x4400_0000
            byte = 0x4c00_010d
            float = 0x4c00_040a
            sum = 0x5800_0003
            max = 0x5800_0001
            errorsReturn = 0x5400_0001
            anySource = -2
        }
    }
}
