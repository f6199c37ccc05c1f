import Foundation

// MARK: - The report page

/// Writes a scaling sweep as one self-contained HTML page.
///
/// The page needs nothing from the network: the style is inline and the six charts
/// (speedup, efficiency, step breakdown, per-rank step-time distribution, memory per worker,
/// bus bandwidth) are inline SVG drawn here. It also has a summary table, the findings, and
/// the metric definitions of WORKLOADS.md. The markup is well-formed XML throughout, so
/// every chart can be cut out and opened on its own.
///
/// The same input always gives the same bytes. Values that are missing or not finite are
/// shown as "–" in text and left out of the charts, so no attribute ever says NaN or inf.
///
/// A small inline script marks the page when it has loaded: `data-charts-total` and
/// `data-charts-drawn` on `<body>` count the `<svg>` charts and those that drew a data mark
/// with a non-empty box, and `data-charts-empty` names the others (`scripts/check_report.sh`
/// reads them in headless Chromium).
///
/// ```swift
/// let html = HTMLReport.render(input)
/// try html.write(toFile: "scaling.html", atomically: true, encoding: .utf8)
/// ```
public enum HTMLReport {
    /// The page for `input`.
    public static func render(_ input: ReportInput) -> String { render([input], title: input.title) }

    /// One page with a section per input (one per workload of a sweep).
    public static func render(_ inputs: [ReportInput], title: String) -> String {
        var body = "", chartCount = 0
        for (index, input) in inputs.enumerated() {
            let (section, charts) = section(input, id: inputs.count == 1 ? "" : "-\(index + 1)", heading: inputs.count > 1)
            body += section
            chartCount += charts
        }
        return """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title>\(escape(title))</title>
        <style>
        \(stylesheet)
        </style>
        </head>
        <body data-charts="\(chartCount)">
        <header>
        <h1>\(escape(title))</h1>
        </header>

        """ + body + definitions + "<script>\n\(drawnCheckScript)\n</script>\n</body>\n</html>\n"
    }

    /// One workload's findings, charts and table; returns the HTML and its chart count.
    static func section(_ input: ReportInput, id: String, heading: Bool) -> (String, Int) {
        let points = input.points.sorted { $0.workers < $1.workers }
        var charts: [String] = []
        charts.append(figure(speedupChart(points, amdahl: input.amdahl),
                             caption: "Measured speedup against the ideal S(N) = N and the fitted Amdahl curve."))
        charts.append(figure(efficiencyChart(points),
                             caption: "Efficiency E(N) = S(N) / N; 100% is perfect scaling."))
        charts.append(figure(breakdownChart(points),
                             caption: "Where a step's time goes at each worker count (milliseconds, stacked)."))
        charts.append(figure(distributionChart(points),
                             caption: "Step times of every rank: spread within a rank shows noise, spread between ranks shows stragglers."))
        charts.append(figure(memoryChart(points),
                             caption: "Peak memory of one worker, by what holds it."))
        let bandwidth = input.busbw.filter { $0.bytes > 0 && $0.gbps.isFinite && $0.gbps >= 0 }.sorted { $0.bytes < $1.bytes }
        let chartCount = bandwidth.isEmpty ? 5 : 6
        if bandwidth.isEmpty {
            charts.append("<p class=\"note\">No communication sweep was given, so the bus-bandwidth chart is left out.</p>\n")
        } else {
            charts.append(figure(busbwChart(bandwidth),
                                 caption: "All-reduce bus bandwidth against message size, as nccl-tests reports it."))
        }

        let findings = input.findings.map { (text: $0, derived: false) }
            + derivedFindings(points, amdahl: input.amdahl, mode: input.mode).map { (text: $0, derived: true) }

        var html = "<section class=\"workload\" id=\"workload\(id)\">\n"
        if heading { html += "<h2>\(escape(input.title))</h2>\n" }
        html += "<p class=\"meta\">\(escape(modeDescription(input.mode, points: points)))</p>\n"
        html += "<section id=\"findings\(id)\">\n<h2>Findings</h2>\n"
        if findings.isEmpty {
            html += "<p class=\"note\">No findings.</p>\n"
        } else {
            html += "<ul>\n"
            for finding in findings {
                html += finding.derived
                    ? "<li class=\"derived\">\(escape(finding.text)) <span class=\"tag\">from the data</span></li>\n"
                    : "<li>\(escape(finding.text))</li>\n"
            }
            html += "</ul>\n"
        }
        html += "</section>\n<section id=\"charts\(id)\">\n<h2>Charts</h2>\n<div class=\"grid\">\n"
        html += charts.joined()
        html += "</div>\n</section>\n"
        html += summaryTable(points)
        html += "</section>\n"
        return (html, chartCount)
    }
}

