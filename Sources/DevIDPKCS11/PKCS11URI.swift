public import Foundation

/// A key or token named by an RFC 7512 `pkcs11:` URI, as step-ca, OpenSSL's providers and p11-kit write them:
///
/// ```
/// pkcs11:token=devid-ca;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/devid/pin
/// ```
///
/// - Path attributes (`;`-separated) select the token (`token`, `serial`, `manufacturer`, `model`, `slot-id`) and the
///   object (`object` is CKA_LABEL, `id` is CKA_ID as percent-encoded bytes, `type`). An attribute DevID does not
///   know, or one given twice, is refused (RFC 7512 §2.3: an unknown path attribute matches nothing).
/// - Query attributes (`&`-separated): `module-path` (the PKCS#11 library DevID loads with dlopen, required) and
///   `pin-source` (`file:/path`, a bare path, or `env:NAME`). `pin-value` is refused: a PIN is a secret and never
///   belongs in a URI, which ends up in logs, shell history and configuration files. Other query attributes are
///   ignored, as the RFC asks.
///
/// ``description`` is the URI itself: it holds no secret.
public struct PKCS11URI: Sendable, Hashable, CustomStringConvertible {
    public var token: String?
    public var serial: String?
    public var manufacturer: String?
    public var model: String?
    public var slotID: UInt?
    public var object: String?
    public var id: [UInt8]?
    public var type: String?
    public var modulePath: String
    public var pinSource: String?

    /// The text it was parsed from, or the canonical form for one built in code.
    public var description: String { rendered }

    public init(
        token: String? = nil, object: String? = nil, id: [UInt8]? = nil, modulePath: String, pinSource: String? = nil
    ) {
        self.token = token
        self.object = object
        self.id = id
        self.modulePath = modulePath
        self.pinSource = pinSource
    }

    static let pathAttributes: Set<String> = [
        "token", "serial", "manufacturer", "model", "slot-id", "object", "id", "type", "library-manufacturer",
        "library-description", "library-version", "slot-description", "slot-manufacturer",
    ]

