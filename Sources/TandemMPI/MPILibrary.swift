#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - The MPI library, opened at run time

/// The MPI library Tandem found, opened once with `dlopen`, as one table of C function
/// pointers. Nothing MPI is needed to build Tandem or to run it without `--backend mpi`.
///
/// Search order: `TANDEM_MPI` (a path or a name), then `libmpi.so.40` (Open MPI),
/// `libmpich.so.12` (MPICH), `libmpi.so.12` (Intel MPI, MVAPICH), plain `libmpi.so`.
/// The ABI family is told from the symbols (see ``MPIFamily``).
///
/// Unsafe assumptions, numbered where the code relies on them:
/// 1. Every MPI function listed here has the C signature of the MPI-3.1 standard.
/// 2. A handle argument (communicator, datatype, op, request, error handler) is passed in
///    one 64-bit integer register on x86-64 and AArch64 Linux: a pointer for Open MPI, a
///    32-bit `int` for the MPICH family, which reads only the low 32 bits, so a zero-extended
///    `UInt` carries both.
/// 3. A handle written through a pointer (`MPI_Comm_dup`, `MPI_Isend`, `MPI_Irecv`) is 8
///    bytes for Open MPI and 4 for the MPICH family; it is written into a zeroed 8-byte slot
///    and read back at the family's width (little-endian).
/// 4. `MPI_Status` is at most 32 bytes (Open MPI: 24; MPICH: 20) and its `MPI_SOURCE` field
///    sits at the family's offset (``MPIFamily/statusSourceOffset``).
/// 5. Open MPI's predefined handles are the addresses of its exported globals
///    (`ompi_mpi_comm_world`, …); the MPICH family's are the constants of its `mpi.h`.
/// 6. Calls are serialised by the caller (``MPIWorld`` holds one lock around every call), so
///    `MPI_THREAD_SERIALIZED` is enough.
public final class MPILibrary: @unchecked Sendable {
    // Safe: every stored property is written once in `init` and only read afterwards.

