import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

// MARK: - Helpers for `tandem scale`, `predict` and `compare`

/// A small sweep: mlp on 1 and 2 workers, 2 timed steps, no warm-up.
private let smallScale = ["scale", "--model", "mlp", "--workers", "1,2", "--steps", "2", "--warmup", "0"]

/// Parses text as XML, collecting attribute values and the first error.
private final class ScaleXMLCheck: NSObject, XMLParserDelegate {
    private(set) var attributes: [(element: String, name: String, value: String)] = []
    private(set) var error: String?

    static func parse(_ text: String) -> ScaleXMLCheck {
        let check = ScaleXMLCheck()
        let parser = XMLParser(data: Data(text.utf8))
        parser.delegate = check
        if !parser.parse() {
            check.error = (check.error ?? parser.parserError.map { "\($0)" } ?? "unknown error")
                + " (line \(parser.lineNumber), column \(parser.columnNumber))"
        }
        return check
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                attributes attributeDict: [String: String] = [:]) {
        for key in attributeDict.keys.sorted() { attributes.append((elementName, key, attributeDict[key]!)) }
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
        if error == nil { error = "\(parseError)" }
    }
}

/// One result line of the WORKLOADS.md schema, as a results file holds it.
private func resultLine(model: String = "mlp", engine: String = "tandem", workers: Int, samplesPerSecond: Double,
                        stepMs: Double) -> String {
    """
    {"engine": "\(engine)", "engine_version": "0.1.0", "model": "\(model)", "params": 1863690, "backend": "threads", \
    "device": "cpu", "device_name": "test", "workers": \(workers), "batch_per_worker": 64, "global_batch": \(64 * workers), \
    "precision": "fp32", "steps": 10, "warmup": 1, "seconds": 1.0, "samples_per_s": \(samplesPerSecond), \
    "step_ms": {"mean": \(stepMs), "median": \(stepMs), "p10": \(stepMs), "p90": \(stepMs)}, \
    "breakdown_ms": {"data": 0.1, "forward": 10.0, "backward": 20.0, "comm_exposed": 0.0, "optimizer": 2.0}, "loss": 2.3}
    """
}

/// The worker counts at the start of `predict`'s table rows (a number, then the step time).
private func predictedWorkers(_ stdout: String) -> [Int] {
    stdout.split(separator: "\n").compactMap { line -> Int? in
        let fields = line.split(separator: " ")
        guard fields.count == 6, fields[5].hasSuffix("%") else { return nil }
        return Int(fields[0])
    }
}

// MARK: - The sweep that works

@Suite("tandem scale, predict, compare")
struct ScaleCLITests {
    @Test("scale writes results.jsonl, report.html and trace.json, and prints the table; predict and compare read its results")
    func sweep() throws {
        let directory = try TemporaryDirectory(prefix: "tandem-scale")
        defer { directory.remove() }
        let out = directory.path("out")
        let outcome = try CLI.run(smallScale + ["--repeats", "2", "--out", out, "--quiet"], timeout: 180)
        try #require(outcome.exitedNormally && outcome.status == 0, "\(outcome)")

        // results.jsonl: one line per run, 2 worker counts × 2 repeats.
        let results = try String(contentsOfFile: out + "/results.jsonl", encoding: .utf8)
        let lines = results.split(separator: "\n")
        #expect(lines.count == 4, "\(results)")
        var workers: [Int] = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(object["engine"] as? String == "tandem")
            #expect(object["model"] as? String == "mlp")
            let throughput = try #require(object["samples_per_s"] as? Double, "\(line)")
            #expect(throughput > 0 && throughput.isFinite)
            let step = try #require(object["step_ms"] as? [String: Any], "\(line)")
            #expect((step["median"] as? Double).map { $0 > 0 } == true, "\(line)")
            workers.append(try #require(object["workers"] as? Int, "\(line)"))
        }
        #expect(workers.sorted() == [1, 1, 2, 2])

        // report.html: well-formed XML, every chart there, no NaN in any attribute.
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.components(separatedBy: "<svg").count - 1 >= 5)
        let page = ScaleXMLCheck.parse(html)
        #expect(page.error == nil, "report.html is not well-formed: \(page.error ?? "")")
        #expect(!page.attributes.isEmpty)
        for attribute in page.attributes {
            let value = attribute.value.lowercased()
            #expect(!value.contains("nan") && !value.contains("infinity"), "<\(attribute.element) \(attribute.name)=\"\(attribute.value)\">")
        }

