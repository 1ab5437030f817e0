import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// Untrusted OCSP requests: garbage, truncated, oversized and mutated input gets a typed error — answered with
/// `malformedRequest` — and never a crash.
@Suite("Revocation: OCSP request parsing")
struct RevocationOCSPRequestTests {
    /// A real request from `openssl ocsp` (one SHA-1 CertID and a nonce), made once.
    static let opensslRequest: Result<[UInt8], any Error> = Result {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let leaf = try scratch.write("leaf.pem", try fixture.leaf().pemString)
        let file = scratch.directory.file("req.der")
        let made = try OpenSSL.run(["ocsp", "-issuer", fixture.issuingFile, "-cert", leaf, "-reqout", file])
        guard made.status == 0 else { throw DevIDPKIError(.io, made.output) }
        return try scratch.read("req.der")
    }

    static func validRequest() throws -> [UInt8] { try opensslRequest.get() }

    /// DER helpers for hand-made requests.
    static func node(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var length: [UInt8]
        if content.count < 0x80 {
            length = [UInt8(content.count)]
        } else {
            length = withUnsafeBytes(of: UInt32(content.count).bigEndian, Array.init).drop { $0 == 0 }.map { $0 }
            length.insert(0x80 | UInt8(length.count), at: 0)
        }
        return [tag] + length + content
    }

    static func certID(serial: UInt8 = 1) throws -> [UInt8] {
        let fixture = try RevocationFixture.get()
        return try OCSPCertificateID(
            issuer: fixture.issuing.certificate, serial: Certificate.SerialNumber(bytes: [serial])
        ).derBytes
    }

    /// `OCSPRequest { TBSRequest { prefix, requestList, suffix } }`.
    static func request(prefix: [UInt8] = [], requests: [[UInt8]], suffix: [UInt8] = []) -> [UInt8] {
        let list = node(0x30, requests.flatMap { node(0x30, $0) })
        return node(0x30, node(0x30, prefix + list + suffix))
    }

    static func criticalExtension(_ oid: [UInt8]) -> [UInt8] {
        node(0xA2, node(0x30, node(0x30, node(0x06, oid) + [0x01, 0x01, 0xFF] + node(0x04, [0x05, 0x00]))))
    }

    // MARK: - Tables

    static let garbage: [(String, [UInt8], OCSPRequestError.Code)] = [
        ("empty", [], .empty),
        ("one byte", [0x30], .malformed),
        ("NUL", [0x00, 0x00], .malformed),
        ("empty SEQUENCE", [0x30, 0x00], .malformed),
        ("indefinite length (BER, not DER)", [0x30, 0x80, 0x30, 0x00, 0x00, 0x00], .malformed),
        ("length beyond the input", [0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x00], .malformed),
        ("non-minimal length", [0x30, 0x81, 0x02, 0x30, 0x00], .malformed),
        ("INTEGER, not SEQUENCE", [0x02, 0x01, 0x01], .malformed),
        ("trailing bytes", [0x30, 0x02, 0x30, 0x00, 0xFF], .malformed),
        ("HTTP text", Array("GET /ocsp HTTP/1.1\r\n\r\n".utf8), .malformed),
        ("PEM text", Array("-----BEGIN OCSP REQUEST-----\nMAA=\n-----END OCSP REQUEST-----\n".utf8), .malformed),
        (
            "60 nested SEQUENCEs",
            (0..<60).reduce([UInt8]()) { inner, _ in RevocationOCSPRequestTests.node(0x30, inner) }, .malformed
        ),
        ("a certificate", [0x30, 0x03, 0x02, 0x01, 0x05], .malformed),
        ("all 0xFF", Array(repeating: 0xFF, count: 64), .malformed),
    ]

    @Test("garbage is refused with a typed error and answered malformedRequest", arguments: garbage)
    func garbageInput(name: String, bytes: [UInt8], code: OCSPRequestError.Code) throws {
        #expect(throws: OCSPRequestError(code, "")) { try OCSPRequestParser().parse(bytes) }
        let fixture = try RevocationFixture.get()
        let response = try fixture.responder().respond(
            toDER: bytes, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
        ) { _ in .good }
        #expect(response == .malformedRequest, "\(name)")
    }

    @Test("structurally wrong requests get the specific code")
    func structuralErrors() throws {
        let id = try Self.certID()
        let parser = OCSPRequestParser(maximumCertificateIDs: 4)
        let cases: [([UInt8], OCSPRequestError.Code)] = [
            (Self.request(requests: []), .noCertificateIDs),
            (Self.request(requests: Array(repeating: id, count: 5)), .tooManyCertificateIDs),
            (Self.request(prefix: Self.node(0xA0, [0x02, 0x01, 0x01]), requests: [id]), .unsupportedVersion),
            (
                Self.request(requests: [id], suffix: Self.criticalExtension([0x2B, 0x06, 0x01, 0x04, 0x01])),
                .unsupportedCriticalExtension
            ),
            (Self.request(requests: [id], suffix: [0x05, 0x00]), .malformed),
            (Self.request(requests: [Array(id.dropLast(3))]), .malformed),
            (Self.node(0x30, Self.node(0x30, Self.node(0x31, Self.node(0x30, id)))), .malformed),  // requestList a SET
            (Self.node(0x30, Self.node(0x30, Self.node(0x30, Self.node(0x30, id))) + [0x05, 0x00]), .malformed),
        ]
        for (bytes, code) in cases {
            #expect(throws: OCSPRequestError(code, "")) { try parser.parse(bytes) }
        }
        // Version v1 written out, a requestorName and an unknown non-critical extension are all accepted.
        let requestor = Self.node(0xA1, Self.node(0x82, Array("client.example".utf8)))
        let version = Self.node(0xA0, [0x02, 0x01, 0x00])
        let tolerated = Self.request(
            prefix: version + requestor, requests: [id],
            suffix: Self.node(
                0xA2,
                Self.node(
                    0x30,
                    Self.node(0x30, Self.node(0x06, [0x2B, 0x06, 0x01, 0x04, 0x01]) + Self.node(0x04, [0x05, 0x00])))))
        let parsed = try parser.parse(tolerated)
        #expect(parsed.certificateIDs.count == 1)
        #expect(parsed.nonce == nil)
        // Exactly the limit is fine.
        #expect(try parser.parse(Self.request(requests: Array(repeating: id, count: 4))).certificateIDs.count == 4)
    }

