import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// Broker certificates come from the services CA and leave nothing unrecorded: listed, revocable by serial, and
/// answered by OCSP and the services CA's CRL (issue #12, finding 6). Checked black-box with curl and openssl against
/// the live server.
@Suite struct ServiceCertificateTests {
    struct ExportResponse: Decodable {
        var brokerCertificate: String?
    }

    @Test("a broker certificate chains to the root through the services CA; `revoke --serial` makes OCSP and the services CRL say revoked")
    func revokeBrokerCertificate() async throws {
        let fixture = try await ESTFixture()
        defer { Task { try? await fixture.server.stop() } }
        let directory = try TemporaryDirectory(prefix: "devid-service-cert")
        defer { directory.remove() }
        let key = try KeyMaterial.generate(.p256)
        let csr = Data(try ESTFixture.csr(commonName: "127.0.0.1", key: key)).base64EncodedString()
        let reply = try await fixture.admin(
            "POST", "/v1/admin/exports/mosquitto",
            body: #"{"directory":"/etc/mosquitto/devid","brokerNames":["127.0.0.1","localhost"],"csr":"\#(csr)"}"#)
        #expect(reply.status == 200, "\(reply.body)")
        let pem = try #require(try JSONDecoder().decode(ExportResponse.self, from: Data(reply.body.utf8)).brokerCertificate)
        let chain = try PEM.certificates(pem)
        let leaf = try #require(chain.first)
        let serial = leaf.devidSerial
        let services = try fixture.hierarchy.requireServices()

        // openssl: leaf → services CA → root, and services CA → root alone (the issuing CA is not on the path).
        let rootFile = try directory.write("root.pem", PEM.bundle([fixture.hierarchy.root]))
        let servicesFile = try directory.write("services.pem", PEM.bundle([services.certificate]))
        let leafFile = try directory.write("broker.pem", PEM.bundle([leaf]))
        let verified = try ExternalTool.run([
            "openssl", "verify", "-CAfile", rootFile, "-untrusted", servicesFile, "-purpose", "sslserver", leafFile,
        ])
        #expect(verified.succeeded, "\(verified.stdout) \(verified.stderr)")
        let issuingFile = try directory.write("issuing.pem", PEM.bundle([fixture.hierarchy.issuing.certificate]))
        let wrongPath = try ExternalTool.run([
            "openssl", "verify", "-CAfile", rootFile, "-untrusted", issuingFile, leafFile,
        ])
        #expect(!wrongPath.succeeded, "the issuing CA did not sign it")

        // In the registry, listed, with its audit event.
        let recorded = try #require(try await fixture.store.serviceCertificate(serial: serial))
        #expect(recorded.status == .active)
        let list = try await fixture.admin("GET", "/v1/admin/service-certificates")
        #expect(list.status == 200)
        #expect(list.body.contains(#""serial":"\#(serial.rawValue)""#), "\(list.body)")
        let audited = try await fixture.store.auditEvents(AuditFilter(action: "broker.certificate", limit: 5))
        #expect(audited.contains { $0.serial == serial && $0.outcome == .success })

        // Good before, by OCSP (openssl ocsp against the live responder).
        func ocsp() throws -> String {
            let result = try ExternalTool.run([
                "openssl", "ocsp", "-issuer", servicesFile, "-cert", leafFile, "-url",
                "\(fixture.server.opsURL)/ocsp", "-CAfile", rootFile, "-no_nonce",
            ])
            return result.stdout + result.stderr
        }
        let before = try ocsp()
        #expect(before.contains("\(leafFile): good"), "\(before)")

        // A dry run changes nothing; the revocation does.
        let dry = try await fixture.admin(
            "POST", "/v1/admin/revoke", body: #"{"serial":"\#(serial.rawValue)","reason":"keyCompromise","dryRun":true}"#)
        #expect(dry.status == 200, "\(dry.body)")
        #expect(try await fixture.store.serviceCertificate(serial: serial)?.status == .active)
        let revoked = try await fixture.admin(
            "POST", "/v1/admin/revoke", body: #"{"serial":"\#(serial.rawValue)","reason":"keyCompromise"}"#)
        #expect(revoked.status == 200, "\(revoked.body)")
        #expect(revoked.body.contains(#""serviceCertificate""#), "\(revoked.body)")
        #expect(try await fixture.store.serviceCertificate(serial: serial)?.status == .revoked)

        let answer = try ocsp()
        #expect(answer.contains("\(leafFile): revoked"), "\(answer)")
        #expect(answer.contains("Reason: keyCompromise"), "\(answer)")

        // The services CRL lists it once the revocation is published (within the coalescing window).
        let crlFile = directory.file("services.crl")
        let listed = await eventually(timeout: 30) {
            guard
                (try? ExternalTool.run(["curl", "-sf", "-o", crlFile, "\(fixture.server.opsURL)/crl/services.crl"]))?
                    .succeeded == true,
                let text = try? ExternalTool.run([
                    "openssl", "crl", "-inform", "DER", "-in", crlFile, "-CAfile", servicesFile, "-noout", "-text",
                ])
            else { return false }
            return text.stdout.uppercased().contains(serial.rawValue.uppercased())
        }
        #expect(listed != nil, "the services CRL lists the revoked broker certificate")
        let signature = try ExternalTool.run([
            "openssl", "crl", "-inform", "DER", "-in", crlFile, "-CAfile", servicesFile, "-noout",
        ])
        #expect(signature.stderr.contains("verify OK") || signature.stdout.contains("verify OK"), "\(signature)")

        // The admin view says the same; and a second revocation changes nothing.
        let status = try await fixture.admin("GET", "/v1/admin/certificates/\(serial.rawValue)")
        #expect(status.status == 200)
        #expect(status.body.contains(#""kind":"service""#), "\(status.body)")
        #expect(status.body.contains(#""listed":true"#), "\(status.body)")
        let again = try await fixture.admin("POST", "/v1/admin/revoke", body: #"{"serial":"\#(serial.rawValue)"}"#)
        #expect(again.status == 200)
        #expect(again.body.contains(#""credentials":0"#), "\(again.body)")
    }

    @Test("a broker certificate is no device identity: the EST listener refuses it as a client certificate")
    func brokerCertificateIsNoClientIdentity() async throws {
        let fixture = try await ESTFixture()
        defer { Task { try? await fixture.server.stop() } }
        let directory = try TemporaryDirectory(prefix: "devid-service-cert")
        defer { directory.remove() }
        let services = try fixture.hierarchy.requireServices()
        var recorded: [Certificate] = []
        try await BrokerCertificate.ensure(
            directory: directory.path, names: ["127.0.0.1"], services: services, now: fixture.server.clock.now()
        ) { recorded.append($0) }
        #expect(recorded.count == 1)
        let rootFile = try directory.write("root.pem", PEM.bundle([fixture.hierarchy.root]))
        let result = try ExternalTool.run([
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", rootFile,
            "--cert", directory.file(BrokerCertificate.certificateFile),
            "--key", directory.file(BrokerCertificate.keyFile), fixture.url("simplereenroll"),
            "-X", "POST", "-H", "Content-Type: application/pkcs10", "--data", "x",
        ])
        #expect(result.stdout != "200", "\(result.stdout) \(result.stderr)")
        let denied = try await fixture.store.auditEvents(AuditFilter(action: "tls.client_auth", outcome: .denied, limit: 5))
        #expect(denied.contains { $0.serial == recorded.first?.devidSerial }, "the handshake refused it, audited")
    }
}
