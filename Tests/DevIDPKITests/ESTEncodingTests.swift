import Crypto
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// EST's wire encodings: the certs-only CMS, the base64 bodies and the CSR attributes, checked against openssl.
@Suite("EST encodings")
struct ESTEncodingTests {
    // MARK: - Helpers

    /// A self-signed P-256 certificate named `CN=<name>`, valid around a fixed time.
    static func makeCertificate(_ name: String) throws -> Certificate {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName { CommonName(name) }
        let now = Date(timeIntervalSince1970: 1_750_000_000)
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now - 60,
            notValidAfter: now + 86_400,
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions(),
            issuerPrivateKey: key
        )
    }

    /// Writes `bytes` to a fresh temporary file and returns the directory (to remove) and the path.
    static func temporaryFile(_ name: String, _ bytes: [UInt8]) throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory(prefix: "devid-est")
        let path = directory.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (directory, path)
    }

    /// The `subject=` lines `openssl pkcs7 -print_certs` prints for a DER PKCS#7, in order.
    static func opensslSubjects(_ der: [UInt8]) throws -> [String] {
        let (directory, path) = try temporaryFile("certs.p7", der)
        defer { directory.remove() }
        let result = try ExternalTool.run(["openssl", "pkcs7", "-inform", "DER", "-in", path, "-print_certs", "-noout"])
        #expect(result.succeeded, "\(result.stderr)")
        return result.stdout.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("subject=") }.map(String.init)
    }

    /// The common names of `certificates`, in order.
    static func commonNames(_ certificates: [Certificate]) -> [String] {
        certificates.map { DeviceNames.firstValue(.RDNAttributeType.commonName, in: $0.subject) ?? "?" }
    }

    // MARK: - Certs-only CMS

    @Test("certs-only CMS round-trips and re-encodes to the same bytes", arguments: [0, 1, 3])
    func cmsRoundTrip(count: Int) throws {
        let certificates = try (0..<count).map { try Self.makeCertificate("cert-\($0)") }
        let der = try CertsOnlyCMS(certificates: certificates).derBytes()
        let parsed = try CertsOnlyCMS(derEncoded: der)
        #expect(Set(parsed.certificates) == Set(certificates))
        #expect(parsed.certificates.count == certificates.count)
        #expect(try parsed.derBytes() == der)
    }

    @Test("certs-only CMS from certificates already encoded: the same bytes, in every order given", arguments: [0, 1, 3])
    func cmsFromEncodedCertificates(count: Int) throws {
        let certificates = try (0..<count).map { try Self.makeCertificate("cert-\($0)") }
        let der = try CertsOnlyCMS(certificates: certificates).derBytes()
        let encoded = certificates.map(\.derBytes)
        #expect(try CertsOnlyCMS.derBytes(encodedCertificates: encoded) == der)
        #expect(try CertsOnlyCMS.derBytes(encodedCertificates: encoded.reversed()) == der, "SET OF is sorted")
        #expect(try CertsOnlyCMS(derEncoded: CertsOnlyCMS.derBytes(encodedCertificates: encoded)).certificates.count == count)
    }

    @Test("certs-only CMS is DER: the certificate SET OF is sorted by encoding")
    func cmsIsStrictDER() throws {
        let certificates = try ["zulu", "alpha", "mike", "bravo"].map(Self.makeCertificate)
        let der = try CertsOnlyCMS(certificates: certificates).derBytes()

        // Walk the structure with swift-asn1's strict DER parser, whose SET OF reader insists on DER order.
        let root = try DER.parse(der)
        let contained = try DER.sequence(root, identifier: .sequence) { nodes in
            #expect(try ASN1ObjectIdentifier(derEncoded: &nodes) == CertsOnlyCMS.signedDataOID)
            return try DER.explicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) { signedData in
                try DER.sequence(signedData, identifier: .sequence) { fields in
                    #expect(try Int(derEncoded: &fields) == 1)
                    #expect(try DER.set(of: ASN1Any.self, identifier: .set, nodes: &fields).isEmpty)
                    let eContentType = try DER.sequence(fields.next()!, identifier: .sequence) { encap in
                        let type = try ASN1ObjectIdentifier(derEncoded: &encap)
                        #expect(encap.next() == nil, "no eContent")
                        return type
                    }
                    #expect(eContentType == CertsOnlyCMS.dataOID)
                    let certificates = try DER.set(
                        of: Certificate.self,
                        identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific),
                        nodes: &fields
                    )
                    #expect(try DER.set(of: ASN1Any.self, identifier: .set, nodes: &fields).isEmpty, "no signerInfos")
                    #expect(fields.next() == nil, "no crls, nothing else")
                    return certificates
                }
            }
        }
        let sortedByEncoding = certificates.sorted { $0.derBytes.lexicographicallyPrecedes($1.derBytes) }
        #expect(contained == sortedByEncoding)
    }

    @Test("openssl pkcs7 -print_certs lists the certificates, in the order the DER holds them")
    func opensslPrintsCertificates() throws {
        let certificates = try ["device-ca", "root-ca", "issuing-ca"].map(Self.makeCertificate)
        let der = try CertsOnlyCMS(certificates: certificates).derBytes()
        let sortedByEncoding = certificates.sorted { $0.derBytes.lexicographicallyPrecedes($1.derBytes) }
        let subjects = try Self.opensslSubjects(der)
        #expect(subjects == Self.commonNames(sortedByEncoding).map { "subject=CN = \($0)" })

        // Given already in DER order, the order is kept exactly.
        let inOrder = try CertsOnlyCMS(certificates: sortedByEncoding).derBytes()
        #expect(inOrder == der)
        #expect(try CertsOnlyCMS(derEncoded: inOrder).certificates == sortedByEncoding)
    }

    @Test("openssl cms -cmsout -print reads a degenerate SignedData")
    func opensslCMSPrint() throws {
        let der = try CertsOnlyCMS(certificates: [Self.makeCertificate("only")]).derBytes()
        let (directory, path) = try Self.temporaryFile("certs.p7", der)
        defer { directory.remove() }
        let result = try ExternalTool.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", path])
        #expect(result.succeeded, "\(result.stderr)")
        let text = result.stdout
        #expect(text.contains("contentType: pkcs7-signedData (1.2.840.113549.1.7.2)"))
        #expect(text.contains("version: 1"))
        #expect(text.contains("eContentType: pkcs7-data (1.2.840.113549.1.7.1)"))
        #expect(text.contains("eContent: <ABSENT>"))
        #expect(text.contains("subject: CN=only"))
        #expect(text.contains("crls:\n      <ABSENT>"))
        #expect(text.contains("signerInfos:\n      <EMPTY>"))
    }

    @Test("parses openssl crl2pkcs7 -nocrl output, keeping the file's order")
    func parsesOpenSSLCRL2PKCS7() throws {
        // Not in DER order on purpose: openssl writes them as the file lists them.
        let certificates = try ["zz-root", "mm-issuing", "aa-leaf"].map(Self.makeCertificate)
        let directory = try TemporaryDirectory(prefix: "devid-est")
        defer { directory.remove() }
        let chain = try directory.write("chain.pem", certificates.map(\.pemString).joined(separator: "\n"))
        let output = directory.file("chain.p7b")
        let result = try ExternalTool.run([
            "openssl", "crl2pkcs7", "-nocrl", "-certfile", chain, "-outform", "DER", "-out", output,
        ])
        #expect(result.succeeded, "\(result.stderr)")
        let der = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
        let parsed = try CertsOnlyCMS(derEncoded: der)
        #expect(parsed.certificates == certificates)
        #expect(parsed.certificates.map(\.derBytes) == certificates.map(\.derBytes))

        // And the same bytes, as an EST server would send them (base64 body).
        let body = Array(ESTBase64.encode(der).utf8)
        #expect(try CertsOnlyCMS(derEncoded: #require(ESTBase64.decode(body))).certificates == certificates)
    }

    static let goodCMS: [UInt8] = {
        (try? CertsOnlyCMS(certificates: [makeCertificate("good")]).derBytes()) ?? []
    }()

    /// Bytes that are not a certs-only CMS, with a label for the test report.
    static let badCMS: [(String, [UInt8])] = [
        ("empty", []),
        ("lone SEQUENCE tag", [0x30]),
        ("huge length", [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]),
        ("empty SEQUENCE", [0x30, 0x00]),
        ("text", Array("not a CMS at all".utf8)),
        ("truncated", Array(goodCMS.prefix(goodCMS.count / 2))),
        ("last byte missing", Array(goodCMS.dropLast())),
        ("trailing byte", goodCMS + [0x00]),
        (
            "id-data ContentInfo",
            [0x30, 0x0F, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01, 0xA0, 0x02, 0x04, 0x00]
        ),
        ("certificate, not CMS", (try? makeCertificate("plain").derBytes) ?? []),
    ]

    @Test("garbage is .malformed, never a crash", arguments: badCMS)
    func cmsGarbage(label: String, bytes: [UInt8]) {
        #expect(throws: DevIDPKIError(.malformed, "")) {
            try CertsOnlyCMS(derEncoded: bytes)
        }
    }

    @Test("random and bit-flipped bytes never crash the CMS parser")
    func cmsFuzz() {
        var generator = ESTTestRandom(seed: 7)
        for round in 0..<2_000 {
            var bytes = Self.goodCMS
            if round % 2 == 0 {
                bytes = (0..<Int(generator.next() % 300)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            } else {
                for _ in 0..<3 {
                    bytes[Int(generator.next() % UInt64(bytes.count))] ^= UInt8(
                        truncatingIfNeeded: generator.next() | 1
                    )
                }
            }
            _ = try? CertsOnlyCMS(derEncoded: bytes)
        }
    }

    // MARK: - Base64

    @Test(
        "base64 round-trips with CRLF lines of at most 64 characters",
        arguments: [0, 1, 2, 3, 47, 48, 49, 96, 1_000]
    )
    func base64RoundTrip(count: Int) throws {
        var generator = ESTTestRandom(seed: UInt64(count))
        let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let text = ESTBase64.encode(bytes)
        if count == 0 {
            #expect(text.isEmpty)
            #expect(ESTBase64.decode([]) == nil, "an empty body carries nothing")
            return
        }
        #expect(ESTBase64.decode(Array(text.utf8)) == bytes)
        #expect(text.replacingOccurrences(of: "\r\n", with: "") == Data(bytes).base64EncodedString())

        let utf8 = Array(text.utf8)
        // Every LF follows a CR, every CR precedes an LF, and the text ends with CRLF.
        for (index, byte) in utf8.enumerated() where byte == UInt8(ascii: "\n") {
            #expect(index > 0 && utf8[index - 1] == UInt8(ascii: "\r"))
        }
        #expect(text.hasSuffix("\r\n"))
        let lines = text.components(separatedBy: "\r\n").dropLast()
        #expect(lines.allSatisfy { $0.count <= 76 && !$0.contains("\r") && !$0.contains("\n") })
        #expect(lines.dropLast().allSatisfy { $0.count == ESTBase64.lineLength })
    }

    @Test("openssl base64 -d reads what we write")
    func opensslDecodesOurBase64() throws {
        let bytes = (0...255).map { UInt8($0) } + Array(repeating: 0xA5, count: 301)
        let (directory, path) = try Self.temporaryFile("body.b64", Array(ESTBase64.encode(bytes).utf8))
        defer { directory.remove() }
        let output = directory.file("body.bin")
        let result = try ExternalTool.run(["openssl", "base64", "-d", "-in", path, "-out", output])
        #expect(result.succeeded, "\(result.stderr)")
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: output))) == bytes)
    }

    /// Bodies that decode to "Hello!!" (SGVsbG8hIQ==).
    static let tolerated: [String] = [
        "SGVsbG8hIQ==",
        "SGVsbG8hIQ",
        "SGVs\r\nbG8h\r\nIQ==\r\n",
        "SGVs\nbG8hIQ==\n",
        "  SGVs bG8h\tIQ = = \r\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nSGVsbG8hIQ==\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN NEW CERTIFICATE REQUEST-----\r\nSGVs\r\nbG8hIQ==\r\n-----END NEW CERTIFICATE REQUEST-----\r\n",
        "\r\n-----BEGIN PKCS7-----\nSGVsbG8hIQ\n-----END PKCS7-----",
    ]

    @Test("decode tolerates whitespace, missing padding and PEM wrapping", arguments: tolerated)
    func base64Tolerant(body: String) throws {
        #expect(ESTBase64.decode(Array(body.utf8)) == Array("Hello!!".utf8))
    }

    static let rejected: [(String, [UInt8])] = [
        ("empty", []),
        ("only whitespace", Array(" \r\n\t".utf8)),
        ("invalid character", Array("SGVs$G8hIQ==".utf8)),
        ("base64url alphabet", Array("SGVs-G8_IQ==".utf8)),
        ("one dangling digit", Array("SGVsb".utf8)),
        ("padding in the middle", Array("SGVs=bG8hIQ==".utf8)),
        ("too much padding", Array("SGVsbG8hIQ===".utf8)),
        ("padding on a full group", Array("SGVs=".utf8)),
        ("padding only", Array("====".utf8)),
        ("non-ASCII", [0xFF, 0xFE, 0x41, 0x41]),
        ("NUL", [0x41, 0x41, 0x00, 0x41]),
        (
            "PEM labels differ",
            Array("-----BEGIN CERTIFICATE REQUEST-----\nSGVsbG8hIQ==\n-----END CERTIFICATE-----\n".utf8)
        ),
        (
            "PEM with headers",
            Array(
                "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n\nSGVs\n-----END CERTIFICATE REQUEST-----"
                    .utf8
            )
        ),
        ("PEM without END", Array("-----BEGIN CERTIFICATE REQUEST-----\nSGVsbG8hIQ==\n".utf8)),
        ("PEM, empty", Array("-----BEGIN X-----\n-----END X-----\n".utf8)),
        ("PEM on one line", Array("-----BEGIN X-----SGVsbG8hIQ==-----END X-----".utf8)),
        ("text after PEM", Array("-----BEGIN X-----\nSGVsbG8hIQ==\n-----END X-----\ntrailer".utf8)),
    ]

    @Test("decode returns nil for anything that is not base64 or one PEM block", arguments: rejected)
    func base64Rejects(label: String, body: [UInt8]) {
        #expect(ESTBase64.decode(body) == nil)
    }

    @Test("decode accepts openssl's PEM CSR and yields its DER")
    func base64OpenSSLPEM() throws {
        let directory = try TemporaryDirectory(prefix: "devid-est")
        defer { directory.remove() }
        let pem = directory.file("req.pem")
        let der = directory.file("req.der")
        let made = try ExternalTool.run([
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", directory.file("key.pem"), "-subj", "/CN=sensor-7", "-out", pem,
        ])
        #expect(made.succeeded, "\(made.stderr)")
        #expect(try ExternalTool.run(["openssl", "req", "-in", pem, "-outform", "DER", "-out", der]).succeeded)
        let pemBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: pem)))
        let derBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: der)))
        #expect(ESTBase64.decode(pemBytes) == derBytes)
        #expect(try EnrollmentRequest(der: #require(ESTBase64.decode(pemBytes))).requestedCommonName == "sensor-7")
    }

    @Test("random bytes never crash the decoder")
    func base64Fuzz() {
        var generator = ESTTestRandom(seed: 42)
        let alphabet = Array("ABCxyz019+/=\r\n \t-BEGIN END".utf8)
        for round in 0..<5_000 {
            let length = Int(generator.next() % 120)
            let body = (0..<length).map { _ in
                round % 2 == 0
                    ? UInt8(truncatingIfNeeded: generator.next())
                    : alphabet[Int(generator.next() % UInt64(alphabet.count))]
            }
            if let decoded = ESTBase64.decode(body) {
                // Whatever decodes must survive a round trip.
                #expect(ESTBase64.decode(Array(ESTBase64.encode(decoded).utf8)) == decoded)
            }
        }
    }

    // MARK: - CSR attributes

    @Test("csrattrs for the LDevID profile: ecdsa-with-SHA256 and id-ecPublicKey with P-256 and P-384")
    func csrAttributesLDevID() throws {
        let attributes = CSRAttributes.forProfile(.ldevid)
        let der = try attributes.derBytes()
        let (directory, path) = try Self.temporaryFile("csrattrs.der", der)
        defer { directory.remove() }
        let result = try ExternalTool.run(["openssl", "asn1parse", "-inform", "DER", "-in", path])
        #expect(result.succeeded, "\(result.stderr)")
        let lines = result.stdout.split(whereSeparator: \.isNewline)
        #expect(lines.first?.contains("d=0") == true && lines.first?.contains("SEQUENCE") == true)
        #expect(lines.contains { $0.hasSuffix(":ecdsa-with-SHA256") && $0.contains("d=1") })
        #expect(lines.contains { $0.hasSuffix(":id-ecPublicKey") && $0.contains("d=2") })
        #expect(lines.contains { $0.hasSuffix(":prime256v1") && $0.contains("d=3") })
        #expect(lines.contains { $0.hasSuffix(":secp384r1") && $0.contains("d=3") })
        #expect(result.stdout.components(separatedBy: "cons: SET").count == 2, "one attribute, one SET of curves")

        // Parsing keeps the SET's DER order (secp384r1's shorter encoding sorts first), so compare encodings.
        let parsed = try CSRAttributes(derEncoded: der)
        #expect(try parsed.derBytes() == der)
        #expect(parsed.elements.count == attributes.elements.count)
    }

    @Test("csrattrs for a P-256-only profile is the exact DER")
    func csrAttributesP256Bytes() throws {
        // SEQUENCE { SEQUENCE { OID id-ecPublicKey, SET { OID secp256r1 } }, OID ecdsa-with-SHA256 }
        let expected: [UInt8] = [
            0x30, 0x21,
            0x30, 0x15,
            0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01,
            0x31, 0x0A,
            0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07,
            0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02,
        ]
        #expect(try CSRAttributes.forProfile(.serverTLS).derBytes() == expected)
    }

    @Test("csrattrs: RFC 7030 §4.5.2 example shapes parse, empty CsrAttrs is 30 00")
    func csrAttributesParse() throws {
        #expect(try CSRAttributes().derBytes() == [0x30, 0x00])
        // The RFC's example: challengePassword, ecPublicKey {secp384r1}, extensionRequest {macAddress},
        // ecdsa-with-SHA384.
        let rfcExample: [UInt8] = [
            0x30, 0x41, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x07, 0x30, 0x12, 0x06, 0x07, 0x2A,
            0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x31, 0x07, 0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22, 0x30, 0x16, 0x06,
            0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x0E, 0x31, 0x09, 0x06, 0x07, 0x2B, 0x06, 0x01, 0x01,
            0x01, 0x01, 0x16, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03,
        ]
        let parsed = try CSRAttributes(derEncoded: rfcExample)
        #expect(parsed.elements.count == 4)
        #expect(parsed.elements.first == .oid([1, 2, 840, 113_549, 1, 9, 7]))
        #expect(parsed.elements.last == .oid(CSRAttributes.OID.ecdsaWithSHA384))
        #expect(try parsed.derBytes() == rfcExample)
        let p384Only = CertificateProfile(
            kind: .ldevid,
            policy: ProfilePolicy(name: "p384", lifetime: 86_400, backdate: 0, allowedKeyAlgorithms: [.p384])
        )
        // Our P-384-only answer is the RFC example's key and signature part.
        #expect(
            CSRAttributes.forProfile(p384Only).elements == [
                parsed.elements[1], .oid(CSRAttributes.OID.ecdsaWithSHA384),
            ]
        )
    }
}

extension ESTEncodingTests {
    static let badCSRAttributes: [(String, [UInt8])] = [
        ("empty", []),
        ("lone tag", [0x30]),
        ("SET, not SEQUENCE", [0x31, 0x00]),
        ("INTEGER element", [0x30, 0x03, 0x02, 0x01, 0x01]),
        ("attribute without values", [0x30, 0x05, 0x30, 0x03, 0x06, 0x01, 0x2A]),
        ("trailing byte", [0x30, 0x00, 0x00]),
    ]

    @Test("csrattrs bodies that do not parse are .malformed", arguments: badCSRAttributes)
    func csrAttributesGarbage(label: String, bytes: [UInt8]) {
        #expect(throws: DevIDPKIError(.malformed, "")) { try CSRAttributes(derEncoded: bytes) }
    }
}

/// A small deterministic generator so fuzz rounds are reproducible.
struct ESTTestRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
