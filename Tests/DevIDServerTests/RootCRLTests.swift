import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

@testable import DevIDServer

/// The root's CRL (issue #15 part 1): signed ahead at `devid ca init` because the root key is offline, served at
/// `/crl/root.crl`, named by the issuing CA certificate, so that `openssl verify -crl_check_all` accepts an LDevID.
@Suite("Root CRL", .serialized)
struct RootCRLTests {
    static let day: TimeInterval = 86_400
    static let base = "http://devid.example.net:8080"

    static func server() async throws -> LiveServer {
        let start = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let server = try await LiveServer(clock: ManualWallClock(start)) { $0.revocationBaseURL = base }
        try await server.state.store.createTenant(
            Tenant(id: MetricsTests.tenant, displayName: "Acme", createdAt: server.clock.now()), audit: nil)
        return server
    }

    static func fetch(_ server: LiveServer, _ name: String, into file: String) async throws -> Int {
        let result = try await ExternalTool.runAsync([
            "curl", "-s", "-o", file, "-w", "%{http_code}", server.opsURL + "/crl/\(name).crl",
        ])
        return Int(result.stdout) ?? 0
    }

    @Test("openssl verify -crl_check_all accepts an LDevID with the root's and the issuing CA's CRLs, and not without")
    func crlCheckAll() async throws {
        let server = try await Self.server()
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        let issuing = server.state.hierarchy.issuing.certificate
        #expect(RevocationExtensions.crlDistributionPointURI(of: issuing) == Self.base + "/crl/root.crl")
        #expect(
            RevocationExtensions.crlDistributionPointURI(of: try #require(server.state.hierarchy.services).certificate)
                == Self.base + "/crl/root.crl")

        let (ldevid, _) = try await MetricsTests.enroll(server, device: "dev-1")
        let dir = server.directory
        let leaf = try dir.write("ldevid.pem", ldevid.pemString)
        let untrusted = try dir.write("issuing.pem", issuing.pemString)
        try await server.waitForFirstCRLs()
        #expect(try await Self.fetch(server, "root", into: dir.file("root.crl")) == 200)
        #expect(try await Self.fetch(server, "issuing", into: dir.file("issuing.crl")) == 200)
        func verify(_ crls: [String]) async throws -> ExternalTool.Result {
            try await ExternalTool.runAsync(
                ["openssl", "verify", "-crl_check_all", "-CAfile", layout.rootCertificate, "-untrusted", untrusted]
                    + crls.flatMap { ["-CRLfile", dir.file($0)] } + [leaf])
        }
        var result = try await verify(["root.crl", "issuing.crl"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasSuffix("ldevid.pem: OK\n"), "\(result.stdout)")
        result = try await verify(["issuing.crl"])
        #expect(result.status != 0, "without the root's CRL the issuing CA has no revocation status")
        #expect((result.stdout + result.stderr).contains("unable to get certificate CRL"), "\(result.stdout)\(result.stderr)")

        let text = try await ExternalTool.runAsync(["openssl", "crl", "-inform", "DER", "-in", dir.file("root.crl"), "-noout", "-text"])
        #expect(text.stdout.contains("Issuer: O = DevID, OU = devid.local, CN = DevID Root CA"), "\(text.stdout)")
        #expect(text.stdout.contains("No Revoked Certificates."))
        try await server.stop()
    }

    @Test("issuing CA certificates name their root's certificate (AIA caIssuers), which the operations listener serves")
    func authorityInformationAccess() async throws {
        let server = try await Self.server()
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        let issuing = server.state.hierarchy.issuing.certificate
        #expect(Self.caIssuers(of: issuing) == Self.base + "/ca/root.crt")
        #expect(Self.caIssuers(of: try #require(server.state.hierarchy.services).certificate) == Self.base + "/ca/root.crt")
        // A CA prepared later names the same; one under a later root names that root's CRL and certificate.
        let prepared = try CAStore.prepareIssuing(
            layout: layout, rootKeyPath: layout.rootKey, passphrase: Array((server.configuration.caPassphrase ?? "").utf8),
            now: server.clock.now(), keyEncryptionRounds: server.configuration.keyEncryptionRounds)
        #expect(Self.caIssuers(of: prepared.certificate) == Self.base + "/ca/root.crt")
        #expect(RevocationExtensions.crlDistributionPointURI(of: prepared.certificate) == Self.base + "/crl/root.crl")
        let (rootID, _) = try CAStore.prepareRoot(
            layout: layout, rootKeyPath: layout.rootKey, passphrase: Array((server.configuration.caPassphrase ?? "").utf8),
            now: server.clock.now(), keyEncryptionRounds: server.configuration.keyEncryptionRounds)
        _ = try CAStore.activateRoot(layout: layout, id: rootID)
        let underNew = try CAStore.prepareIssuing(
            layout: layout, rootKeyPath: layout.rootKey(id: rootID),
            passphrase: Array((server.configuration.caPassphrase ?? "").utf8), now: server.clock.now(),
            keyEncryptionRounds: server.configuration.keyEncryptionRounds)
        #expect(Self.caIssuers(of: underNew.certificate) == Self.base + "/ca/root2.crt")
        #expect(RevocationExtensions.crlDistributionPointURI(of: underNew.certificate) == Self.base + "/crl/root2.crl")
        // pkilint accepts issuing CA certificates with both extensions.
        for (name, certificate) in [("prepared", prepared.certificate), ("under-root-2", underNew.certificate)] {
            let file = try server.directory.write("\(name).pem", certificate.pemString)
            let lint = try await ExternalTool.runAsync(["lint_pkix_cert", "lint", "-s", "WARNING", file])
            #expect(lint.succeeded && lint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(lint)")
        }

        let registered = try await withClient(try server.client()) {
            try await $0.send(
                "POST", server.opsURL + "/v1/admin/ca/issuing/register",
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: "{}")
        }
        #expect(registered.status == 200, "\(registered.body)")
        let dir = server.directory
        for (name, expected) in [("root", server.state.hierarchy.root), ("root2", try CAStore.loadRoots(layout: layout).certificates[2])] {
            let file = dir.file("\(name).der")
            let fetched = try await ExternalTool.runAsync([
                "curl", "-s", "-o", file, "-w", "%{http_code} %{content_type}", server.opsURL + "/ca/\(name).crt",
            ])
            #expect(fetched.stdout == "200 application/pkix-cert", "\(fetched)")
            let der = try #require(FileManager.default.contents(atPath: file))
            #expect(try Certificate(derEncoded: Array(der)) == expected)
            #expect(try await Self.fetch(server, name, into: dir.file("\(name).crl")) == 200)
        }
        let unknown = try await ExternalTool.runAsync([
            "curl", "-s", "-w", " %{http_code}", server.opsURL + "/ca/root9.crt",
        ])
        #expect(unknown.stdout == "unknown CA certificate root9.crt\n 404", "\(unknown)")
        try await server.stop()
    }

    @Test("DevID's own manufacturer CA certificates name their CRL (CDP) and their certificate (AIA), which is served")
    func manufacturerExtensions() async throws {
        let server = try await Self.server()
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        let first = try #require(server.state.hierarchy.manufacturer).certificate
        #expect(RevocationExtensions.crlDistributionPointURI(of: first) == Self.base + "/crl/manufacturer.crl")
        #expect(Self.caIssuers(of: first) == Self.base + "/ca/manufacturer.crt")
        let id = try CAStore.prepareManufacturer(
            layout: layout, passphrase: Array((server.configuration.caPassphrase ?? "").utf8), now: server.clock.now(),
            keyEncryptionRounds: server.configuration.keyEncryptionRounds)
        let second = try #require(
            try PEM.certificates(String(contentsOfFile: layout.manufacturerCertificate(id: id), encoding: .utf8)).first)
        #expect(RevocationExtensions.crlDistributionPointURI(of: second) == Self.base + "/crl/manufacturer2.crl")
        #expect(Self.caIssuers(of: second) == Self.base + "/ca/manufacturer2.crt")
        for (name, certificate) in [("manufacturer1", first), ("manufacturer2", second)] {
            let file = try server.directory.write("\(name).pem", certificate.pemString)
            let lint = try await ExternalTool.runAsync(["lint_pkix_cert", "lint", "-s", "WARNING", file])
            #expect(lint.succeeded && lint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(lint)")
        }
        // The running server serves the manufacturer CA it loaded, and the CRL its CDP names.
        let file = server.directory.file("manufacturer.der")
        let fetched = try await ExternalTool.runAsync([
            "curl", "-s", "-o", file, "-w", "%{http_code} %{content_type}", server.opsURL + "/ca/manufacturer.crt",
        ])
        #expect(fetched.stdout == "200 application/pkix-cert", "\(fetched)")
        #expect(try Certificate(derEncoded: Array(try #require(FileManager.default.contents(atPath: file)))) == first)
        try await server.waitForFirstCRLs()
        #expect(try await Self.fetch(server, "manufacturer", into: server.directory.file("manufacturer.crl")) == 200)
        try await server.stop()
    }

