import Foundation

/// An sRGB colour, 8 bits a channel.
public struct ChartColor: Sendable, Hashable {
    public var red, green, blue: UInt8

    public init(_ red: UInt8, _ green: UInt8, _ blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// `#rrggbb`, lower case.
    public var hex: String {
        let digits = Array("0123456789abcdef")
        var text = "#"
        for byte in [red, green, blue] {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return text
    }

    public static let blue = ChartColor(0x1f, 0x77, 0xb4)
    public static let orange = ChartColor(0xff, 0x7f, 0x0e)
    public static let green = ChartColor(0x2c, 0xa0, 0x2c)
    public static let red = ChartColor(0xd6, 0x27, 0x28)
    public static let purple = ChartColor(0x94, 0x67, 0xbd)
    public static let gray = ChartColor(0x7f, 0x7f, 0x7f)
    /// The series colours in the order to hand them out.
    public static let palette: [ChartColor] = [blue, orange, green, red, purple, gray]

    static let white = ChartColor(0xff, 0xff, 0xff)
    static let ink = ChartColor(0x22, 0x22, 0x22)
    static let axis = ChartColor(0x55, 0x55, 0x55)
    static let grid = ChartColor(0xe0, 0xe0, 0xe0)
}

/// One named row of values, one per category of its ``Chart``.
public struct ChartSeries: Sendable, Hashable {
    public var name: String
    public var color: ChartColor
    /// Non-finite values are left out of the drawing (a gap in a line, no bar).
    public var values: [Double]

    public init(name: String, color: ChartColor, values: [Double]) {
        self.name = name
        self.color = color
        self.values = values
    }
}

/// A line or grouped-bar chart on a linear y axis from 0 (or the lowest negative value), rendered as SVG or PNG
/// without dependencies.
///
/// Both renderers draw the same scene: title, legend, y axis with 4 to 6 ticks at 1, 2, 2.5 or 5 × 10^k, gridlines,
/// x labels (every Nth, so they do not overlap), axis titles and the data. Output is byte-identical for equal input.
/// In the SVG each series is a `<g class="series" data-series="NAME" data-values="v1,v2,…">` holding its marks, for
/// machine checks.
public struct Chart: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// One polyline per series.
        case line
        /// Grouped vertical bars, one group per category.
        case bar
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    /// The x-axis labels, one per value index.
    public var categories: [String]
    /// Each with `categories.count` values.
    public var series: [ChartSeries]
    public var kind: Kind

    public init(
        title: String, xLabel: String, yLabel: String, categories: [String], series: [ChartSeries], kind: Kind
    ) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.categories = categories
        self.series = series
        self.kind = kind
    }

    /// A standalone SVG document.
    public func svg(width: Int = 800, height: Int = 450) -> String {
        ChartScene(self, width: width, height: height, metrics: .svg).svg()
    }

    /// An 8-bit indexed-colour PNG on a white background, text in a bitmap font.
    public func png(width: Int = 800, height: Int = 450) -> [UInt8] {
        var raster = ChartRaster(width: max(width, 1), height: max(height, 1), background: .white)
        raster.draw(ChartScene(self, width: max(width, 1), height: max(height, 1), metrics: .raster))
        return PNGEncoder.indexed(
            width: raster.width, height: raster.height, palette: raster.palette, pixels: raster.pixels)
    }
}

/// Text sizes a renderer draws with: advance per character and height above the baseline, in pixels.
struct ChartMetrics: Sendable {
    var label: (advance: Double, ascent: Double)
    var title: (advance: Double, ascent: Double)

    /// A 12 and 16 px sans-serif (average advance estimated).
    static let svg = ChartMetrics(label: (6.6, 9), title: (8.8, 12))
    /// ``BitmapFont`` at scale 1 and 2.
    static let raster = ChartMetrics(
        label: (Double(BitmapFont.advance), Double(BitmapFont.ascent)),
        title: (Double(2 * BitmapFont.advance), Double(2 * BitmapFont.ascent)))
}

