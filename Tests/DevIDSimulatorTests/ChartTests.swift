import DevIDTesting
import Foundation
import Testing

@testable import DevIDSimulator

/// The chart renderers, checked against third-party decoders: Python's `zlib` and `xml.etree` read what they write.
@Suite("Chart")
struct ChartTests {
    static let days = (0..<365).map { "d\($0 + 1)" }
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Two series over a year, values with at most 6 significant digits so that they survive the SVG unchanged.
    static let before: [Double] = (0..<365).map { (day: Int) -> Double in Double(200 + 4 * day + (day * 37) % 90) }
    static let after: [Double] = (0..<365).map { (day: Int) -> Double in Double(50 + day + (day * 13) % 20) + 0.25 }
    static let line = Chart(
        title: "Certificates issued per day", xLabel: "day", yLabel: "certificates", categories: days,
        series: [
            ChartSeries(name: "before", color: .orange, values: before),
            ChartSeries(name: "devid", color: .blue, values: after),
        ], kind: .line)
    static let bar = Chart(
        title: "Outage minutes per month", xLabel: "month", yLabel: "minutes", categories: months,
        series: [
            ChartSeries(
                name: "before", color: .red, values: [120, 340, 95, 410, 230, 180, 305, 260, 150, 390, 275, 198]),
            ChartSeries(name: "devid", color: .green, values: [12, 30, 8, 41.5, 23, 18, 30, 26, 15, 39, 27, 19.75]),
        ], kind: .bar)
    static let single = Chart(
        title: "Fleet size", xLabel: "", yLabel: "devices", categories: ["eu", "us", "apac"],
        series: [ChartSeries(name: "devices", color: .purple, values: [1_234_567, 2_500_000, 800_000])], kind: .bar)
    static let zero = Chart(
        title: "Nothing yet", xLabel: "day", yLabel: "count", categories: ["a", "b", "c"],
        series: [
            ChartSeries(name: "z1", color: .gray, values: [0, 0, 0]),
            ChartSeries(name: "z2", color: .blue, values: [0, 0, 0]),
        ], kind: .line)

    /// The sample charts by name, so that test cases print a name rather than 365 values.
    enum Sample: String, CaseIterable, Sendable {
        case line, bar, single, zero

        var chart: Chart {
            switch self {
            case .line: ChartTests.line
            case .bar: ChartTests.bar
            case .single: ChartTests.single
            case .zero: ChartTests.zero
            }
        }
    }

    @Test(
        "PNG: signature, IHDR, chunk CRCs, and a zlib stream Python inflates to the right size",
        arguments: Sample.allCases)
    func pngStructure(sample: Sample) throws {
        let chart = sample.chart
        let png = chart.png(width: 640, height: 360)
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
        var chunks: [String] = []
        var offset = 8
        while offset + 12 <= png.count {
            let length = Int(Self.uint32(png, offset))
            try #require(offset + 12 + length <= png.count, "chunk overruns the file")
            let body = Array(png[offset + 4..<offset + 8 + length])
            #expect(Self.uint32(png, offset + 8 + length) == Self.bitwiseCRC(body), "CRC of \(chunks.count)")
            chunks.append(String(decoding: body.prefix(4), as: UTF8.self))
            offset += 12 + length
        }
        #expect(offset == png.count)
        #expect(chunks.first == "IHDR" && chunks.last == "IEND" && chunks.contains("PLTE") && chunks.contains("IDAT"))
        #expect(Self.uint32(png, 16) == 640 && Self.uint32(png, 20) == 360)

        let facts = try Self.pythonFacts(png)
        #expect(facts["crcs_ok"] as? Bool == true)
        #expect(facts["width"] as? Int == 640 && facts["height"] as? Int == 360)
        #expect(facts["bit_depth"] as? Int == 8 && facts["color_type"] as? Int == 3)
        #expect(facts["inflated"] as? Int == 360 * (1 + 640))
        #expect(facts["corner"] as? String == "#ffffff")
        let counts = facts["counts"] as? [String: Int] ?? [:]
        for series in chart.series {
            // An all-zero series hides under the next one; its legend swatch (70 pixels) remains.
            let minimum = sample == .zero && series != chart.series.last ? 60 : 300
            #expect(counts[series.color.hex, default: 0] > minimum, "\(sample): \(series.name) drawn")
        }
        #expect(counts[ChartColor.ink.hex, default: 0] > 200, "\(sample): text drawn")
        #expect(counts["#ffffff", default: 0] > 640 * 360 / 3, "\(sample): mostly background")
    }

