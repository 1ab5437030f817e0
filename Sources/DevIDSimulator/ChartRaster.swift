/// A palette-indexed pixel buffer that draws a ``ChartScene``: filled rectangles, Bresenham lines, bitmap text. No
/// anti-aliasing, so a chart needs only a handful of palette entries and compresses well.
struct ChartRaster: Sendable {
    let width: Int
    let height: Int
    /// Row-major palette indices.
    private(set) var pixels: [UInt8]
    /// Colours in order of first use; the background is entry 0.
    private(set) var palette: [ChartColor]
    private var indices: [ChartColor: UInt8]

    init(width: Int, height: Int, background: ChartColor) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height)
        palette = [background]
        indices = [background: 0]
    }

    /// The palette entry for `color`, added on first use (at most 256 entries; then the nearest existing one).
    mutating func index(of color: ChartColor) -> UInt8 {
        if let index = indices[color] { return index }
        guard palette.count < 256 else {
            func distance(_ other: ChartColor) -> Int {
                let (r, g, b) = (
                    Int(color.red) - Int(other.red), Int(color.green) - Int(other.green),
                    Int(color.blue) - Int(other.blue)
                )
                return r * r + g * g + b * b
            }
            return UInt8(palette.indices.min { distance(palette[$0]) < distance(palette[$1]) }!)
        }
        palette.append(color)
        indices[color] = UInt8(palette.count - 1)
        return UInt8(palette.count - 1)
    }

    /// Pixels `x0..<x1` by `y0..<y1`, clipped.
    mutating func fill(x0: Int, y0: Int, x1: Int, y1: Int, index: UInt8) {
        let (left, right) = (max(x0, 0), min(x1, width))
        let (top, bottom) = (max(y0, 0), min(y1, height))
        guard left < right, top < bottom else { return }
        for y in top..<bottom {
            pixels.replaceSubrange(
                y * width + left..<y * width + right, with: repeatElement(index, count: right - left))
        }
    }

    /// A Bresenham line drawn with a square pen `thickness` pixels wide.
    mutating func line(x0: Int, y0: Int, x1: Int, y1: Int, thickness: Int, index: UInt8) {
        let (dx, dy) = (abs(x1 - x0), -abs(y1 - y0))
        let (sx, sy) = (x0 < x1 ? 1 : -1, y0 < y1 ? 1 : -1)
        var (x, y, error) = (x0, y0, dx + dy)
        let offset = (thickness - 1) / 2
        while true {
            fill(x0: x - offset, y0: y - offset, x1: x - offset + thickness, y1: y - offset + thickness, index: index)
            if x == x1, y == y1 { return }
            let doubled = 2 * error
            if doubled >= dy {
                error += dy
                x += sx
            }
            if doubled <= dx {
                error += dx
                y += sy
            }
        }
    }

    /// `text` with its baseline at `y`, anchored at `x`; `vertical` text reads upwards, rotated about `(x, y)`.
    mutating func text(
        _ text: String, x: Int, y: Int, scale: Int, anchor: ChartScene.Anchor, vertical: Bool, index: UInt8
    ) {
        let glyphs = text.unicodeScalars.map(BitmapFont.glyph)
        let length = glyphs.count * BitmapFont.advance * scale - scale
        var along =
            switch anchor {
            case .start: 0
            case .middle: -length / 2
            case .end: -length
            }
        for glyph in glyphs {
            for (row, bits) in glyph.enumerated() {
                for column in 0..<BitmapFont.width where bits & (0x10 >> column) != 0 {
                    let u = along + column * scale
                    let v = (row - BitmapFont.ascent) * scale
                    let (px, py) = vertical ? (x + v, y - u - scale + 1) : (x + u, y + v)
                    fill(x0: px, y0: py, x1: px + scale, y1: py + scale, index: index)
                }
            }
            along += BitmapFont.advance * scale
        }
    }

    /// Draws every mark of `scene`, in order.
    mutating func draw(_ scene: ChartScene) {
        for mark in scene.marks { draw(mark) }
    }

    private mutating func draw(_ mark: ChartScene.Mark) {
        func r(_ value: Double) -> Int { Int(value.rounded()) }
        switch mark {
        case .rect(let x, let y, let width, let height, let color):
            fill(x0: r(x), y0: r(y), x1: r(x + width), y1: r(y + height), index: index(of: color))
        case .line(let x1, let y1, let x2, let y2, let color, let width):
            line(x0: r(x1), y0: r(y1), x1: r(x2), y1: r(y2), thickness: r(width), index: index(of: color))
        case .polyline(let points, let color, let width):
            let index = index(of: color)
            for (a, b) in zip(points, points.dropFirst()) {
                line(x0: r(a.x), y0: r(a.y), x1: r(b.x), y1: r(b.y), thickness: r(width), index: index)
            }
        case .text(let text, let x, let y, let style, let anchor, let vertical, _):
            self.text(
                text, x: r(x), y: r(y), scale: style == .title ? 2 : 1, anchor: anchor, vertical: vertical,
                index: index(of: .ink))
        case .series(_, let marks):
            for mark in marks { draw(mark) }
        }
    }
}

