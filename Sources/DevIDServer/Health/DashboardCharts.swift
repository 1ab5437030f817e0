import Foundation

/// The dashboard's charts as server-rendered SVG: pure functions from numbers to markup, so they are tested
/// without a server and the page needs no JavaScript.
///
/// Every chart is a `<figure>` holding an `<svg role="img">` with a `<title>` and a `<desc>` that says the numbers in
/// words (its accessible name and description), and a `<table>` with every number drawn, for screen readers and
/// for anyone who wants the exact values. Colours come from classes in ``DashboardPage/styleSheet``; the SVG has
/// no inline style, so the page's Content-Security-Policy can forbid inline styles. Every text from the registry
/// goes through ``escape(_:)``.
enum DashboardCharts {
    /// The drawing area of every chart, in SVG user units (the SVG scales to the page width).
    static let width = 640.0
    static let height = 220.0
    static let left = 44.0
    static let right = 8.0
    static let top = 10.0
    static let bottom = 36.0

    /// `&`, `<`, `>`, `"` and `'` as entities: safe in element content and in quoted attributes.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    /// One bar of ``bars(id:title:summary:columns:bars:markers:)``.
    struct Bar: Sendable, Hashable {
        var label: String
        var value: Double
        /// Drawn in the highlight colour (the expiry wave, for example).
        var highlighted: Bool = false
        /// What the table shows; the value as a whole number when nil.
        var text: String?
    }

    /// A horizontal line across a bar chart at `value`, labelled (a median, a p90).
    struct Marker: Sendable, Hashable {
        var label: String
        var value: Double
        var text: String
    }

    /// A bar chart with one bar per entry, in order, and its table (`columns`: the label and value headers).
    static func bars(
        id: String, title: String, summary: String, columns: (String, String), bars: [Bar], markers: [Marker] = []
    ) -> String {
        let maximum = max(bars.map(\.value).max() ?? 0, markers.map(\.value).max() ?? 0)
        let scale = YScale(maximum: maximum)
        let plotWidth = width - left - right
        let slot = plotWidth / Double(max(bars.count, 1))
        let barWidth = max(1, slot * 0.8)
        var svg = open(id: id, title: title, summary: summary)
        svg += scale.axis()
        for (index, bar) in bars.enumerated() {
            let x = left + Double(index) * slot + (slot - barWidth) / 2
            let y = scale.y(bar.value)
            let text = bar.text ?? Self.number(bar.value)
            svg += #"<rect class="bar\#(bar.highlighted ? " highlight" : "")" x="\#(f(x))" y="\#(f(y))" "#
            svg += #"width="\#(f(barWidth))" height="\#(f(max(0, scale.y(0) - y)))" data-value="\#(escape(text))">"#
            svg += "<title>\(escape(bar.label)): \(escape(text))</title></rect>"
            svg += xLabel(index: index, count: bars.count, x: x + barWidth / 2, text: bar.label)
        }
        for (index, marker) in markers.enumerated() {
            let y = scale.y(marker.value)
            svg += #"<line class="marker" x1="\#(f(left))" x2="\#(f(width - right))" y1="\#(f(y))" y2="\#(f(y))">"#
            svg += "<title>\(escape(marker.label)): \(escape(marker.text))</title></line>"
            // Labels alternate right and left, so two markers at the same height (median = p90) stay readable.
            let (x, anchor) = index % 2 == 0 ? (width - right - 2, "end") : (left + 2, "start")
            svg += #"<text class="marker-label" x="\#(f(x))" y="\#(f(y - 3))" text-anchor="\#(anchor)">"#
            svg += "\(escape(marker.label)) \(escape(marker.text))</text>"
        }
        svg += "</svg>"
        var table = tableOpen(id: id, caption: title, headers: [columns.0, columns.1])
        for bar in bars {
            table += "<tr\(bar.highlighted ? #" class="highlight""# : "")><th scope=\"row\">\(escape(bar.label))</th>"
            table += "<td>\(escape(bar.text ?? Self.number(bar.value)))</td></tr>"
        }
        for marker in markers {
            table +=
                "<tr class=\"marker\"><th scope=\"row\">\(escape(marker.label))</th>"
                + "<td>\(escape(marker.text))</td></tr>"
        }
        table += "</tbody></table>"
        return figure(id: id, svg: svg, table: table)
    }

    /// One layer of a stacked chart: a name and one value per column.
    struct Layer: Sendable, Hashable {
        var name: String
        var values: [Int]
        /// Drawn in the emphasis colour on top of the others' muted ones (expiry-caused failures).
        var emphasized: Bool = false
    }

