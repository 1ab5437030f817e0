import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

@testable import DevIDServer

/// `GET /metrics` against a real server: real enrollments over mTLS, real refusals (a bad claim token, a check-in
/// with an expired LDevID, a TLS handshake with one expired beyond the grace window), and the exact values scraped,
/// checked by `promtool check metrics` too.
@Suite("Metrics: GET /metrics", .serialized)
struct MetricsTests {
    static let day: TimeInterval = 86_400
    static let tenant = TenantID(rawValue: "acme")!

    /// A server on a clock at a whole second (so certificate times, which have whole seconds, are exact), with
    /// tenant `acme`.
    static func server() async throws -> LiveServer {
        let start = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let server = try await LiveServer(clock: ManualWallClock(start))
        try await server.state.store.createTenant(
            Tenant(id: tenant, displayName: "Acme", createdAt: server.clock.now()), audit: nil)
        return server
    }

    static func scrape(_ server: LiveServer, token: String? = nil) async throws -> Reply {
        try await withClient(try server.client()) { client in
            try await client.send(
                "GET", server.opsURL + "/metrics",
                headers: (token ?? server.adminToken).isEmpty
                    ? [] : [("Authorization", "Bearer \(token ?? server.adminToken)")])
        }
    }

    /// Enrolls `device` with a fresh claim token; returns its LDevID and key.
    static func enroll(_ server: LiveServer, device: String) async throws -> (Certificate, Certificate.PrivateKey) {
        let generated = ClaimTokens.generate()
        let now = server.clock.now()
        try await server.state.store.insertClaimToken(
            ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: tenant, device: nil,
                expiresAt: now.addingTimeInterval(3_600), usesRemaining: 1, createdAt: now),
            audit: nil)
        let key = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer \(generated.secret)")],
                body: ESTBase64.encode(try ESTFixture.csr(commonName: device, key: key)))
        }
        return (try ESTFixture.certificate(reply), key)
    }

    /// An allowlisted device of `acme`, registered now, and its IDevID from the server's manufacturer CA.
    static func idevidDevice(_ server: LiveServer, hardwareSerial: String) async throws -> (
        Certificate, Certificate.PrivateKey
    ) {
        try await server.state.store.insertDevice(
            Device(
                id: DeviceID(derivedFromHardwareSerial: hardwareSerial), tenant: tenant,
                hardwareSerial: hardwareSerial, lot: nil, state: .manufactured, createdAt: server.clock.now()),
            audit: nil)
        let key = try KeyMaterial.generate(.p256)
        let certificate = try #require(server.state.hierarchy.manufacturer).issueIDevID(
            hardwareSerial: hardwareSerial, publicKey: key.publicKey, now: server.clock.now())
        return (certificate, key)
    }

    /// `simpleenroll` or `simplereenroll` with a client certificate, for a CSR of `newKey`.
    static func est(
        _ server: LiveServer, _ operation: String, certificate: Certificate, key: Certificate.PrivateKey,
        newKey: Certificate.PrivateKey
    ) async throws -> Reply {
        try await withClient(try server.client(certificate: [certificate], key: key)) { client in
            try await client.send(
                "POST", server.estURL + "/.well-known/est/" + operation,
                headers: [("Content-Type", "application/pkcs10")],
                body: ESTBase64.encode(try ESTFixture.csr(key: newKey)))
        }
    }

    @Test("real enrollments and refusals scrape as exact counts; the expiry histogram follows the injected clock")
    func liveScrape() async throws {
        let server = try await Self.server()

        // An allowlisted device with an IDevID, registered 120 s before it enrolls: onboarding takes 120 s.
        let (idevid, idevidKey) = try await Self.idevidDevice(server, hardwareSerial: "SN-METRICS-1")
        server.clock.advance(by: 120)
        let enrolled = try await Self.est(
            server, "simpleenroll", certificate: idevid, key: idevidKey, newKey: try KeyMaterial.generate(.p256))
        _ = try ESTFixture.certificate(enrolled)
        // Two devices registered by their claim tokens as they enroll: onboarding takes 0 s.
        let (first, firstKey) = try await Self.enroll(server, device: "dev-1")
        let (second, secondKey) = try await Self.enroll(server, device: "dev-2")
        // A claim token that matches none: refused, anonymous.
        let refused = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer not-a-token")],
                body: ESTBase64.encode(try ESTFixture.csr(commonName: "dev-x", key: try KeyMaterial.generate(.p256))))
        }
        #expect(refused.status == 401, "\(refused.body)")

        // A rotation campaign for the tenant: three LDevIDs flagged, their devices seen at enrollment (pending).
        let marked = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.opsURL + "/v1/admin/rotate",
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: #"{"tenant":"acme"}"#)
        }
        #expect(marked.status == 200, "\(marked.body)")

        var metrics = try Exposition(try await Self.scrape(server))
        #expect(metrics[#"devid_rotation_campaign_devices{campaign="all",state="due"}"#] == 3)
        #expect(metrics[#"devid_rotation_campaign_devices{campaign="all",state="pending"}"#] == 3)
        #expect(metrics[#"devid_rotation_campaign_devices{campaign="all",state="rotated"}"#] == 0)
        #expect(metrics[#"devid_devices{tenant="acme",state="active"}"#] == 3)
        #expect(metrics[#"devid_credentials{status="active"}"#] == 3)
        #expect(metrics[#"devid_enrollments_total{tenant="acme",kind="enroll",result="issued"}"#] == 3)
        #expect(metrics[#"devid_enrollments_total{tenant="unknown",kind="enroll",result="refused"}"#] == 1)
        #expect(metrics[#"devid_auth_failures_total{stage="est",reason="bad_token"}"#] == 1)
        #expect(metrics.sum(prefix: "devid_auth_failures_total{") == 1, "no other failure")
        #expect(metrics[#"devid_onboarding_seconds_bucket{tenant="acme",le="60.0"}"#] == 2)
        #expect(metrics[#"devid_onboarding_seconds_bucket{tenant="acme",le="300.0"}"#] == 3)
        #expect(metrics[#"devid_onboarding_seconds_sum{tenant="acme"}"#] == 120)
        #expect(metrics[#"devid_onboarding_seconds_count{tenant="acme"}"#] == 3)
        // Every LDevID has its 30-day lifetime left (two were issued at the same second, one 0 s later: all 30 d).
        let thirtyDays = 30 * Self.day
        #expect(metrics.expiryBuckets("acme") == [0, 0, 0, 3, 3, 3, 3, 3, 3])
        #expect(metrics[#"devid_credential_expiry_seconds_count{tenant="acme"}"#] == 3)
        #expect(metrics[#"devid_credential_expiry_seconds_sum{tenant="acme"}"#] == 3 * thirtyDays)
        #expect(
            metrics[#"devid_ca_expiry_timestamp_seconds{ca="root"}"#]
                == server.state.hierarchy.root.notValidAfter.timeIntervalSince1970)
        #expect(
            metrics[#"devid_ca_expiry_timestamp_seconds{ca="issuing"}"#]
                == server.state.hierarchy.issuing.certificate.notValidAfter.timeIntervalSince1970)
        #expect(
            metrics[
                #"devid_http_requests_total{listener="est",route="/.well-known/est/simpleenroll",method="POST",status="200"}"#
            ]
                == 3)
        #expect(
            metrics[
                #"devid_http_requests_total{listener="est",route="/.well-known/est/simpleenroll",method="POST",status="401"}"#
            ]
                == 1)
        try await Promtool.checkMetrics(metrics.text)

        // 25 days on: 5 days left for each, in the 7-day bucket.
        server.clock.advance(by: 25 * Self.day)
        metrics = try Exposition(try await Self.scrape(server))
        #expect(metrics.expiryBuckets("acme") == [0, 3, 3, 3, 3, 3, 3, 3, 3])
        #expect(metrics[#"devid_credential_expiry_seconds_sum{tenant="acme"}"#] == 3 * 5 * Self.day)

        // 45 days after issuance: expired, within the 30-day grace. The handshake lets dev-1's LDevID through, and
        // the check-in refuses it: {stage="device_status",reason="expired"}.
        server.clock.advance(by: 20 * Self.day)
        let checkIn = try await withClient(try server.client(certificate: [first], key: firstKey)) { client in
            try await client.send("GET", server.estURL + "/v1/device/status")
        }
        #expect(checkIn.status == 403, "\(checkIn.body)")
        // 61 days after issuance: beyond the grace. The handshake refuses dev-2's LDevID: {stage="tls",reason="expired"}.
        server.clock.advance(by: 16 * Self.day)
        await #expect(throws: (any Error).self) {
            try await withClient(try server.client(certificate: [second], key: secondKey)) { client in
                try await client.send("GET", server.estURL + "/v1/device/status")
            }
        }
        metrics = try Exposition(try await Self.scrape(server))
        #expect(metrics[#"devid_auth_failures_total{stage="device_status",reason="expired"}"#] == 1)
        #expect(metrics[#"devid_auth_failures_total{stage="tls",reason="expired"}"#] == 1)
        #expect(metrics[#"devid_auth_failures_total{stage="est",reason="bad_token"}"#] == 1)
        #expect(metrics.sum(prefix: "devid_auth_failures_total{") == 3, "nothing else refused")
        #expect(metrics[#"devid_credentials{status="expired"}"#] == 3)
        #expect(metrics.expiryBuckets("acme") == nil, "no current LDevID left: no series")
        try await Promtool.checkMetrics(metrics.text)
        try await server.stop()
    }

    @Test("401 without a token or with an unknown one, 403 for other roles and tenant-limited tokens; audited")
    func access() async throws {
        let server = try await Self.server()
        let fixture = AdminRoleTests.Fixture(server: server, client: try server.client())
        do {
            try await Self.checkAccess(fixture)
        } catch {
            try? await fixture.stop()
            throw error
        }
        try await fixture.stop()
    }

    static func checkAccess(_ fixture: AdminRoleTests.Fixture) async throws {
        let server = fixture.server

        let missing = try await fixture.send("GET", "/metrics", token: nil)
        #expect(missing.status == 401)
        #expect(missing.header("WWW-Authenticate") == "Bearer realm=\"devid-admin\"")
        let unknown = try await fixture.send("GET", "/metrics", token: "devid-admin-not-a-real-token")
        #expect(unknown.status == 401)
        #expect(!unknown.body.contains("devid_"), "nothing leaks")
        // Not a bearer token at all: the token, as a query parameter or Basic credentials, is not looked at.
        for headers in [[("Authorization", "Basic \(Data("x:\(server.adminToken)".utf8).base64EncodedString())")], []] {
            let reply = try await fixture.client.send(
                "GET", server.opsURL + "/metrics?token=\(server.adminToken)", headers: headers)
            #expect(reply.status == 401, "\(headers)")
        }

        for role in AdminRole.allCases {
            // A factory token must name its tenants; the role check comes first either way.
            let secret = try await fixture.create(
                "\(role)-metrics", role: role, tenants: role == .factory ? ["acme"] : nil
            ).secret
            let reply = try await fixture.send("GET", "/metrics", token: secret)
            let allowed = role == .admin || role == .auditor
            #expect(reply.status == (allowed ? 200 : 403), "\(role): \(reply.body)")
            if allowed {
                #expect(reply.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
                #expect(reply.body.contains("# TYPE devid_devices gauge"))
            } else {
                #expect(reply.body == #"{"error":{"message":"role \#(role) may not GET /metrics"}}"#)
                #expect(try await fixture.deniedAuth(containing: "role \(role) may not GET /metrics").count == 1)
            }
        }
        // The numbers cover every tenant: an auditor limited to one is refused.
        let limited = try await fixture.create("auditor-acme", role: .auditor, tenants: ["acme"]).secret
        let reply = try await fixture.send("GET", "/metrics", token: limited)
        #expect(reply.status == 403)
        #expect(reply.body.contains("is limited to tenants and may not ask for the metrics of every tenant"))
        #expect(try await fixture.deniedAuth(containing: "the metrics of every tenant").count == 1)

        // A path no route matches is counted under one label value, whatever the path.
        for path in ["/nope", "/v1/admin/../../etc/passwd", "/metrics/extra"] {
            #expect(try await fixture.send("GET", path, token: nil).status == 404, "\(path)")
        }

        // The refusals are themselves counted, by route pattern and status.
        let metrics = try Exposition(try await Self.scrape(server))
        #expect(metrics[#"devid_http_requests_total{listener="ops",route="unmatched",method="GET",status="404"}"#] == 3)
        #expect(!metrics.text.contains("nope") && !metrics.text.contains("passwd"))
        #expect(metrics[#"devid_http_requests_total{listener="ops",route="/metrics",method="GET",status="401"}"#] == 4)
        #expect(metrics[#"devid_http_requests_total{listener="ops",route="/metrics",method="GET",status="403"}"#] == 4)
    }

    @Test("enrollment kinds: first enroll, renewal, bootstrap with the IDevID, late renewal within grace")
    func enrollmentKinds() async throws {
        let server = try await Self.server()
        let (idevid, idevidKey) = try await Self.idevidDevice(server, hardwareSerial: "SN-KINDS")
        func enroll(_ newKey: Certificate.PrivateKey) async throws -> Certificate {
            try ESTFixture.certificate(
                try await Self.est(server, "simpleenroll", certificate: idevid, key: idevidKey, newKey: newKey))
        }
        _ = try await enroll(try KeyMaterial.generate(.p256))
        // The same device with its IDevID again: a bootstrap. Renewing needs the LDevID's key: kept here.
        let renewalKey = try KeyMaterial.generate(.p256)
        let current = try await enroll(renewalKey)
        let renewed = try await Self.est(
            server, "simplereenroll", certificate: current, key: renewalKey, newKey: try KeyMaterial.generate(.p256))
        #expect(renewed.status == 200, "\(renewed.body)")

        // One more bootstrap, and its LDevID renewed after it expired (31 days on), within the 30-day grace.
        let lateKey = try KeyMaterial.generate(.p256)
        let expiring = try await enroll(lateKey)
        server.clock.advance(by: 31 * Self.day)
        let late = try await Self.est(
            server, "simplereenroll", certificate: expiring, key: lateKey, newKey: try KeyMaterial.generate(.p256))
        #expect(late.status == 200, "\(late.body)")

        let metrics = try Exposition(try await Self.scrape(server))
        #expect(metrics[#"devid_enrollments_total{tenant="acme",kind="enroll",result="issued"}"#] == 1)
        #expect(metrics[#"devid_enrollments_total{tenant="acme",kind="bootstrap",result="issued"}"#] == 2)
        #expect(metrics[#"devid_enrollments_total{tenant="acme",kind="reenroll",result="issued"}"#] == 1)
        #expect(metrics[#"devid_enrollments_total{tenant="acme",kind="late_renewal",result="issued"}"#] == 1)
        #expect(metrics.sum(prefix: "devid_enrollments_total{") == 5, "nothing refused")
        #expect(metrics[#"devid_onboarding_seconds_count{tenant="acme"}"#] == 1, "only the first LDevID onboards")
        try await server.stop()
    }

    @Test(
        "a revocation counts the credentials it revoked; the revoked device and a foreign certificate are refused, by stage"
    )
    func revocations() async throws {
        let server = try await Self.server()
        let (revokedCertificate, revokedKey) = try await Self.enroll(server, device: "dev-1")
        _ = try await Self.enroll(server, device: "dev-2")
        let reply = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.opsURL + "/v1/admin/revoke",
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: #"{"tenant":"acme","reason":"keyCompromise"}"#)
        }
        #expect(reply.status == 200, "\(reply.body)")
        // The broker asks about the revoked device and an unknown one: authz denials, by the decision's reason.
        let authzToken = try String(
            contentsOfFile: server.configuration.secretsDirectory + "/authz-token", encoding: .utf8)
        for device in ["dev-1", "dev-2", "nobody"] {
            let decision = try await withClient(try server.client()) { client in
                try await client.send(
                    "POST", server.opsURL + "/v1/authz/mqtt",
                    headers: [("Authorization", "Bearer \(authzToken)"), ("Content-Type", "application/json")],
                    body: #"{"device":"\#(device)","action":"connect"}"#)
            }
            #expect(decision.status == 200 && decision.body.contains(#""result":"deny""#), "\(decision.body)")
        }
        // The revoked device tries to renew: refused at EST, {stage="est",reason="revoked"}.
        let renewal = try await Self.est(
            server, "simplereenroll", certificate: revokedCertificate, key: revokedKey,
            newKey: try KeyMaterial.generate(.p256))
        #expect(renewal.status == 403, "\(renewal.body)")
        // A client certificate from another CA hierarchy: the handshake refuses it, {stage="tls",reason="unknown_issuer"}.
        let foreign = try TestChain(clock: ManualWallClock(server.clock.now()))
        let foreignKey = try KeyMaterial.generate(.p256)
        let foreignLeaf = try foreign.hierarchy.issuing.issueLDevID(
            device: DeviceID(rawValue: "dev-1")!, tenant: Self.tenant, trustDomain: server.state.hierarchy.trustDomain,
            publicKey: foreignKey.publicKey, now: server.clock.now())
        await #expect(throws: (any Error).self) {
            try await withClient(try server.client(certificate: [foreignLeaf], key: foreignKey)) { client in
                try await client.send("GET", server.estURL + "/v1/device/status")
            }
        }

        let metrics = try Exposition(try await Self.scrape(server))
        #expect(metrics[#"devid_auth_failures_total{stage="est",reason="revoked"}"#] == 1)
        #expect(metrics[#"devid_enrollments_total{tenant="acme",kind="reenroll",result="refused"}"#] == 1)
        #expect(metrics[#"devid_auth_failures_total{stage="tls",reason="unknown_issuer"}"#] == 1)
        #expect(metrics[#"devid_auth_failures_total{stage="authz",reason="revoked"}"#] == 2)
        #expect(metrics[#"devid_auth_failures_total{stage="authz",reason="unknown_device"}"#] == 1)
        #expect(metrics[#"devid_authz_decisions_total{action="connect",result="deny",reason="revoked"}"#] == 2)
        #expect(metrics[#"devid_revocations_total{scope="tenant",reason="keyCompromise"}"#] == 2)
        #expect(metrics[#"devid_rotation_campaign_devices{campaign="all",state="due"}"#] == 0)
        #expect(metrics[#"devid_devices{tenant="acme",state="revoked"}"#] == 2)
        #expect(metrics[#"devid_credentials{status="revoked"}"#] == 2)
        try await server.stop()
    }
}

