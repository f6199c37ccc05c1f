import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import TandemScale

// MARK: - Inputs

/// One labelled report input, for sweeps that say which input failed.
struct ReportCase: CustomTestStringConvertible, Sendable {
    var label: String
    var input: ReportInput
    var testDescription: String { label }

    /// A four-point weak-scaling sweep with everything filled in, deterministic.
    static func sample(workers: [Int] = [1, 2, 4, 8], busbw: Bool = true, amdahl: Bool = true) -> ReportInput {
        let p = 0.95
        let points = workers.map { n -> ReportPoint in
            let amdahl: Double = 1 / ((1 - p) + p / Double(n))
            let speedup: Double = amdahl * (1 + 0.01 * Double(n % 3))
            let step: Double = 20.0 + 1.5 * log2(Double(n))
            let ranks: [[Double]] = (0..<n).map { rank in
                let straggle: Double = rank == n - 1 && n > 1 ? 2.5 : 0
                return (0..<12).map { (i: Int) -> Double in
                    let wobble = Double((i * 7 + rank * 3) % 11)
                    return step * (1 + 0.004 * wobble) + straggle
                }
            }
            let comm: Double = n == 1 ? 0 : 0.4 * Double(n)
            let breakdown: [String: Double] = ["data": 0.1, "forward": 6.0, "backward": 12.1, "comm_exposed": comm,
                                               "optimizer": 1.2, "other": 0.3]
            let buffers = n == 1 ? 0 : 7_454_760
            return ReportPoint(
                workers: n, throughputMedian: 6264 * speedup, throughputMin: 6100 * speedup, throughputMax: 6400 * speedup,
                speedup: speedup, efficiency: speedup / Double(n),
                breakdownMs: breakdown, perRankStepMs: ranks,
                memoryBytes: ["params": 7_454_760, "grads": 7_454_760, "optimizer": 7_454_760, "activations": 1_200_000,
                              "comm_buffers": buffers])
        }
        let predicted = workers.map { (workers: $0, speedup: 1 / ((1 - p) + p / Double($0))) }
        return ReportInput(
            title: "mlp · threads backend · 2-core EPYC", mode: "weak", points: points,
            amdahl: amdahl ? (p: p, predicted: predicted) : nil,
            busbw: busbw ? (10...26).map { (bytes: 1 << $0, gbps: 9.1 * Double($0 - 9) / 17) } : [],
            findings: ["Communication is small next to compute at every worker count."])
    }

    static let all: [ReportCase] = [
        ReportCase(label: "full sample", input: sample()),
        ReportCase(label: "no busbw, no fit", input: sample(busbw: false, amdahl: false)),
        ReportCase(label: "wide sweep 1…64 on log axes", input: sample(workers: [1, 2, 4, 8, 16, 32, 64])),
        ReportCase(label: "uneven worker counts 1, 3, 6", input: sample(workers: [1, 3, 6])),
        ReportCase(label: "one point", input: sample(workers: [1])),
        ReportCase(label: "no points", input: ReportInput(title: "empty", mode: "strong", points: [])),
        ReportCase(label: "all zeros", input: ReportInput(
            title: "zeros", mode: "weak",
            points: [1, 2].map { ReportPoint(workers: $0, throughputMedian: 0, throughputMin: 0, throughputMax: 0, speedup: 0,
                                             efficiency: 0, breakdownMs: ["forward": 0], perRankStepMs: [[0, 0], [0]],
                                             memoryBytes: ["params": 0]) },
            amdahl: (p: 0, predicted: [(1, 0), (2, 0)]), busbw: [(bytes: 1024, gbps: 0)])),
        ReportCase(label: "NaN and infinities everywhere", input: ReportInput(
            title: "nan", mode: "weak",
            points: [1, 2, 4].map { ReportPoint(workers: $0, throughputMedian: .nan, throughputMin: -.infinity, throughputMax: .infinity,
                                                speedup: $0 == 2 ? .nan : Double($0), efficiency: .infinity,
                                                breakdownMs: ["forward": .nan, "backward": .infinity, "other": -1],
                                                perRankStepMs: [[.nan, 1, .infinity], [], [-.infinity]],
                                                memoryBytes: ["params": -5, "activations": Int.max]) },
            amdahl: (p: .nan, predicted: [(1, .nan), (2, .infinity), (4, 3)]),
            busbw: [(bytes: 0, gbps: 1), (bytes: -4, gbps: .nan), (bytes: 4096, gbps: .infinity)])),
        ReportCase(label: "hostile text and odd keys", input: ReportInput(
            title: "<b>\"quoted\" & 'apos'</b>\u{07}", mode: "<i>strong</i>",
            points: [ReportPoint(workers: 2, throughputMedian: 1e300, throughputMin: 1e-300, throughputMax: 1e308, speedup: -3,
                                 efficiency: -1.5, breakdownMs: ["<script>": 4, "infeed & nan": 2, "forward": 1e308],
                                 perRankStepMs: [[1e308, -1e308]], memoryBytes: ["<x y=\"1\">": 1 << 40])],
            busbw: [(bytes: Int.max, gbps: 1e308), (bytes: 1, gbps: 0)],
            findings: ["</li><script>alert('x')</script>", "]]> ends CDATA & <!-- a comment -->"])),
    ]
}