// MARK: - Charts

extension HTMLReport {
    static let measuredColor = "#0072B2", fitColor = "#D55E00", idealColor = "#7a7a7a"

    static let breakdownLayers: [Layer] = [
        Layer(key: "data", label: "data wait", color: "#E69F00"),
        Layer(key: "forward", label: "forward", color: "#56B4E9"),
        Layer(key: "backward", label: "backward", color: "#0072B2"),
        Layer(key: "comm_exposed", label: "exposed communication", color: "#D55E00"),
        Layer(key: "optimizer", label: "optimizer", color: "#009E73"),
        Layer(key: "other", label: "other", color: "#999999"),
    ]
    static let memoryLayers: [Layer] = [
        Layer(key: "params", label: "parameters", color: "#0072B2"),
        Layer(key: "grads", label: "gradients", color: "#56B4E9"),
        Layer(key: "optimizer", label: "optimizer state", color: "#009E73"),
        Layer(key: "activations", label: "activations", color: "#E69F00"),
        Layer(key: "comm_buffers", label: "communication buffers", color: "#D55E00"),
    ]
    static let extraColors = ["#CC79A7", "#F0E442", "#332288", "#882255", "#44AA99", "#117733"]

    /// The known layers, then any other keys of `keys` sorted by name, with their own colours.
    static func layers(known: [Layer], keys: Set<String>) -> [Layer] {
        let knownKeys = Set(known.map(\.key))
        let extras = keys.subtracting(knownKeys).sorted().enumerated().map { index, key in
            Layer(key: "extra", label: key, color: extraColors[index % extraColors.count])
        }
        return known + extras
    }

    /// Worker counts go on a log₂ axis when they span 8× or more.
    static func workersOnLog2(_ points: [ReportPoint]) -> Bool {
        guard let first = points.first?.workers, let last = points.last?.workers, first > 0 else { return false }
        return Double(last) / Double(first) >= 8
    }

    static func workersAxis(_ points: [ReportPoint]) -> LineAxis {
        LineAxis(label: "workers N", log2: workersOnLog2(points), includeZero: true, integer: true,
                 logLabel: { fixed($0, decimals: $0 < 1 ? 2 : 0) })
    }

    static func speedupChart(_ points: [ReportPoint], amdahl: (p: Double, predicted: [(workers: Int, speedup: Double)])?) -> String {
        let log = workersOnLog2(points)
        var series = [LineSeries(
            name: "measured", color: measuredColor, role: "measured",
            points: points.map { p in
                (Double(p.workers), p.speedup, "\(p.workers) workers: speedup \(number(p.speedup))×, efficiency \(percent(p.efficiency))")
            })]
        if let amdahl {
            let label = amdahl.p.isFinite ? "Amdahl fit, p = \(fixed(amdahl.p, decimals: 3))" : "Amdahl fit"
            let curve = amdahl.predicted.sorted { $0.workers < $1.workers }
            series.append(LineSeries(name: label, color: fitColor, role: "amdahl",
                                     points: curve.map { (Double($0.workers), $0.speedup, nil) }, markers: false))
        }
        return lineChart(
            id: "speedup", title: "Speedup", description: "Speedup S(N) against the number of workers N, with the ideal line S = N"
                + (amdahl == nil ? "." : " and the fitted Amdahl curve."),
            x: workersAxis(points),
            y: LineAxis(label: "speedup S(N)", log2: log, includeZero: true, atLeast: 1),
            series: series,
            reference: { x in
                let samples = (0...48).map { x.value(atPixel: x.from + (x.to - x.from) * Double($0) / 48) }
                return [LineSeries(name: "ideal, S = N", color: idealColor, role: "ideal",
                                   points: samples.map { ($0, $0, nil) }, dashed: true, markers: false)]
            },
            emptyNote: "no speedup measured")
    }