/// A scrape parsed into `name{labels}` → value, exactly as the lines print them.
struct Exposition {
    let text: String
    let samples: [String: Double]

    init(_ reply: Reply) throws {
        try #require(reply.status == 200, "\(reply.body)")
        text = reply.body
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            let key = String(line[..<space])
            #expect(samples[key] == nil, "one sample per series: \(key)")
            samples[key] = Double(line[line.index(after: space)...])
        }
        self.samples = samples
    }

    subscript(_ key: String) -> Double? { samples[key] }

    func sum(prefix: String) -> Double {
        samples.filter { $0.key.hasPrefix(prefix) }.values.reduce(0, +)
    }

    /// The expiry histogram's cumulative buckets of `tenant`, 1 d ... 365 d then +Inf; nil if it has none.
    func expiryBuckets(_ tenant: String) -> [Double]? {
        let bounds = ["86400", "604800", "1209600", "2592000", "5184000", "7776000", "15552000", "31536000", "+Inf"]
        let values = bounds.map { samples[#"devid_credential_expiry_seconds_bucket{tenant="\#(tenant)",le="\#($0)"}"#] }
        if values.allSatisfy({ $0 == nil }) { return nil }
        return values.map { $0 ?? -1 }
    }
}

/// `promtool` from the Debian package `prometheus` (scripts/test installs it). Missing, it fails the test under
/// `CI=true` and is skipped with a note otherwise.
enum Promtool {
    static let path = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Runs `promtool` with `arguments` and `input` on stdin. Nil when it is not installed and CI is not set.
    static func run(_ arguments: [String], input: String = "") async throws -> ExternalTool.Result? {
        guard let path else {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                Issue.record("promtool is not installed (Debian package prometheus; scripts/test installs it)")
            } else {
                print("promtool is not installed (Debian package prometheus; scripts/test installs it): skipped")
            }
            return nil
        }
        return try await ExternalTool.runAsync([path] + arguments, stdin: Array(input.utf8))
    }

    /// `promtool check metrics` on a scrape: no format error and no lint problem.
    static func checkMetrics(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        guard let result = try await run(["check", "metrics"], input: text) else { return }
        let output = result.stdout + result.stderr
        #expect(result.status == 0, "promtool check metrics: \(output)", sourceLocation: sourceLocation)
        #expect(output.isEmpty, "promtool check metrics: \(output)", sourceLocation: sourceLocation)
    }
}

