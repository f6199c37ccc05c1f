import Foundation

// The charts of ``HTMLReport``: a tiny SVG writer, scales with "nice" ticks, and three
// chart shapes (lines, stacked bars, distributions). Every number that reaches an
// attribute goes through `coordinate(_:)`, so no attribute can say NaN or inf, and every
// text goes through `escape(_:)`, so each chart is well-formed XML on its own.

// MARK: - Writer

extension HTMLReport {
    /// Appends SVG elements to a string; attribute values and text are escaped here.
    struct SVGWriter {
        private(set) var text = ""
        private var depth = 0

        mutating func open(_ name: String, _ attributes: KeyValuePairs<String, String> = [:]) {
            line("<\(name)\(Self.attributes(attributes))>")
            depth += 1
        }

        mutating func close(_ name: String) {
            depth -= 1
            line("</\(name)>")
        }

        /// An element with optional text content and an optional `<title>` child (a tooltip).
        mutating func element(_ name: String, _ attributes: KeyValuePairs<String, String>,
                              text content: String? = nil, tooltip: String? = nil) {
            let head = "<\(name)\(Self.attributes(attributes))"
            switch (content, tooltip) {
            case (nil, nil): line(head + "/>")
            case (let content?, nil): line(head + ">" + HTMLReport.escape(content) + "</\(name)>")
            case (let content, let tooltip?):
                line(head + "><title>" + HTMLReport.escape(tooltip) + "</title>"
                     + HTMLReport.escape(content ?? "") + "</\(name)>")
            }
        }

        private mutating func line(_ s: String) {
            text += String(repeating: " ", count: max(0, depth)) + s + "\n"
        }

        private static func attributes(_ pairs: KeyValuePairs<String, String>) -> String {
            pairs.map { " \($0.key)=\"\(HTMLReport.escape($0.value))\"" }.joined()
        }
    }
}

// MARK: - Scales and ticks

extension HTMLReport {
    /// Maps values to pixels, linearly or on a log₂ scale, with labelled ticks.
    struct Scale {
        enum Kind { case linear, log2 }
        var kind: Kind
        /// The domain in scale space (log₂ of the value for `.log2`).
        var low: Double, high: Double
        var from: Double, to: Double
        var ticks: [(value: Double, label: String)]

        /// The pixel for `value`, or nil when it cannot be placed (not finite, or ≤ 0 on a log scale).
        func callAsFunction(_ value: Double) -> Double? {
            guard value.isFinite else { return nil }
            let v: Double
            switch kind {
            case .linear: v = value
            case .log2:
                guard value > 0 else { return nil }
                v = Foundation.log2(value)
            }
            let span = high - low
            let t = span > 0 ? (v - low) / span : 0.5
            let pixel = from + t * (to - from)
            return pixel.isFinite ? pixel : nil
        }

        /// The value at pixel `pixel` (inverse of `callAsFunction`).
        func value(atPixel pixel: Double) -> Double {
            let t = to != from ? (pixel - from) / (to - from) : 0
            let v = low + t * (high - low)
            return kind == .log2 ? Foundation.exp2(v) : v
        }

        /// A linear scale over `values` widened to round tick steps (1, 2 or 5 × 10ᵏ).
        static func linear(_ values: [Double], includeZero: Bool, integer: Bool = false, atLeast: Double? = nil,
                           from: Double, to: Double, label: (Double, Double) -> String) -> Scale {
            var finite = values.filter { $0.isFinite }.map { min(max($0, -1e300), 1e300) }
            if includeZero { finite.append(0) }
            if let atLeast { finite.append(atLeast) }
            var low = finite.min() ?? 0
            var high = finite.max() ?? 1
            if high == low {
                let pad = low == 0 ? 1 : abs(low) / 2
                low -= pad; high += pad
                if includeZero, low < 0, high > 0, values.allSatisfy({ !$0.isFinite || $0 >= 0 }) { low = 0 }
            }
            var step = niceStep((high - low) / 5)
            if integer { step = max(1, step.rounded(.up)) }
            low = (low / step).rounded(.down) * step
            high = (high / step).rounded(.up) * step
            if !low.isFinite || !high.isFinite || step <= 0 { low = -1e300; high = 1e300; step = 5e299 }
            let decimals = max(0, -Int(Foundation.log10(step).rounded(.down)))
            var ticks: [(Double, String)] = []
            var index = 0.0
            while index <= 50 {
                let tick = low + index * step
                if tick > high + step / 2 { break }
                ticks.append((tick, label(tick, Double(decimals))))
                index += 1
            }
            return Scale(kind: .linear, low: low, high: high, from: from, to: to, ticks: ticks)
        }

