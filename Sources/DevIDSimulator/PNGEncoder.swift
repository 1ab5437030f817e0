/// A dependency-free PNG writer for 8-bit indexed-colour images, with its own zlib/DEFLATE compressor.
///
/// DEFLATE uses fixed Huffman codes and greedy LZ77 over hash chains of 3-byte prefixes (32 KiB window), which suits
/// charts: long flat runs and rows that repeat the one above. Each row gets the filter (None, Sub or Up) with the
/// smallest sum of absolute differences. Output is deterministic.
enum PNGEncoder {
    static let signature: [UInt8] = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

    /// A colour type 3 PNG: `pixels` holds `width * height` indices into `palette` (at most 256 entries).
    static func indexed(width: Int, height: Int, palette: [ChartColor], pixels: [UInt8]) -> [UInt8] {
        precondition(pixels.count == width * height && (1...256).contains(palette.count))
        var header: [UInt8] = []
        append32(UInt32(width), to: &header)
        append32(UInt32(height), to: &header)
        header += [8, 3, 0, 0, 0]  // bit depth, colour type, compression, filter, interlace
        var out = signature
        appendChunk("IHDR", header, to: &out)
        appendChunk("PLTE", palette.flatMap { [$0.red, $0.green, $0.blue] }, to: &out)
        appendChunk("IDAT", zlib(filtered(width: width, height: height, pixels: pixels)), to: &out)
        appendChunk("IEND", [], to: &out)
        return out
    }

    /// Each row prefixed with its filter type (one byte a pixel).
    static func filtered(width: Int, height: Int, pixels: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(height * (width + 1))
        var candidates = [[UInt8]](repeating: [UInt8](repeating: 0, count: width), count: 3)
        for y in 0..<height {
            let row = y * width
            for x in 0..<width {
                let pixel = pixels[row + x]
                candidates[0][x] = pixel
                candidates[1][x] = pixel &- (x > 0 ? pixels[row + x - 1] : 0)
                candidates[2][x] = pixel &- (y > 0 ? pixels[row - width + x] : 0)
            }
            let costs = candidates.map { $0.reduce(0) { $0 + abs(Int(Int8(bitPattern: $1))) } }
            let best = costs.indices.min { costs[$0] < costs[$1] }!
            out.append(UInt8(best))
            out += candidates[best]
        }
        return out
    }

    private static func appendChunk(_ type: String, _ data: [UInt8], to out: inout [UInt8]) {
        append32(UInt32(data.count), to: &out)
        let body = Array(type.utf8) + data
        out += body
        append32(crc32(body), to: &out)
    }

    private static func append32(_ value: UInt32, to out: inout [UInt8]) {
        out += [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        (0..<8).reduce(UInt32(n)) { c, _ in c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1 }
    }

    /// CRC-32 (ISO 3309, as PNG and zlib use it).
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        ~bytes.reduce(~UInt32(0)) { crc, byte in crcTable[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
    }

    /// Adler-32 (RFC 1950).
    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var (a, b): (UInt32, UInt32) = (1, 0)
        var start = 0
        while start < bytes.count {
            let end = min(start + 5552, bytes.count)  // the most bytes before `b` can overflow
            for byte in bytes[start..<end] {
                a += UInt32(byte)
                b += a
            }
            (a, b) = (a % 65521, b % 65521)
            start = end
        }
        return b << 16 | a
    }

    /// A zlib stream (RFC 1950): header, one DEFLATE stream, Adler-32.
    static func zlib(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]  // 32 KiB window, no dictionary, "fastest" level
        out += deflate(bytes)
        append32(adler32(bytes), to: &out)
        return out
    }

    private static let lengthBase: [Int] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
        258,
    ]
    private static let lengthExtra: [Int] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ]
    private static let distanceBase: [Int] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
        6145, 8193, 12289, 16385, 24577,
    ]

    /// One final DEFLATE block (RFC 1951) with the fixed Huffman codes.
    static func deflate(_ data: [UInt8]) -> [UInt8] {
        let window = 32768
        let maxMatch = 258
        let maxChain = 64
        var writer = BitWriter()
        writer.write(0b011, 3)  // BFINAL, BTYPE = 01
        var head = [Int32](repeating: -1, count: 1 << 15)
        var previous = [Int32](repeating: -1, count: window)
        func hash(_ i: Int) -> Int {
            let key = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16
            return Int((key &* 2_654_435_761) >> 17)
        }
        func insert(_ i: Int) {
            guard i + 2 < data.count else { return }
            let h = hash(i)
            previous[i & (window - 1)] = head[h]
            head[h] = Int32(i)
        }
        var i = 0
        while i < data.count {
            var (bestLength, bestDistance) = (0, 0)
            if i + 2 < data.count {
                let limit = min(maxMatch, data.count - i)
                var candidate = Int(head[hash(i)])
                var chain = maxChain
                while candidate >= 0, i - candidate <= window, chain > 0 {
                    if data[candidate + bestLength] == data[i + bestLength] {
                        var length = 0
                        while length < limit, data[candidate + length] == data[i + length] { length += 1 }
                        if length > bestLength {
                            (bestLength, bestDistance) = (length, i - candidate)
                            if length == limit { break }
                        }
                    }
                    let next = Int(previous[candidate & (window - 1)])
                    guard next < candidate else { break }
                    candidate = next
                    chain -= 1
                }
            }
            if bestLength >= 3 {
                writer.writeLength(bestLength)
                writer.writeDistance(bestDistance)
                for j in i..<i + bestLength { insert(j) }
                i += bestLength
            } else {
                writer.writeSymbol(Int(data[i]))
                insert(i)
                i += 1
            }
        }
        writer.writeSymbol(256)
        writer.flush()
        return writer.bytes
    }

    /// Bits packed least significant first; Huffman codes go most significant bit first.
    private struct BitWriter {
        var bytes: [UInt8] = []
        private var buffer: UInt64 = 0
        private var count = 0

        mutating func write(_ value: Int, _ bits: Int) {
            buffer |= UInt64(value) << UInt64(count)
            count += bits
            while count >= 8 {
                bytes.append(UInt8(truncatingIfNeeded: buffer))
                buffer >>= 8
                count -= 8
            }
        }

        mutating func writeCode(_ code: Int, _ bits: Int) {
            var reversed = 0
            for bit in 0..<bits { reversed |= (code >> bit & 1) << (bits - 1 - bit) }
            write(reversed, bits)
        }

        /// A literal/length symbol in the fixed code.
        mutating func writeSymbol(_ symbol: Int) {
            switch symbol {
            case 0...143: writeCode(0x30 + symbol, 8)
            case 144...255: writeCode(0x190 + symbol - 144, 9)
            case 256...279: writeCode(symbol - 256, 7)
            default: writeCode(0xc0 + symbol - 280, 8)
            }
        }

        mutating func writeLength(_ length: Int) {
            let code = PNGEncoder.lengthBase.lastIndex { $0 <= length }!
            writeSymbol(257 + code)
            write(length - PNGEncoder.lengthBase[code], PNGEncoder.lengthExtra[code])
        }

        mutating func writeDistance(_ distance: Int) {
            let code = PNGEncoder.distanceBase.lastIndex { $0 <= distance }!
            writeCode(code, 5)
            write(distance - PNGEncoder.distanceBase[code], max(0, code / 2 - 1))
        }

        mutating func flush() {
            if count > 0 { bytes.append(UInt8(truncatingIfNeeded: buffer)) }
            buffer = 0
            count = 0
        }
    }
}