    public init(_ text: String) throws(PKCS11Error) {
        guard text.lowercased().hasPrefix("pkcs11:") else {
            throw PKCS11Error(.invalidURI, "not a pkcs11: URI (RFC 7512)")
        }
        let rest = text.dropFirst("pkcs11:".count)
        let parts = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var path: [String: [UInt8]] = [:]
        for pair in parts[0].split(separator: ";") where !pair.isEmpty {
            let (name, value) = try Self.attribute(pair)
            guard Self.pathAttributes.contains(name) else {
                throw PKCS11Error(.invalidURI, "unknown pkcs11: URI path attribute '\(name)'")
            }
            guard path.updateValue(value, forKey: name) == nil else {
                throw PKCS11Error(.invalidURI, "pkcs11: URI attribute '\(name)' given twice")
            }
        }
        var query: [String: [UInt8]] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") where !pair.isEmpty {
                let (name, value) = try Self.attribute(pair)
                guard name != "pin-value" else {
                    throw PKCS11Error(
                        .invalidURI, "pin-value in a pkcs11: URI is refused: name a file or variable with pin-source")
                }
                guard query.updateValue(value, forKey: name) == nil else {
                    throw PKCS11Error(.invalidURI, "pkcs11: URI attribute '\(name)' given twice")
                }
            }
        }
        func value(_ name: String, in attributes: [String: [UInt8]]) throws(PKCS11Error) -> String? {
            guard let bytes = attributes[name] else { return nil }
            return try Self.text(name, bytes)
        }
        guard let module = try value("module-path", in: query), !module.isEmpty else {
            throw PKCS11Error(.invalidURI, "pkcs11: URI names no module-path (the PKCS#11 library to load)")
        }
        modulePath = module
        pinSource = try value("pin-source", in: query)
        token = try value("token", in: path)
        serial = try value("serial", in: path)
        manufacturer = try value("manufacturer", in: path)
        model = try value("model", in: path)
        object = try value("object", in: path)
        type = try value("type", in: path)
        if let slot = try value("slot-id", in: path) {
            guard let number = UInt(slot) else { throw PKCS11Error(.invalidURI, "pkcs11: URI slot-id is not a number") }
            slotID = number
        }
        id = path["id"]
        guard token != nil || serial != nil || slotID != nil else {
            throw PKCS11Error(.invalidURI, "pkcs11: URI names no token (token=, serial= or slot-id=)")
        }
        if let type, !["private", "public", "cert", "data", "secret-key"].contains(type) {
            throw PKCS11Error(.invalidURI, "pkcs11: URI type '\(type)' is not one of private, public, cert, data, secret-key")
        }
        original = text
    }

    private var original: String?

    /// `name=value` with the value percent-decoded (bytes, for `id`).
    static func attribute(_ pair: Substring) throws(PKCS11Error) -> (String, [UInt8]) {
        guard let equals = pair.firstIndex(of: "=") else {
            throw PKCS11Error(.invalidURI, "a pkcs11: URI attribute has no '=' (name=value)")
        }
        let name = String(pair[..<equals]).lowercased()
        let raw = pair[pair.index(after: equals)...]
        guard let value = percentDecoded(raw) else {
            throw PKCS11Error(.invalidURI, "pkcs11: URI attribute '\(name)' has a bad percent-encoding")
        }
        return (name, value)
    }

    /// A text attribute's value: UTF-8.
    static func text(_ name: String, _ bytes: [UInt8]) throws(PKCS11Error) -> String {
        guard let value = String(validating: bytes, as: UTF8.self) else {
            throw PKCS11Error(.invalidURI, "pkcs11: URI attribute '\(name)' is not UTF-8")
        }
        return value
    }

    /// The bytes of percent-encoded text (RFC 3986 §2.1); nil for a bad escape.
    static func percentDecoded(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%") {
                guard index + 2 < utf8.count, let h = hexValue(utf8[index + 1]), let l = hexValue(utf8[index + 2])
                else { return nil }
                bytes.append(h << 4 | l)
                index += 3
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return bytes
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The same URI naming `object` in the same token (for the keys DevID creates under a token URI).
    public func naming(object: String) -> PKCS11URI {
        var copy = tokenURI
        copy.object = object
        return copy
    }

    /// The URI with the object dropped: the token alone.
    public var tokenURI: PKCS11URI {
        var copy = self
        copy.object = nil
        copy.id = nil
        copy.type = nil
        copy.original = nil
        return copy
    }

    var rendered: String {
        if let original { return original }
        var path: [String] = []
        if let token { path.append("token=" + Self.encoded(token)) }
        if let serial { path.append("serial=" + Self.encoded(serial)) }
        if let manufacturer { path.append("manufacturer=" + Self.encoded(manufacturer)) }
        if let model { path.append("model=" + Self.encoded(model)) }
        if let slotID { path.append("slot-id=\(slotID)") }
        if let object { path.append("object=" + Self.encoded(object)) }
        if let id { path.append("id=" + id.map { "%" + String(format: "%02X", $0) }.joined()) }
        if let type { path.append("type=" + type) }
        var query = ["module-path=" + Self.encoded(modulePath, keepSlash: true)]
        if let pinSource { query.append("pin-source=" + Self.encoded(pinSource, keepSlash: true)) }
        return "pkcs11:" + path.joined(separator: ";") + "?" + query.joined(separator: "&")
    }

    static func encoded(_ text: String, keepSlash: Bool = false) -> String {
        var out = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            let unreserved =
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || "-._~".unicodeScalars.contains(scalar)
                || (keepSlash && (byte == UInt8(ascii: "/") || byte == UInt8(ascii: ":")))
            out += unreserved ? String(scalar) : "%" + String(format: "%02X", byte)
        }
        return out
    }

    /// True for text that is meant as a `pkcs11:` URI (where a command takes a file or a URI).
    public static func isURI(_ text: String) -> Bool { text.lowercased().hasPrefix("pkcs11:") }

    /// The user PIN from ``pinSource``: the file's first line, or the environment variable; nil when no source.
    public func readPIN(environment: [String: String] = ProcessInfo.processInfo.environment) throws(PKCS11Error) -> [UInt8]? {
        guard let source = pinSource else { return nil }
        if source.hasPrefix("env:") {
            let name = String(source.dropFirst(4))
            guard let value = environment[name], !value.isEmpty else {
                throw PKCS11Error(.pinUnavailable, "pin-source \(source): the environment variable \(name) is not set")
            }
            return Array(value.utf8)
        }
        let path = source.hasPrefix("file://") ? String(source.dropFirst(7)) : source.hasPrefix("file:") ? String(source.dropFirst(5)) : source
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PKCS11Error(.pinUnavailable, "pin-source \(source): the file cannot be read")
        }
        // The first line.
        var bytes = Array(Array(data).prefix { $0 != 0x0A })
        while let last = bytes.last, last == 0x0D { bytes.removeLast() }
        guard !bytes.isEmpty else { throw PKCS11Error(.pinUnavailable, "pin-source \(source): the file is empty") }
        return bytes
    }
}
