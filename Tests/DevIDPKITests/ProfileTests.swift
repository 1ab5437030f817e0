import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// Every certificate profile, checked by a third party: `openssl verify` and `openssl x509 -text`.
@Suite("Certificate profiles")
struct ProfileTests {
    enum Role: String, CaseIterable, Sendable {
        case root, issuing, manufacturer, serverTLS, ldevid, idevid
    }

    static let chain: Result<TestChain, any Error> = Result { try TestChain() }

    func chain() throws -> TestChain { try Self.chain.get() }

    /// The certificate for a role, its trust anchor file, and the untrusted intermediates file.
    func material(_ role: Role, _ chain: TestChain) throws -> (cert: Certificate, anchor: String, untrusted: String?) {
        let layout = chain.layout
        switch role {
        case .root: return (chain.hierarchy.root, layout.rootCertificate, nil)
        case .issuing: return (chain.hierarchy.issuing.certificate, layout.rootCertificate, nil)
        case .manufacturer: return (try #require(chain.hierarchy.manufacturer).certificate, layout.manufacturerCertificate, nil)
        case .serverTLS: return (chain.hierarchy.serverChain[0], layout.rootCertificate, layout.issuingCertificate)
        case .ldevid: return (try chain.ldevid().certificate, layout.rootCertificate, layout.issuingCertificate)
        case .idevid: return (try chain.idevid().certificate, layout.manufacturerCertificate, nil)
        }
    }

    @Test("openssl verify accepts", arguments: Role.allCases)
    func opensslVerifies(role: Role) throws {
        let chain = try chain()
        let (cert, anchor, untrusted) = try material(role, chain)
        let file = try chain.directory.write("\(role.rawValue).pem", cert.pemString)
        var arguments = ["openssl", "verify", "-CAfile", anchor]
        if let untrusted { arguments += ["-untrusted", untrusted] }
        // Verify at the certificate's own validity (the test chain's clock is not the machine's).
        arguments += ["-attime", String(Int(chain.clock.now().timeIntervalSince1970)), file]
        let result = try ExternalTool.run(arguments)
        #expect(result.succeeded, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains(": OK"))
    }

    @Test("openssl x509 -text shows the profile's extensions", arguments: Role.allCases)
    func extensionsAsOpenSSLSeesThem(role: Role) throws {
        let chain = try chain()
        let (cert, _, _) = try material(role, chain)
        let file = try chain.directory.write("\(role.rawValue)-text.pem", cert.pemString)
        let text = try ExternalTool.run(["openssl", "x509", "-in", file, "-noout", "-text"]).stdout
        #expect(text.contains("X509v3 Subject Key Identifier"))
        #expect(text.contains("X509v3 Authority Key Identifier"))
        #expect(text.contains("X509v3 Basic Constraints: critical"))
        #expect(text.contains("X509v3 Key Usage: critical"))
        switch role {
        case .root:
            // pathlen 2: room for a cross-certified root below it (root rollover, docs/runbooks/break-glass.md).
            #expect(text.contains("CA:TRUE, pathlen:2"))
            #expect(text.contains("Certificate Sign, CRL Sign"))
            #expect(text.contains("ASN1 OID: secp384r1"))
            #expect(cert.notValidAfter.timeIntervalSince(cert.notValidBefore) > 19.9 * 365 * 86_400)
        case .issuing, .manufacturer:
            #expect(text.contains("CA:TRUE, pathlen:0"))
            #expect(text.contains("Certificate Sign, CRL Sign"))
            #expect(text.contains("ASN1 OID: prime256v1"))
        case .serverTLS:
            #expect(text.contains("TLS Web Server Authentication"))
            #expect(text.contains("DNS:localhost"))
            #expect(text.contains("IP Address:127.0.0.1"))
        case .ldevid:
            #expect(text.contains("CA:FALSE"))
            #expect(text.contains("Digital Signature"))
            #expect(text.contains("TLS Web Client Authentication"))
            #expect(text.contains("Subject: O = acme, CN = dev-1"))
            #expect(text.contains("URI:spiffe://test.devid/tenant/acme/device/dev-1"))
        case .idevid:
            #expect(text.contains("serialNumber = SN-0001"))
            #expect(text.contains("Not After : Dec 31 23:59:59 9999 GMT"))
            #expect(text.contains("TLS Web Client Authentication"))
        }
    }

    @Test("LDevID notBefore is backdated by the profile's amount and lifetime is 30 days")
    func ldevidBackdate() throws {
        let chain = try chain()
        let now = chain.clock.now()
        let cert = try chain.ldevid(at: now).certificate
        #expect(cert.notValidBefore == now.addingTimeInterval(-300).roundedToSeconds)
        #expect(cert.notValidAfter == now.addingTimeInterval(30 * 86_400).roundedToSeconds)

        var profile = CertificateProfile.ldevid
        profile.policy.backdate = 3_600
        let key = try KeyMaterial.generate(.p256)
        let custom = try chain.hierarchy.issuing.issueLDevID(
            device: try DeviceID("dev-2"), tenant: try TenantID("acme"), trustDomain: "test.devid",
            publicKey: key.publicKey, profile: profile, now: now)
        #expect(custom.notValidBefore == now.addingTimeInterval(-3_600).roundedToSeconds)
    }

    @Test("a key the profile does not allow is refused and nothing is issued")
    func disallowedKey() throws {
        let chain = try chain()
        var profile = CertificateProfile.ldevid
        profile.policy.allowedKeyAlgorithms = [.p256]
        let p384 = try KeyMaterial.generate(.p384)
        #expect(throws: DevIDPKIError(.unsupportedAlgorithm, "")) {
            try chain.hierarchy.issuing.issueLDevID(
                device: try DeviceID("dev-3"), tenant: try TenantID("acme"), trustDomain: "test.devid",
                publicKey: p384.publicKey, profile: profile, now: chain.clock.now())
        }
    }

    @Test("serials are positive, 16 bytes, and unique over 10,000 issues")
    func serialsOverTenThousandIssues() throws {
        let chain = try chain()
        let key = try KeyMaterial.generate(.p256).publicKey
        let subject = try DeviceNames.ldevidSubject(device: try DeviceID("dev-s"), tenant: try TenantID("acme"))
        var seen = Set<[UInt8]>()
        for _ in 0..<10_000 {
            let cert = try chain.hierarchy.issuing.issue(
                subject: subject, publicKey: key, profile: .ldevid, now: chain.clock.now())
            let bytes = Array(cert.serialNumber.bytes)
            #expect(bytes.count == 16)
            #expect(bytes[0] & 0x80 == 0 && bytes[0] != 0, "serial must be positive with no padding octet")
            seen.insert(bytes)
        }
        #expect(seen.count == 10_000)
    }
}

extension Date {
    /// Certificates carry whole seconds.
    var roundedToSeconds: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
