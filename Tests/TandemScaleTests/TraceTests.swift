import Foundation
import Testing
@testable import TandemScale

// MARK: - Helpers

/// SplitMix64, so random spans are the same on every run.
struct TraceRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// The trace as parsed JSON: the events, split into metadata and complete events.
struct ParsedTrace {
    var all: [[String: Any]]
    var metadata: [[String: Any]] { all.filter { $0["ph"] as? String == "M" } }
    var complete: [[String: Any]] { all.filter { $0["ph"] as? String == "X" } }

    init(_ json: String) throws {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8))
        let root = try #require(object as? [String: Any])
        #expect(root["displayTimeUnit"] as? String == "ms")
        all = try #require(root["traceEvents"] as? [[String: Any]])
    }
}

/// A step of one rank: the step span, forward and backward nested in it, and an all-reduce
/// that starts inside backward and ends after it (overlap, not nesting).
func stepSpans(rank: Int, at t: Double) -> [SpanEvent] {
    [
        SpanEvent(rank: rank, name: "step", start: t, duration: 0.030, args: ["step": "1"]),
        SpanEvent(rank: rank, name: "forward", start: t + 0.001, duration: 0.009),
        SpanEvent(rank: rank, name: "backward", start: t + 0.010, duration: 0.015),
        SpanEvent(rank: rank, name: "allreduce bucket 0", start: t + 0.020, duration: 0.012, args: ["bytes": "7454760"]),
    ]
}

// MARK: - Trace

@Suite("ChromeTrace")
struct TraceTests {
    @Test("parses as JSON: one process per rank, complete events on pid = rank with non-negative dur", arguments: [1, 2, 5])
    func structure(_ worldSize: Int) throws {
        let spans = (0..<worldSize).flatMap { stepSpans(rank: $0, at: 100.0 + 0.0005 * Double($0)) }
        let trace = try ParsedTrace(ChromeTrace.render(spans))
        let names = trace.metadata.filter { $0["name"] as? String == "process_name" }
        #expect(names.count == worldSize)
        #expect(Set(names.compactMap { $0["pid"] as? Int }) == Set(0..<worldSize))
        for name in names {
            let pid = try #require(name["pid"] as? Int)
            #expect((name["args"] as? [String: Any])?["name"] as? String == "rank \(pid)")
        }
        #expect(trace.complete.count == spans.count)
        for event in trace.complete {
            let pid = try #require(event["pid"] as? Int)
            let dur = try #require(event["dur"] as? Double)
            let ts = try #require(event["ts"] as? Double)
            #expect((0..<worldSize).contains(pid) && dur >= 0 && ts >= 0)
            #expect(event["tid"] is Int)
        }
        // Each rank's spans land on that rank's pid.
        for rank in 0..<worldSize {
            let names = trace.complete.filter { $0["pid"] as? Int == rank }.compactMap { $0["name"] as? String }.sorted()
            #expect(names == ["allreduce bucket 0", "backward", "forward", "step"])
        }
    }

    @Test("times are microseconds from the earliest span")
    func units() throws {
        let spans = [SpanEvent(rank: 1, name: "late", start: 12.5, duration: 0.25),
                     SpanEvent(rank: 0, name: "first", start: 10.0, duration: 0.002)]
        let trace = try ParsedTrace(ChromeTrace.render(spans))
        let byName = Dictionary(uniqueKeysWithValues: trace.complete.map { ($0["name"] as! String, $0) })
        #expect(byName["first"]?["ts"] as? Double == 0 && byName["first"]?["dur"] as? Double == 2000)
        #expect(byName["late"]?["ts"] as? Double == 2_500_000 && byName["late"]?["dur"] as? Double == 250_000)
    }

