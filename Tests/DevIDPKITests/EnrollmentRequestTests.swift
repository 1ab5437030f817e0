import Crypto
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// CSR parsing, proof of possession, profile and names checks for EST enrollment.
@Suite("Enrollment requests")
struct EnrollmentRequestTests {
    static let trustDomain = "test.devid"
    static let device = try! DeviceID("sensor-7")
    static let tenant = try! TenantID("acme")
    static var spiffeID: String { DeviceNames.spiffeID(trustDomain: trustDomain, tenant: tenant, device: device) }

    // MARK: - Helpers

    /// A DER CSR made by `openssl req`; `newkey` is what follows `-newkey` plus any `-pkeyopt`s.
    static func opensslCSR(newkey: [String], subject: String = "/CN=sensor-7", extra: [String] = []) throws -> [UInt8] {
        let directory = try TemporaryDirectory(prefix: "devid-csr")
        defer { directory.remove() }
        let output = directory.file("req.der")
        let result = try ExternalTool.run(
            ["openssl", "req", "-new", "-newkey"] + newkey + [
                "-nodes", "-keyout", directory.file("key.pem"), "-subj", subject, "-outform", "DER", "-out", output,
            ] + extra
        )
        guard result.succeeded else {
            throw DevIDPKIError(.io, "openssl req failed: \(result.stderr)")
        }
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
    }