// MARK: - XML checks

/// Parses text as XML, collecting every attribute and the first error.
final class XMLCheck: NSObject, XMLParserDelegate {
    private(set) var attributes: [(element: String, name: String, value: String)] = []
    private(set) var elements: [String] = []
    private(set) var error: String?

    static func parse(_ text: String) -> XMLCheck {
        let check = XMLCheck()
        let parser = XMLParser(data: Data(text.utf8))
        parser.delegate = check
        if !parser.parse() {
            check.error = check.error ?? parser.parserError.map { "\($0)" } ?? "unknown error"
            check.error! += " (line \(parser.lineNumber), column \(parser.columnNumber))"
        }
        return check
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                attributes attributeDict: [String: String] = [:]) {
        elements.append(elementName)
        for key in attributeDict.keys.sorted() { attributes.append((elementName, key, attributeDict[key]!)) }
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
        if error == nil { error = "\(parseError)" }
    }
}

/// The `<svg>…</svg>` fragments of a page, in order.
func svgFragments(_ html: String) -> [String] {
    var out: [String] = []
    var rest = html[...]
    while let open = rest.range(of: "<svg "), let close = rest.range(of: "</svg>", range: open.upperBound..<rest.endIndex) {
        out.append(String(rest[open.lowerBound..<close.upperBound]))
        rest = rest[close.upperBound...]
    }
    return out
}

func occurrences(of needle: String, in text: String) -> Int {
    text.components(separatedBy: needle).count - 1
}

// MARK: - Report