        /// A log₂ scale over the positive `values`, with ticks at powers of two.
        static func log2(_ values: [Double], from: Double, to: Double, pad: Double = 0,
                         label: (Double) -> String) -> Scale {
            let exponents = values.filter { $0.isFinite && $0 > 0 }.map { Foundation.log2($0) }
            var low = (exponents.min() ?? 0).rounded(.down)
            var high = (exponents.max() ?? 1).rounded(.up)
            if high == low { low -= 1; high += 1 }
            low -= pad; high += pad
            let stride = max(1.0, ((high - low) / 7).rounded(.up))
            var ticks: [(Double, String)] = []
            var e = (low / stride).rounded(.up) * stride   // multiples of the stride: 1 = 2⁰ is a tick when in range
            while e <= high, ticks.count < 64 {
                let value = Foundation.exp2(e)
                ticks.append((value, label(value)))
                e += stride
            }
            return Scale(kind: .log2, low: low, high: high, from: from, to: to, ticks: ticks)
        }

        /// 1, 2 or 5 × 10ᵏ, the smallest at least `rough`.
        static func niceStep(_ rough: Double) -> Double {
            guard rough.isFinite, rough > 0 else { return 1 }
            let power = Foundation.pow(10, Foundation.log10(rough).rounded(.down))
            let fraction = rough / power
            let nice: Double = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
            return nice * power
        }
    }

    /// Tick label for a linear tick with `decimals` decimals.
    static func tickLabel(_ value: Double, _ decimals: Double) -> String {
        fixed(value, decimals: Int(decimals))
    }
}

// MARK: - Frame, legend and axes

extension HTMLReport {
    /// One legend entry: a line (solid or dashed), a point, or a filled swatch.
    struct LegendEntry {
        enum Symbol { case line(dashed: Bool), point, swatch, box }
        var label: String
        var color: String
        var symbol: Symbol
    }

    /// The canvas of one chart: the title, the legend rows at the top, then the plot area.
    struct Frame {
        static let width = 640.0
        static let plotHeight = 250.0
        static let left = 64.0, right = 20.0, bottom = 50.0
        static let font = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

        var legendRows: [[(entry: LegendEntry, x: Double)]]
        var top: Double { 34 + Double(legendRows.count) * 18 + (legendRows.isEmpty ? 0 : 6) }
        var height: Double { top + Self.plotHeight + Self.bottom }
        var plotLeft: Double { Self.left }
        var plotRight: Double { Self.width - Self.right }
        var plotTop: Double { top }
        var plotBottom: Double { top + Self.plotHeight }

        init(legend: [LegendEntry]) {
            var rows: [[(entry: LegendEntry, x: Double)]] = []
            var row: [(entry: LegendEntry, x: Double)] = []
            var x = Self.left
            for entry in legend {
                let width = 28 + Double(entry.label.count) * 6.3 + 16
                if !row.isEmpty, x + width > Self.width - Self.right {
                    rows.append(row); row = []; x = Self.left
                }
                row.append((entry, x))
                x += width
            }
            if !row.isEmpty { rows.append(row) }
            legendRows = rows
        }
    }