    enum Stacking: Sendable {
        /// Stacked areas, a point per column: a series over time.
        case area
        /// Stacked bars, a bar per column: counts per day.
        case bars
    }

    /// A stacked chart of `layers` over `columns` (time labels), and its table: a row per column, a column per
    /// layer, and the total.
    static func stacked(
        id: String, title: String, summary: String, stacking: Stacking, columnHeader: String, columns: [String],
        layers: [Layer]
    ) -> String {
        let count = columns.count
        var totals = [Int](repeating: 0, count: count)
        for layer in layers {
            for index in 0..<min(count, layer.values.count) { totals[index] += layer.values[index] }
        }
        let scale = YScale(maximum: Double(totals.max() ?? 0))
        let plotWidth = width - left - right
        var svg = open(id: id, title: title, summary: summary)
        svg += scale.axis()
        var below = [Int](repeating: 0, count: count)
        for (layerIndex, layer) in layers.enumerated() {
            let total = layer.values.reduce(0, +)
            let classes = "layer layer-\(layerIndex % 6)\(layer.emphasized ? " emphasized" : "")"
            let label = "\(escape(layer.name)): \(total)"
            let above = (0..<count).map { below[$0] + (layer.values.indices.contains($0) ? layer.values[$0] : 0) }
            switch stacking {
            case .area:
                let step = count > 1 ? plotWidth / Double(count - 1) : 0
                let x = { (index: Int) in left + Double(index) * step }
                var points = (0..<count).map { "\(f(x($0))),\(f(scale.y(Double(above[$0]))))" }
                points += (0..<count).reversed().map { "\(f(x($0))),\(f(scale.y(Double(below[$0]))))" }
                if count == 1 {
                    points = [
                        "\(f(left)),\(f(scale.y(Double(above[0]))))",
                        "\(f(width - right)),\(f(scale.y(Double(above[0]))))",
                        "\(f(width - right)),\(f(scale.y(Double(below[0]))))",
                        "\(f(left)),\(f(scale.y(Double(below[0]))))",
                    ]
                }
                svg +=
                    #"<polygon class="\#(classes)" points="\#(points.joined(separator: " "))">"#
                    + "<title>\(label)</title></polygon>"
            case .bars:
                let slot = plotWidth / Double(max(count, 1))
                let barWidth = max(1, slot * 0.8)
                svg += #"<g class="\#(classes)"><title>\#(label)</title>"#
                for index in 0..<count where above[index] > below[index] {
                    let x = left + Double(index) * slot + (slot - barWidth) / 2
                    let y = scale.y(Double(above[index]))
                    svg += #"<rect x="\#(f(x))" y="\#(f(y))" width="\#(f(barWidth))" "#
                    svg += #"height="\#(f(scale.y(Double(below[index])) - y))"/>"#
                }
                svg += "</g>"
            }
            below = above
        }
        let slot = plotWidth / Double(max(count, 1))
        for (index, column) in columns.enumerated() {
            let x: Double
            switch stacking {
            case .area: x = left + Double(index) * (count > 1 ? plotWidth / Double(count - 1) : 0)
            case .bars: x = left + Double(index) * slot + slot / 2
            }
            svg += xLabel(index: index, count: count, x: x, text: column)
        }
        svg += legend(layers)
        svg += "</svg>"
        var table = tableOpen(id: id, caption: title, headers: [columnHeader] + layers.map(\.name) + ["total"])
        for (index, column) in columns.enumerated() {
            table += "<tr><th scope=\"row\">\(escape(column))</th>"
            for layer in layers {
                let value = layer.values.indices.contains(index) ? layer.values[index] : 0
                table += "<td\(layer.emphasized ? #" class="emphasized""# : "")>\(value)</td>"
            }
            table += "<td>\(totals[index])</td></tr>"
        }
        table += "</tbody><tfoot><tr><th scope=\"row\">total</th>"
        for layer in layers { table += "<td>\(layer.values.reduce(0, +))</td>" }
        table += "<td>\(totals.reduce(0, +))</td></tr></tfoot></table>"
        return figure(id: id, svg: svg, table: table)
    }

    /// A labelled progress bar (`<progress>` is accessible as it is) with the count in words beside it.
    static func progress(label: String, done: Int, total: Int, detail: String) -> String {
        let percent = total > 0 ? Int((Double(done) * 100 / Double(total)).rounded(.down)) : 0
        return "<div class=\"progress\"><span class=\"progress-label\">\(escape(label))</span>"
            + "<progress max=\"\(max(total, 1))\" value=\"\(min(done, max(total, 1)))\" "
            + "aria-label=\"\(escape(label)): \(done) of \(total) (\(percent) %)\">\(percent) %</progress>"
            + "<span class=\"progress-detail\">\(done) of \(total) (\(percent) %)"
            + "\(detail.isEmpty ? "" : "; " + escape(detail))</span></div>"
    }