        // trace.json: the traced run at 2 workers, one process per rank.
        let traceData = try Data(contentsOf: URL(fileURLWithPath: out + "/trace.json"))
        let trace = try #require(try JSONSerialization.jsonObject(with: traceData) as? [String: Any])
        let events = try #require(trace["traceEvents"] as? [[String: Any]])
        let processNames = events.filter { $0["ph"] as? String == "M" && $0["name"] as? String == "process_name" }
        #expect(processNames.count == 2)
        #expect(Set(processNames.compactMap { $0["pid"] as? Int }) == [0, 1])
        let complete = events.filter { $0["ph"] as? String == "X" }
        #expect(!complete.isEmpty)
        for event in complete {
            let pid = event["pid"] as? Int
            #expect(pid == 0 || pid == 1, "\(event)")
        }
        #expect(Set(complete.compactMap { $0["pid"] as? Int }) == [0, 1], "both ranks have spans")

        // stdout: the table, a row per worker count.
        let stdout = outcome.stdout
        #expect(stdout.contains("| model | workers | samples/s (min–max) | speedup | efficiency |"), "\(outcome)")
        #expect(stdout.contains("| mlp | 1 | "), "\(outcome)")
        #expect(stdout.contains("| mlp | 2 | "), "\(outcome)")
        #expect(outcome.stderr.isEmpty, "--quiet draws no progress bar: \(outcome)")

        // predict, calibrated on this sweep's one-worker run.
        let predict = try CLI.run(["predict", "--from", out + "/results.jsonl", "--model", "mlp", "--interconnect", "ib-ndr400",
                                   "--max", "64", "--at", "16"])
        #expect(predict.exitedNormally && predict.status == 0, "\(predict)")
        #expect(predictedWorkers(predict.stdout) == [1, 2, 4, 8, 16, 32, 64], "\(predict)")
        #expect(predict.stdout.contains("InfiniBand"), "\(predict)")
        #expect(predict.stdout.contains("knee:") || predict.stdout.contains("at 16 workers"), "\(predict)")

