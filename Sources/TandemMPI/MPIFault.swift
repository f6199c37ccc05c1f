import Foundation
import Glibc
import TandemCore
import TandemCollectives

// MARK: - Injected faults, for testing failure handling

/// A fault one rank injects into its own run, read from `TANDEM_MPI_FAULT=RANK:KIND:K`:
/// at its K-th all-reduce, rank RANK
/// - `kill`: dies at once (SIGKILL), as a crashed process;
/// - `stop`: stops (SIGSTOP), as a hung one;
/// - `skip`: does not take part (returns as if done), as a rank whose code took another path;
/// - `resize`: passes one element fewer in its last buffer, as a rank with a different model.
///
/// Used by the fault tests; a run without the variable has no fault.
struct MPIFault: Sendable {
    enum Kind: String, Sendable { case kill, stop, skip, resize }
    var kind: Kind
    var sequence: Int

    static func fromEnvironment(rank: Int) -> MPIFault? {
        guard let text = ProcessInfo.processInfo.environment["TANDEM_MPI_FAULT"] else { return nil }
        let parts = text.split(separator: ":").map(String.init)
        guard parts.count == 3, let r = Int(parts[0]), let kind = Kind(rawValue: parts[1]), let k = Int(parts[2]), k >= 1 else {
            FileHandle.standardError.write(Data("warning: TANDEM_MPI_FAULT='\(text)' ignored (expected RANK:kill|stop|skip|resize:K)\n".utf8))
            return nil
        }
        return r == rank ? MPIFault(kind: kind, sequence: k) : nil
    }

    /// What happens at this rank's all-reduce number `index` (1-based).
    func action(atAllReduce index: Int) -> Action? {
        guard index == sequence else { return nil }
        switch kind {
        case .kill: return .kill
        case .stop: return .stop
        case .skip: return .skip
        case .resize: return nil
        }
    }

    enum Action: Sendable, Equatable {
        case kill, stop, skip
        /// Run on the communication thread as the collective starts.
        func strike() {
            switch self {
            case .kill: Glibc.kill(getpid(), SIGKILL)
            case .stop: Glibc.kill(getpid(), SIGSTOP)
            case .skip: break
            }
        }
    }

    /// `buffer` less its last element.
    static func shrunk(_ buffer: CollectiveBuffer) -> CollectiveBuffer {
        guard buffer.count > 0, let base = buffer.base else { return buffer }
        if buffer.dtype == .float32 { return CollectiveBuffer(base.assumingMemoryBound(to: Float.self), count: buffer.count - 1) }
        return CollectiveBuffer(base.assumingMemoryBound(to: UInt16.self), count: buffer.count - 1, dtype: buffer.dtype)
    }
}