/// What a chart looks like, in pixels, before a renderer turns it into SVG elements or raster pixels.
struct ChartScene: Sendable {
    enum Anchor: String, Sendable { case start, middle, end }
    enum Style: Sendable { case title, label }

    enum Mark: Sendable {
        case rect(x: Double, y: Double, width: Double, height: Double, color: ChartColor)
        case line(x1: Double, y1: Double, x2: Double, y2: Double, color: ChartColor, width: Double)
        case polyline(points: [(x: Double, y: Double)], color: ChartColor, width: Double)
        /// `y` is the baseline; `vertical` text reads upwards, rotated about `(x, y)`.
        case text(String, x: Double, y: Double, style: Style, anchor: Anchor, vertical: Bool, cssClass: String)
        /// The marks of one series.
        case series(ChartSeries, marks: [Mark])
    }

    var width: Int
    var height: Int
    var marks: [Mark] = []

    init(_ chart: Chart, width: Int, height: Int, metrics: ChartMetrics) {
        self.width = width
        self.height = height
        let w = Double(width)
        let h = Double(height)
        let pad = 12.0
        let label = metrics.label
        let lineHeight = metrics.label.ascent * 1.6
        let count = max(chart.categories.count, chart.series.map(\.values.count).max() ?? 0)
        let finite = chart.series.flatMap(\.values).filter(\.isFinite)
        let ticks = ChartScene.ticks(low: min(finite.min() ?? 0, 0), high: max(finite.max() ?? 0, 0))
        let tickLabels = ChartScene.tickLabels(ticks)

        var top = pad
        if !chart.title.isEmpty {
            text(chart.title, x: w / 2, y: top + metrics.title.ascent, anchor: .middle, class: "title", style: .title)
            top += metrics.title.ascent * 1.8
        }
        let tickWidth = Double(tickLabels.map(\.count).max() ?? 1) * label.advance
        let left = pad + (chart.yLabel.isEmpty ? 0 : lineHeight + 4) + tickWidth + 8

        // Legend rows from the plot's left edge, wrapping at the right margin.
        var cursor = left
        var baseline = top + label.ascent
        for series in chart.series {
            let entry = 14 + Double(series.name.count) * label.advance
            if cursor > left, cursor + entry > w - pad {
                cursor = left
                baseline += lineHeight
            }
            marks.append(
                .rect(x: cursor, y: baseline - label.ascent, width: 10, height: label.ascent, color: series.color))
            text(series.name, x: cursor + 14, y: baseline, anchor: .start, class: "legend")
            cursor += entry + 16
        }
        if !chart.series.isEmpty { top = baseline + lineHeight }

        let categoryWidth = Double(chart.categories.map(\.count).max() ?? 0) * label.advance
        let bottom = h - pad - (chart.xLabel.isEmpty ? 0 : lineHeight + 4) - lineHeight - 6
        let right = w - pad - (chart.kind == .line ? min(categoryWidth / 2, 40) : 0)
        let plotWidth = max(right - left, 1)
        let plotHeight = max(bottom - top - 4, 1)
        let plot = (
            left: left, top: top + 4, width: plotWidth, height: plotHeight, right: left + plotWidth,
            bottom: top + 4 + plotHeight
        )
        let low = ticks.first!
        let high = ticks.last!
        func y(_ value: Double) -> Double { plot.bottom - (value - low) / (high - low) * plot.height }
        let slot = chart.kind == .line ? plot.width / Double(max(count - 1, 1)) : plot.width / Double(max(count, 1))
        func x(_ index: Int) -> Double {
            switch chart.kind {
            case .line: count == 1 ? plot.left + plot.width / 2 : plot.left + Double(index) * slot
            case .bar: plot.left + (Double(index) + 0.5) * slot
            }
        }

        // Gridlines and y ticks.
        for (tick, text) in zip(ticks, tickLabels) {
            marks.append(.line(x1: plot.left, y1: y(tick), x2: plot.right, y2: y(tick), color: .grid, width: 1))
            self.text(text, x: plot.left - 8, y: y(tick) + label.ascent / 2, anchor: .end, class: "ytick")
        }
        // X labels, every `step`th so that they do not overlap.
        let step = max(1, Int(((categoryWidth + 12) / slot).rounded(.up)))
        for index in stride(from: 0, to: chart.categories.count, by: step) {
            marks.append(
                .line(x1: x(index), y1: plot.bottom, x2: x(index), y2: plot.bottom + 4, color: .axis, width: 1))
            text(
                chart.categories[index], x: x(index), y: plot.bottom + 6 + label.ascent, anchor: .middle, class: "xtick"
            )
        }

        // Axes under the data, so that a series at zero stays visible.
        marks.append(.line(x1: plot.left, y1: plot.top, x2: plot.left, y2: plot.bottom, color: .axis, width: 1))
        marks.append(.line(x1: plot.left, y1: y(0), x2: plot.right, y2: y(0), color: .axis, width: 1))
        // Data.
        for (number, series) in chart.series.enumerated() {
            var group: [Mark] = []
            switch chart.kind {
            case .line:
                var run: [(x: Double, y: Double)] = []
                for (index, value) in series.values.enumerated() {
                    if value.isFinite { run.append((x(index), y(value))) }
                    if !value.isFinite || index == series.values.count - 1, !run.isEmpty {
                        if run.count == 1 {
                            group.append(
                                .rect(x: run[0].x - 2, y: run[0].y - 2, width: 4, height: 4, color: series.color))
                        } else {
                            group.append(.polyline(points: run, color: series.color, width: 2))
                        }
                        run = []
                    }
                }
            case .bar:
                let groupWidth = slot * 0.8
                let barWidth = groupWidth / Double(chart.series.count)
                let gap = barWidth >= 6 ? 1.0 : 0
                for (index, value) in series.values.enumerated() where value.isFinite {
                    let left = x(index) - groupWidth / 2 + Double(number) * barWidth
                    let (a, b) = (y(value), y(0))
                    group.append(
                        .rect(
                            x: left, y: min(a, b), width: barWidth - gap, height: abs(a - b),
                            color: series.color))
                }
            }
            marks.append(.series(series, marks: group))
        }

        // Axis titles.
        if !chart.xLabel.isEmpty {
            text(chart.xLabel, x: plot.left + plot.width / 2, y: h - pad, anchor: .middle, class: "xlabel")
        }
        if !chart.yLabel.isEmpty {
            let middle = plot.top + plot.height / 2
            text(chart.yLabel, x: pad + label.ascent, y: middle, anchor: .middle, class: "ylabel", vertical: true)
        }
    }