    /// Opens the `<svg>` with its `<title>`, `<desc>`, visible title and legend.
    static func beginChart(_ svg: inout SVGWriter, id: String, title: String, description: String, frame: Frame) {
        let w = coordinate(Frame.width), h = coordinate(frame.height)
        svg.open("svg", ["xmlns": "http://www.w3.org/2000/svg", "class": "chart", "id": id,
                         "viewBox": "0 0 \(w) \(h)", "width": w, "height": h, "role": "img",
                         "aria-labelledby": "\(id)-title \(id)-desc",
                         "font-family": Frame.font, "font-size": "11"])
        svg.element("title", ["id": "\(id)-title"], text: title)
        svg.element("desc", ["id": "\(id)-desc"], text: description)
        svg.element("rect", ["x": "0", "y": "0", "width": w, "height": h, "fill": "#ffffff"])
        svg.element("text", ["x": coordinate(Frame.left), "y": "20", "font-size": "14", "font-weight": "600",
                             "fill": "#1a1a1a"], text: title)
        for (index, row) in frame.legendRows.enumerated() {
            let y = 34 + Double(index) * 18 + 6
            for (entry, x) in row {
                switch entry.symbol {
                case .line(let dashed):
                    svg.element("line", dashed
                                ? ["x1": coordinate(x), "y1": coordinate(y), "x2": coordinate(x + 22), "y2": coordinate(y),
                                   "stroke": entry.color, "stroke-width": "2", "stroke-dasharray": "5 4"]
                                : ["x1": coordinate(x), "y1": coordinate(y), "x2": coordinate(x + 22), "y2": coordinate(y),
                                   "stroke": entry.color, "stroke-width": "2"])
                case .point:
                    svg.element("circle", ["cx": coordinate(x + 11), "cy": coordinate(y), "r": "3.5", "fill": entry.color])
                case .swatch:
                    svg.element("rect", ["x": coordinate(x + 4), "y": coordinate(y - 6), "width": "14", "height": "12",
                                         "fill": entry.color])
                case .box:
                    svg.element("rect", ["x": coordinate(x + 4), "y": coordinate(y - 6), "width": "14", "height": "12",
                                         "fill": entry.color, "fill-opacity": "0.25", "stroke": entry.color])
                }
                svg.element("text", ["x": coordinate(x + 28), "y": coordinate(y + 4), "fill": "#333333"], text: entry.label)
            }
        }
    }

    /// Horizontal grid lines with y tick labels, the x axis line, and both axis titles.
    static func drawAxes(_ svg: inout SVGWriter, frame: Frame, y: Scale, yLabel: String, xLabel: String) {
        svg.open("g", ["class": "axis y"])
        for tick in y.ticks {
            guard let py = y(tick.value) else { continue }
            svg.element("line", ["x1": coordinate(frame.plotLeft), "y1": coordinate(py), "x2": coordinate(frame.plotRight),
                                 "y2": coordinate(py), "stroke": "#e3e3e3", "stroke-width": "1"])
            svg.element("text", ["x": coordinate(frame.plotLeft - 6), "y": coordinate(py + 4), "text-anchor": "end",
                                 "fill": "#555555"], text: tick.label)
        }
        svg.element("line", ["x1": coordinate(frame.plotLeft), "y1": coordinate(frame.plotTop), "x2": coordinate(frame.plotLeft),
                             "y2": coordinate(frame.plotBottom), "stroke": "#888888", "stroke-width": "1"])
        let cy = (frame.plotTop + frame.plotBottom) / 2
        svg.element("text", ["x": "16", "y": coordinate(cy), "text-anchor": "middle", "fill": "#333333",
                             "transform": "rotate(-90 16 \(coordinate(cy)))"], text: yLabel)
        svg.close("g")
        svg.open("g", ["class": "axis x"])
        svg.element("line", ["x1": coordinate(frame.plotLeft), "y1": coordinate(frame.plotBottom), "x2": coordinate(frame.plotRight),
                             "y2": coordinate(frame.plotBottom), "stroke": "#888888", "stroke-width": "1"])
        svg.element("text", ["x": coordinate((frame.plotLeft + frame.plotRight) / 2), "y": coordinate(frame.plotBottom + 40),
                             "text-anchor": "middle", "fill": "#333333"], text: xLabel)
        svg.close("g")
    }

    /// Tick marks and labels under the x axis at the given pixel positions.
    static func drawXTicks(_ svg: inout SVGWriter, frame: Frame, ticks: [(pixel: Double, label: String)]) {
        svg.open("g", ["class": "ticks x"])
        for tick in ticks where tick.pixel.isFinite {
            svg.element("line", ["x1": coordinate(tick.pixel), "y1": coordinate(frame.plotBottom), "x2": coordinate(tick.pixel),
                                 "y2": coordinate(frame.plotBottom + 5), "stroke": "#888888", "stroke-width": "1"])
            svg.element("text", ["x": coordinate(tick.pixel), "y": coordinate(frame.plotBottom + 18), "text-anchor": "middle",
                                 "fill": "#555555"], text: tick.label)
        }
        svg.close("g")
    }