    @Test("an 800x450 two-series 365-point line chart PNG is under 60 KB, a 12-category bar chart too")
    func pngSize() throws {
        let line = Self.line.png()
        let bar = Self.bar.png()
        #expect(line.count < 60_000, "\(line.count) bytes")
        #expect(bar.count < 60_000, "\(bar.count) bytes")
        #expect(try Self.pythonFacts(line)["inflated"] as? Int == 450 * 801)
    }

    @Test("SVG parses as XML, and each series' data-values equal its input", arguments: Sample.allCases)
    func svgValues(sample: Sample) throws {
        let chart = sample.chart
        let parsed = try Self.parseSVG(chart.svg())
        let series = parsed["series"] as? [[String]] ?? []
        #expect(series.map { $0[0] } == chart.series.map(\.name))
        for (row, input) in zip(series, chart.series) {
            let values = row[1].split(separator: ",").map { Double(String($0)) }
            #expect(values == input.values.map { Optional($0) }, "\(input.name)")
        }
        #expect(parsed["root"] as? String == "{http://www.w3.org/2000/svg}svg")
        #expect(parsed["title"] as? String == chart.title)
    }

    @Test("markup in titles, labels and series names is escaped")
    func escaping() throws {
        var chart = Self.bar
        chart.title = "Q1 <before> & \"after\" 'x'"
        chart.xLabel = "a>b"
        chart.series[0].name = "old<&>"
        let svg = chart.svg()
        #expect(svg.contains("Q1 &lt;before&gt; &amp; &quot;after&quot; &apos;x&apos;"))
        #expect(svg.contains("data-series=\"old&lt;&amp;&gt;\""))
        #expect(!svg.contains("<before>") && !svg.contains("a>b"))
        let parsed = try Self.parseSVG(svg)
        #expect(parsed["title"] as? String == chart.title)
        #expect((parsed["series"] as? [[String]])?.first?.first == "old<&>")
        #expect((parsed["texts"] as? [String])?.contains("a>b") == true)
    }

    @Test("equal input renders byte-identical output")
    func determinism() {
        let again = Chart(
            title: Self.line.title, xLabel: Self.line.xLabel, yLabel: Self.line.yLabel,
            categories: Self.line.categories, series: Self.line.series, kind: .line)
        #expect(Self.line.svg() == again.svg())
        #expect(Self.line.png() == again.png())
        #expect(Self.bar.png(width: 300, height: 200) == Self.bar.png(width: 300, height: 200))
        #expect(Self.bar.png() != Self.line.png())
    }

    @Test("all-zero data renders an axis from 0 to 1 without NaN or infinity")
    func allZero() throws {
        for kind in [Chart.Kind.line, .bar] {
            var chart = Self.zero
            chart.kind = kind
            let svg = chart.svg()
            #expect(!svg.lowercased().contains("nan") && !svg.lowercased().contains("inf"))
            let parsed = try Self.parseSVG(svg)
            let ticks = try #require(parsed["yticks"] as? [String])
            #expect(ticks.first == "0" && ticks.last == "1" && (4...6).contains(ticks.count))
            #expect(try Self.pythonFacts(chart.png())["inflated"] as? Int == 450 * 801)
        }
    }