    static func caIssuers(of certificate: Certificate) -> String? {
        guard let access = try? certificate.extensions.authorityInformationAccess else { return nil }
        for description in access where description.method == .issuingCA {
            if case .uniformResourceIdentifier(let uri) = description.location { return uri }
        }
        return nil
    }

    @Test("13 CRLs signed ahead: a new one every 30 days; a warning 60 days before they run out; critical after")
    func schedule() async throws {
        let server = try await Self.server()
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        let signed = try RootCRLs.load(directory: layout.rootCRLDirectory, root: server.state.hierarchy.root)
        #expect(signed.crls.map(\.crlNumber) == (1...13).map { UInt64($0) })
        let start = server.clock.now()
        #expect(signed.crls.first?.thisUpdate == start)
        #expect(signed.crls.first?.nextUpdate == start.addingTimeInterval(45 * Self.day))
        #expect(signed.signedUntil == start.addingTimeInterval((12 * 30 + 45) * Self.day))
        for name in try FileManager.default.contentsOfDirectory(atPath: layout.rootCRLDirectory) {
            let attributes = try FileManager.default.attributesOfItem(atPath: layout.rootCRLDirectory + "/" + name)
            #expect((attributes[.posixPermissions] as? Int) == 0o644)
        }

        func rootFindings() async throws -> [String] {
            // The other CAs' CRLs are re-signed on the server's timer, which a jump of the virtual clock outruns:
            // only the root's findings count here.
            let report = try await IdentityHealthTests.anomalies(server, "?check=crl_stale")
            return report.findings.compactMap { $0["summary"] as? String }.filter { $0.contains("root") }
        }
        #expect(try await rootFindings().isEmpty)
        server.clock.advance(by: 31 * Self.day)
        let metrics = try Exposition(try await MetricsTests.scrape(server))
        #expect(
            metrics[#"devid_crl_next_update_timestamp_seconds{ca="root",partition="complete"}"#]
                == start.addingTimeInterval(75 * Self.day).timeIntervalSince1970)
        server.clock.advance(by: (350 - 31) * Self.day)
        var findings = try await rootFindings()
        #expect(findings.count == 1, "\(findings)")
        #expect(findings.first?.hasPrefix("the root's pre-signed CRLs run out at") == true)
        server.clock.advance(by: 60 * Self.day)
        findings = try await rootFindings()
        #expect(findings.contains { $0.hasPrefix("CRL root is past its nextUpdate") }, "\(findings)")
        let report = try await IdentityHealthTests.anomalies(server, "?check=crl_stale")
        #expect(report.status == "critical")

        // A root ceremony signs more: served within the reload interval (here: a fresh cache), numbered on.
        let more = try DataDirectory.signRootCRLs(
            configuration: server.configuration, rootKeyPath: nil, count: 2, clock: server.clock)
        #expect(more.crls.map(\.crlNumber).suffix(2) == [14, 15])
        #expect(more.crls.last?.thisUpdate == server.clock.now().addingTimeInterval(30 * Self.day))
        #expect(more.current(at: server.clock.now())?.crlNumber == 14)
        let wrongKey = #expect(throws: (any Error).self) {
            try DataDirectory.signRootCRLs(
                configuration: server.configuration, rootKeyPath: layout.issuingKey, count: 1, clock: server.clock)
        }
        #expect("\(wrongKey.map { "\($0)" } ?? "")".contains("is not the key of the root"))
        #expect(try RootCRLs.load(directory: layout.rootCRLDirectory, root: server.state.hierarchy.root).crls.count == 15)
        try await server.stop()
    }
}
