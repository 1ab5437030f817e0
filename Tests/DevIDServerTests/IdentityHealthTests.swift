import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDStore
import DevIDTesting
import Foundation
import ServiceLifecycle
import SwiftASN1
import Testing
import X509

@testable import DevIDServer

/// `GET /v1/health/anomalies` and `GET /v1/health/series` against a real server: real enrollments and check-ins
/// over mTLS (from two loopback addresses, one of them through curl), real policy decisions, and what the checks
/// and the history make of them.
@Suite("Identity health: anomalies and history", .serialized)
struct IdentityHealthTests {
    static let day: TimeInterval = 86_400

    static func get(_ server: LiveServer, _ path: String, token: String? = nil) async throws -> Reply {
        try await withClient(try server.client()) { client in
            try await client.send(
                "GET", server.opsURL + path, headers: [("Authorization", "Bearer \(token ?? server.adminToken)")])
        }
    }

    static func json(_ reply: Reply) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any], "\(reply.body)")
    }

    static func anomalies(_ server: LiveServer, _ query: String = "") async throws -> (
        status: String, checks: [String: String], findings: [[String: Any]]
    ) {
        let reply = try await get(server, "/v1/health/anomalies" + query)
        try #require(reply.status == 200, "\(reply.body)")
        let object = try json(reply)
        let checks = try #require(object["checks"] as? [[String: Any]])
        return (
            try #require(object["status"] as? String),
            Dictionary(uniqueKeysWithValues: checks.map { ($0["name"] as! String, $0["status"] as! String) }),
            try #require(object["anomalies"] as? [[String: Any]])
        )
    }

    static func checkIn(_ server: LiveServer, _ certificate: Certificate, _ key: Certificate.PrivateKey) async throws
        -> Reply
    {
        try await withClient(try server.client(certificate: [certificate], key: key)) { client in
            try await client.send("GET", server.estURL + "/v1/device/status")
        }
    }

    static func authz(_ server: LiveServer, _ body: String) async throws -> Reply {
        let token = try String(contentsOfFile: server.configuration.secretsDirectory + "/authz-token", encoding: .utf8)
        return try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.opsURL + "/v1/authz/mqtt",
                headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")], body: body)
        }
    }

    @Test("a revoked device that keeps trying (check-in, renewal, broker) is a critical finding that names it")
    func revokedInUse() async throws {
        let server = try await MetricsTests.server()
        let (revoked, revokedKey) = try await MetricsTests.enroll(server, device: "dev-1")
        let (other, otherKey) = try await MetricsTests.enroll(server, device: "dev-2")
        var report = try await Self.anomalies(server)
        #expect(report.checks["revoked_credential_in_use"] == "ok")
        #expect(report.findings.allSatisfy { $0["device"] == nil }, "no device finding yet: \(report.findings)")

        let revoke = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.opsURL + "/v1/admin/revoke",
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: #"{"device":"dev-1","reason":"keyCompromise"}"#)
        }
        #expect(revoke.status == 200, "\(revoke.body)")
        #expect(try await Self.checkIn(server, revoked, revokedKey).status == 403)
        let renewal = try await MetricsTests.est(
            server, "simplereenroll", certificate: revoked, key: revokedKey, newKey: try KeyMaterial.generate(.p256))
        #expect(renewal.status == 403, "\(renewal.body)")
        let decision = try await Self.authz(
            server, #"{"fingerprint":"\#(revoked.sha256Fingerprint)","action":"connect","peer":"192.0.2.7"}"#)
        #expect(decision.body.contains(#""result":"deny""#), "\(decision.body)")
        #expect(try await Self.checkIn(server, other, otherKey).status == 200, "the neighbour is not affected")

        report = try await Self.anomalies(server)
        #expect(report.status == "critical")
        #expect(report.checks["revoked_credential_in_use"] == "critical")
        let findings = report.findings.filter { $0["check"] as? String == "revoked_credential_in_use" }
        #expect(findings.count == 1, "\(findings)")
        let finding = try #require(findings.first)
        #expect(finding["device"] as? String == "dev-1")
        #expect(finding["severity"] as? String == "critical")
        #expect(finding["serial"] as? String == revoked.devidSerial.rawValue)
        let summary = try #require(finding["summary"] as? String)
        #expect(summary.hasPrefix("device dev-1: revoked credential"), "\(summary)")
        #expect(summary.contains("presented 3 times"), "\(summary)")
        #expect(summary.contains("192.0.2.7") && summary.contains("127.0.0.1"), "\(summary)")
        #expect((finding["action"] as? String)?.isEmpty == false)

        // The same refusals are in the history, by stage, for the device's tenant.
        let series = try await Self.get(server, "/v1/health/series?metric=auth_failures&reason=revoked&tenant=acme")
        #expect(series.status == 200, "\(series.body)")
        let body = try Self.json(series)
        let totals = try #require(body["series"] as? [[String: Any]]).map {
            "\(($0["labels"] as? [String: String])?["stage"] ?? "?")=\($0["total"] as? Int ?? -1)"
        }
        #expect(Set(totals) == ["device_status=1", "est=1", "authz=1"], "\(totals)")
        #expect(body["step"] as? Int == 86_400, "the default range is 7 days, in daily steps")

        // One check alone, and the window: a day later the finding is closed.
        var one = try await Self.anomalies(server, "?check=revoked_credential_in_use")
        #expect(Array(one.checks.keys) == ["revoked_credential_in_use"])
        server.clock.advance(by: 25 * 3_600)
        one = try await Self.anomalies(server, "?check=revoked_credential_in_use")
        #expect(one.checks["revoked_credential_in_use"] == "ok")
        one = try await Self.anomalies(server, "?check=revoked_credential_in_use&event_window_hours=48")
        #expect(one.checks["revoked_credential_in_use"] == "critical")
        try await server.stop()
    }

    @Test("one LDevID from 127.0.0.1 and 127.0.0.2 (curl) is a shared credential; two peers for one device a conflict")
    func sharedAndConflicting() async throws {
        let server = try await MetricsTests.server()
        let (certificate, key) = try await MetricsTests.enroll(server, device: "dev-1")
        _ = try await MetricsTests.enroll(server, device: "dev-2")
        #expect(try await Self.checkIn(server, certificate, key).status == 200)
        var report = try await Self.anomalies(server, "?check=shared_credential")
        #expect(report.checks["shared_credential"] == "ok", "one address is no sharing")

        let certFile = try server.directory.write("dev-1.crt", certificate.pemString)
        let keyFile = try server.directory.write("dev-1.key", try key.serializeAsPEM().pemString)
        let root = CALayout(dataDirectory: server.configuration.dataDirectory).rootCertificate
        let curl = try await ExternalTool.runAsync([
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.2", "--cacert", root,
            "--cert", certFile, "--key", keyFile, server.estURL + "/v1/device/status",
        ])
        #expect(curl.stdout == "200", "\(curl.stdout) \(curl.stderr)")
        report = try await Self.anomalies(server, "?check=shared_credential")
        #expect(report.checks["shared_credential"] == "critical")
        let shared = try #require(report.findings.first)
        #expect(shared["device"] as? String == "dev-1")
        #expect((shared["summary"] as? String)?.contains("127.0.0.1, 127.0.0.2") == true, "\(shared)")

        // Two connects for dev-2 from two peers within the window; dev-1 connecting twice from one peer is fine.
        for body in [
            #"{"device":"dev-2","action":"connect","peer":"198.51.100.1"}"#,
            #"{"device":"dev-2","action":"connect","peer":"198.51.100.2"}"#,
            #"{"device":"dev-1","action":"connect","peer":"198.51.100.9"}"#,
            #"{"device":"dev-1","action":"connect","peer":"198.51.100.9"}"#,
        ] {
            let reply = try await Self.authz(server, body)
            #expect(reply.body.contains(#""result":"allow""#), "\(reply.body)")
        }
        report = try await Self.anomalies(server, "?check=conflicting_client_id")
        #expect(report.checks["conflicting_client_id"] == "warning")
        #expect(report.findings.map { $0["device"] as? String } == ["dev-2"], "\(report.findings)")
        // Past the 5-minute window, a new peer is a reconnect, not a conflict: no new finding for dev-1.
        server.clock.advance(by: 600)
        _ = try await Self.authz(server, #"{"device":"dev-1","action":"connect","peer":"198.51.100.10"}"#)
        report = try await Self.anomalies(server, "?check=conflicting_client_id")
        #expect(report.findings.map { $0["device"] as? String } == ["dev-2"])
        try await server.stop()
    }

    @Test("registry checks follow the clock and the thresholds: expiry wave, stale devices, CA expiry")
    func registryChecks() async throws {
        let server = try await MetricsTests.server()
        for index in 1...3 { _ = try await MetricsTests.enroll(server, device: "dev-\(index)") }
        var report = try await Self.anomalies(server)
        #expect(report.checks["expiry_wave"] == "ok", "three credentials are below the 10-credential minimum")
        #expect(report.checks["ca_expiring"] == "ok")
        report = try await Self.anomalies(server, "?expiry_wave_min_credentials=1")
        #expect(report.checks["expiry_wave"] == "warning", "all three expire in the same week, 30 days out")
        let wave = try #require(report.findings.first { $0["check"] as? String == "expiry_wave" })
        #expect((wave["summary"] as? String)?.hasPrefix("tenant acme: 3 of 3 credentials (100 %) expire") == true)
        report = try await Self.anomalies(server, "?ca_warning_days=100000")
        #expect(report.checks["ca_expiring"] == "warning")

        // The renewal window of a 30-day LDevID renewed at 2/3 is 10 days: after 11 days unseen, all are stale.
        #expect(report.checks["stale_device"] == "ok")
        server.clock.advance(by: 11 * Self.day)
        report = try await Self.anomalies(server, "?check=stale_device&check=expiry_wave&expiry_wave_min_credentials=1")
        #expect(report.checks["stale_device"] == "warning")
        #expect(
            report.findings.filter { $0["check"] as? String == "stale_device" }.compactMap { $0["device"] as? String }
                .sorted() == ["dev-1", "dev-2", "dev-3"])
        #expect(report.checks["expiry_wave"] == "warning", "19 days left: a wave more than a week away is a warning")
        server.clock.advance(by: 14 * Self.day)
        report = try await Self.anomalies(server, "?check=expiry_wave&expiry_wave_min_credentials=1")
        #expect(report.checks["expiry_wave"] == "critical", "5 days left: the wave starts within the week")
        try await server.stop()
    }

    @Test("a used-up claim token presented again is bulk_token_overused; 20 refusals in an hour are a spike")
    func tokensAndRefusals() async throws {
        let server = try await MetricsTests.server()
        let generated = ClaimTokens.generate()
        let now = server.clock.now()
        try await server.state.store.insertClaimToken(
            ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: MetricsTests.tenant, device: nil,
                expiresAt: now.addingTimeInterval(3_600), usesRemaining: 1, createdAt: now),
            audit: nil)
        func enroll(_ device: String, token: String) async throws -> Reply {
            try await withClient(try server.client()) { client in
                try await client.send(
                    "POST", server.estURL + "/.well-known/est/simpleenroll",
                    headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer \(token)")],
                    body: ESTBase64.encode(try ESTFixture.csr(commonName: device, key: try KeyMaterial.generate(.p256))))
            }
        }
        #expect(try await enroll("bulk-1", token: generated.secret).status == 200)
        var report = try await Self.anomalies(server, "?check=bulk_token_overused&check=enrollment_refusal_spike")
        #expect(report.status == "ok")
        for device in ["bulk-2", "bulk-3"] {
            #expect(try await enroll(device, token: generated.secret).status == 403)
        }
        report = try await Self.anomalies(server, "?check=bulk_token_overused")
        #expect(report.checks["bulk_token_overused"] == "warning")
        let finding = try #require(report.findings.first)
        #expect(finding["summary"] as? String == "claim token \(generated.id): presented 2 times after it was used up")
        #expect(!report.findings.description.contains(generated.secret), "the token's id, never its secret")

        for index in 0..<18 {
            #expect(try await enroll("stranger-\(index)", token: "devid_ct_nope").status == 401)
        }
        report = try await Self.anomalies(server, "?check=enrollment_refusal_spike")
        #expect(report.checks["enrollment_refusal_spike"] == "warning", "2 used-up + 18 bad tokens = 20 refusals")
        report = try await Self.anomalies(server, "?check=enrollment_refusal_spike&refusal_spike_min=21")
        #expect(report.checks["enrollment_refusal_spike"] == "ok")
        try await server.stop()
    }

    @Test("bad input: one-line 400s; 401 without a token; a tenant-limited token sees only its tenant")
    func badInput() async throws {
        let fixture = try await AdminRoleTests.Fixture.start()
        let server = fixture.server
        for (path, message) in [
            ("/v1/health/anomalies?check=nope", "unknown check nope"),
            ("/v1/health/anomalies?nope=1", "unknown threshold nope"),
            ("/v1/health/anomalies?ca_warning_days=-1", "threshold ca_warning_days must be a number from 0 to 1000000"),
            ("/v1/health/anomalies?ca_warning_days=abc", "threshold ca_warning_days must be a number from 0 to 1000000"),
            // Each of these next three trapped the server (an arithmetic overflow, an Int64 conversion) before
            // they were refused: a reader token could take every listener down.
            ("/v1/health/anomalies?stale_after_days=1e12", "threshold stale_after_days must be a number from 0 to"),
            ("/v1/health/series?metric=enrollments&step=9999999999999999h", "step must be a whole number of hours"),
            ("/v1/health/series?metric=enrollments&step=999999999999999d", "step must be a whole number of hours"),
            ("/v1/health/series?metric=enrollments&to=1e16", "to must be in the years 1-9999"),
            ("/v1/health/series?metric=enrollments&from=-1e17", "from must be in the years 1-9999"),
            ("/v1/health/series", "metric is required"),
            ("/v1/health/series?metric=cpu", "unknown metric cpu"),
            ("/v1/health/series?metric=enrollments&step=30m", "step must be a whole number of hours"),
            ("/v1/health/series?metric=enrollments&step=1800", "step must be a whole number of hours"),
            ("/v1/health/series?metric=enrollments&from=yesterday", "from must be RFC 3339"),
            ("/v1/health/series?metric=enrollments&from=2026-12-02&to=2026-12-01", "from must be before to"),
            ("/v1/health/series?metric=enrollments&from=2000-01-01&to=2026-01-01&step=1h", "over 10000 points"),
            ("/v1/health/series?metric=enrollments&tenant=a%20b", "invalid tenant"),
        ] {
            let reply = try await fixture.send("GET", path, token: server.adminToken)
            #expect(reply.status == 400, "\(path): \(reply.status) \(reply.body)")
            #expect(reply.body.contains(message), "\(path): \(reply.body)")
            #expect(!reply.body.contains("\n"), "one line")
        }
        // The server is still up after all of them.
        #expect(try await fixture.send("GET", "/v1/health/anomalies", token: server.adminToken).status == 200)
        #expect(try await fixture.send("GET", "/v1/health/anomalies", token: nil).status == 401)
        #expect(try await fixture.send("GET", "/v1/health/series?metric=enrollments", token: "nope").status == 401)
        let factory = try await fixture.create("factory-1", role: .factory, tenants: ["acme"])
        #expect(try await fixture.send("GET", "/v1/health/anomalies", token: factory.secret).status == 403)

        // Enrollments in both tenants; a token limited to beta sees beta's and is refused acme's.
        for tenant in ["acme", "beta"] {
            let generated = ClaimTokens.generate()
            let now = server.clock.now()
            try await server.state.store.insertClaimToken(
                ClaimToken(
                    id: generated.id, secretHash: generated.hash, tenant: TenantID(rawValue: tenant)!,
                    device: nil, expiresAt: now.addingTimeInterval(3_600), usesRemaining: 1, createdAt: now),
                audit: nil)
            let reply = try await withClient(try server.client()) { client in
                try await client.send(
                    "POST", server.estURL + "/.well-known/est/simpleenroll",
                    headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer \(generated.secret)")],
                    body: ESTBase64.encode(
                        try ESTFixture.csr(commonName: "\(tenant)-new", key: try KeyMaterial.generate(.p256))))
            }
            #expect(reply.status == 200, "\(reply.body)")
        }
        let beta = try await fixture.create("beta-auditor", role: .auditor, tenants: ["beta"])
        #expect(
            try await fixture.send("GET", "/v1/health/series?metric=enrollments&tenant=acme", token: beta.secret).status
                == 403)
        let mine = try await fixture.send("GET", "/v1/health/series?metric=enrollments", token: beta.secret)
        #expect(mine.status == 200, "\(mine.body)")
        let all = try await fixture.send("GET", "/v1/health/series?metric=enrollments", token: server.adminToken)
        func issued(_ reply: Reply) throws -> Int? {
            try (Self.json(reply)["series"] as? [[String: Any]])?.first {
                ($0["labels"] as? [String: String]) == ["kind": "enroll", "result": "issued"]
            }?["total"] as? Int
        }
        #expect(try issued(mine) == 1)
        #expect(try issued(all) == 2)
        try await fixture.stop()
    }

    @Test("the history survives a restart: counts are flushed at graceful shutdown and read back from the registry")
    func survivesRestart() async throws {
        let server = try await MetricsTests.server()
        _ = try await MetricsTests.enroll(server, device: "dev-1")
        let refused = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer not-a-token")],
                body: ESTBase64.encode(try ESTFixture.csr(commonName: "dev-x", key: try KeyMaterial.generate(.p256))))
        }
        #expect(refused.status == 401)
        let now = server.clock.now()
        // A graceful stop, keeping the data directory (LiveServer.stop() removes it).
        await server.group.triggerGracefulShutdown()
        try await server.runTask.value
        defer { server.directory.remove() }
        let store = try SQLiteStore(path: server.configuration.databasePath)
        let rows = try await store.healthCounts(
            metric: "enrollments", from: now.addingTimeInterval(-3_600), to: now.addingTimeInterval(3_600))
        #expect(
            Set(rows.map { "\($0.tenant)/\($0.first)/\($0.second)=\($0.count)" })
                == ["acme/enroll/issued=1", "unknown/enroll/refused=1"])
        let failures = try await store.healthCounts(
            metric: "auth_failures", from: now.addingTimeInterval(-3_600), to: now.addingTimeInterval(3_600))
        #expect(failures.map { "\($0.first)/\($0.second)=\($0.count)" } == ["est/bad_token=1"])
        try store.close()
    }
}