    static func efficiencyChart(_ points: [ReportPoint]) -> String {
        lineChart(
            id: "efficiency", title: "Efficiency", description: "Efficiency E(N) = S(N) / N in percent against the number of workers N.",
            x: workersAxis(points),
            y: LineAxis(label: "efficiency E(N)", includeZero: true, atLeast: 100,
                        tickLabel: { fixed($0, decimals: Int($1)) + "%" }),
            series: [LineSeries(name: "measured", color: measuredColor, role: "measured",
                                points: points.map { p in
                                    (Double(p.workers), p.efficiency * 100,
                                     "\(p.workers) workers: efficiency \(percent(p.efficiency))")
                                })],
            reference: { x in
                [LineSeries(name: "ideal, 100%", color: idealColor, role: "ideal",
                            points: [(x.value(atPixel: x.from), 100, nil), (x.value(atPixel: x.to), 100, nil)],
                            dashed: true, markers: false)]
            },
            emptyNote: "no efficiency measured")
    }

    static func breakdownChart(_ points: [ReportPoint]) -> String {
        let layers = layers(known: breakdownLayers, keys: Set(points.flatMap { $0.breakdownMs.keys }))
        let present = layers.filter { layer in points.contains { ($0.breakdownMs[layerKey(layer)] ?? 0) > 0 } }
        let shown = present.isEmpty ? Array(layers.prefix(6)) : present
        return stackedBarChart(
            id: "breakdown", title: "Step breakdown", description: "Time of one step in milliseconds per worker count, split into its parts.",
            categories: points.map { "\($0.workers)" }, xLabel: "workers N", yLabel: "time per step (ms)", layers: shown,
            values: points.map { p in shown.map { p.breakdownMs[layerKey($0)] ?? .nan } },
            format: { "\(number($0)) ms" }, emptyNote: "no step breakdown measured")
    }

    static func distributionChart(_ points: [ReportPoint]) -> String {
        distributionChart(
            id: "distribution", title: "Step time per rank",
            description: "Distribution of step times in milliseconds per worker count, with each rank's median.",
            categories: points.map { "\($0.workers)" }, xLabel: "workers N", yLabel: "step time (ms)",
            samples: points.map(\.perRankStepMs), emptyNote: "no per-rank step times measured")
    }

    static func memoryChart(_ points: [ReportPoint]) -> String {
        let layers = layers(known: memoryLayers, keys: Set(points.flatMap { $0.memoryBytes.keys }))
        let present = layers.filter { layer in points.contains { ($0.memoryBytes[layerKey(layer)] ?? 0) > 0 } }
        let shown = present.isEmpty ? memoryLayers : present
        let totals = points.map { p in shown.reduce(0.0) { $0 + max(0, Double(p.memoryBytes[layerKey($1)] ?? 0)) } }
        let unit = byteUnit(for: totals.max() ?? 0)
        return stackedBarChart(
            id: "memory", title: "Memory per worker", description: "Peak memory of one worker in \(unit.name) per worker count, by what holds it.",
            categories: points.map { "\($0.workers)" }, xLabel: "workers N", yLabel: "peak memory per worker (\(unit.name))",
            layers: shown,
            values: points.map { p in shown.map { layer in p.memoryBytes[layerKey(layer)].map { Double($0) / unit.scale } ?? .nan } },
            format: { "\(number($0)) \(unit.name)" }, emptyNote: "no memory measured")
    }

    static func busbwChart(_ bandwidth: [(bytes: Int, gbps: Double)]) -> String {
        lineChart(
            id: "busbw", title: "Bus bandwidth", description: "All-reduce bus bandwidth in GB/s against message size in bytes (log₂ axis).",
            x: LineAxis(label: "message size (log₂ scale)", log2: true, logLabel: { bytes($0) }),
            y: LineAxis(label: "bus bandwidth (GB/s)", includeZero: true),
            series: [LineSeries(name: "busbw", color: measuredColor, role: "measured",
                                points: bandwidth.map { (Double($0.bytes), $0.gbps, "\(bytes(Double($0.bytes))): \(number($0.gbps)) GB/s") })],
            emptyNote: "no bandwidth measured")
    }

    /// The dictionary key of a layer: its own key, or for an extra layer its label.
    static func layerKey(_ layer: Layer) -> String { layer.key == "extra" ? layer.label : layer.key }

    static func figure(_ svg: String, caption: String) -> String {
        "<figure>\n\(svg)<figcaption>\(escape(caption))</figcaption>\n</figure>\n"
    }
}

// MARK: - Text

