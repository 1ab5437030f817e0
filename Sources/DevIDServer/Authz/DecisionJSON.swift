import Hummingbird
import NIOCore

/// Reading and writing the decision API's small JSON bodies without Foundation's coders on the common path.
///
/// A profile of `POST /v1/authz/mqtt` grants spent about 11% of the server's CPU in `JSONDecoder` and `JSONEncoder`
/// (each with a new coder per request) for bodies of about 100 bytes. The common shapes are handled here directly;
/// anything else still goes through `JSONDecoder`, so every body gets exactly the answer it got before (the same
/// fields, or the same `400`).
enum DecisionJSON {
    /// The members of a flat JSON object whose values are all strings without escape sequences but `\/`, or `null`
    /// (left out, as `JSONDecoder` reads a `null` optional). Nil when the body is anything else: nested values,
    /// numbers, booleans, escapes, a repeated key, invalid UTF-8, trailing bytes. The caller then uses
    /// `JSONDecoder`.
    static func flatObject(_ buffer: ByteBuffer) -> [String: String]? {
        buffer.withUnsafeReadableBytes { bytes -> [String: String]? in
            var reader = Reader(bytes: bytes)
            return reader.flatObject()
        }
    }

    /// Decodes `T`: through `fast` from ``flatObject(_:)`` when the body has that shape and `fast` accepts it,
    /// otherwise with the context's `JSONDecoder` (and Hummingbird's `400` for a body that does not decode).
    static func decode<T: Decodable, Context: RequestContext>(
        _ type: T.Type, _ request: Request, context: Context, fast: ([String: String]) -> T?
    ) async throws -> T {
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        if let fields = flatObject(buffer), let value = fast(fields) { return value }
        var request = request
        request.body = RequestBody(buffer: buffer)
        return try await request.decode(as: type, context: context)
    }

    /// The decision as `JSONEncoder` with sorted keys writes it (`DevIDJSON.encoder`), byte for byte.
    static func response(_ decision: DecisionResponse) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: body(decision)))
    }

    /// The body of ``response(_:)``.
    static func body(_ decision: DecisionResponse) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(160)
        buffer.writeStaticString("{")
        var first = true
        func member(_ key: StaticString, _ value: String?) {
            guard let value else { return }
            if !first { buffer.writeStaticString(",") }
            first = false
            buffer.writeStaticString("\"")
            buffer.writeStaticString(key)
            buffer.writeStaticString("\":")
            writeString(value, to: &buffer)
        }
        member("device", decision.device)
        member("reason", decision.reason)
        member("result", decision.result)
        member("serial", decision.serial)
        member("tenant", decision.tenant)
        buffer.writeStaticString("}")
        return buffer
    }

    /// A JSON string as ``DevIDJSON/encoder`` escapes it: `"` and `\` with a backslash, the C escapes
    /// for backspace, form feed, newline, carriage return and tab, other control characters as `\u00XX`; every
    /// other character as its UTF-8.
    static func writeString(_ value: String, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("\"")
        var plain = true
        for byte in value.utf8 where byte < 0x20 || byte == 0x22 || byte == 0x5c {
            plain = false
            break
        }
        if plain {
            buffer.writeString(value)
        } else {
            let hex: [UInt8] = Array("0123456789abcdef".utf8)
            for byte in value.utf8 {
                switch byte {
                case 0x22: buffer.writeStaticString("\\\"")
                case 0x5c: buffer.writeStaticString("\\\\")
                case 0x08: buffer.writeStaticString("\\b")
                case 0x0c: buffer.writeStaticString("\\f")
                case 0x0a: buffer.writeStaticString("\\n")
                case 0x0d: buffer.writeStaticString("\\r")
                case 0x09: buffer.writeStaticString("\\t")
                case 0x00..<0x20:
                    buffer.writeStaticString("\\u00")
                    buffer.writeInteger(hex[Int(byte >> 4)])
                    buffer.writeInteger(hex[Int(byte & 0x0f)])
                default: buffer.writeInteger(byte)
                }
            }
        }
        buffer.writeStaticString("\"")
    }

    /// A cursor over the body's bytes.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        mutating func flatObject() -> [String: String]? {
            var fields: [String: String] = [:]
            // Keys whose value was `null`: absent from `fields`, but still checked for repetition.
            var nulls: [String] = []
            skipSpace()
            guard take(UInt8(ascii: "{")) else { return nil }
            skipSpace()
            if !take(UInt8(ascii: "}")) {
                while true {
                    guard let key = string() else { return nil }
                    skipSpace()
                    guard take(UInt8(ascii: ":")) else { return nil }
                    skipSpace()
                    if peek == UInt8(ascii: "\"") {
                        guard let value = string(), fields.updateValue(value, forKey: key) == nil else { return nil }
                    } else {
                        guard takeNull() else { return nil }
                        nulls.append(key)
                    }
                    skipSpace()
                    if take(UInt8(ascii: ",")) {
                        skipSpace()
                        continue
                    }
                    guard take(UInt8(ascii: "}")) else { return nil }
                    break
                }
            }
            skipSpace()
            guard index == bytes.count else { return nil }
            for (position, key) in nulls.enumerated() {
                guard fields[key] == nil, !nulls[..<position].contains(key) else { return nil }
            }
            return fields
        }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d { index += 1 }
        }

        /// `null`, not followed by another letter.
        mutating func takeNull() -> Bool {
            guard index + 4 <= bytes.count, bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
                bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l")
            else { return false }
            index += 4
            return true
        }

        /// A string without control characters, valid UTF-8, whose only escape is `\/` (a `/`, as Foundation's
        /// `JSONEncoder` and `JSONSerialization` write every slash of a topic by default).
        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            var slashes = 0
            while let byte = peek, byte != UInt8(ascii: "\"") {
                guard byte >= 0x20 else { return nil }
                if byte == UInt8(ascii: "\\") {
                    guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "/") else { return nil }
                    slashes += 1
                    index += 1
                }
                index += 1
            }
            guard take(UInt8(ascii: "\"")) else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<index - 1])
            guard slashes > 0 else { return String(validating: raw, as: UTF8.self) }
            var unescaped: [UInt8] = []
            unescaped.reserveCapacity(raw.count - slashes)
            var position = 0
            while position < raw.count {
                if raw[position] == UInt8(ascii: "\\") { position += 1 }
                unescaped.append(raw[position])
                position += 1
            }
            return String(validating: unescaped, as: UTF8.self)
        }
    }
}

/// The decision API's fast body reader, for the `decision-json` fuzz target: it checks the reader against
/// `JSONDecoder` on every input libFuzzer makes.
public enum DecisionBodyReader {
    /// The members ``DecisionJSON/flatObject(_:)`` reads from `bytes`, or nil where it steps aside.
    public static func fastMembers(_ bytes: [UInt8]) -> [String: String]? {
        DecisionJSON.flatObject(ByteBuffer(bytes: bytes))
    }
}