    /// Appends a text mark.
    private mutating func text(
        _ text: String, x: Double, y: Double, anchor: Anchor, class cssClass: String, style: Style = .label,
        vertical: Bool = false
    ) {
        marks.append(.text(text, x: x, y: y, style: style, anchor: anchor, vertical: vertical, cssClass: cssClass))
    }

    /// 4 to 6 ticks at multiples of 1, 2, 2.5 or 5 × 10^k covering `low...high` (an empty span becomes
    /// `low...low + 1`).
    static func ticks(low: Double, high: Double) -> [Double] {
        let high = high > low ? high : low + 1
        guard (high - low).isFinite else { return [low, high] }
        var exponent = (log10(high - low)).rounded(.down) - 1
        while true {
            for multiple in [1, 2, 2.5, 5] {
                let step = multiple * pow(10, exponent)
                let first = (low / step + 1e-9).rounded(.down)
                let last = (high / step - 1e-9).rounded(.up)
                if last - first <= 5 { return (Int(first)...Int(last)).map { Double($0) * step } }
            }
            exponent += 1
        }
    }

    /// Tick texts, in thousands (`12k`) or millions (`1.5M`) when the top tick is that large.
    static func tickLabels(_ ticks: [Double]) -> [String] {
        let top = ticks.map(abs).max() ?? 0
        let (divisor, suffix) = top >= 1e6 ? (1e6, "M") : top >= 1e4 ? (1e3, "k") : (1, "")
        return ticks.map { $0 == 0 ? "0" : ChartScene.format($0 / divisor) + suffix }
    }