    typealias Handle = UInt
    typealias IntFn = @convention(c) (UnsafeMutablePointer<Int32>?) -> Int32
    typealias InitThread = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?, Int32, UnsafeMutablePointer<Int32>?) -> Int32
    typealias Void0 = @convention(c) () -> Int32
    typealias CommInt = @convention(c) (Handle, UnsafeMutablePointer<Int32>?) -> Int32
    typealias CommDup = @convention(c) (Handle, UnsafeMutableRawPointer?) -> Int32
    typealias CommSetErrhandler = @convention(c) (Handle, Handle) -> Int32
    typealias PointToPoint = @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Int32, Handle, UnsafeMutableRawPointer?) -> Int32
    typealias Test = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32
    typealias RequestFn = @convention(c) (UnsafeMutableRawPointer?) -> Int32
    typealias GetCount = @convention(c) (UnsafeMutableRawPointer?, Handle, UnsafeMutablePointer<Int32>?) -> Int32
    typealias Abort = @convention(c) (Handle, Int32) -> Int32
    typealias StringOut = @convention(c) (UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> Int32
    typealias ErrorString = @convention(c) (Int32, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> Int32
    typealias Allreduce = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle) -> Int32
    typealias Barrier = @convention(c) (Handle) -> Int32

    /// Where the library was found.
    public let path: String
    /// Its ABI family.
    public let family: MPIFamily
    /// `MPI_Get_library_version`'s first line (say `Open MPI v4.1.4, …` or `MPICH Version: 4.0.2`).
    public let version: String
    /// The predefined handles this build uses.
    let constants: MPIConstants

    let initialized: IntFn
    let finalized: IntFn
    let initThread: InitThread
    let finalize: Void0
    let commRank: CommInt
    let commSize: CommInt
    let commDup: CommDup
    let commSetErrhandler: CommSetErrhandler
    let isend: PointToPoint
    let irecv: PointToPoint
    let test: Test
    let cancel: RequestFn
    let requestFree: RequestFn
    let getCount: GetCount
    let abortFn: Abort
    let errorString: ErrorString
    let allreduce: Allreduce
    let barrier: Barrier

    /// Names tried in order when `TANDEM_MPI` is unset.
    public static let candidates = ["libmpi.so.40", "libmpich.so.12", "libmpi.so.12", "libmpi.so"]

    /// What to tell a user who has none.
    public static let installHint = "install one with `apt-get install openmpi-bin libopenmpi3` (Open MPI) or `apt-get install mpich` (MPICH), or set TANDEM_MPI=/path/to/libmpi.so"

    /// The library of this process, opened on first use; the error says what was tried.
    public static func shared() throws(MPIError) -> MPILibrary {
        switch loaded {
        case .success(let library): return library
        case .failure(let error): throw error
        }
    }

    private static let loaded: Result<MPILibrary, MPIError> = {
        var names = candidates
        if let value = getenv("TANDEM_MPI").map({ String(cString: $0) }), !value.isEmpty { names = [value] }
        var reasons: [String] = []
        for name in names {
            // Open MPI opens its own plugins, which need libmpi's symbols global.
            guard let handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) else {
                reasons.append("\(name): \(dlerror().map { String(cString: $0) } ?? "not found")")
                continue
            }
            do {
                return .success(try MPILibrary(handle: handle, name: name))
            } catch {
                reasons.append("\(name): \(error)")
                dlclose(handle)
            }
        }
        return .failure(.notFound(tried: reasons))
    }()

    private init(handle: UnsafeMutableRawPointer, name: String) throws(MPIError) {
        func symbol<T>(_ name: String, as type: T.Type) throws(MPIError) -> T {
            guard let pointer = dlsym(handle, name) else { throw .missingSymbol(name) }
            // (1) the symbol is the standard C function of that name.
            return unsafeBitCast(pointer, to: type)
        }
        family = dlsym(handle, "ompi_mpi_comm_world") != nil ? .openMPI : .mpich
        constants = try MPIConstants(family: family, handle: handle)
        initialized = try symbol("MPI_Initialized", as: IntFn.self)
        finalized = try symbol("MPI_Finalized", as: IntFn.self)
        initThread = try symbol("MPI_Init_thread", as: InitThread.self)
        finalize = try symbol("MPI_Finalize", as: Void0.self)
        commRank = try symbol("MPI_Comm_rank", as: CommInt.self)
        commSize = try symbol("MPI_Comm_size", as: CommInt.self)
        commDup = try symbol("MPI_Comm_dup", as: CommDup.self)
        commSetErrhandler = try symbol("MPI_Comm_set_errhandler", as: CommSetErrhandler.self)
        isend = try symbol("MPI_Isend", as: PointToPoint.self)
        irecv = try symbol("MPI_Irecv", as: PointToPoint.self)
        test = try symbol("MPI_Test", as: Test.self)
        cancel = try symbol("MPI_Cancel", as: RequestFn.self)
        requestFree = try symbol("MPI_Request_free", as: RequestFn.self)
        getCount = try symbol("MPI_Get_count", as: GetCount.self)
        abortFn = try symbol("MPI_Abort", as: Abort.self)
        errorString = try symbol("MPI_Error_string", as: ErrorString.self)
        allreduce = try symbol("MPI_Allreduce", as: Allreduce.self)
        barrier = try symbol("MPI_Barrier", as: Barrier.self)
        let getVersion = try symbol("MPI_Get_library_version", as: StringOut.self)
        // MPI-3 allows MPI_Get_library_version before MPI_Init; the buffer is the larger
        // of the families' MPI_MAX_LIBRARY_VERSION_STRING (Open MPI 256, MPICH 8192).
        var text = [CChar](repeating: 0, count: 8192 + 1)
        var length: Int32 = 0
        _ = getVersion(&text, &length)
        let full = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        version = full.split(whereSeparator: { $0 == "\n" }).first.map { String($0).trimmedMPI() } ?? "unknown"
        path = Self.resolvedPath(handle: handle, symbol: dlsym(handle, "MPI_Init_thread")) ?? name
    }

    /// The file that holds `symbol`, from the mapping that contains its address (glibc's
    /// `dladdr` is not visible to Swift here).
    static func resolvedPath(handle: UnsafeMutableRawPointer, symbol: UnsafeMutableRawPointer?) -> String? {
        guard let symbol, let file = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(file) }
        let address = UInt(bitPattern: symbol)
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6 else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16) else { continue }
            if address >= lo && address < hi { return String(fields[5]) }
        }
        return nil
    }

    // MARK: The choke point

    /// Every MPI return code passes here: `MPI_SUCCESS` (0) or a typed error with the
    /// library's own words for it.
    func check(_ code: Int32, _ call: StaticString) throws(MPIError) {
        guard code != 0 else { return }
        throw .call(String(describing: call), code: Int(code), message: message(for: code))
    }

    func message(for code: Int32) -> String {
        var text = [CChar](repeating: 0, count: 1024)
        var length: Int32 = 0
        guard errorString(code, &text, &length) == 0 else { return "MPI error \(code)" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

// MARK: - Errors

/// What went wrong talking to the MPI library.
public enum MPIError: Error, CustomStringConvertible, Equatable {
    /// No library could be opened; each entry says why one candidate failed.
    case notFound(tried: [String])
    /// The library lacks a function Tandem calls.
    case missingSymbol(String)
    /// A call returned an error code.
    case call(String, code: Int, message: String)
    /// The library gives less thread support than Tandem needs.
    case threadSupport(provided: Int)
    /// MPI was used after `MPI_Finalize` had run in this process.
    case finalized

    public var description: String {
        switch self {
        case .notFound(let tried):
            "no MPI library found (tried \(tried.joined(separator: "; "))); " + MPILibrary.installHint
        case .missingSymbol(let name): "the MPI library has no \(name) (not an MPI-3 library?)"
        case .call(let call, let code, let message): "\(call) failed with error \(code): \(message)"
        case .threadSupport(let provided):
            "the MPI library provides thread level \(provided), Tandem needs MPI_THREAD_SERIALIZED (2); use a library built with thread support"
        case .finalized:
            "MPI has been finalized in this process (MPI_Finalize ran): no collective or other MPI call can run after it"
        }
    }
}

extension String {
    func trimmedMPI() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "," }.reversed())
    }
}