    /// A centred "no data" note in the plot area.
    static func drawEmptyNote(_ svg: inout SVGWriter, frame: Frame, _ note: String) {
        svg.element("text", ["class": "empty-note", "x": coordinate((frame.plotLeft + frame.plotRight) / 2),
                             "y": coordinate((frame.plotTop + frame.plotBottom) / 2), "text-anchor": "middle",
                             "fill": "#888888"], text: note)
    }
}

// MARK: - Line chart

extension HTMLReport {
    /// One line of a line chart; points that are not finite (or not positive on a log
    /// scale) break the line instead of reaching the SVG.
    struct LineSeries {
        var name: String
        var color: String
        var role: String
        var points: [(x: Double, y: Double, tooltip: String?)]
        var dashed = false
        var markers = true
    }

    /// Axis choices of a line chart.
    struct LineAxis {
        var label: String
        var log2 = false
        var includeZero = true
        var integer = false
        var atLeast: Double?
        var tickLabel: (Double, Double) -> String = HTMLReport.tickLabel
        var logLabel: (Double) -> String = { HTMLReport.number($0) }
    }

    /// A line chart; `reference` builds extra series (ideal lines) from the x scale once known.
    static func lineChart(id: String, title: String, description: String, x: LineAxis, y: LineAxis,
                          series: [LineSeries], reference: (Scale) -> [LineSeries] = { _ in [] },
                          emptyNote: String) -> String {
        let legend = series.map { LegendEntry(label: $0.name, color: $0.color,
                                              symbol: $0.markers && !$0.dashed ? .point : .line(dashed: $0.dashed)) }
        var legendAll = legend
        var frame = Frame(legend: legend)
        // Scales: x from the data; the reference lines then follow the x domain.
        let xs = series.flatMap { $0.points.map(\.x) }
        let xScale = x.log2
            ? Scale.log2(xs, from: frame.plotLeft, to: frame.plotRight, pad: 0.25, label: x.logLabel)
            : Scale.linear(xs, includeZero: x.includeZero, integer: x.integer, atLeast: x.atLeast,
                           from: frame.plotLeft, to: frame.plotRight, label: x.tickLabel)
        let references = reference(xScale)
        if !references.isEmpty {
            legendAll = references.map { LegendEntry(label: $0.name, color: $0.color, symbol: .line(dashed: $0.dashed)) } + legend
            frame = Frame(legend: legendAll)
        }
        let all = references + series
        let ys = all.flatMap { $0.points.map(\.y) }
        let yScale = y.log2
            ? Scale.log2(ys, from: frame.plotBottom, to: frame.plotTop, label: y.logLabel)
            : Scale.linear(ys, includeZero: y.includeZero, integer: y.integer, atLeast: y.atLeast,
                           from: frame.plotBottom, to: frame.plotTop, label: y.tickLabel)
        // The x scale keeps its domain; only its pixel range follows a taller legend.
        var xFinal = xScale
        xFinal.from = frame.plotLeft; xFinal.to = frame.plotRight

        var svg = SVGWriter()
        beginChart(&svg, id: id, title: title, description: description, frame: frame)
        drawAxes(&svg, frame: frame, y: yScale, yLabel: y.label, xLabel: x.label)
        drawXTicks(&svg, frame: frame, ticks: xFinal.ticks.compactMap { t in xFinal(t.value).map { ($0, t.label) } })
        svg.open("clipPath", ["id": "\(id)-clip"])
        svg.element("rect", ["x": coordinate(frame.plotLeft - 6), "y": coordinate(frame.plotTop - 6),
                             "width": coordinate(frame.plotRight - frame.plotLeft + 12),
                             "height": coordinate(frame.plotBottom - frame.plotTop + 12)])
        svg.close("clipPath")
        svg.open("g", ["clip-path": "url(#\(id)-clip)"])
        var anything = false
        for s in all {
            var d = ""
            var penDown = false
            var placed: [(Double, Double, String?)] = []
            for p in s.points {
                guard let px = xFinal(p.x), let py = yScale(p.y) else { penDown = false; continue }
                d += (penDown ? " L" : (d.isEmpty ? "M" : " M")) + coordinate(px) + " " + coordinate(py)
                penDown = true
                placed.append((px, py, p.tooltip))
            }
            if placed.count > 1 {
                svg.element("path", s.dashed
                            ? ["class": "series \(s.role)", "d": d, "fill": "none", "stroke": s.color, "stroke-width": "2",
                               "stroke-dasharray": "6 4"]
                            : ["class": "series \(s.role) mark", "d": d, "fill": "none", "stroke": s.color, "stroke-width": "2"])
            }
            if s.markers {
                for (px, py, tooltip) in placed {
                    svg.element("circle", ["class": "point \(s.role) mark", "cx": coordinate(px), "cy": coordinate(py),
                                           "r": "4", "fill": s.color], tooltip: tooltip)
                    anything = true
                }
            } else if placed.count > 1, !s.dashed {
                anything = true
            }
        }
        svg.close("g")
        if !anything { drawEmptyNote(&svg, frame: frame, emptyNote) }
        svg.close("svg")
        return svg.text
    }
}

