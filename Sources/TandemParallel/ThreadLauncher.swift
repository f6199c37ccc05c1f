import Foundation
import TandemCollectives

// MARK: - Launching ranks as threads

/// Runs `body` once per rank, each on its own thread with its `ThreadGroup`, and waits for
/// all. When a rank throws, the world is aborted so every other rank stops at its next
/// collective (or at its timeout), and the first real error is rethrown — not the
/// "rank r failed" echoes it caused on the other ranks.
public enum ThreadLauncher {
    public static func run<R: Sendable>(workers: Int, timeout: Double = 300, verifyCalls: Bool = false,
                                        _ body: @escaping @Sendable (_ rank: Int, _ group: ThreadGroup) throws -> R) throws -> [R] {
        precondition(workers >= 1, "at least one worker")
        let world = ThreadWorld(size: workers, timeout: timeout, verifyCalls: verifyCalls)
        let results = Results<R>(count: workers)
        let done = DispatchGroup()
        for rank in 0..<workers {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let group = world.group(rank: rank)
                do {
                    results.set(rank, .success(try body(rank, group)))
                } catch {
                    results.set(rank, .failure(error))
                    group.abort("\(error)")
                }
            }
            thread.name = "tandem-rank-\(rank)"
            thread.stackSize = 16 << 20
            thread.start()
        }
        done.wait()
        return try results.collect()
    }

    final class Results<R: Sendable>: @unchecked Sendable {
        // Safe: `values` is guarded by `lock`.
        private let lock = NSLock()
        private var values: [Result<R, any Error>?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<R, any Error>) { lock.lock(); values[i] = r; lock.unlock() }

        func collect() throws -> [R] {
            lock.lock(); defer { lock.unlock() }
            let failures = values.compactMap { v -> (any Error)? in if case .failure(let e)? = v { return e } else { return nil } }
            if let root = failures.first(where: { !Self.isEcho($0) }) ?? failures.first { throw root }
            return values.map { if case .success(let r)? = $0 { return r } else { fatalError("a rank ended without a result") } }
        }

        /// An error that only reports another rank's failure.
        static func isEcho(_ error: any Error) -> Bool {
            if case .aborted? = error as? CollectiveError { return true }
            return false
        }
    }
}
