import TandemCore

// MARK: - Process group

/// How values from every rank combine.
public enum ReduceOperation: String, Sendable, CaseIterable {
    case sum, average, max
}

/// A contiguous buffer a collective reads and writes: float32, or 16-bit floats that are
/// reduced in float32 and stored back rounded (compressed gradients).
public struct CollectiveBuffer: @unchecked Sendable {
    // Safe: the caller keeps the memory alive and untouched until the collective's handle
    // has been waited on; the backend only touches it between submission and completion.
    public let base: UnsafeMutableRawPointer?
    public let count: Int
    public let dtype: DType

    public init(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        base = UnsafeMutableRawPointer(pointer); self.count = count; dtype = .float32
    }

    public init(_ pointer: UnsafeMutablePointer<UInt16>, count: Int, dtype: DType) {
        precondition(dtype == .bfloat16 || dtype == .float16, "16-bit collective buffers are bfloat16 or float16")
        base = UnsafeMutableRawPointer(pointer); self.count = count; self.dtype = dtype
    }

    public static let empty = CollectiveBuffer(base: nil, count: 0, dtype: .float32)
    init(base: UnsafeMutableRawPointer?, count: Int, dtype: DType) { self.base = base; self.count = count; self.dtype = dtype }

    @inline(__always) func load(_ i: Int) -> Float {
        switch dtype {
        case .bfloat16: HalfConversion.float(bfloat16: base!.assumingMemoryBound(to: UInt16.self)[i])
        case .float16: HalfConversion.float(float16: base!.assumingMemoryBound(to: UInt16.self)[i])
        default: base!.assumingMemoryBound(to: Float.self)[i]
        }
    }

    @inline(__always) func store(_ v: Float, _ i: Int) {
        switch dtype {
        case .bfloat16: base!.assumingMemoryBound(to: UInt16.self)[i] = HalfConversion.bfloat16Bits(v)
        case .float16: base!.assumingMemoryBound(to: UInt16.self)[i] = HalfConversion.float16Bits(v)
        default: base!.assumingMemoryBound(to: Float.self)[i] = v
        }
    }
}

/// Something to wait on: a collective in flight.
public protocol CollectiveHandle: Sendable {
    /// Blocks until the collective is done on this rank; throws its error (a timeout that
    /// names the missing ranks, a mismatched call, another rank's failure).
    func wait() throws(CollectiveError)
    /// True once `wait` would return at once.
    var isComplete: Bool { get }
}

/// The ranks of one job and the collectives between them. Every rank must issue the same
/// collectives in the same order; each returns at once with a handle to wait on.
public protocol ProcessGroup: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Name of the backend (`threads`, `mpi`, `nccl`).
    var backend: String { get }
    /// Seconds this rank's collectives have spent running (start to finish, summed).
    var busySeconds: Double { get }

    /// Every rank's buffers become the element-wise reduction of all ranks' (buffer i with
    /// buffer i): one collective over several tensors, so gradients are reduced where they
    /// lie, without being packed into one bucket first.
    /// - Complexity: 2·(N−1)/N·count elements moved per rank (ring); log₂N steps (tree).
    func allReduce(_ buffers: [CollectiveBuffer], operation: ReduceOperation) -> any CollectiveHandle
    /// Every rank's `buffer` becomes `root`'s.
    func broadcast(_ buffer: CollectiveBuffer, root: Int) -> any CollectiveHandle
    /// `receive` (size·count) becomes every rank's `send` (count) in rank order.
    func allGather(send: CollectiveBuffer, receive: CollectiveBuffer) -> any CollectiveHandle
    /// `receive` (count/size) becomes this rank's part of the reduction of every `send` (count).
    func reduceScatter(send: CollectiveBuffer, receive: CollectiveBuffer, operation: ReduceOperation) -> any CollectiveHandle
    /// Returns once every rank has arrived.
    func barrier() -> any CollectiveHandle
    /// Ends every pending and future collective on every rank with `message` from this rank.
    func abort(_ message: String)
}

extension ProcessGroup {
    /// Every rank's `buffer` becomes the element-wise reduction of all of them.
    public func allReduce(_ buffer: CollectiveBuffer, operation: ReduceOperation) -> any CollectiveHandle {
        allReduce([buffer], operation: operation)
    }
}

// MARK: - Errors

/// Why a collective failed.
public enum CollectiveError: Error, CustomStringConvertible, Equatable {
    /// Some ranks did not reach operation `sequence` within the timeout.
    case timeout(operation: String, sequence: Int, missing: [Int], seconds: Double)
    /// Ranks called different collectives at the same point.
    case mismatch(sequence: Int, calls: [String])
    /// Another rank (or this one) gave up.
    case aborted(rank: Int, message: String)
    /// Bad arguments (caller bug caught before any rank waits).
    case invalid(String)

    public var description: String {
        switch self {
        case .timeout(let op, let seq, let missing, let seconds):
            "\(op) #\(seq) timed out after \(seconds) s: rank\(missing.count == 1 ? "" : "s") \(missing.map(String.init).joined(separator: ", ")) did not arrive"
        case .mismatch(let seq, let calls):
            "collective #\(seq) differs across ranks: " + calls.enumerated().map { "rank \($0.offset): \($0.element)" }.joined(separator: "; ")
        case .aborted(let rank, let message): "rank \(rank) failed: \(message)"
        case .invalid(let message): message
        }
    }
}
