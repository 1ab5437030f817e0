import SwiftASN1

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A minimal append-only DER writer for the hot paths of revocation: CRL entries (a million of them) and OCSP
/// responses, where the lengths are known before the content is written and SwiftASN1's `DER.Serializer` would
/// reserve, then shift, a length byte for every nested node.
///
/// Callers compute each node's content length first (``headerLength(contentLength:)`` and friends), then write the
/// tag, the length and the content in order. Nothing here validates the structure: it is only used by this folder's
/// encoders, and every encoder is checked against `openssl` in the tests.
struct DERWriter {
    private(set) var bytes: [UInt8]

    init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    // MARK: Sizes

    /// How many bytes a definite length of `contentLength` takes (X.690 §8.1.3).
    @inline(__always)
    static func lengthOfLength(_ contentLength: Int) -> Int {
        if contentLength < 0x80 { return 1 }
        var count = 1
        var remaining = contentLength
        while remaining > 0 {
            count += 1
            remaining >>= 8
        }
        return count
    }

    /// Tag, length and content: the size of a whole node with a single-byte tag.
    @inline(__always)
    static func nodeLength(contentLength: Int) -> Int {
        1 + lengthOfLength(contentLength) + contentLength
    }

    // MARK: Writing

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        bytes.append(byte)
    }

    @inline(__always)
    mutating func append(contentsOf other: some Collection<UInt8>) {
        bytes.append(contentsOf: other)
    }

    /// A tag byte and a definite length.
    @inline(__always)
    mutating func header(_ tag: UInt8, length: Int) {
        bytes.append(tag)
        if length < 0x80 {
            bytes.append(UInt8(length))
            return
        }
        let count = Self.lengthOfLength(length) - 1
        bytes.append(0x80 | UInt8(count))
        var shift = (count - 1) * 8
        while shift >= 0 {
            bytes.append(UInt8(truncatingIfNeeded: length >> shift))
            shift -= 8
        }
    }

    /// A primitive node: tag, length, content.
    @inline(__always)
    mutating func node(_ tag: UInt8, content: some Collection<UInt8>) {
        header(tag, length: content.count)
        bytes.append(contentsOf: content)
    }

    /// A whole node as a new array: for the small, once-per-response structures of OCSP and the extensions.
    static func encode(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var writer = DERWriter(capacity: content.count + 6)
        writer.node(tag, content: content)
        return writer.bytes
    }

    /// An OBJECT IDENTIFIER node.
    static func objectIdentifier(_ oid: ASN1ObjectIdentifier) -> [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(oid)  // an in-memory OID always serialises
        return serializer.serializedBytes
    }

    // MARK: Tags (universal, and the context-specific ones the encoders use)

    static let boolean: UInt8 = 0x01
    static let integer: UInt8 = 0x02
    static let bitString: UInt8 = 0x03
    static let octetString: UInt8 = 0x04
    static let null: UInt8 = 0x05
    static let objectIdentifier: UInt8 = 0x06
    static let enumerated: UInt8 = 0x0A
    static let utcTime: UInt8 = 0x17
    static let generalizedTime: UInt8 = 0x18
    static let sequence: UInt8 = 0x30

    /// `[n]` constructed (EXPLICIT tags and constructed IMPLICIT ones).
    static func contextConstructed(_ number: UInt8) -> UInt8 { 0xA0 | number }
    /// `[n]` primitive (IMPLICIT tags on primitive types).
    static func contextPrimitive(_ number: UInt8) -> UInt8 { 0x80 | number }
}

/// Dates as RFC 5280 writes them: whole seconds in UTC, UTCTime through 2049 and GeneralizedTime from 2050
/// (§4.1.2.5, §5.1.2.4), and always GeneralizedTime in OCSP (RFC 6960 §4.2.1).
///
/// The calendar arithmetic is done here rather than through `Calendar` because a CRL writes one date per entry.
enum DERTime {
    /// The content length of a UTCTime (`YYMMDDHHMMSSZ`).
    static let utcTimeLength = 13
    /// The content length of a GeneralizedTime (`YYYYMMDDHHMMSSZ`).
    static let generalizedTimeLength = 15

    /// Broken-down UTC time of `date`, truncated to the second.
    struct Components: Hashable {
        var year: Int
        var month: Int
        var day: Int
        var hour: Int
        var minute: Int
        var second: Int
    }