    @Test("an all-reduce overlapping backward goes to its own lane; nested spans stay on lane 0")
    func lanes() throws {
        let trace = try ParsedTrace(ChromeTrace.render(stepSpans(rank: 0, at: 0)))
        let tid = Dictionary(uniqueKeysWithValues: trace.complete.map { ($0["name"] as! String, $0["tid"] as! Int) })
        #expect(tid == ["step": 0, "forward": 0, "backward": 0, "allreduce bucket 0": 1])
        let threads = trace.metadata.filter { $0["name"] as? String == "thread_name" }
        #expect(threads.count == 2)
    }

    @Test("on every lane the spans nest or follow each other (random spans)", arguments: [1, 2, 3, 4])
    func lanesNest(_ seed: UInt64) throws {
        var random = TraceRandom(state: seed)
        let spans = (0..<300).map { _ in
            SpanEvent(rank: Int(random.next() % 3), name: "s", start: random.uniform() * 10,
                      duration: random.uniform() < 0.1 ? 0 : random.uniform() * 2)
        }
        let trace = try ParsedTrace(ChromeTrace.render(spans))
        #expect(trace.complete.count == spans.count)
        var lanes: [String: [(Double, Double)]] = [:]
        for event in trace.complete {
            let ts = event["ts"] as! Double, dur = event["dur"] as! Double
            lanes["\(event["pid"]!)/\(event["tid"]!)", default: []].append((ts, ts + dur))
        }
        let tolerance = 0.002   // µs: both ends are printed to 0.001
        for (lane, intervals) in lanes {
            for (i, a) in intervals.enumerated() {
                for b in intervals[(i + 1)...] {
                    let disjoint = a.1 <= b.0 + tolerance || b.1 <= a.0 + tolerance
                    let nested = (a.0 <= b.0 + tolerance && b.1 <= a.1 + tolerance) || (b.0 <= a.0 + tolerance && a.1 <= b.1 + tolerance)
                    #expect(disjoint || nested, "lane \(lane): \(a) and \(b) overlap without nesting")
                }
            }
        }
    }

    @Test("names, args and process names are escaped and come back unchanged")
    func escaping() throws {
        let weird = "quote \" backslash \\ newline \n tab \t bell \u{07} sep \u{2028} 🙂 </script>"
        let spans = [SpanEvent(rank: 3, name: weird, start: 0, duration: 1, args: [weird: weird, "b": "2"])]
        let trace = try ParsedTrace(ChromeTrace.render(spans, processName: { "worker \($0) \"\(weird)\"" }))
        let event = try #require(trace.complete.first)
        #expect(event["name"] as? String == weird)
        #expect((event["args"] as? [String: String]) == [weird: weird, "b": "2"])
        let process = try #require(trace.metadata.first { $0["name"] as? String == "process_name" })
        #expect((process["args"] as? [String: Any])?["name"] as? String == "worker 3 \"\(weird)\"")
    }

    @Test("spans with a time that is not finite are left out; a negative duration becomes 0; no spans is valid")
    func degenerate() throws {
        let spans = [SpanEvent(rank: 0, name: "ok", start: 1, duration: -0.5),
                     SpanEvent(rank: 0, name: "nan", start: .nan, duration: 1),
                     SpanEvent(rank: 1, name: "inf", start: 1, duration: .infinity)]
        let json = ChromeTrace.render(spans)
        #expect(!json.lowercased().contains("nan") && !json.contains("inf\""))
        let trace = try ParsedTrace(json)
        #expect(trace.complete.count == 1 && trace.complete.first?["dur"] as? Double == 0)
        #expect(trace.metadata.filter { $0["name"] as? String == "process_name" }.count == 1)
        let empty = try ParsedTrace(ChromeTrace.render([]))
        #expect(empty.all.isEmpty)
    }

    @Test("the same spans give the same bytes")
    func deterministic() {
        let spans = (0..<4).flatMap { stepSpans(rank: $0, at: Double($0) * 0.001) }
        #expect(ChromeTrace.render(spans) == ChromeTrace.render(spans))
        #expect(ChromeTrace.render(spans) == ChromeTrace.render(spans.reversed()))
    }
}
