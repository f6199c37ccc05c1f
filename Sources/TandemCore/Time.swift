#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - The one clock

/// Seconds on the monotonic clock (`CLOCK_MONOTONIC`): the clock every span, deadline and
/// collective record in Tandem reads, so times from different parts compare directly.
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