        // compare: the sweep against itself, ratios of 1.
        let copy = try directory.write("copy.jsonl", text: results)
        let compare = try CLI.run(["compare", out + "/results.jsonl", copy])
        #expect(compare.exitedNormally && compare.status == 0, "\(compare)")
        let rows = compare.stdout.split(separator: "\n").filter { $0.hasPrefix("| mlp |") }
        #expect(rows.count == 2, "\(compare)")
        #expect(rows.allSatisfy { $0.components(separatedBy: "1.00×").count - 1 == 2 }, "\(compare)")
    }

    // MARK: - Bad input

    struct BadScale: Sendable, CustomTestStringConvertible {
        var flags: [String]
        var words: [String]
        var testDescription: String { flags.joined(separator: " ") }
    }

    static let badScale: [BadScale] = [
        BadScale(flags: ["--model", "resnet"], words: ["--model", "'resnet'"]),
        BadScale(flags: ["--workers", "0"], words: ["--workers", "'0'"]),
        BadScale(flags: ["--workers", "1,x"], words: ["--workers", "'1,x'"]),
        BadScale(flags: ["--mode", "sideways"], words: ["--mode", "'sideways'"]),
        BadScale(flags: ["--backend", "carrier-pigeon"], words: ["--backend", "'carrier-pigeon'"]),
        BadScale(flags: ["--repeats", "0"], words: ["--repeats", "positive"]),
        // Global batch 5 × 4 = 20, which 3 workers cannot share evenly.
        BadScale(flags: ["--mode", "strong", "--workers", "3,4", "--batch", "5"], words: ["strong", "20", "3 workers", "unevenly"]),
    ]

    /// A directory holding an earlier sweep's results.jsonl and report.html.
    private func earlierSweep() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory(prefix: "tandem-scale-bad")
        try directory.write("results.jsonl", text: resultLine(workers: 1, samplesPerSecond: 1000, stepMs: 64) + "\n")
        try directory.write("report.html", text: "<!DOCTYPE html>\n<html><body><p>an earlier report</p></body></html>\n")
        try directory.write("existingfile", text: "not a directory\n")
        return directory
    }

    @Test("bad scale flags fail cleanly and leave an earlier sweep's files as they were", arguments: badScale)
    func badFlags(_ bad: BadScale) throws {
        let directory = try earlierSweep()
        defer { directory.remove() }
        var arguments = smallScale + ["--repeats", "1", "--out", directory.url.path, "--quiet"]
        let given = Set(bad.flags.filter { $0.hasPrefix("--") })
        // Drop the defaults that a bad flag replaces.
        var index = 0
        while index < arguments.count {
            if given.contains(arguments[index]) { arguments.removeSubrange(index...(index + 1)) } else { index += 1 }
        }
        try expectRefusal(arguments + bad.flags, in: directory, mentions: bad.words, save: false)
    }

    @Test("an --out under a regular file is refused before any work, and the earlier sweep stays")
    func unwritableOut() throws {
        let directory = try earlierSweep()
        defer { directory.remove() }
        let out = directory.path("existingfile") + "/sub"
        try expectRefusal(smallScale + ["--repeats", "1", "--out", out, "--quiet"], in: directory,
                          mentions: ["--out", "existingfile/sub"], save: false)
        #expect(try String(contentsOfFile: directory.path("existingfile"), encoding: .utf8) == "not a directory\n")
    }

    @Test("a strong sweep that cannot split its batch creates no --out directory")
    func strongLeavesNoDirectory() throws {
        let directory = try TemporaryDirectory(prefix: "tandem-scale-strong")
        defer { directory.remove() }
        let out = directory.path("never")
        let outcome = try CLI.run(smallScale + ["--mode", "strong", "--workers", "3,4", "--batch", "5", "--out", out, "--quiet"])
        expectCleanFailure(outcome, mentions: ["strong", "unevenly"])
        #expect(!FileManager.default.fileExists(atPath: out), "the failed run created \(out)")
    }

    // MARK: - compare

    @Test("compare prints a markdown table with ratio columns")
    func compare() throws {
        let directory = try TemporaryDirectory(prefix: "tandem-compare")
        defer { directory.remove() }
        let a = try directory.write("torch.jsonl", text: [
            resultLine(engine: "pytorch", workers: 1, samplesPerSecond: 1000, stepMs: 64),
            resultLine(engine: "pytorch", workers: 2, samplesPerSecond: 1600, stepMs: 80),
        ].joined(separator: "\n") + "\n")
        let b = try directory.write("tandem.jsonl", text: [
            resultLine(workers: 1, samplesPerSecond: 2000, stepMs: 32),
            resultLine(workers: 2, samplesPerSecond: 4000, stepMs: 32),
            resultLine(workers: 4, samplesPerSecond: 8000, stepMs: 32),
        ].joined(separator: "\n") + "\n")
        let outcome = try CLI.run(["compare", a, b])
        #expect(outcome.exitedNormally && outcome.status == 0, "\(outcome)")
        let lines = outcome.stdout.split(separator: "\n").map(String.init)
        let header = try #require(lines.first, "\(outcome)")
        #expect(header.hasPrefix("| model | workers | batch/worker |"), "\(outcome)")
        #expect(header.contains("| \(b)/\(a) |"), "a ratio column, B over A: \(outcome)")
        #expect(lines.dropFirst().first?.hasPrefix("| --- |") == true, "\(outcome)")
        #expect(lines.contains("| mlp | 1 | 64 | 1,000 | 2,000 | 2.00× | 64.00 | 32.00 | 0.50× |"), "\(outcome)")
        #expect(lines.contains("| mlp | 2 | 64 | 1,600 | 4,000 | 2.50× | 80.00 | 32.00 | 0.40× |"), "\(outcome)")
        #expect(outcome.stdout.contains("Only in \(b): mlp × 4 (batch 64)."), "\(outcome)")
    }

    @Test("compare refuses a file that is not the results schema, naming file and line")
    func compareBadFile() throws {
        let directory = try TemporaryDirectory(prefix: "tandem-compare-bad")
        defer { directory.remove() }
        let good = try directory.write("good.jsonl", text: resultLine(workers: 1, samplesPerSecond: 1000, stepMs: 64) + "\n")
        let bad = try directory.write("bad.jsonl", text: resultLine(workers: 1, samplesPerSecond: 1000, stepMs: 64)
                                      + "\n{\"hello\": \"world\"}\n")
        expectCleanFailure(try CLI.run(["compare", good, bad]), mentions: ["\(bad):2"])
        let notJSON = try directory.write("notes.txt", text: "# my notes\n")
        expectCleanFailure(try CLI.run(["compare", notJSON, good]), mentions: ["\(notJSON):1", "json"])
    }

    // MARK: - predict

    @Test("predict from a hand-written results file: rows 1…64, the knee or the answer at 16 workers")
    func predict() throws {
        let directory = try TemporaryDirectory(prefix: "tandem-predict")
        defer { directory.remove() }
        let file = try directory.write("runs.jsonl", text: [
            resultLine(model: "cnn", workers: 1, samplesPerSecond: 500, stepMs: 128),
            resultLine(workers: 2, samplesPerSecond: 1600, stepMs: 80),
            resultLine(workers: 1, samplesPerSecond: 1000, stepMs: 64),
        ].joined(separator: "\n") + "\n")
        let outcome = try CLI.run(["predict", "--from", file, "--model", "mlp", "--interconnect", "ib-ndr400", "--max", "64", "--at", "16"])
        #expect(outcome.exitedNormally && outcome.status == 0, "\(outcome)")
        #expect(outcome.stdout.hasPrefix("mlp, batch 64 per worker"), "the mlp run, not the first one: \(outcome)")
        #expect(predictedWorkers(outcome.stdout) == [1, 2, 4, 8, 16, 32, 64], "\(outcome)")
        #expect(outcome.stdout.contains("efficiency"), "\(outcome)")
        #expect(outcome.stdout.contains("knee:") || outcome.stdout.contains("at 16 workers"), "\(outcome)")
        #expect(outcome.stdout.contains("at 16 workers"), "--at 16 is answered: \(outcome)")
    }

    @Test("predict refuses an unknown interconnect and a file without a one-worker run")
    func predictErrors() throws {
        let directory = try TemporaryDirectory(prefix: "tandem-predict-bad")
        defer { directory.remove() }
        let runs = try directory.write("runs.jsonl", text: resultLine(workers: 1, samplesPerSecond: 1000, stepMs: 64) + "\n")
        expectCleanFailure(try CLI.run(["predict", "--from", runs, "--interconnect", "warp-drive"]),
                           mentions: ["--interconnect", "'warp-drive'", "ib-ndr400"])
        let wide = try directory.write("wide.jsonl", text: [
            resultLine(workers: 2, samplesPerSecond: 1600, stepMs: 80),
            resultLine(workers: 4, samplesPerSecond: 3000, stepMs: 85),
        ].joined(separator: "\n") + "\n")
        expectCleanFailure(try CLI.run(["predict", "--from", wide, "--interconnect", "ib-ndr400"]),
                           mentions: [wide, "no one-worker run"])
        expectCleanFailure(try CLI.run(["predict", "--from", runs, "--model", "gpt"]),
                           mentions: ["no one-worker run of gpt"])
    }
}
