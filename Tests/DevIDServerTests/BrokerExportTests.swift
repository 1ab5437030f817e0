import DevIDCore
import DevIDPKI
@testable import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Synchronization
import Testing
import X509

/// `POST /v1/admin/exports/mosquitto` (what `devid export mosquitto` calls) and the pure parts of the export.
@Suite struct BrokerExportTests {
    struct ExportResponse: Decodable {
        var files: [String: String]
        var brokerCertificate: String?
        var devices: Int
    }

    static func csr(_ key: Certificate.PrivateKey, commonName: String = "mqtt.example.com") throws -> String {
        Data(try ESTFixture.csr(commonName: commonName, key: key)).base64EncodedString()
    }

    @Test("the export holds the CA bundle, CRL, an ACL of active devices and a listener block; a CSR gets a broker certificate")
    func export() async throws {
        let fixture = try await ESTFixture()
        _ = try await fixture.enroll("alpha")
        _ = try await fixture.enroll("beta")
        let suspended = try await fixture.admin("POST", "/v1/admin/devices/beta/suspend")
        #expect(suspended.status == 200)
        _ = await eventually(timeout: 30) { !(await fixture.server.state.revocation.brokerCRLs().isEmpty) }

        let key = try KeyMaterial.generate(.p256)
        let body = """
            {"directory":"/etc/mosquitto/devid","port":18883,"bindAddress":"127.0.0.1",\
            "brokerNames":["mqtt.example.com","10.0.0.7"],"csr":"\(try Self.csr(key))"}
            """
        let reply = try await fixture.admin("POST", "/v1/admin/exports/mosquitto", body: body)
        #expect(reply.status == 200, "\(reply.body)")
        let export = try JSONDecoder().decode(ExportResponse.self, from: Data(reply.body.utf8))
        #expect(export.devices == 1)
        let acl = try #require(export.files[MosquittoExport.aclFile])
        #expect(acl.contains("user alpha\ntopic write tenants/acme/devices/alpha/telemetry/#\n"))
        #expect(acl.contains("topic read tenants/acme/devices/alpha/commands/#\n"))
        #expect(acl.contains("topic read tenants/acme/broadcast\n"))
        #expect(!acl.contains("user beta"), "a suspended device has no ACL block")
        let config = try #require(export.files[MosquittoExport.configurationFile])
        #expect(config.contains("listener 18883 127.0.0.1\n"))
        #expect(config.contains("certfile /etc/mosquitto/devid/broker.pem\n"))
        #expect(config.contains("crlfile /etc/mosquitto/devid/crl.pem\n"))
        #expect(config.contains("require_certificate true\nuse_identity_as_username true\n"))
        #expect(try PEM.certificates(try #require(export.files[MosquittoExport.caFile])).count == 2)
        #expect(export.files[MosquittoExport.crlFile]?.hasPrefix("-----BEGIN X509 CRL-----\n") == true)

        // The broker certificate: for the CSR's key, server-auth (never the EST server's id-kp-cmcRA), the names
        // asked for, issued by the services CA (never the issuing CA of the EST server), recorded in the registry.
        let chain = try PEM.certificates(try #require(export.brokerCertificate))
        let leaf = try #require(chain.first)
        let services = try fixture.hierarchy.requireServices()
        #expect(chain == [leaf, services.certificate])
        #expect(leaf.publicKey == key.publicKey)
        #expect(leaf.issuer == services.certificate.subject)
        #expect(leaf.issuer != fixture.hierarchy.issuing.certificate.subject)
        #expect(try leaf.extensions.extendedKeyUsage?.contains(.serverAuth) == true)
        #expect(!leaf.isESTServerCertificate)
        let recorded = try #require(try await fixture.store.serviceCertificate(serial: leaf.devidSerial))
        #expect(recorded.der == leaf.derBytes)
        #expect(recorded.names == ["mqtt.example.com", "10.0.0.7"])
        let names = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("mqtt.example.com")))
        #expect(names.count == 2)
        let audited = try await fixture.store.auditEvents(AuditFilter(action: "broker.certificate", limit: 5))
        #expect(audited.contains { $0.outcome == .success })

