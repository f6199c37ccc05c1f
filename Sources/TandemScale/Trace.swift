import Foundation

// MARK: - Spans

/// One timed span of one rank: a step, a forward pass, a bucket's all-reduce.
public struct SpanEvent: Sendable {
    /// The rank that ran it; it becomes the trace's process id.
    public var rank: Int
    public var name: String
    /// Start in seconds on a monotonic clock shared by all ranks (`TimeSource` in TandemParallel).
    public var start: Double
    /// Length in seconds.
    public var duration: Double
    /// Extra key/value pairs shown when the span is selected.
    public var args: [String: String]

    public init(rank: Int, name: String, start: Double, duration: Double, args: [String: String] = [:]) {
        self.rank = rank; self.name = name; self.start = start; self.duration = duration; self.args = args
    }
}

// MARK: - Chrome trace-event JSON

/// Writes spans in the Chrome trace-event format, for `chrome://tracing`, Perfetto
/// (ui.perfetto.dev) or speedscope.
///
/// Each span becomes a complete event (`"ph": "X"`) with `ts` and `dur` in microseconds,
/// `pid` its rank and `tid` a lane of that rank. Each rank gets one process, named by
/// `processName`, through a `process_name` metadata event (`"ph": "M"`), plus
/// `process_sort_index` so ranks appear in order and a `thread_name` per lane.
///
/// Lanes: trace viewers draw the spans of one thread as a stack, so spans on one thread
/// must nest or follow each other. Spans that overlap without nesting — an all-reduce
/// running under the next layer's backward pass — go to the first lane where they do,
/// so lane 0 holds the main sequence and lanes 1, 2, … the overlapping work.
///
/// Times are shifted so that the earliest span starts at 0, keeping the microsecond
/// values small enough to print exactly; spans of different ranks stay aligned. Spans
/// whose start or duration is not finite are left out; a negative duration counts as 0.
///
/// ```swift
/// let json = ChromeTrace.render(spans) { "rank \($0)" }
/// try json.write(toFile: "trace.json", atomically: true, encoding: .utf8)
/// ```
public enum ChromeTrace {
    /// The trace-event JSON document for `events`: `{"traceEvents": [...], "displayTimeUnit": "ms"}`.
    ///
    /// - Complexity: O(n log n + n·L) for n spans and L lanes per rank.
    public static func render(_ events: [SpanEvent], processName: (Int) -> String = { "rank \($0)" }) -> String {
        let usable = events.filter { $0.start.isFinite && $0.duration.isFinite }
        let origin = usable.map(\.start).min() ?? 0
        let ranks = Set(usable.map(\.rank)).sorted()

        var lines: [String] = []
        var laneCount: [Int: Int] = [:]
        var placed: [String] = []
        let byRank = Dictionary(grouping: usable.enumerated(), by: { $0.element.rank })
        for rank in ranks {
            let spans = byRank[rank, default: []].sorted { a, b in
                // Earlier first; at the same start the longer one first, so it is the parent.
                if a.element.start != b.element.start { return a.element.start < b.element.start }
                if a.element.duration != b.element.duration { return a.element.duration > b.element.duration }
                if a.element.name != b.element.name { return a.element.name < b.element.name }
                return a.offset < b.offset
            }.map(\.element)
            let lanes = assignLanes(spans)
            laneCount[rank] = (lanes.max() ?? 0) + 1
            for (span, lane) in zip(spans, lanes) {
                var fields = [
                    "\"name\":\(quote(span.name))", "\"cat\":\"tandem\"", "\"ph\":\"X\"",
                    "\"ts\":\(microseconds(span.start - origin))", "\"dur\":\(microseconds(max(0, span.duration)))",
                    "\"pid\":\(span.rank)", "\"tid\":\(lane)",
                ]
                if !span.args.isEmpty {
                    let args = span.args.keys.sorted().map { "\(quote($0)):\(quote(span.args[$0]!))" }
                    fields.append("\"args\":{\(args.joined(separator: ","))}")
                }
                placed.append("{" + fields.joined(separator: ",") + "}")
            }
        }
        for rank in ranks {
            lines.append("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(rank),\"tid\":0,\"args\":{\"name\":\(quote(processName(rank)))}}")
            lines.append("{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":\(rank),\"tid\":0,\"args\":{\"sort_index\":\(rank)}}")
            for lane in 0..<(laneCount[rank] ?? 1) {
                let name = lane == 0 ? "main" : "overlap \(lane)"
                lines.append("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":\(rank),\"tid\":\(lane),\"args\":{\"name\":\(quote(name))}}")
            }
        }
        lines += placed
        return "{\"traceEvents\":[\n" + lines.joined(separator: ",\n") + "\n],\"displayTimeUnit\":\"ms\"}\n"
    }

    /// The lane of each span (sorted by start, longer first on ties): the first lane on which
    /// the span nests inside the open span or starts after it ends.
    static func assignLanes(_ spans: [SpanEvent]) -> [Int] {
        var stacks: [[Double]] = []   // per lane, the end times of the spans still open
        var result: [Int] = []
        result.reserveCapacity(spans.count)
        for span in spans {
            let start = span.start, end = span.start + max(0, span.duration)
            var chosen: Int?
            for lane in stacks.indices {
                while let top = stacks[lane].last, top <= start { stacks[lane].removeLast() }
                // A child may end a rounding error after its parent (start + duration); 1 ns
                // is also the precision printed.
                if let top = stacks[lane].last, end > top + 1e-9 { continue }
                stacks[lane].append(end)
                chosen = lane
                break
            }
            if chosen == nil {
                stacks.append([end])
                chosen = stacks.count - 1
            }
            result.append(chosen!)
        }
        return result
    }

    /// Seconds as microseconds with three decimals (nanoseconds), without `-0`.
    static func microseconds(_ seconds: Double) -> String {
        let us = seconds * 1e6
        guard us.isFinite else { return "0" }
        let text = String(format: "%.3f", us)
        return Double(text) == 0 ? "0.000" : text
    }

    /// `text` as a JSON string literal.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