    @Test("every truncation of a real request is refused", arguments: [false, true])
    func truncations(ownEncoder: Bool) throws {
        let full: [UInt8]
        if ownEncoder {
            full =
                OCSPRequest(
                    certificateIDs: [
                        try OCSPCertificateID(
                            issuer: try RevocationFixture.get().issuing.certificate, serial: Certificate.SerialNumber(),
                            hashAlgorithm: .sha256)
                    ], nonce: Array(repeating: 1, count: 32)
                ).derBytes
        } else {
            full = try Self.validRequest()
        }
        #expect(try OCSPRequestParser().parse(full).certificateIDs.count == 1)
        for length in 0..<full.count {
            #expect(throws: OCSPRequestError.self) { try OCSPRequestParser().parse(Array(full.prefix(length))) }
        }
    }

    @Test(
        "1 MB of random bytes is refused unread; with the limit lifted it is refused as malformed",
        arguments: [1, 2, 3] as [UInt64])
    func oversized(seed: UInt64) throws {
        var generator = SeededGenerator(seed: seed)
        var bytes = generator.bytes(1 << 20)
        #expect(throws: OCSPRequestError(.tooLarge, "")) { try OCSPRequestParser().parse(bytes) }
        let unlimited = OCSPRequestParser(maximumBytes: .max)
        #expect(throws: OCSPRequestError.self) { try unlimited.parse(bytes) }
        // A valid request followed by a megabyte of junk: a request then trailing bytes.
        bytes = try Self.validRequest() + bytes
        #expect(throws: OCSPRequestError(.malformed, "")) { try unlimited.parse(bytes) }
        // A SEQUENCE header claiming the whole megabyte, filled with junk.
        let header: [UInt8] = [0x30, 0x83, 0x10, 0x00, 0x00]
        #expect(throws: OCSPRequestError.self) { try unlimited.parse(header + bytes.prefix(1 << 20)) }
        let fixture = try RevocationFixture.get()
        let response = try fixture.responder().respond(
            toDER: bytes, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
        ) { _ in .good }
        #expect(response == .malformedRequest)
    }

    /// Mutations of a real request: flipped bits, changed, inserted and deleted bytes, and lengths nudged. Each
    /// result either parses (and is then answered successfully) or is refused with an OCSPRequestError.
    @Test("seeded mutation fuzzing never traps", arguments: [7, 42, 6_960] as [UInt64])
    func fuzz(seed: UInt64) throws {
        let fixture = try RevocationFixture.get()
        let responder = try fixture.responder()
        let valid = try Self.validRequest()
        var generator = SeededGenerator(seed: seed)
        var parsed = 0
        var refused = 0
        for _ in 0..<2_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                guard !bytes.isEmpty else { break }
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<5, using: &generator) {
                case 0: bytes[index] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
                case 1: bytes[index] = UInt8.random(in: .min ... .max, using: &generator)
                case 2: bytes.insert(UInt8.random(in: .min ... .max, using: &generator), at: index)
                case 3: bytes.remove(at: index)
                default: bytes[index] = [0x00, 0x7F, 0x80, 0x81, 0x82, 0xFF].randomElement(using: &generator) ?? 0
                }
            }
            do {
                let request = try OCSPRequestParser().parse(bytes)
                parsed += 1
                let response = responder.respond(
                    to: request, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
                ) { _ in .good }
                #expect(response.status == .successful)
                #expect(response.basicResponse?.responses.count == request.certificateIDs.count)
            } catch {
                refused += 1
            }
        }
        #expect(parsed + refused == 2_000)
        #expect(refused > 0)
    }

    @Test("GET: the base64 path component, percent-encoded or URL-safe, with or without padding")
    func getPath() throws {
        let valid = try Self.validRequest()
        let expected = try OCSPRequestParser().parse(valid)
        let base64 = Data(valid).base64EncodedString()
        let variants = [
            base64,
            base64.replacingOccurrences(of: "+", with: "%2B").replacingOccurrences(of: "/", with: "%2F")
                .replacingOccurrences(of: "=", with: "%3D"),
            base64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: ""),
        ]
        for variant in variants {
            #expect(try OCSPRequestParser().parse(getPathComponent: variant) == expected, "\(variant)")
        }
        for bad in ["", "%", "%zz", "not base64!", "A", String(repeating: "A", count: 100_000)] {
            #expect(throws: OCSPRequestError.self) { try OCSPRequestParser().parse(getPathComponent: bad) }
        }
    }

    @Test("the error's description names the code and never the bytes")
    func errorDescription() {
        let secret: [UInt8] = Array("super-secret-nonce".utf8)
        do {
            _ = try OCSPRequestParser().parse(secret)
            Issue.record("parsed")
        } catch {
            #expect(error.code == .malformed)
            #expect(!error.description.contains("super-secret"))
            #expect(error.description.hasPrefix("malformed"))
        }
    }
}