@Suite("HTMLReport")
struct ReportTests {
    @Test("the page and each chart are well-formed XML with no NaN or inf in any attribute", arguments: ReportCase.all)
    func wellFormed(_ c: ReportCase) throws {
        let html = HTMLReport.render(c.input)
        let page = XMLCheck.parse(html)
        #expect(page.error == nil, "the page: \(page.error ?? "")")
        let charts = svgFragments(html)
        #expect(!charts.isEmpty)
        for (index, svg) in charts.enumerated() {
            let check = XMLCheck.parse(svg)
            #expect(check.error == nil, "chart \(index): \(check.error ?? "")")
            #expect(check.elements.first == "svg" && check.elements.dropFirst().first == "title", "chart \(index) opens with <title>")
        }
        for attribute in page.attributes {
            let value = attribute.value.lowercased()
            #expect(!value.contains("nan") && !value.contains("inf"),
                    "<\(attribute.element) \(attribute.name)=\"\(attribute.value)\">")
        }
    }

    @Test("six charts, or five and a note when there is no usable bandwidth sweep", arguments: ReportCase.all)
    func chartCount(_ c: ReportCase) {
        let html = HTMLReport.render(c.input)
        let usable = c.input.busbw.contains { $0.bytes > 0 && $0.gbps.isFinite && $0.gbps >= 0 }
        let expected = usable ? 6 : 5
        #expect(occurrences(of: "<svg ", in: html) == expected)
        #expect(svgFragments(html).count == expected)
        #expect(html.contains("data-charts=\"\(expected)\""))
        #expect(html.contains("bus-bandwidth chart is left out") == !usable)
        for id in ["speedup", "efficiency", "breakdown", "distribution", "memory"] + (usable ? ["busbw"] : []) {
            #expect(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"\(id)\""), "chart \(id)")
        }
    }

    @Test("every chart has a title, both axes with ticks and labels, and a legend")
    func chartAnatomy() {
        for svg in svgFragments(HTMLReport.render(ReportCase.sample())) {
            let check = XMLCheck.parse(svg)
            let classes = check.attributes.filter { $0.name == "class" }.map(\.value)
            #expect(classes.contains("axis y") && classes.contains("axis x") && classes.contains("ticks x"))
            #expect(check.elements.filter { $0 == "text" }.count >= 8, "tick labels, axis titles, legend")
            #expect(check.elements.contains("title") && check.elements.contains("desc"))
            #expect(classes.contains { $0.hasSuffix(" mark") || $0 == "mark" || $0.contains(" mark ") }, "a data mark")
        }
    }

    @Test("the speedup chart has the ideal line, and the Amdahl curve exactly when a fit is given")
    func speedupLines() throws {
        let with = try #require(svgFragments(HTMLReport.render(ReportCase.sample())).first)
        #expect(with.contains("class=\"series ideal\"") && with.contains("class=\"series amdahl mark\""))
        #expect(with.contains("Amdahl fit, p = 0.950"))
        let without = try #require(svgFragments(HTMLReport.render(ReportCase.sample(amdahl: false))).first)
        #expect(without.contains("class=\"series ideal\"") && !without.contains("amdahl"))
    }

    @Test("text from the input is escaped: a <script> in a finding stays text")
    func escaping() {
        let input = ReportCase.all.first { $0.label == "hostile text and odd keys" }!.input
        let html = HTMLReport.render(input)
        #expect(occurrences(of: "<script", in: html) == 1, "only the report's own script")
        #expect(html.contains("&lt;/li&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
        #expect(html.contains("<title>&lt;b&gt;&quot;quoted&quot; &amp; &#39;apos&#39;&lt;/b&gt;\u{FFFD}</title>"))
        #expect(html.contains("]]&gt; ends CDATA &amp; &lt;!-- a comment --&gt;"))
        #expect(!html.contains("<b>") && !html.contains("<i>") && !html.contains("\u{07}"))
        #expect(html.contains("&lt;x y=&quot;1&quot;&gt;"), "a memory key")
    }

    @Test("the page loads nothing from the network")
    func selfContained() {
        let html = HTMLReport.render(ReportCase.sample())
        let withoutNamespace = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
        #expect(!withoutNamespace.contains("http:") && !withoutNamespace.contains("https:") && !withoutNamespace.contains("//cdn"))
        #expect(!html.contains("<link") && !html.contains("src=") && !html.contains("@import") && !html.contains("<img"))
        #expect(occurrences(of: "url(", in: html) == occurrences(of: "url(#", in: html))
    }

    @Test("the same input gives the same bytes, whatever the dictionaries' order")
    func deterministic() {
        var shuffled = ReportCase.sample()
        for i in shuffled.points.indices {
            shuffled.points[i].breakdownMs = Dictionary(uniqueKeysWithValues: shuffled.points[i].breakdownMs.sorted { $0.key > $1.key })
            shuffled.points[i].memoryBytes = Dictionary(uniqueKeysWithValues: shuffled.points[i].memoryBytes.sorted { $0.key > $1.key })
        }
        shuffled.points.reverse()
        #expect(HTMLReport.render(ReportCase.sample()) == HTMLReport.render(ReportCase.sample()))
        #expect(HTMLReport.render(shuffled) == HTMLReport.render(ReportCase.sample()))
    }

    @Test("the summary has one row per point and the findings list keeps the given ones first")
    func tableAndFindings() {
        let input = ReportCase.sample()
        let html = HTMLReport.render(input)
        #expect(occurrences(of: "<tr><td>", in: html) == input.points.count)
        #expect(html.contains("<tr><td>8</td><td>"))
        let given = html.range(of: "<li>Communication is small")
        let derived = html.range(of: "<li class=\"derived\">")
        #expect(given != nil && derived != nil && given!.lowerBound < derived!.lowerBound)
        #expect(html.contains("the speedup cannot exceed 1 / (1 − p) = 20×."))
        #expect(html.contains("At 8 workers the slowest rank"))
    }

    @Test("derived findings say when there is too little data")
    func derivedFindingsDegenerate() {
        #expect(HTMLReport.derivedFindings([], amdahl: nil, mode: "weak") == ["No measurements were given."])
        let one = HTMLReport.derivedFindings(ReportCase.sample(workers: [1]).points, amdahl: nil, mode: "weak")
        #expect(one.first?.hasPrefix("Only one worker count") == true)
    }

    @Test("worker counts spanning 8× or more go on log₂ axes")
    func logAxes() throws {
        let wide = try #require(svgFragments(HTMLReport.render(ReportCase.sample(workers: [1, 2, 4, 8, 16, 32, 64]))).first)
        for label in ["1", "4", "16", "64"] { #expect(wide.contains(">\(label)</text>"), "tick \(label)") }
        #expect(!HTMLReport.workersOnLog2(ReportCase.sample(workers: [1, 2, 4]).points))
        #expect(HTMLReport.workersOnLog2(ReportCase.sample(workers: [2, 16]).points))
    }
}