    /// `date` truncated to whole seconds, as RFC 5280 and 6960 encode it.
    static func truncated(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970).rounded(.down))
    }

    static func components(_ date: Date) -> Components {
        // Clamped to what a four-digit GeneralizedTime can say: 0000-01-01 through 9999-12-31T23:59:59Z.
        let raw = date.timeIntervalSince1970.rounded(.down)
        let seconds = raw.isNaN ? 0 : Int64(min(max(raw, -62_167_219_200), 253_402_300_799))
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        // Howard Hinnant's civil_from_days: days since 1970-01-01 to a proleptic Gregorian date.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return Components(
            year: Int(year), month: Int(month), day: Int(day), hour: Int(secondOfDay / 3_600),
            minute: Int(secondOfDay % 3_600 / 60), second: Int(secondOfDay % 60))
    }

    /// Seconds since 1970 of a UTC date, or nil if the fields are out of range.
    static func date(_ c: Components) -> Date? {
        guard (1...12).contains(c.month), (1...31).contains(c.day), (0...23).contains(c.hour),
            (0...59).contains(c.minute), (0...60).contains(c.second)
        else { return nil }
        // days_from_civil, the inverse of the above.
        let y = Int64(c.month <= 2 ? c.year - 1 : c.year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(c.month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(c.day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + Int64(c.hour * 3_600 + c.minute * 60 + c.second)
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }

    /// Whether RFC 5280 writes `date` as UTCTime (1950–2049) rather than GeneralizedTime.
    static func usesUTCTime(_ c: Components) -> Bool {
        (1950...2049).contains(c.year)
    }

    /// The whole node length of an RFC 5280 `Time` for `c`.
    static func rfc5280TimeNodeLength(_ c: Components) -> Int {
        2 + (usesUTCTime(c) ? utcTimeLength : generalizedTimeLength)
    }
}

extension DERWriter {
    /// An RFC 5280 `Time`: UTCTime for 1950–2049, GeneralizedTime otherwise.
    mutating func rfc5280Time(_ c: DERTime.Components) {
        if DERTime.usesUTCTime(c) {
            header(Self.utcTime, length: DERTime.utcTimeLength)
            twoDigits(c.year % 100)
        } else {
            header(Self.generalizedTime, length: DERTime.generalizedTimeLength)
            twoDigits(c.year / 100)
            twoDigits(c.year % 100)
        }
        timeTail(c)
    }

    /// A GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2: no fractional seconds).
    mutating func generalizedTime(_ c: DERTime.Components) {
        header(Self.generalizedTime, length: DERTime.generalizedTimeLength)
        twoDigits(c.year / 100)
        twoDigits(c.year % 100)
        timeTail(c)
    }

    private mutating func timeTail(_ c: DERTime.Components) {
        twoDigits(c.month)
        twoDigits(c.day)
        twoDigits(c.hour)
        twoDigits(c.minute)
        twoDigits(c.second)
        bytes.append(UInt8(ascii: "Z"))
    }

    @inline(__always)
    private mutating func twoDigits(_ value: Int) {
        bytes.append(UInt8(truncatingIfNeeded: 0x30 + value / 10))
        bytes.append(UInt8(truncatingIfNeeded: 0x30 + value % 10))
    }
}

/// Helpers for positive INTEGER contents (serial numbers, CRL numbers).
enum DERInteger {
    /// The minimal two's-complement content of the unsigned big-endian magnitude `bytes`: leading zeros dropped and
    /// one zero prepended when the top bit is set. Zero is `[0]`. This is what `Certificate.SerialNumber` stores.
    static func positiveContent(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let significant = bytes.drop { $0 == 0 }
        guard let first = significant.first else { return [0] }
        if first & 0x80 != 0 { return [0] + significant }
        return Array(significant)
    }

    /// The content of a non-negative machine integer.
    static func positiveContent(_ value: UInt64) -> [UInt8] {
        var bigEndian: [UInt8] = []
        var remaining = value
        repeat {
            bigEndian.insert(UInt8(truncatingIfNeeded: remaining), at: 0)
            remaining >>= 8
        } while remaining > 0
        return positiveContent(bigEndian)
    }
}