/// The revocation publisher's dates on `/metrics`: every published CRL's nextUpdate, and the OCSP signer once the
/// first OCSP request made one.
@Suite("Metrics: CRL and OCSP freshness", .serialized)
struct MetricsFreshnessTests {
    @Test("CRL nextUpdate per CA and partition, and the OCSP signer's notAfter after `openssl ocsp`")
    func freshness() async throws {
        let f = try await PublicationFixture.start()
        _ = try await f.enroll("dev-1")
        var metrics = try Exposition(try await MetricsTests.scrape(f.server))
        #expect(metrics.sum(prefix: "devid_ocsp_signer_expiry_timestamp_seconds{") == 0, "no signer before a request")

        let ocsp = try await f.sh(
            "openssl ocsp -issuer issuing.pem -cert dev-1.pem -url \(f.server.opsURL)/ocsp -CAfile chain.pem 2>&1")
        #expect(ocsp.stdout.contains("dev-1.pem: good"), "\(ocsp.stdout)")
        let crls = await f.server.state.revocation.publishedCRLs()
        let signers = await f.server.state.revocation.ocspSignerExpiries()
        metrics = try Exposition(try await MetricsTests.scrape(f.server))
        try #require(!crls.isEmpty)
        for crl in crls {
            #expect(
                metrics[
                    #"devid_crl_next_update_timestamp_seconds{ca="\#(crl.caName)",partition="\#(MetricsExposition.partition(crl))"}"#
                ]
                    == crl.nextUpdate.timeIntervalSince1970, "\(crl.name)")
        }
        #expect(metrics[#"devid_crl_next_update_timestamp_seconds{ca="issuing",partition="complete"}"#] != nil)
        #expect(signers.map(\.ca) == ["issuing"])
        #expect(
            metrics[#"devid_ocsp_signer_expiry_timestamp_seconds{ca="issuing"}"#]
                == signers.first?.notAfter.timeIntervalSince1970)
        try await Promtool.checkMetrics(metrics.text)
        try await f.stop()
    }

    @Test("a partitioned CRL is labelled by its count and index; the whole CRL is \"complete\"")
    func partitionLabels() throws {
        #expect(MetricsExposition.partitionLabel(name: "issuing", caName: "issuing") == "complete")
        #expect(MetricsExposition.partitionLabel(name: "issuing-4-0", caName: "issuing") == "4-0")
        #expect(MetricsExposition.partitionLabel(name: "services", caName: "issuing") == "complete")
    }
}