// MARK: - Formatting and scales

extension ReportTests {
    @Suite("HTMLReport formatting")
    struct Formatting {
        @Test("numbers to about three significant figures", arguments: [
            (0.0, "0"), (0.0123, "0.0123"), (0.5, "0.5"), (1.234, "1.23"), (12.34, "12.3"), (6274.5, "6,275"),
            (-1234567.0, "-1,234,567"), (20.0, "20"), (0.00001234, "1.23e-05"), (1e300, "1.00e+300"), (Double.nan, "–"), (Double.infinity, "–"),
        ])
        func numbers(_ value: Double, _ text: String) {
            #expect(HTMLReport.number(value) == text)
        }

        @Test("percentages, bytes and coordinates")
        func units() {
            #expect(HTMLReport.percent(0.512) == "51%" && HTMLReport.percent(0.0512) == "5.1%" && HTMLReport.percent(.nan) == "–")
            #expect(HTMLReport.bytes(512) == "512 B" && HTMLReport.bytes(1536) == "1.5 KiB" && HTMLReport.bytes(7_454_760) == "7.11 MiB")
            #expect(HTMLReport.coordinate(1.005) == "1" || HTMLReport.coordinate(1.005) == "1.01")
            #expect(HTMLReport.coordinate(-0.001) == "0" && HTMLReport.coordinate(12.5) == "12.5" && HTMLReport.coordinate(3) == "3")
            #expect(HTMLReport.fixed(-0.0001, decimals: 2) == "0.00")
        }