        // openssl agrees the broker certificate chains to DevID's root.
        let directory = try TemporaryDirectory(prefix: "devid-export")
        defer { directory.remove() }
        let leafFile = try directory.write("broker.pem", PEM.bundle([leaf]))
        let caFile = try directory.write("ca.pem", export.files[MosquittoExport.caFile]!)
        let untrusted = try directory.write("services.pem", PEM.bundle(Array(chain.dropFirst())))
        let verified = try ExternalTool.run([
            "openssl", "verify", "-CAfile", caFile, "-untrusted", untrusted, "-purpose", "sslserver", leafFile,
        ])
        #expect(verified.succeeded, "\(verified.stdout) \(verified.stderr)")
        try await fixture.server.stop()
    }

    @Test("bad export requests are refused with 400 and a reason; nothing is issued")
    func refusals() async throws {
        let fixture = try await ESTFixture()
        let key = try KeyMaterial.generate(.p256)
        let good = try Self.csr(key)
        let cases: [(String, String)] = [
            (#"{"directory":"relative/dir"}"#, "directory must be an absolute path without spaces"),
            (#"{"directory":"/with space"}"#, "directory must be an absolute path without spaces"),
            (#"{"directory":"/etc/m","port":0}"#, "port must be 1-65535"),
            (#"{"directory":"/etc/m","port":70000}"#, "port must be 1-65535"),
            (#"{"directory":"/etc/m","bindAddress":""}"#, "invalid bind address"),
            (#"{"directory":"/etc/m","brokerNames":[]}"#, "broker names must be DNS names or IP addresses"),
            (#"{"directory":"/etc/m","brokerNames":["bad name"]}"#, "broker names must be DNS names or IP addresses"),
            (#"{"directory":"/etc/m","brokerNames":["-x.example"]}"#, "broker names must be DNS names or IP addresses"),
            (#"{"directory":"/etc/m","csr":"%%%"}"#, "csr is not base64"),
            (#"{"directory":"/etc/m","csr":"AAAA"}"#, "CSR is not a valid PKCS#10 request"),
        ]
        let auditBefore = try await fixture.store.auditEvents(AuditFilter(action: "broker.certificate", limit: 50)).count
        for (body, reason) in cases {
            let reply = try await fixture.admin("POST", "/v1/admin/exports/mosquitto", body: body)
            #expect(reply.status == 400, "\(body): \(reply.body)")
            #expect(reply.body.contains(reason), "\(body): \(reply.body)")
        }
        // A CSR whose signature does not verify (proof of possession) is refused too.
        var tampered = Array(Data(base64Encoded: good)!)
        tampered[tampered.count - 3] ^= 0x01
        let bad = try await fixture.admin(
            "POST", "/v1/admin/exports/mosquitto",
            body: #"{"directory":"/etc/m","csr":"\#(Data(tampered).base64EncodedString())"}"#)
        #expect(bad.status == 400, "\(bad.body)")
        let events = try await fixture.store.auditEvents(AuditFilter(action: "broker.certificate", limit: 50))
        #expect(!events.contains { $0.outcome == .success }, "nothing may be issued")
        #expect(events.count >= auditBefore + 2, "CSR refusals are audited")

        // Without an admin token: 401.
        let anonymous = try await withClient(try fixture.server.client()) {
            try await $0.send(
                "POST", fixture.server.opsURL + "/v1/admin/exports/mosquitto",
                headers: [("Content-Type", "application/json")], body: #"{"directory":"/etc/m"}"#)
        }
        #expect(anonymous.status == 401)
        try await fixture.server.stop()
    }

    @Test("the ACL expands {tenant}, {device} and {lot}, drops {lot} rules for devices without a lot, sorts devices")
    func aclExpansion() throws {
        let policy = try CompiledTopicPolicy(TopicPolicy(rules: [
            TopicRule(.publish, "tenants/{tenant}/devices/{device}/telemetry/#"),
            TopicRule(.all, "tenants/{tenant}/lots/{lot}/+"),
            TopicRule(.subscribe, "tenants/{tenant}/broadcast"),
        ]))
        let tenant = TenantID(rawValue: "acme")!
        let withLot = BrokerGrants.grant(
            policy, tenant: tenant, device: DeviceID(rawValue: "d2")!, lot: LotID(rawValue: "lot-7")!)
        let withoutLot = BrokerGrants.grant(policy, tenant: tenant, device: DeviceID(rawValue: "d1")!, lot: nil)
        #expect(withLot.publish == ["tenants/acme/devices/d2/telemetry/#", "tenants/acme/lots/lot-7/+"])
        #expect(withLot.subscribe == ["tenants/acme/lots/lot-7/+", "tenants/acme/broadcast"])
        #expect(withoutLot.publish == ["tenants/acme/devices/d1/telemetry/#"])
        #expect(withoutLot.subscribe == ["tenants/acme/broadcast"])
        let acl = try MosquittoExport.acl([withLot, withoutLot])
        let d1 = try #require(acl.range(of: "user d1\n"))
        let d2 = try #require(acl.range(of: "user d2\n"))
        #expect(d1.lowerBound < d2.lowerBound)
        #expect(try MosquittoExport.acl([withLot, withoutLot]) == acl, "the same fleet gives the same bytes")
    }

    /// Mosquitto checks every device's certificate against `crl.pem` (`crlfile`) and refuses one whose issuer has no
    /// CRL there. At start the root's pre-signed CRL is at hand before the issuing CA's first CRL is published; a
    /// `crl.pem` of the root's CRL alone made the broker refuse every device until the next rewrite (seen by
    /// MosquittoDocTests as `certificate verify failed` right after `devid serve --mosquitto-dir` started).
    @Test("devid serve --mosquitto-dir never writes a crl.pem without the issuing CA's CRL, not even at start")
    func neverARootCRLAlone() async throws {
        let directory = try TemporaryDirectory(prefix: "devid-mosquitto-start")
        defer { directory.remove() }
        let crlFile = directory.file("export/\(MosquittoExport.crlFile)")
        // Every version of crl.pem from before the server starts until its files have settled.
        let versions = Mutex<Set<String>>([])
        let watching = Task {
            while !Task.isCancelled {
                if let text = try? String(contentsOfFile: crlFile, encoding: .utf8), !text.isEmpty {
                    _ = versions.withLock { $0.insert(text) }
                }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        defer { watching.cancel() }
        let fixture = try await ESTFixture { configuration in
            configuration.mosquitto = MosquittoSyncConfiguration(
                directory: directory.file("export"), port: 18_883, bindAddress: "127.0.0.1")
        }
        defer { Task { try? await fixture.server.stop() } }
        let issuing = fixture.hierarchy.issuing.certificate.subject
        func issuers(_ pem: String) throws -> [DistinguishedName] {
            try pem.components(separatedBy: "-----BEGIN X509 CRL-----\n").dropFirst().map { block in
                let base64 = block.components(separatedBy: "-----END").first!.replacingOccurrences(of: "\n", with: "")
                let der = try #require(Data(base64Encoded: base64))
                return try CertificateRevocationList(derEncoded: Array(der)).issuer
            }
        }
        // A minute: in CI this suite shares the two cores' cooperative threads with a hundred others, where a start
        // that takes 1.5 s alone once took more than 10 s (CI of 49793dc). Only a failure waits that long.
        let complete = await eventually(timeout: 60) {
            guard let text = try? String(contentsOfFile: crlFile, encoding: .utf8) else { return false }
            return (try? issuers(text))?.contains(issuing) == true
        }
        let rebuilds = await fixture.server.state.revocation.rebuildCount
        let writes = await fixture.server.state.brokers.mosquitto?.writeCount ?? -1
        #expect(
            complete != nil,
            """
            crl.pem never held the issuing CA's CRL: \(rebuilds) CRL rebuilds, \(writes) Mosquitto writes, \
            crl.pem \(FileManager.default.fileExists(atPath: crlFile) ? "present" : "absent")
            """)
        try await Task.sleep(for: .seconds(1))
        watching.cancel()
        let seen = versions.withLock { $0 }
        #expect(!seen.isEmpty)
        for version in seen {
            let names = try issuers(version)
            #expect(names.contains(issuing), "a crl.pem without the issuing CA's CRL: \(names)")
        }
    }

    /// The one-off export had the sync's old gap: in the moment after a start, before the issuing CAs' first CRLs,
    /// it answered 200 with a `crl.pem` of the root's CRL alone, which makes Mosquitto refuse every device. Here the
    /// CRLs are never published (a file stands where the CRL directory would be), so the moment lasts.
    @Test("an export before the issuing CAs' first CRLs is refused with 503 and Retry-After; nothing is issued")
    func refusedBeforeTheFirstCRLs() async throws {
        let fixture = try await ESTFixture { configuration in
            try? FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: configuration.crlDirectory, contents: Data("not a directory".utf8))
        }
        defer { Task { try? await fixture.server.stop() } }
        _ = try await fixture.enroll("alpha")
        let body = """
            {"directory":"/etc/mosquitto/devid","brokerNames":["mqtt.example.com"],\
            "csr":"\(try Self.csr(try KeyMaterial.generate(.p256)))"}
            """
        let reply = try await fixture.admin("POST", "/v1/admin/exports/mosquitto", body: body)
        #expect(reply.status == 503, "\(reply.body)")
        #expect(reply.header("Retry-After") == "1")
        #expect(reply.body == #"{"error":{"message":"CRLs are not published yet; retry in a second"}}"#)
        #expect(try await fixture.store.serviceCertificates().isEmpty, "no broker certificate was issued")
        let denied = try await fixture.store.auditEvents(AuditFilter(action: "export.mosquitto", limit: 5))
        #expect(denied.map(\.outcome) == [.denied])
        #expect(denied.first?.reason == "CRLs are not published yet; retry in a second")
    }

    @Test("the roots' CRLs never go to a broker without the issuing CAs' CRLs")
    func brokerCRLsNeedTheIssuingCAs() {
        #expect(ServerState.brokerCRLs(issuing: [], roots: [[1, 2]]).isEmpty)
        #expect(ServerState.brokerCRLs(issuing: [[3]], roots: [[1, 2]]) == [[3], [1, 2]])
    }

    @Test("CRLs are written as X509 CRL PEM blocks of 64-character lines")
    func crlPEM() {
        let pem = MosquittoExport.crlPEM([Array(repeating: 0xAB, count: 100), [1, 2, 3]])
        let blocks = pem.components(separatedBy: "-----BEGIN X509 CRL-----\n").dropFirst()
        #expect(blocks.count == 2)
        #expect(pem.split(separator: "\n").allSatisfy { $0.count <= 64 || $0.hasPrefix("-----") })
        #expect(pem.hasSuffix("-----END X509 CRL-----\n"))
    }
}

@Suite struct IMFFixdateTests {
    @Test("HTTP dates match Foundation's formatter, 1970 to 2100, leap days included")
    func matchesFoundation() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        var seconds: TimeInterval = 0
        var checked = 0
        while seconds < 4_102_444_800 {  // 2100-01-01
            let date = Date(timeIntervalSince1970: seconds)
            #expect(IMFFixdate.string(from: date) == formatter.string(from: date))
            seconds += 86_400 * 13 + 3_607.5
            checked += 1
        }
        for fixed in [951_782_400.0, 1_330_473_599, 1_795_631_290, 4_107_542_400] {  // 2000-02-29, 2012-02-28 23:59:59, ...
            let date = Date(timeIntervalSince1970: fixed)
            #expect(IMFFixdate.string(from: date) == formatter.string(from: date))
        }
        #expect(checked > 2_000)
        #expect(IMFFixdate.string(from: Date(timeIntervalSince1970: 784_111_777)) == "Sun, 06 Nov 1994 08:49:37 GMT")
    }
}