    static let p256: [String] = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]

    /// A DER CSR made by swift-certificates.
    static func swiftCSR(
        key: Certificate.PrivateKey = Certificate.PrivateKey(P256.Signing.PrivateKey()),
        signatureAlgorithm: Certificate.SignatureAlgorithm = .ecdsaWithSHA256,
        subject: DistinguishedName = DistinguishedName(),
        alternativeNames: [GeneralName] = []
    ) throws -> [UInt8] {
        var attributes = CertificateSigningRequest.Attributes()
        if !alternativeNames.isEmpty {
            let extensions = try Certificate.Extensions {
                SubjectAlternativeNames(alternativeNames)
            }
            attributes.insert(try .init(ExtensionRequest(extensions: extensions)))
        }
        let csr = try CertificateSigningRequest(
            version: .v1,
            subject: subject,
            privateKey: key,
            attributes: attributes,
            signatureAlgorithm: signatureAlgorithm
        )
        var serializer = DER.Serializer()
        try serializer.serialize(csr)
        return serializer.serializedBytes
    }

    /// The DevIDPKIError `body` throws, or nil if it returns.
    static func errorCode(_ body: () throws -> Void) -> DevIDPKIError? {
        do {
            try body()
            return nil
        } catch let error as DevIDPKIError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    // MARK: - Parsing and proof of possession

    @Test("openssl P-256 CSR is accepted and read")
    func opensslP256() throws {
        let request = try EnrollmentRequest(der: Self.opensslCSR(newkey: Self.p256))
        #expect(request.keyAlgorithm == .p256)
        #expect(request.requestedCommonName == "sensor-7")
        #expect(request.requestedURIs.isEmpty && request.requestedDNSNames.isEmpty)
        #expect(request.publicKey == request.csr.publicKey)
        try request.check(profile: .ldevid)
        try request.checkNames(device: Self.device, tenant: Self.tenant, trustDomain: Self.trustDomain)
    }

    @Test("openssl CSR with SANs: extensionRequest is read")
    func opensslSANs() throws {
        let der = try Self.opensslCSR(
            newkey: Self.p256,
            subject: "/O=acme/CN=sensor-7",
            extra: ["-addext", "subjectAltName=URI:\(Self.spiffeID),DNS:sensor-7.example"]
        )
        let request = try EnrollmentRequest(der: der)
        #expect(request.requestedURIs == [Self.spiffeID])
        #expect(request.requestedDNSNames == ["sensor-7.example"])
        let error = Self.errorCode {
            try request.checkNames(device: Self.device, tenant: Self.tenant, trustDomain: Self.trustDomain)
        }
        #expect(error?.code == .policyViolation)
        #expect(error?.reason.contains("sensor-7.example") == true)
    }

    @Test("swift-certificates CSR is accepted", arguments: ["P-256", "P-384", "Ed25519"])
    func swiftCertificatesCSR(curve: String) throws {
        let (key, signatureAlgorithm): (Certificate.PrivateKey, Certificate.SignatureAlgorithm) =
            switch curve {
            case "P-256": (Certificate.PrivateKey(P256.Signing.PrivateKey()), .ecdsaWithSHA256)
            case "P-384": (Certificate.PrivateKey(P384.Signing.PrivateKey()), .ecdsaWithSHA384)
            default: (Certificate.PrivateKey(Curve25519.Signing.PrivateKey()), .ed25519)
            }
        let subject = try DistinguishedName {
            OrganizationName("acme")
            CommonName("sensor-7")
        }
        let request = try EnrollmentRequest(
            der: Self.swiftCSR(
                key: key,
                signatureAlgorithm: signatureAlgorithm,
                subject: subject,
                alternativeNames: [.uniformResourceIdentifier(Self.spiffeID)]
            )
        )
        #expect(request.publicKey == key.publicKey)
        #expect(request.requestedURIs == [Self.spiffeID])
        try request.checkNames(device: Self.device, tenant: Self.tenant, trustDomain: Self.trustDomain)
    }

    @Test("a CSR whose signature bytes were flipped is .invalidSignature", arguments: ["openssl", "swift"])
    func flippedSignature(maker: String) throws {
        var der = maker == "openssl" ? try Self.opensslCSR(newkey: Self.p256) : try Self.swiftCSR()
        // The last byte is the end of the ECDSA signature's s INTEGER: flipping it keeps the DER valid.
        der[der.count - 1] ^= 0x01
        #expect(throws: DevIDPKIError(.invalidSignature, "")) { try EnrollmentRequest(der: der) }
    }

    @Test("a CSR signed by another key is .invalidSignature")
    func signedByAnotherKey() throws {
        let holder = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let other = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let signed = try CertificateSigningRequest(
            version: .v1,
            subject: DistinguishedName(),
            privateKey: other,
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256
        )
        let forged = try CertificateSigningRequest(
            version: .v1,
            subject: DistinguishedName(),
            publicKey: holder.publicKey,
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256,
            signature: signed.signature
        )
        var serializer = DER.Serializer()
        try serializer.serialize(forged)
        #expect(throws: DevIDPKIError(.invalidSignature, "")) {
            try EnrollmentRequest(der: serializer.serializedBytes)
        }
    }

    static let goodCSR: [UInt8] = (try? swiftCSR()) ?? []

    static let malformed: [(String, [UInt8])] = [
        ("empty", []),
        ("lone SEQUENCE tag", [0x30]),
        ("huge length", [0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x00]),
        ("empty SEQUENCE", [0x30, 0x00]),
        ("text", Array("-----BEGIN CERTIFICATE REQUEST-----".utf8)),
        ("first 10 bytes", Array(goodCSR.prefix(10))),
        ("half", Array(goodCSR.prefix(goodCSR.count / 2))),
        ("last byte missing", Array(goodCSR.dropLast())),
        ("trailing byte", goodCSR + [0x00]),
        ("outer tag changed", [0x31] + Array(goodCSR.dropFirst())),
        ("certs-only CMS", (try? CertsOnlyCMS(certificates: []).derBytes()) ?? []),
    ]

    @Test("truncated or garbage DER is .malformed", arguments: malformed)
    func malformedCSR(label: String, der: [UInt8]) {
        #expect(throws: DevIDPKIError(.malformed, "")) { try EnrollmentRequest(der: der) }
    }

    @Test("a v2 CSR is .malformed")
    func wrongVersion() throws {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let csr = try CertificateSigningRequest(
            version: .init(rawValue: 1),
            subject: DistinguishedName(),
            privateKey: key,
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256
        )
        var serializer = DER.Serializer()
        try serializer.serialize(csr)
        #expect(throws: DevIDPKIError(.malformed, "")) { try EnrollmentRequest(der: serializer.serializedBytes) }
    }

    @Test("random and bit-flipped bytes never crash the CSR parser")
    func fuzz() {
        var generator = ESTTestRandom(seed: 11)
        for round in 0..<2_000 {
            var bytes = Self.goodCSR
            if round % 2 == 0 {
                bytes = (0..<Int(generator.next() % 300)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            } else {
                for _ in 0..<2 {
                    bytes[Int(generator.next() % UInt64(bytes.count))] ^= UInt8(
                        truncatingIfNeeded: generator.next() | 1
                    )
                }
            }
            _ = try? EnrollmentRequest(der: bytes)
        }
    }

    // MARK: - Profile

    @Test("RSA-2048 CSR against the LDevID profile is .unsupportedAlgorithm, naming what is allowed")
    func rsaAgainstLDevID() throws {
        let request = try EnrollmentRequest(der: Self.opensslCSR(newkey: ["rsa:2048"]))
        #expect(request.keyAlgorithm == .rsa2048)
        let error = Self.errorCode { try request.check(profile: .ldevid) }
        #expect(error?.code == .unsupportedAlgorithm)
        #expect(error?.reason == "CSR key is rsa-2048; profile ldevid allows ecdsa-p256, ecdsa-p384")

        // A profile that allows RSA 2048 takes it.
        let rsaProfile = CertificateProfile(
            kind: .ldevid,
            policy: ProfilePolicy(name: "rsa", lifetime: 86_400, backdate: 0, allowedKeyAlgorithms: [.rsa2048])
        )
        try request.check(profile: rsaProfile)
    }

    @Test("RSA-2048 signed with SHA-1 is refused even where RSA is allowed")
    func sha1Refused() throws {
        let request = try EnrollmentRequest(der: Self.opensslCSR(newkey: ["rsa:2048"], extra: ["-sha1"]))
        let rsaProfile = CertificateProfile(
            kind: .ldevid,
            policy: ProfilePolicy(name: "rsa", lifetime: 86_400, backdate: 0, allowedKeyAlgorithms: [.rsa2048])
        )
        #expect(throws: DevIDPKIError(.unsupportedAlgorithm, "")) { try request.check(profile: rsaProfile) }
    }

    @Test("RSA-1024 CSR is .unsupportedAlgorithm when parsed")
    func rsa1024() throws {
        let der = try Self.opensslCSR(newkey: ["rsa:1024"])
        let error = Self.errorCode { _ = try EnrollmentRequest(der: der) }
        #expect(error?.code == .unsupportedAlgorithm)
        #expect(error?.reason.contains("RSA 1024") == true)
    }

    @Test(
        "keys DevID does not know are .unsupportedAlgorithm when parsed",
        arguments: [["ec", "-pkeyopt", "ec_paramgen_curve:P-521"], ["ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"]]
    )
    func unknownKeys(newkey: [String]) throws {
        let der = try Self.opensslCSR(newkey: newkey)
        #expect(throws: DevIDPKIError(.unsupportedAlgorithm, "")) { try EnrollmentRequest(der: der) }
    }

    @Test("P-384 is allowed for LDevID, not for the P-256-only server profile")
    func p384() throws {
        let request = try EnrollmentRequest(
            der: Self.opensslCSR(newkey: ["ec", "-pkeyopt", "ec_paramgen_curve:P-384"])
        )
        #expect(request.keyAlgorithm == .p384)
        try request.check(profile: .ldevid)
        #expect(throws: DevIDPKIError(.unsupportedAlgorithm, "")) { try request.check(profile: .serverTLS) }
    }

    @Test("an Ed25519 CSR parses but the LDevID profile refuses it")
    func ed25519() throws {
        let request = try EnrollmentRequest(der: Self.opensslCSR(newkey: ["ed25519"]))
        #expect(request.keyAlgorithm == .ed25519)
        #expect(throws: DevIDPKIError(.unsupportedAlgorithm, "")) { try request.check(profile: .ldevid) }
    }

    // MARK: - Names

    struct NamesCase: Sendable, CustomTestStringConvertible {
        let label: String
        let subject: [(ASN1ObjectIdentifier, String)]
        let alternativeNames: [GeneralName]
        /// nil: accepted; otherwise the reason expected.
        let reason: String?

        var testDescription: String { label }

        init(
            _ label: String,
            subject: [(ASN1ObjectIdentifier, String)] = [],
            sans: [GeneralName] = [],
            rejects reason: String? = nil
        ) {
            self.label = label
            self.subject = subject
            self.alternativeNames = sans
            self.reason = reason
        }
    }

    static let cn = ASN1ObjectIdentifier.RDNAttributeType.commonName
    static let o = ASN1ObjectIdentifier.RDNAttributeType.organizationName
    static let ou = ASN1ObjectIdentifier.RDNAttributeType.organizationalUnitName

    static let namesCases: [NamesCase] = [
        NamesCase("empty subject, no SAN"),
        NamesCase("CN = device", subject: [(cn, "sensor-7")]),
        NamesCase("O = tenant, CN = device", subject: [(o, "acme"), (cn, "sensor-7")]),
        NamesCase("O = tenant only", subject: [(o, "acme")]),
        NamesCase("SPIFFE ID only", sans: [.uniformResourceIdentifier(spiffeID)]),
        NamesCase(
            "CN and SPIFFE ID",
            subject: [(o, "acme"), (cn, "sensor-7")],
            sans: [.uniformResourceIdentifier(spiffeID)]
        ),
        NamesCase("CN = other device", subject: [(cn, "other-1")], rejects: "CSR names device other-1, not sensor-7"),
        NamesCase(
            "right CN, wrong SPIFFE ID",
            subject: [(cn, "sensor-7")],
            sans: [.uniformResourceIdentifier("spiffe://test.devid/tenant/acme/device/other-1")],
            rejects:
                "CSR asks for URI spiffe://test.devid/tenant/acme/device/other-1, not the device's SPIFFE ID"
        ),
        NamesCase(
            "SPIFFE ID of another trust domain",
            sans: [.uniformResourceIdentifier("spiffe://evil.example/tenant/acme/device/sensor-7")],
            rejects:
                "CSR asks for URI spiffe://evil.example/tenant/acme/device/sensor-7, not the device's SPIFFE ID"
        ),
        NamesCase(
            "DNS SAN",
            subject: [(cn, "sensor-7")],
            sans: [.dnsName("sensor-7.example")],
            rejects: "CSR asks for DNS name sensor-7.example; device certificates have none"
        ),
        NamesCase(
            "IP SAN",
            sans: [.ipAddress(ASN1OctetString(contentBytes: [10, 0, 0, 1]))],
            rejects: "CSR asks for an IP address alternative name; only the SPIFFE ID is allowed"
        ),
        NamesCase(
            "email SAN",
            sans: [.rfc822Name("a@b.example")],
            rejects: "CSR asks for an email address alternative name; only the SPIFFE ID is allowed"
        ),
        NamesCase(
            "SPIFFE ID twice",
            sans: [.uniformResourceIdentifier(spiffeID), .uniformResourceIdentifier(spiffeID)],
            rejects: "CSR repeats the SPIFFE ID"
        ),
        NamesCase(
            "O = other tenant",
            subject: [(o, "globex"), (cn, "sensor-7")],
            rejects: "CSR names tenant globex, not acme"
        ),
        NamesCase(
            "two CNs",
            subject: [(cn, "sensor-7"), (cn, "sensor-7")],
            rejects: "CSR subject has more than one CN"
        ),
        NamesCase(
            "OU present",
            subject: [(ou, "lab"), (cn, "sensor-7")],
            rejects: "CSR subject may hold only CN and O, not 2.5.4.11"
        ),
    ]

    @Test("names check", arguments: namesCases)
    func names(_ testCase: NamesCase) throws {
        let subject = DistinguishedName(
            testCase.subject.map { RelativeDistinguishedName(.init(type: $0.0, value: .init(utf8String: $0.1))) }
        )
        let request = try EnrollmentRequest(
            der: Self.swiftCSR(subject: subject, alternativeNames: testCase.alternativeNames)
        )
        let error = Self.errorCode {
            try request.checkNames(device: Self.device, tenant: Self.tenant, trustDomain: Self.trustDomain)
        }
        if let reason = testCase.reason {
            #expect(error?.code == .policyViolation)
            #expect(error?.reason == reason)
        } else {
            #expect(error == nil, "\(error?.reason ?? "")")
        }
    }

    @Test("a reason quotes at most 64 printable characters of the offending name")
    func longHostileName() throws {
        let hostile = "evil\n" + String(repeating: "x", count: 300) + "\u{1B}[31m"
        let subject = DistinguishedName([
            RelativeDistinguishedName(.init(type: Self.cn, value: .init(utf8String: hostile)))
        ])
        let request = try EnrollmentRequest(der: Self.swiftCSR(subject: subject))
        #expect(request.requestedCommonName == hostile)
        let error = Self.errorCode {
            try request.checkNames(device: Self.device, tenant: Self.tenant, trustDomain: Self.trustDomain)
        }
        let reason = try #require(error?.reason)
        #expect(reason == "CSR names device evil?\(String(repeating: "x", count: 59)), not sensor-7")
        #expect(!reason.contains("\n") && !reason.contains("\u{1B}"))
    }
}