        @Test("linear ticks are round steps covering the data", arguments: [[0.0, 7.3], [19.8, 21.3], [-3, 5], [0, 0], [42, 42], [1e-9, 3e-9]])
        func linearTicks(_ values: [Double]) {
            let scale = HTMLReport.Scale.linear(values, includeZero: false, from: 0, to: 100, label: HTMLReport.tickLabel)
            #expect(scale.low <= values.min()! && scale.high >= values.max()! && scale.low < scale.high)
            #expect((3...12).contains(scale.ticks.count), "\(scale.ticks.map(\.label))")
            let labels = scale.ticks.map(\.label)
            #expect(Set(labels).count == labels.count, "distinct labels \(labels)")
            for v in values { #expect(scale(v).map { (0...100).contains($0) } == true) }
        }

        @Test("log₂ ticks are powers of two; values that cannot be placed give nil")
        func log2Ticks() {
            let scale = HTMLReport.Scale.log2([1024, 67_108_864], from: 0, to: 100, label: { HTMLReport.bytes($0) })
            #expect(scale.ticks.allSatisfy { log2($0.value) == log2($0.value).rounded() })
            #expect(scale.ticks.first?.label == "4 KiB" && scale.ticks.count == 5, "every 3rd power of two from 2¹²")
            let workers = HTMLReport.Scale.log2([1, 64], from: 0, to: 100, pad: 0.25, label: { HTMLReport.number($0) })
            #expect(workers.ticks.map(\.label) == ["1", "2", "4", "8", "16", "32", "64"])
            #expect(scale(0) == nil && scale(-1) == nil && scale(.nan) == nil && scale(1024) == 0 && scale(67_108_864) == 100)
        }

        @Test("escaping leaves nothing XML would reject")
        func escapeText() {
            #expect(HTMLReport.escape("a<b>&\"'c") == "a&lt;b&gt;&amp;&quot;&#39;c")
            #expect(HTMLReport.escape("tab\tnl\nbell\u{07}del\u{7F}") == "tab\tnl\nbell\u{FFFD}del\u{FFFD}")
            #expect(HTMLReport.escape("µs · × ≥ 🙂") == "µs · × ≥ 🙂")
        }
    }
}

// MARK: - Headless browser

/// The browser check runs wherever a Chromium or Chrome is on the PATH (scripts/setup.sh,
/// run by the test command, installs one); `TANDEM_BROWSER_TESTS=0` turns it off.
let browserTestsEnabled: Bool = {
    guard ProcessInfo.processInfo.environment["TANDEM_BROWSER_TESTS"] != "0" else { return false }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].contains { name in
        path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}()
/// Where to keep the rendered sample reports for a look (`TANDEM_REPORT_DIR=/tmp/reports`).
let reportDirectory = ProcessInfo.processInfo.environment["TANDEM_REPORT_DIR"]

extension ReportTests {
    @Suite("HTMLReport in a browser")
    struct Browser {
        /// Runs scripts/check_report.sh on a rendered report: Chromium loads it with no console
        /// message and every chart draws. Installs Chromium with apt-get when it is missing.
        @Test("headless Chromium loads the report cleanly and every chart draws",
              .enabled(if: browserTestsEnabled, "no Chromium or Chrome on the PATH (scripts/setup.sh installs one), or TANDEM_BROWSER_TESTS=0"),
              .timeLimit(.minutes(10)),
              arguments: ["full sample", "no busbw, no fit", "wide sweep 1…64 on log axes", "uneven worker counts 1, 3, 6", "one point"])
        func chromium(_ label: String) throws {
            let input = try #require(ReportCase.all.first { $0.label == label }).input
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-report-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("report.html")
            try HTMLReport.render(input).write(to: file, atomically: true, encoding: .utf8)

            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = [root.appendingPathComponent("scripts/check_report.sh").path, file.path]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            print(output, terminator: "")
            #expect(process.terminationStatus == 0, "check_report.sh: \(output)")
            let charts = svgFragments(HTMLReport.render(input)).count
            #expect(output.contains("OK: \(charts)/\(charts) charts drew something"))
        }

        @Test("writes every sample report to $TANDEM_REPORT_DIR",
              .enabled(if: reportDirectory != nil, "set TANDEM_REPORT_DIR=DIR to keep the sample reports for a look"))
        func keep() throws {
            let directory = URL(fileURLWithPath: reportDirectory!)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for (index, c) in ReportCase.all.enumerated() {
                try HTMLReport.render(c.input).write(to: directory.appendingPathComponent("report-\(index).html"), atomically: true, encoding: .utf8)
            }
        }
    }
}