/// A 5 × 8 bitmap font for ASCII 32...126: 7 rows down to the baseline and one for descenders, 1 pixel between
/// characters. Anything else is drawn as `?`.
enum BitmapFont {
    static let width = 5
    static let ascent = 7
    static let advance = 6

    /// Rows top to bottom, bit 4 the leftmost column.
    static func glyph(_ scalar: Unicode.Scalar) -> [UInt8] {
        let code = Int(scalar.value)
        return (32...126).contains(code) ? glyphs[code - 32] : glyphs[Int(("?" as Unicode.Scalar).value) - 32]
    }

    /// Parsed from ``art``.
    private static let glyphs: [[UInt8]] = art.map { rows in
        rows.split(separator: "/", omittingEmptySubsequences: false).map { row in
            row.reduce(0) { bits, pixel in bits << 1 | (pixel == "#" ? 1 : 0) }
        }
    }

    /// One glyph a string, rows separated by `/`, `#` for ink; missing rows are blank.
    private static let art: [String] = [
        "", "..#../..#../..#../..#../..#../...../..#..", ".#.#./.#.#./.#.#.",  // space ! "
        ".#.#./.#.#./#####/.#.#./#####/.#.#./.#.#.", "..#../.####/#.#../.###./..#.#/####./..#..",  // # $
        "##.../##..#/...#./..#../.#.../#..##/...##", ".##../#..#./#.#../.#.../#.#.#/#..#./.##.#",  // % &
        "..#../..#../.#...", "...#./..#../.#.../.#.../.#.../..#../...#.",  // ' (
        ".#.../..#../...#./...#./...#./..#../.#...", "...../..#../#.#.#/.###./#.#.#/..#../.....",  // ) *
        "...../..#../..#../#####/..#../..#../.....", "...../...../...../...../...../.##../..#../.#...",  // + ,
        "...../...../...../#####/...../...../.....", "...../...../...../...../...../.##../.##..",  // - .
        "...../....#/...#./..#../.#.../#..../.....", ".###./#...#/#..##/#.#.#/##..#/#...#/.###.",  // / 0
        "..#../.##../..#../..#../..#../..#../.###.", ".###./#...#/....#/...#./..#../.#.../#####",  // 1 2
        "#####/...#./..#../...#./....#/#...#/.###.", "...#./..##./.#.#./#..#./#####/...#./...#.",  // 3 4
        "#####/#..../####./....#/....#/#...#/.###.", "..##./.#.../#..../####./#...#/#...#/.###.",  // 5 6
        "#####/....#/...#./..#../.#.../.#.../.#...", ".###./#...#/#...#/.###./#...#/#...#/.###.",  // 7 8
        ".###./#...#/#...#/.####/....#/...#./.##..", "...../.##../.##../...../.##../.##../.....",  // 9 :
        "...../.##../.##../...../.##../..#../.#...", "...#./..#../.#.../#..../.#.../..#../...#.",  // ; <
        "...../...../#####/...../#####/...../.....", ".#.../..#../...#./....#/...#./..#../.#...",  // = >
        ".###./#...#/....#/...#./..#../...../..#..", ".###./#...#/....#/.##.#/#.#.#/#.#.#/.###.",  // ? @
        ".###./#...#/#...#/#####/#...#/#...#/#...#", "####./#...#/#...#/####./#...#/#...#/####.",  // A B
        ".###./#...#/#..../#..../#..../#...#/.###.", "###../#..#./#...#/#...#/#...#/#..#./###..",  // C D
        "#####/#..../#..../####./#..../#..../#####", "#####/#..../#..../####./#..../#..../#....",  // E F
        ".###./#...#/#..../#.###/#...#/#...#/.####", "#...#/#...#/#...#/#####/#...#/#...#/#...#",  // G H
        ".###./..#../..#../..#../..#../..#../.###.", "..###/...#./...#./...#./...#./#..#./.##..",  // I J
        "#...#/#..#./#.#../##.../#.#../#..#./#...#", "#..../#..../#..../#..../#..../#..../#####",  // K L
        "#...#/##.##/#.#.#/#.#.#/#...#/#...#/#...#", "#...#/#...#/##..#/#.#.#/#..##/#...#/#...#",  // M N
        ".###./#...#/#...#/#...#/#...#/#...#/.###.", "####./#...#/#...#/####./#..../#..../#....",  // O P
        ".###./#...#/#...#/#...#/#.#.#/#..#./.##.#", "####./#...#/#...#/####./#.#../#..#./#...#",  // Q R
        ".####/#..../#..../.###./....#/....#/####.", "#####/..#../..#../..#../..#../..#../..#..",  // S T
        "#...#/#...#/#...#/#...#/#...#/#...#/.###.", "#...#/#...#/#...#/#...#/#...#/.#.#./..#..",  // U V
        "#...#/#...#/#...#/#.#.#/#.#.#/#.#.#/.#.#.", "#...#/#...#/.#.#./..#../.#.#./#...#/#...#",  // W X
        "#...#/#...#/.#.#./..#../..#../..#../..#..", "#####/....#/...#./..#../.#.../#..../#####",  // Y Z
        ".###./.#.../.#.../.#.../.#.../.#.../.###.", "...../#..../.#.../..#../...#./....#/.....",  // [ \
        ".###./...#./...#./...#./...#./...#./.###.", "..#../.#.#./#...#",  // ] ^
        "...../...../...../...../...../...../#####", ".#.../..#../...#.",  // _ `
        "...../...../.###./....#/.####/#...#/.####", "#..../#..../#.##./##..#/#...#/#...#/####.",  // a b
        "...../...../.###./#..../#..../#...#/.###.", "....#/....#/.##.#/#..##/#...#/#...#/.####",  // c d
        "...../...../.###./#...#/#####/#..../.###.", "..##./.#..#/.#.../###../.#.../.#.../.#...",  // e f
        "...../...../.####/#...#/#...#/.####/....#/.###.", "#..../#..../#.##./##..#/#...#/#...#/#...#",  // g h
        "..#../...../.##../..#../..#../..#../.###.", "...#./...../..##./...#./...#./...#./#..#./.##..",  // i j
        "#..../#..../#..#./#.#../##.../#.#../#..#.", ".##../..#../..#../..#../..#../..#../.###.",  // k l
        "...../...../##.#./#.#.#/#.#.#/#...#/#...#", "...../...../#.##./##..#/#...#/#...#/#...#",  // m n
        "...../...../.###./#...#/#...#/#...#/.###.", "...../...../####./#...#/#...#/####./#..../#....",  // o p
        "...../...../.####/#...#/#...#/.####/....#/....#", "...../...../#.##./##..#/#..../#..../#....",  // q r
        "...../...../.####/#..../.###./....#/####.", ".#.../.#.../###../.#.../.#.../.#..#/..##.",  // s t
        "...../...../#...#/#...#/#...#/#..##/.##.#", "...../...../#...#/#...#/#...#/.#.#./..#..",  // u v
        "...../...../#...#/#...#/#.#.#/#.#.#/.#.#.", "...../...../#...#/.#.#./..#../.#.#./#...#",  // w x
        "...../...../#...#/#...#/#...#/.####/....#/.###.", "...../...../#####/...#./..#../.#.../#####",  // y z
        "...#./..#../..#../.#.../..#../..#../...#.", "..#../..#../..#../..#../..#../..#../..#..",  // { |
        ".#.../..#../..#../...#./..#../..#../.#...", "...../...../.#.../#.#.#/...#./...../.....",  // } ~
    ]
}
