/// Identifiers that end up in certificate names, SPIFFE URIs, topics and file names.
///
/// They are deliberately narrow: 1–64 characters of `A–Z a–z 0–9 . _ -`, not starting with `.` or `-`.
/// That keeps them safe in every place they are pasted into (URIs, MQTT topics, paths, SQL identifiers
/// are never built from them, but logs and file names are).
///
/// A **new** tenant or device id may not contain a `.` either (``isValidNew(_:)``): RabbitMQ turns MQTT's `/` into
/// `.`, so `tenants/acme.eu/...` and `tenants/acme/eu/...` are the same routing key, and a dot would let one id
/// reach another's topics. Ids stored before that rule still load (``isValid(_:)`` is what reading uses); the
/// policy-decision engine denies them every RabbitMQ topic (`dotted_id`) until they are re-provisioned.
public enum IdentifierRules {
    public static let maximumLength = 64

    /// Whether `value` may name a tenant or device created now: ``isValid(_:)`` and no `.`.
    public static func isValidNew(_ value: String) -> Bool {
        isValid(value) && !hasDot(value)
    }

    /// Whether a (stored) id contains a `.`, which RabbitMQ cannot tell from a topic level separator.
    public static func hasDot(_ value: String) -> Bool {
        value.utf8.contains(UInt8(ascii: "."))
    }

    public static func isValid(_ value: String) -> Bool {
        guard !value.isEmpty, value.utf8.count <= maximumLength else { return false }
        guard let first = value.utf8.first, first != UInt8(ascii: "."), first != UInt8(ascii: "-") else {
            return false
        }
        return value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}

/// A device's id: the LDevID's subject CN and the last segment of its SPIFFE id.
public struct DeviceID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard IdentifierRules.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    public init(_ value: String) throws(DevIDCoreError) {
        guard let id = DeviceID(rawValue: value) else { throw .invalidIdentifier(kind: "device id") }
        self = id
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard let id = DeviceID(rawValue: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid device id"))
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension DeviceID {
    /// The device id a self-registering IDevID (or a minted lot) gets: its hardware serial with every character
    /// outside `A-Z a-z 0-9 _ -` (the `.` included, see ``IdentifierRules/isValidNew(_:)``) replaced by `_`, cut to
    /// 64 characters, prefixed with `hw` if it would start with `-`.
    public init(derivedFromHardwareSerial serial: String) {
        var characters = serial.unicodeScalars.map { scalar -> Character in
            let allowed = scalar.isASCII
                && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || scalar == "_" || scalar == "-")
            return allowed ? Character(scalar) : "_"
        }
        if characters.isEmpty { characters = ["h", "w"] }
        if characters[0] == "-" { characters.insert(contentsOf: ["h", "w"], at: 0) }
        self.rawValue = String(characters.prefix(IdentifierRules.maximumLength))
    }

    /// A device id for a device created now: refuses what ``init(_:)`` refuses, and a `.`.
    public init(newID value: String) throws(DevIDCoreError) {
        let id = try DeviceID(value)
        guard !id.hasDot else { throw .dottedIdentifier(kind: "device id") }
        self = id
    }

    /// True for an id stored before dots were refused in new ids.
    public var hasDot: Bool { IdentifierRules.hasDot(rawValue) }
}

/// A tenant: the customer or site a device belongs to; the boundary no identity may cross.
public struct TenantID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard IdentifierRules.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    public init(_ value: String) throws(DevIDCoreError) {
        guard let id = TenantID(rawValue: value) else { throw .invalidIdentifier(kind: "tenant") }
        self = id
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard let id = TenantID(rawValue: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid tenant"))
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension TenantID {
    /// A tenant id for a tenant created now: refuses what ``init(_:)`` refuses, and a `.`.
    public init(newID value: String) throws(DevIDCoreError) {
        let id = try TenantID(value)
        guard !id.hasDot else { throw .dottedIdentifier(kind: "tenant id") }
        self = id
    }

    /// True for an id stored before dots were refused in new ids.
    public var hasDot: Bool { IdentifierRules.hasDot(rawValue) }
}

extension DevIDCoreError {
    /// A new tenant or device id with a `.` (code ``Code/invalidIdentifier``).
    public static func dottedIdentifier(kind: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(
            code: .invalidIdentifier,
            reason: "a new \(kind) may not contain a dot (RabbitMQ reads it as a topic level separator); use _ or -",
            file: file, line: line)
    }
}

/// A manufacturing lot: the unit of batch revocation.
public struct LotID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard IdentifierRules.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    public init(_ value: String) throws(DevIDCoreError) {
        guard let id = LotID(rawValue: value) else { throw .invalidIdentifier(kind: "lot") }
        self = id
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard let id = LotID(rawValue: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid lot"))
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A certificate serial number as lowercase hex without separators (what `openssl x509 -serial` prints, lowercased).
public struct SerialNumber: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init?(rawValue: String) {
        let lowered = rawValue.lowercased()
        guard !lowered.isEmpty, lowered.count <= 40, lowered.utf8.allSatisfy({ $0.isHexDigit }) else { return nil }
        self.rawValue = lowered
    }
    /// The most octets a serial may have (RFC 5280 §4.1.2.2), and so the most a ``SerialNumber`` holds.
    public static let maximumOctets = 20

    /// The serial of a certificate's DER INTEGER content `bytes`. Always a valid value, whatever a peer sent:
    /// - up to ``maximumOctets`` octets: their lowercase hex;
    /// - longer (which RFC 5280 forbids, yet a self-signed certificate may carry): `0000` and the hex of the first
    ///   18 octets. A minimal DER INTEGER never starts with two zero octets, so this can never equal the serial of
    ///   a conforming certificate; ``isTruncated`` tells it apart.
    /// - none (not valid DER): `00`.
    public init(bytes: some Sequence<UInt8>) {
        let octets = Array(bytes)
        if octets.isEmpty {
            self.rawValue = "00"
        } else if octets.count <= Self.maximumOctets {
            self.rawValue = Hex.encode(octets)
        } else {
            self.rawValue = "0000" + Hex.encode(octets.prefix(Self.maximumOctets - 2))
        }
    }

    /// Whether this stands for a longer serial cut to fit (see ``init(bytes:)``).
    public var isTruncated: Bool { rawValue.count == 2 * Self.maximumOctets && rawValue.hasPrefix("0000") }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard let serial = SerialNumber(rawValue: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid serial"))
        }
        self = serial
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
    }
}
