import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import NIOSSL
import SwiftASN1
import Testing
import X509

/// Issue #12, finding 2: whatever a client certificate carries, the refusal it earns is recorded so that the trail
/// still lists (HTTP 200) and verifies. Each certificate is self-signed (so untrusted), presented over real TLS to
/// the mTLS listener, and then the admin API lists and verifies the trail.
@Suite("Audit trail: hostile client certificates over TLS", .serialized)
struct AuditHostileCertificateTests {
    /// One generated certificate: its serial's octets and what goes in its subject and SANs.
    struct Hostile: Sendable, CustomTestStringConvertible {
        var name: String
        var serial: [UInt8]
        /// Subject attribute values as raw DER (tag, length, bytes), so that invalid UTF-8 can be sent too.
        var subject: [[UInt8]] = [Self.utf8String("hostile")]
        var dnsNames: [String] = []
        var testDescription: String { name }

        static func utf8String(_ value: String) -> [UInt8] { der(tag: 0x0c, Array(value.utf8)) }

        static func der(tag: UInt8, _ content: [UInt8]) -> [UInt8] {
            let count = content.count
            let length: [UInt8] =
                count < 0x80 ? [UInt8(count)]
                : count < 0x100 ? [0x81, UInt8(count)] : [0x82, UInt8(count >> 8), UInt8(count & 0xff)]
            return [tag] + length + content
        }

        static func bytes(_ count: Int, first: UInt8 = 0x5a) -> [UInt8] {
            [first] + (1..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        }
    }

    static let cases: [Hostile] = [
        Hostile(name: "20-octet serial (the most RFC 5280 allows)", serial: Hostile.bytes(20)),
        Hostile(name: "21-octet serial", serial: Hostile.bytes(21)),
        Hostile(name: "24-octet serial (the reported one)", serial: Hostile.bytes(24)),
        Hostile(name: "24-octet serial with the high bit set (25 DER octets)", serial: Hostile.bytes(24, first: 0xc3)),
        Hostile(name: "64-octet serial", serial: Hostile.bytes(64)),
        Hostile(name: "negative serial", serial: [0xff, 0x01]),
        Hostile(
            name: "8 KB common name", serial: Hostile.bytes(16),
            subject: [Hostile.utf8String(String(repeating: "N", count: 8192))]),
        Hostile(
            name: "control characters and bidi overrides in the subject", serial: Hostile.bytes(16),
            subject: [Hostile.utf8String("evil\r\n\u{0}\u{1B}[2J\u{202E}cod.exe\u{2028}")]),
        Hostile(
            name: "invalid UTF-8 in the subject", serial: Hostile.bytes(16),
            subject: [Hostile.der(tag: 0x0c, [0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80])]),
        Hostile(
            name: "300 long SANs", serial: Hostile.bytes(24),
            dnsNames: (0..<300).map { "host-\($0)-" + String(repeating: "s", count: 40) + ".example" }),
    ]

    /// A self-signed P-256 certificate with the case's fields.
    static func certificate(_ hostile: Hostile, now: Date) throws -> (Certificate.PrivateKey, Certificate) {
        let key = try KeyMaterial.generate(.p256)
        let subject = DistinguishedName(
            try hostile.subject.map { value in
                RelativeDistinguishedName(
                    RelativeDistinguishedName.Attribute(
                        type: .RDNAttributeType.commonName,
                        value: .init(asn1Any: try ASN1Any(derEncoded: value))))
            })
        var extensions = Certificate.Extensions()
        if !hostile.dnsNames.isEmpty {
            extensions = try Certificate.Extensions { SubjectAlternativeNames(hostile.dnsNames.map { .dnsName($0) }) }
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: hostile.serial), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86_400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: key)
        return (key, certificate)
    }

    @Test(arguments: cases)
    func refusalIsRecordedListedAndVerified(_ hostile: Hostile) async throws {
        let server = try await LiveServer()
        let (key, certificate) = try Self.certificate(hostile, now: server.clock.now())
        let octets = certificate.serialNumber.bytes.count

        await #expect(throws: (any Error).self, "an untrusted certificate fails the handshake") {
            try await withClient(try server.client(certificate: [certificate], key: key)) {
                try await $0.send("GET", server.estURL + "/v1/tls/peer")
            }
        }

        let auth = [("Authorization", "Bearer \(server.adminToken)")]
        let (list, verify) = try await withClient(try server.client()) { client in
            (try await client.send("GET", server.opsURL + "/v1/admin/audit?action=tls.client_auth", headers: auth),
             try await client.send("GET", server.opsURL + "/v1/admin/audit/verify", headers: auth))
        }
        #expect(list.status == 200, "\(list.body)")
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let entries = try decoder.decode(ListEnvelope.self, from: Data(list.body.utf8)).items
        let refusal = try #require(entries.first, "\(list.body)")
        #expect(refusal.outcome == "denied")
        #expect(refusal.serial == certificate.devidSerial.rawValue)
        #expect(SerialNumber(rawValue: try #require(refusal.serial)) != nil, "the recorded serial reads back")
        if octets > SerialNumber.maximumOctets {
            #expect(certificate.devidSerial.isTruncated)
            #expect(
                refusal.reason
                    == "certificate does not chain to a trusted CA; serial of \(octets) octets exceeds RFC 5280's 20, recorded truncated")
        } else {
            #expect(refusal.reason == "certificate does not chain to a trusted CA")
            #expect(refusal.serial == Hex.encode(certificate.serialNumber.bytes))
        }

        #expect(verify.status == 200, "\(verify.body)")
        #expect(verify.body.contains("\"intact\":true"), "\(verify.body)")
        #expect(verify.body.contains("\"code\":\"intact\""), "\(verify.body)")
        #expect(try await server.state.store.verifyAuditChain() == nil)
        try await server.stop()
    }

    struct ListEnvelope: Decodable {
        var items: [AuditEntry]
    }
}