extension HTMLReport {
    static func modeDescription(_ mode: String, points: [ReportPoint]) -> String {
        let kind: String
        switch mode.lowercased() {
        case "weak": kind = "Weak scaling: batch per worker fixed, speedup S(N) = throughput(N) / throughput(1)"
        case "strong": kind = "Strong scaling: global batch fixed, speedup S(N) = step time(1) / step time(N)"
        default: kind = "Scaling mode “\(mode)”"
        }
        let counts = points.map(\.workers)
        let span: String
        switch counts.count {
        case 0: span = "no worker counts"
        case 1: span = "1 worker count (\(counts[0]))"
        default: span = "\(counts.count) worker counts (\(counts.map(String.init).joined(separator: ", ")))"
        }
        return kind + " · " + span
    }

    /// Sentences the report can say from the numbers alone.
    static func derivedFindings(_ points: [ReportPoint], amdahl: (p: Double, predicted: [(workers: Int, speedup: Double)])?,
                                mode: String) -> [String] {
        var out: [String] = []
        if points.isEmpty { return ["No measurements were given."] }
        if points.count == 1 {
            out.append("Only one worker count was measured, so there is nothing to say about scaling yet.")
        }
        if let last = points.last(where: { $0.workers > 1 && $0.speedup.isFinite && $0.efficiency.isFinite }) {
            out.append("At \(last.workers) workers the speedup is \(number(last.speedup))× and the efficiency \(percent(last.efficiency)).")
        }
        if let p = amdahl?.p, p.isFinite, p > 0, p < 1 {
            out.append("The Amdahl fit gives a parallel fraction p = \(fixed(p, decimals: 3)): however many workers are added, "
                       + "the speedup cannot exceed 1 / (1 − p) = \(number(1 / (1 - p)))×.")
        }
        if let last = points.last(where: { p in
            let total = p.breakdownMs.values.filter { $0.isFinite && $0 > 0 }.reduce(0, +)
            return total > 0 && (p.breakdownMs["comm_exposed"] ?? .nan).isFinite
        }) {
            let total = last.breakdownMs.values.filter { $0.isFinite && $0 > 0 }.reduce(0, +)
            let comm = max(0, last.breakdownMs["comm_exposed"] ?? 0)
            out.append("Exposed communication takes \(percent(comm / total)) of the step at \(last.workers) workers "
                       + "(\(number(comm)) ms of \(number(total)) ms).")
        }
        // Spread between ranks: the slowest rank's median step against the mean of the medians.
        var worst: (workers: Int, spread: Double, slowest: Double, mean: Double)?
        var anyMultiRank = false
        for p in points {
            let medians = p.perRankStepMs.map { $0.filter(\.isFinite).sorted() }.filter { !$0.isEmpty }.map { quantile($0, 0.5) }
            guard medians.count > 1 else { continue }
            anyMultiRank = true
            let mean = medians.reduce(0, +) / Double(medians.count)
            guard let slowest = medians.max(), mean > 0 else { continue }
            let spread = slowest / mean - 1
            if spread.isFinite, spread > (worst?.spread ?? -1) { worst = (p.workers, spread, slowest, mean) }
        }
        if let worst, worst.spread > 0.05 {
            out.append("At \(worst.workers) workers the slowest rank's median step is \(percent(worst.spread)) above the mean over ranks "
                       + "(\(number(worst.slowest)) ms against \(number(worst.mean)) ms): look for a straggler or uneven work.")
        } else if anyMultiRank, worst != nil {
            out.append("Ranks are balanced: every rank's median step is within 5% of the mean over ranks at every worker count.")
        }
        // Noise between repeats.
        var noisiest: (workers: Int, range: Double)?
        for p in points where p.throughputMedian.isFinite && p.throughputMedian > 0 {
            let range = (p.throughputMax - p.throughputMin) / p.throughputMedian
            if range.isFinite, range > (noisiest?.range ?? 0) { noisiest = (p.workers, range) }
        }
        if let noisiest, noisiest.range > 0.1 {
            out.append("Throughput varied by up to \(percent(noisiest.range)) of its median between repeats (at \(noisiest.workers) workers); "
                       + "treat smaller differences as noise.")
        }
        return out
    }