    /// A locale-free number: whole values without a fraction, others to 6 significant digits.
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : value < 0 ? "-inf" : "inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        let magnitude = abs(value)
        guard magnitude < 1e15 else { return "\(value)" }
        let exponent = Int(log10(magnitude).rounded(.down))
        if exponent >= 5 {
            return String(Int64((value / pow(10, Double(exponent - 5))).rounded()) * pow10(exponent - 5))
        }
        let decimals = min(5 - exponent, 17)
        let scaled = (magnitude * pow(10, Double(decimals))).rounded()
        guard scaled < 9e18 else { return String(value) }
        var digits = String(UInt64(scaled))
        if digits.count <= decimals { digits = String(repeating: "0", count: decimals - digits.count + 1) + digits }
        var text = String(digits.dropLast(decimals)) + "." + String(digits.suffix(decimals))
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return (value < 0 && text != "0" ? "-" : "") + text
    }

    private static func pow10(_ exponent: Int) -> Int64 {
        (0..<exponent).reduce(1) { product, _ in product * 10 }
    }
}

extension ChartScene {
    /// The scene as a standalone SVG document.
    func svg() -> String {
        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" \
            viewBox="0 0 \(width) \(height)" font-family="sans-serif">
            <rect width="\(width)" height="\(height)" fill="#ffffff"/>

            """
        for mark in marks { ChartScene.append(mark, to: &out) }
        out += "</svg>\n"
        return out
    }

    private static func append(_ mark: Mark, to out: inout String) {
        func n(_ value: Double) -> String { format((value * 100).rounded() / 100) }
        switch mark {
        case .rect(let x, let y, let width, let height, let color):
            out += "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(max(width, 0)))\" height=\"\(n(height))\" "
            out += "fill=\"\(color.hex)\"/>\n"
        case .line(let x1, let y1, let x2, let y2, let color, let width):
            out += "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" "
            out += "stroke=\"\(color.hex)\" stroke-width=\"\(n(width))\"/>\n"
        case .polyline(let points, let color, let width):
            let list = points.map { "\(n($0.x)),\(n($0.y))" }.joined(separator: " ")
            out += "<polyline points=\"\(list)\" fill=\"none\" stroke=\"\(color.hex)\" stroke-width=\"\(n(width))\" "
            out += "stroke-linejoin=\"round\"/>\n"
        case .text(let text, let x, let y, let style, let anchor, let vertical, let cssClass):
            let size = style == .title ? "16" : "12"
            let weight = style == .title ? " font-weight=\"bold\"" : ""
            let rotate = vertical ? " transform=\"rotate(-90 \(n(x)) \(n(y)))\"" : ""
            out += "<text class=\"\(cssClass)\" x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"\(size)\"\(weight) "
            out += "text-anchor=\"\(anchor.rawValue)\" fill=\"\(ChartColor.ink.hex)\"\(rotate)>\(escape(text))</text>\n"
        case .series(let series, let marks):
            let values = series.values.map(format).joined(separator: ",")
            out += "<g class=\"series\" data-series=\"\(escape(series.name))\" data-values=\"\(values)\">\n"
            for mark in marks { append(mark, to: &out) }
            out += "</g>\n"
        }
    }

    /// Text safe in XML content and attribute values; control characters XML 1.0 forbids become spaces.
    static func escape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\u{FFFE}", "\u{FFFF}": out += " "
            default: out.unicodeScalars.append(scalar.value < 0x20 ? " " : scalar)
            }
        }
        return out
    }
}