    /// `p` (0...1) of `values` by the nearest-rank method; nil when empty.
    static func percentile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    /// `42 s`, `7 min`, `3.5 h`, `2.0 d`: a duration short enough for a chart.
    static func duration(_ seconds: Double) -> String {
        switch seconds {
        case ..<120: "\(Int(seconds.rounded())) s"
        case ..<7_200: "\(Int((seconds / 60).rounded())) min"
        case ..<172_800: String(format: "%.1f h", seconds / 3_600)
        default: String(format: "%.1f d", seconds / 86_400)
        }
    }

    // MARK: Pieces

    /// The y axis: a round maximum and a gridline at each quarter.
    struct YScale {
        let top: Double

        init(maximum: Double) {
            guard maximum > 0 else {
                top = 4
                return
            }
            // 1, 2, 4 or 8 times a power of ten, and at least 4, so that the quarters are whole numbers.
            let magnitude = pow(10, (log10(maximum)).rounded(.down))
            let nice = [1, 2, 4, 8, 10].map { $0 * magnitude }.first { $0 >= maximum } ?? maximum
            top = max(nice, 4)
        }

        func y(_ value: Double) -> Double {
            let plot = DashboardCharts.height - DashboardCharts.top - DashboardCharts.bottom
            return DashboardCharts.top + plot * (1 - min(max(value, 0), top) / top)
        }

        func axis() -> String {
            var svg = "<g class=\"axis\" aria-hidden=\"true\">"
            for quarter in 0...4 {
                let value = top * Double(quarter) / 4
                let y = self.y(value)
                svg +=
                    #"<line x1="\#(f(DashboardCharts.left))" x2="\#(f(DashboardCharts.width - DashboardCharts.right))" "#
                svg += #"y1="\#(f(y))" y2="\#(f(y))"/>"#
                svg += #"<text x="\#(f(DashboardCharts.left - 4))" y="\#(f(y + 4))" text-anchor="end">"#
                svg += "\(DashboardCharts.number(value))</text>"
            }
            return svg + "</g>"
        }
    }

    static func open(id: String, title: String, summary: String) -> String {
        #"<svg id="\#(id)-chart" class="chart" role="img" viewBox="0 0 \#(f(width)) \#(f(height))" "#
            + #"aria-labelledby="\#(id)-title \#(id)-desc" xmlns="http://www.w3.org/2000/svg">"#
            + #"<title id="\#(id)-title">\#(escape(title))</title><desc id="\#(id)-desc">\#(escape(summary))</desc>"#
    }

    static func tableOpen(id: String, caption: String, headers: [String]) -> String {
        var table = #"<table id="\#(id)-table" class="data"><caption>\#(escape(caption))</caption><thead><tr>"#
        for header in headers { table += "<th scope=\"col\">\(escape(header))</th>" }
        return table + "</tr></thead><tbody>"
    }

    static func figure(id: String, svg: String, table: String) -> String {
        #"<figure id="\#(id)" class="chart-figure">\#(svg)"#
            + "<details><summary>Numbers</summary>\(table)</details></figure>"
    }

    /// At most about 12 labels under the x axis, so they do not overlap.
    static func xLabel(index: Int, count: Int, x: Double, text: String) -> String {
        let every = max(1, (count + 11) / 12)
        guard index % every == 0 || index == count - 1 && count <= 12 else { return "" }
        return
            #"<text class="x-label" x="\#(f(x))" y="\#(f(height - bottom + 14))" text-anchor="middle" aria-hidden="true">"#
            + "\(escape(text))</text>"
    }

    static func legend(_ layers: [Layer]) -> String {
        var svg = "<g class=\"legend\" aria-hidden=\"true\">"
        var x = left
        for (index, layer) in layers.enumerated() {
            svg += #"<rect class="layer layer-\#(index % 6)\#(layer.emphasized ? " emphasized" : "")" x="\#(f(x))" "#
            svg += #"y="\#(f(height - 14))" width="10" height="10"/>"#
            svg += #"<text x="\#(f(x + 13))" y="\#(f(height - 5))">\#(escape(layer.name))</text>"#
            x += 20 + Double(layer.name.count) * 6.5
        }
        return svg + "</g>"
    }

    /// A coordinate with at most one decimal.
    static func f(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }
}