    @Test("y ticks: 4 to 6 at 1, 2, 2.5 or 5 × 10^k from 0, labelled in k and M when large")
    func yTicks() throws {
        for high in (1...400).map({ pow(1.07, Double($0)) / 100 }) {
            let ticks = ChartScene.ticks(low: 0, high: high)
            let step = ticks[1] - ticks[0]
            let mantissa = step / pow(10, log10(step).rounded(.down))
            #expect((4...6).contains(ticks.count) && ticks.first == 0 && ticks.last! >= high, "\(high)")
            #expect([1, 2, 2.5, 5].contains { abs($0 - mantissa) < 1e-9 } || abs(mantissa - 10) < 1e-9, "\(high)")
        }
        #expect(ChartScene.tickLabels(ChartScene.ticks(low: 0, high: 97)) == ["0", "20", "40", "60", "80", "100"])
        #expect(
            ChartScene.tickLabels(ChartScene.ticks(low: 0, high: 12_345)) == [
                "0", "2.5k", "5k", "7.5k", "10k", "12.5k",
            ])
        #expect(
            ChartScene.tickLabels(ChartScene.ticks(low: 0, high: 2_400_000)) == [
                "0", "0.5M", "1M", "1.5M", "2M", "2.5M",
            ])
        #expect(try Self.parseSVG(Self.bar.svg())["yticks"] as? [String] == ["0", "100", "200", "300", "400", "500"])
    }

    @Test(
        "numbers: whole without a fraction, others to 6 significant digits",
        arguments: [
            (1.0, "1"), (-3, "-3"), (0, "0"), (2.5, "2.5"), (0.1 + 0.2, "0.3"), (1.0 / 3, "0.333333"),
            (1_234_567.8, "1234570"), (12.000001, "12"), (-0.000125, "-0.000125"), (123_456.75, "123457"),
            (.nan, "NaN"), (.infinity, "inf"),
        ])
    func format(value: Double, expected: String) {
        #expect(ChartScene.format(value) == expected)
    }

    @Test("x labels are thinned so that they do not overlap")
    func xLabels() throws {
        let parsed = try Self.parseSVG(Self.line.svg())
        let lineLabels = try #require(parsed["xticks"] as? [String])
        #expect((5...30).contains(lineLabels.count), "\(lineLabels.count)")
        #expect(lineLabels.first == "d1")
        #expect(try Self.parseSVG(Self.bar.svg())["xticks"] as? [String] == Self.months)
    }

    @Test("DEFLATE output inflates to its input with Python's zlib")
    func deflateRoundTrip() throws {
        var random: UInt32 = 12_345
        let noise = (0..<70_000).map { _ in
            random = random &* 1_103_515_245 &+ 12_345
            return UInt8(truncatingIfNeeded: random >> 16)
        }
        let inputs: [[UInt8]] = [
            [], [7], [1, 2], Array("abcabcabcabcabc".utf8), [UInt8](repeating: 0, count: 100_000), noise,
            // A 20 KB block repeated: matches at distances of 20,000 and up to the 32,768 limit.
            Array((0..<5).map { _ in noise.prefix(20_000) }.joined()),
            (0..<300_000).map { UInt8(($0 / 7 + $0 / 1_000) % 5) },
        ]
        for input in inputs {
            let stream = PNGEncoder.zlib(input)
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            try Data(stream).write(to: directory.appendingPathComponent("z"))
            try Data(input).write(to: directory.appendingPathComponent("raw"))
            let output = try Self.python(
                """
                import sys, zlib
                d = sys.argv[1]
                print(zlib.decompress(open(d + '/z', 'rb').read()) == open(d + '/raw', 'rb').read())
                """, [directory.path])
            #expect(output == "True\n", "\(input.count) bytes")
        }
        #expect(PNGEncoder.zlib([UInt8](repeating: 0, count: 100_000)).count < 1_000)
    }

    // MARK: Helpers

    static func uint32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// CRC-32 bit by bit, independent of the encoder's table.
    static func bitwiseCRC(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("chart-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs `/usr/bin/python3 -c script arguments…` and returns its standard output (a file, not a pipe).
    static func python(_ script: String, _ arguments: [String]) throws -> String {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = directory.appendingPathComponent("stdout")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        defer { try? handle.close() }
        // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
        let process = try SpawnedProcess.start("/usr/bin/python3", ["-c", script] + arguments, stdout: handle)
        let status = process.waitUntilExit()
        try #require(status == 0, "python3 exited with \(status)")
        return try String(contentsOf: output, encoding: .utf8)
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// What Python sees in a PNG: chunk CRCs (`zlib.crc32`), the inflated IDAT size, and, after undoing the row
    /// filters, the colour of the top-left pixel and a pixel count per `#rrggbb`.
    static func pythonFacts(_ png: [UInt8]) throws -> [String: Any] {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("chart.png")
        try Data(png).write(to: file)
        return try json(
            python(
                """
                import json, struct, sys, zlib
                data = open(sys.argv[1], 'rb').read()
                pos, idat, ok, chunks = 8, b'', True, {}
                while pos < len(data):
                    length, kind = struct.unpack('>I4s', data[pos:pos + 8])
                    end = pos + 8 + length
                    ok = ok and zlib.crc32(data[pos + 4:end]) == struct.unpack('>I', data[end:end + 4])[0]
                    chunks[kind] = data[pos + 8:end]
                    if kind == b'IDAT': idat += chunks[kind]
                    pos = end + 4
                width, height, depth, ctype = struct.unpack('>IIBB', chunks[b'IHDR'][:10])
                raw = zlib.decompress(idat)
                plte = chunks[b'PLTE']
                palette = ['#%02x%02x%02x' % tuple(plte[i:i + 3]) for i in range(0, len(plte), 3)]
                def paeth(a, b, c):
                    p = a + b - c
                    return min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
                counts, prev, corner = {}, bytearray(width), None
                for y in range(height):
                    start = y * (width + 1)
                    f, row = raw[start], bytearray(raw[start + 1:start + 1 + width])
                    for x in range(width):
                        a, b, c = (row[x - 1], prev[x], prev[x - 1]) if x else (0, prev[x], 0)
                        row[x] = (row[x] + [0, a, b, (a + b) // 2, paeth(a, b, c) if f == 4 else 0][f]) & 255
                    for v in row: counts[palette[v]] = counts.get(palette[v], 0) + 1
                    if y == 0: corner = palette[row[0]]
                    prev = row
                print(json.dumps({'crcs_ok': ok, 'width': width, 'height': height, 'bit_depth': depth,
                                  'color_type': ctype, 'inflated': len(raw), 'corner': corner, 'counts': counts}))
                """, [file.path]))
    }

    /// What `xml.etree.ElementTree` finds in an SVG: the root tag, the title, each series' name and data-values, the
    /// tick labels and all texts.
    static func parseSVG(_ svg: String) throws -> [String: Any] {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("chart.svg")
        try Data(svg.utf8).write(to: file)
        return try json(
            python(
                """
                import json, sys, xml.etree.ElementTree as ET
                root = ET.parse(sys.argv[1]).getroot()
                ns = '{http://www.w3.org/2000/svg}'
                def texts(c=None): return [t.text or '' for t in root.iter(ns + 'text') if c in (None, t.get('class'))]
                groups = [g for g in root.iter(ns + 'g') if g.get('class') == 'series']
                print(json.dumps({'root': root.tag, 'title': (texts('title') or [''])[0],
                                  'series': [[g.get('data-series'), g.get('data-values')] for g in groups],
                                  'yticks': texts('ytick'), 'xticks': texts('xtick'), 'texts': texts()}))
                """, [file.path]))
    }
}