    static func summaryTable(_ points: [ReportPoint]) -> String {
        var html = """
        <section id="summary">
        <h2>Summary</h2>
        <table>
        <thead><tr><th>workers</th><th>throughput, median (samples/s)</th><th>range over repeats</th><th>speedup</th>\
        <th>efficiency</th><th>step (ms)</th><th>exposed comm. (ms)</th><th>ranks</th><th>median step per rank (ms)</th>\
        <th>memory per worker</th></tr></thead>
        <tbody>

        """
        for p in points {
            let parts = p.breakdownMs.values.filter { $0.isFinite && $0 > 0 }
            let step = parts.isEmpty ? Double.nan : parts.reduce(0, +)
            let medians = p.perRankStepMs.map { $0.filter(\.isFinite).sorted() }.filter { !$0.isEmpty }.map { quantile($0, 0.5) }
            let rankText = medians.isEmpty ? "–"
                : medians.count == 1 ? number(medians[0])
                : "\(number(medians.min()!)) – \(number(medians.max()!))"
            let memory = p.memoryBytes.values.filter { $0 > 0 }
            let cells = [
                "\(p.workers)", number(p.throughputMedian),
                "\(number(p.throughputMin)) – \(number(p.throughputMax))",
                p.speedup.isFinite ? number(p.speedup) + "×" : "–", percent(p.efficiency),
                number(step), number(p.breakdownMs["comm_exposed"] ?? .nan), "\(p.perRankStepMs.count)", rankText,
                memory.isEmpty ? "–" : bytes(Double(memory.reduce(0, &+))),
            ]
            html += "<tr>" + cells.map { "<td>\(escape($0))</td>" }.joined() + "</tr>\n"
        }
        if points.isEmpty { html += "<tr><td colspan=\"10\">no measurements</td></tr>\n" }
        html += "</tbody>\n</table>\n</section>\n"
        return html
    }

    static let definitions = """
    <section id="definitions">
    <h2>Reading this report</h2>
    <dl>
    <dt>throughput</dt><dd>samples per second over the timed steps, all workers together.</dd>
    <dt>speedup S(N)</dt><dd>weak scaling (batch per worker fixed): throughput(N) / throughput(1); strong scaling (global batch fixed): step time(1) / step time(N).</dd>
    <dt>efficiency E(N)</dt><dd>S(N) / N.</dd>
    <dt>Amdahl fit</dt><dd>S = 1 / ((1 − p) + p / N) fitted over the sweep; p is the parallel fraction and 1 / (1 − p) the most speedup any number of workers can give.</dd>
    <dt>exposed communication</dt><dd>communication time not hidden under compute.</dd>
    <dt>busbw</dt><dd>as nccl-tests: all-reduce algorithm bandwidth × 2(N − 1) / N.</dd>
    <dt>memory per worker</dt><dd>peak bytes, split into parameters, gradients, optimizer state, activations and communication buffers.</dd>
    </dl>
    </section>

    """

    static let stylesheet = """
    :root { color-scheme: light; }
    body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1360px; padding: 16px 24px 48px; color: #1a1a1a; background: #fafafa; line-height: 1.45; }
    h1 { font-size: 1.6rem; margin: 0.4em 0 0.1em; }
    h2 { font-size: 1.2rem; margin: 1.6em 0 0.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
    .meta { color: #555; margin: 0; }
    .note { color: #666; font-style: italic; }
    .tag { font-size: 0.75em; color: #666; border: 1px solid #ccc; border-radius: 3px; padding: 0 4px; margin-left: 4px; white-space: nowrap; }
    .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
    figure { margin: 0; background: #fff; border: 1px solid #e2e2e2; border-radius: 6px; padding: 8px; }
    figure svg { width: 100%; height: auto; display: block; }
    figcaption { color: #555; font-size: 0.9em; padding: 4px 8px 2px; }
    table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
    th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
    th { background: #f0f0f0; font-weight: 600; }
    dt { font-weight: 600; margin-top: 0.4em; }
    dd { margin-left: 1.5em; }
    """

    /// Counts the charts and those that drew a data mark with a non-empty box, onto `<body>`.
    /// Written without `<` and `&` so that the page stays well-formed XML.
    static let drawnCheckScript = """
    (function () {
      function drawn(svg) {
        var box = svg.getBoundingClientRect();
        if (!(box.width > 0) || !(box.height > 0)) return false;
        var marks = svg.querySelectorAll('.mark');
        for (var i = 0; marks.length > i; i++) {
          var b = marks[i].getBBox();
          if (b.width > 0 || b.height > 0) return true;
        }
        return false;
      }
      function count() {
        var charts = document.querySelectorAll('svg');
        var n = 0, empty = [];
        for (var i = 0; charts.length > i; i++) { if (drawn(charts[i])) n++; else empty.push(charts[i].id); }
        document.body.setAttribute('data-charts-total', String(charts.length));
        document.body.setAttribute('data-charts-drawn', String(n));
        document.body.setAttribute('data-charts-empty', empty.join(' '));
      }
      if (document.readyState === 'complete') count(); else window.addEventListener('load', count);
    })();
    """
}