// MARK: - Stacked bars

extension HTMLReport {
    /// One layer of a stacked bar chart.
    struct Layer {
        var key: String
        var label: String
        var color: String
    }

    /// Bars per category, stacked by layer; `values[category][layer]`, where values that are
    /// not finite or negative draw nothing (the tooltip says "not measured").
    static func stackedBarChart(id: String, title: String, description: String, categories: [String], xLabel: String,
                                yLabel: String, layers: [Layer], values: [[Double]], format: (Double) -> String,
                                emptyNote: String) -> String {
        let frame = Frame(legend: layers.map { LegendEntry(label: $0.label, color: $0.color, symbol: .swatch) })
        let usable = values.map { row in row.map { $0.isFinite && $0 > 0 ? min($0, 1e300) : 0 } }
        let totals = usable.map { $0.reduce(0, +) }
        // 8% headroom so that the total printed over the tallest bar stays inside the plot.
        let yScale = Scale.linear(totals.map { $0 * 1.08 }, includeZero: true, from: frame.plotBottom, to: frame.plotTop,
                                  label: tickLabel)
        var svg = SVGWriter()
        beginChart(&svg, id: id, title: title, description: description, frame: frame)
        drawAxes(&svg, frame: frame, y: yScale, yLabel: yLabel, xLabel: xLabel)
        let band = (frame.plotRight - frame.plotLeft) / Double(max(categories.count, 1))
        let barWidth = min(56, band * 0.6)
        let labelEvery = max(1, Int((Double(categories.count) / 16).rounded(.up)))
        drawXTicks(&svg, frame: frame, ticks: categories.indices.filter { $0 % labelEvery == 0 }.map {
            (frame.plotLeft + band * (Double($0) + 0.5), categories[$0])
        })
        var anything = false
        svg.open("g", ["class": "bars"])
        for (c, category) in categories.enumerated() {
            let center = frame.plotLeft + band * (Double(c) + 0.5)
            var base = 0.0
            for (l, layer) in layers.enumerated() {
                let raw = l < values[c].count ? values[c][l] : .nan
                let v = l < usable[c].count ? usable[c][l] : 0
                guard v > 0, let y0 = yScale(base), let y1 = yScale(base + v) else { continue }
                let tip = "\(category) — \(layer.label): \(raw.isFinite && raw >= 0 ? format(raw) : "not measured")"
                svg.element("rect", ["class": "bar \(layer.key) mark", "x": coordinate(center - barWidth / 2),
                                     "y": coordinate(min(y0, y1)), "width": coordinate(barWidth),
                                     "height": coordinate(abs(y0 - y1)), "fill": layer.color], tooltip: tip)
                base += v
                anything = true
            }
            if base > 0, let top = yScale(base) {
                svg.element("text", ["class": "total", "x": coordinate(center), "y": coordinate(top - 4),
                                     "text-anchor": "middle", "fill": "#333333"], text: format(base))
            }
        }
        svg.close("g")
        if !anything { drawEmptyNote(&svg, frame: frame, emptyNote) }
        svg.close("svg")
        return svg.text
    }
}

// MARK: - Distribution

