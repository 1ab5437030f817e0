/// The base64 of EST bodies (RFC 7030 §4: `Content-Transfer-Encoding: base64`, RFC 2045 §6.8).
public enum ESTBase64 {
    /// Characters per line when encoding; RFC 2045 allows up to 76.
    public static let lineLength = 64

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Base64 with padding, in lines of ``lineLength`` characters, each ended by CRLF. Empty input gives "".
    public static func encode(_ der: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((der.count + 2) / 3 * 4 + (der.count / 48 + 1) * 2)
        var column = 0
        func emit(_ byte: UInt8) {
            out.append(byte)
            column += 1
            if column == lineLength {
                out.append(UInt8(ascii: "\r"))
                out.append(UInt8(ascii: "\n"))
                column = 0
            }
        }
        var index = 0
        while index < der.count {
            let b0 = der[index]
            let b1 = index + 1 < der.count ? der[index + 1] : 0
            let b2 = index + 2 < der.count ? der[index + 2] : 0
            let remaining = der.count - index
            emit(alphabet[Int(b0 >> 2)])
            emit(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            emit(remaining > 1 ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            emit(remaining > 2 ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        if column != 0 {
            out.append(UInt8(ascii: "\r"))
            out.append(UInt8(ascii: "\n"))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes an EST body: base64 with any whitespace (spaces, tabs, CR, LF) anywhere, padded or not, or one PEM
    /// block (`-----BEGIN <label>-----` ... `-----END <label>-----`, same label, no headers; some clients send
    /// `CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST` PEM). Returns nil for anything else: characters outside the
    /// base64 alphabet, misplaced or excess padding, a length no encoder produces, or an empty body.
    public static func decode(_ body: [UInt8]) -> [UInt8]? {
        let payload: ArraySlice<UInt8>
        if let unwrapped = pemPayload(body) {
            payload = unwrapped
        } else {
            payload = body[...]
        }
        return decodeBase64(payload)
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\n")
    }

    private static func value(of byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    private static func decodeBase64(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        var accumulator: UInt32 = 0
        var digits = 0  // base64 digits seen
        var padding = 0  // '=' seen; only whitespace and more '=' may follow one
        for byte in text {
            if isWhitespace(byte) { continue }
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0, let sextet = value(of: byte) else { return nil }
            accumulator = accumulator << 6 | UInt32(sextet)
            digits += 1
            if digits % 4 == 0 {
                out.append(UInt8(truncatingIfNeeded: accumulator >> 16))
                out.append(UInt8(truncatingIfNeeded: accumulator >> 8))
                out.append(UInt8(truncatingIfNeeded: accumulator))
                accumulator = 0
            }
        }
        let tail = digits % 4
        // A final group of 1 digit is impossible; padding, when present, must complete the group exactly.
        guard tail != 1, padding == 0 || (tail != 0 && tail + padding == 4), digits > 0 else { return nil }
        switch tail {
        case 2:
            out.append(UInt8(truncatingIfNeeded: accumulator >> 4))
        case 3:
            out.append(UInt8(truncatingIfNeeded: accumulator >> 10))
            out.append(UInt8(truncatingIfNeeded: accumulator >> 2))
        default:
            break
        }
        return out
    }

    /// The base64 between the BEGIN and END lines, if `body` is one PEM block (surrounding whitespace allowed).
    private static func pemPayload(_ body: [UInt8]) -> ArraySlice<UInt8>? {
        let begin = Array("-----BEGIN ".utf8)
        let end = Array("-----END ".utf8)
        let dashes = Array("-----".utf8)
        var text = body[...]
        while let first = text.first, isWhitespace(first) { text = text.dropFirst() }
        while let last = text.last, isWhitespace(last) { text = text.dropLast() }
        guard text.starts(with: begin) else { return nil }

        // "-----BEGIN <label>-----" then a line break.
        let afterBegin = text.dropFirst(begin.count)
        guard let beginLineEnd = afterBegin.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") })
        else { return nil }
        let beginLine = afterBegin[..<beginLineEnd]
        guard beginLine.count > dashes.count, beginLine.suffix(dashes.count).elementsEqual(dashes) else { return nil }
        let label = beginLine.dropLast(dashes.count)

        // "-----END <label>-----" ends the text.
        let endLine = end + label + dashes
        guard text.count >= endLine.count, text.suffix(endLine.count).elementsEqual(endLine) else { return nil }
        let payloadStart = beginLineEnd
        let payloadEnd = text.endIndex - endLine.count
        guard payloadStart <= payloadEnd else { return nil }
        let payload = text[payloadStart..<payloadEnd]
        // The END line starts a line of its own.
        guard let lastBreak = text[..<payloadEnd].last,
            lastBreak == UInt8(ascii: "\n") || lastBreak == UInt8(ascii: "\r")
        else { return nil }
        return payload
    }
}
