import TandemCollectives

// MARK: - What the always-on spans cost

/// The price of Tandem's instrumentation, measured on this machine: every step reads the
/// clock around each phase, keeps the intervals when a trace is asked for, and every
/// collective leaves one record in its rank's log. `Benchmark` measures it in the run and
/// reports it as a fraction of the step (`RunResult.instrumentation_overhead`), so the
/// claim that spans can stay on is checked on every run rather than asserted.
public struct InstrumentationCost: Sendable, Equatable {
    /// Seconds per clock read.
    public var clockRead: Double
    /// Seconds to keep one interval (trace mode).
    public var spanRecord: Double
    /// Seconds per collective record (two clock reads and a locked append).
    public var collectiveRecord: Double

    public init(clockRead: Double, spanRecord: Double, collectiveRecord: Double) {
        self.clockRead = clockRead; self.spanRecord = spanRecord; self.collectiveRecord = collectiveRecord
    }

    /// Times each piece over `iterations` repetitions (the median of 5 rounds).
    public static func measure(clock: any TimeSource = MonotonicClock(), iterations: Int = 20_000) -> InstrumentationCost {
        precondition(iterations > 0, "iterations must be positive")
        func perCall(_ body: () -> Void) -> Double {
            var rounds: [Double] = []
            for _ in 0..<5 {
                let start = clock.now()
                body()
                rounds.append((clock.now() - start) / Double(iterations))
            }
            return rounds.sorted()[2]
        }
        var sink = 0.0
        let read = perCall { for _ in 0..<iterations { sink += clock.now() } }
        var spans = StepSpans(recording: true)
        spans.events.reserveCapacity(iterations)
        let keep = perCall {
            spans.events.removeAll(keepingCapacity: true)
            for i in 0..<iterations { spans.add("forward", Double(i), Double(i) + sink) }
        }
        let record = CollectiveLog.recordCost(iterations: iterations, clock: { clock.now() })
        return InstrumentationCost(clockRead: read, spanRecord: keep, collectiveRecord: record)
    }

    /// Seconds one `Worker.step` pays: four clock reads per micro-batch and four per step,
    /// three kept intervals per micro-batch and two per step when recording, and one
    /// record per collective.
    public func perStep(microBatches: Int, recording: Bool, collectives: Int) -> Double {
        let reads = Double(4 * microBatches + 4) * clockRead
        let kept = recording ? Double(3 * microBatches + 2) * spanRecord : 0
        return reads + kept + Double(collectives) * collectiveRecord
    }
}