extension HTMLReport {
    /// Quantile of sorted values by linear interpolation (R type 7); `sorted` is not empty.
    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "quantile of no values")
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }

    /// Per category a box (quartiles, median, whiskers min–max) of all ranks' samples
    /// pooled, and each rank's median as a dot, spread across the band in rank order.
    static func distributionChart(id: String, title: String, description: String, categories: [String], xLabel: String,
                                  yLabel: String, samples: [[[Double]]], emptyNote: String) -> String {
        let boxColor = "#0072B2", rankColor = "#D55E00"
        let frame = Frame(legend: [LegendEntry(label: "all steps: box = quartiles, whiskers = min–max", color: boxColor, symbol: .box),
                                   LegendEntry(label: "median of one rank", color: rankColor, symbol: .point)])
        let clean = samples.map { ranks in ranks.map { $0.filter(\.isFinite).map { min(max($0, -1e300), 1e300) } } }
        let yScale = Scale.linear(clean.flatMap { $0.flatMap { $0 } }, includeZero: false,
                                  from: frame.plotBottom, to: frame.plotTop, label: tickLabel)
        var svg = SVGWriter()
        beginChart(&svg, id: id, title: title, description: description, frame: frame)
        drawAxes(&svg, frame: frame, y: yScale, yLabel: yLabel, xLabel: xLabel)
        let band = (frame.plotRight - frame.plotLeft) / Double(max(categories.count, 1))
        let boxWidth = min(48, band * 0.5)
        let labelEvery = max(1, Int((Double(categories.count) / 16).rounded(.up)))
        drawXTicks(&svg, frame: frame, ticks: categories.indices.filter { $0 % labelEvery == 0 }.map {
            (frame.plotLeft + band * (Double($0) + 0.5), categories[$0])
        })
        var anything = false
        svg.open("g", ["class": "distributions"])
        for (c, category) in categories.enumerated() {
            let center = frame.plotLeft + band * (Double(c) + 0.5)
            let pooled = clean[c].flatMap { $0 }.sorted()
            guard !pooled.isEmpty else { continue }
            let q1 = quantile(pooled, 0.25), median = quantile(pooled, 0.5), q3 = quantile(pooled, 0.75)
            guard let yMin = yScale(pooled.first!), let yMax = yScale(pooled.last!), let y1 = yScale(q1),
                  let y3 = yScale(q3), let yMed = yScale(median) else { continue }
            let tip = "\(category): \(pooled.count) steps over \(clean[c].count) ranks; min \(number(pooled.first!)), "
                + "quartiles \(number(q1)) / \(number(median)) / \(number(q3)), max \(number(pooled.last!)) ms"
            svg.element("line", ["x1": coordinate(center), "y1": coordinate(yMin), "x2": coordinate(center), "y2": coordinate(yMax),
                                 "stroke": boxColor, "stroke-width": "1"])
            for yw in [yMin, yMax] {
                svg.element("line", ["x1": coordinate(center - boxWidth / 4), "y1": coordinate(yw), "x2": coordinate(center + boxWidth / 4),
                                     "y2": coordinate(yw), "stroke": boxColor, "stroke-width": "1"])
            }
            svg.element("rect", ["class": "box mark", "x": coordinate(center - boxWidth / 2), "y": coordinate(min(y1, y3)),
                                 "width": coordinate(boxWidth), "height": coordinate(max(abs(y3 - y1), 1)), "fill": boxColor,
                                 "fill-opacity": "0.25", "stroke": boxColor], tooltip: tip)
            svg.element("line", ["x1": coordinate(center - boxWidth / 2), "y1": coordinate(yMed), "x2": coordinate(center + boxWidth / 2),
                                 "y2": coordinate(yMed), "stroke": boxColor, "stroke-width": "2"])
            anything = true
            let ranks = clean[c]
            for (rank, steps) in ranks.enumerated() where !steps.isEmpty {
                let m = quantile(steps.sorted(), 0.5)
                guard let py = yScale(m) else { continue }
                let offset = ranks.count > 1 ? (Double(rank) / Double(ranks.count - 1) - 0.5) * boxWidth * 1.4 : 0
                svg.element("circle", ["class": "rank mark", "cx": coordinate(center + offset), "cy": coordinate(py), "r": "3",
                                       "fill": rankColor, "fill-opacity": "0.8"],
                            tooltip: "\(category), rank \(rank): median \(number(m)) ms over \(steps.count) steps")
            }
        }
        svg.close("g")
        if !anything { drawEmptyNote(&svg, frame: frame, emptyNote) }
        svg.close("svg")
        return svg.text
    }
}
