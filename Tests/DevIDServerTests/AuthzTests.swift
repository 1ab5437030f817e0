import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

extension ESTFixture {
    var authzToken: String {
        let path = server.configuration.secretsDirectory + "/authz-token"
        return String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    }

    /// A request to the ops listener with the authz token (or `token`).
    func authz(
        _ method: String, _ path: String, body: String? = nil, token: String? = nil,
        contentType: String = "application/json"
    ) async throws -> Reply {
        var headers = [("Content-Type", contentType)]
        if let token = token ?? Optional(authzToken), !token.isEmpty {
            headers.append(("Authorization", "Bearer \(token)"))
        }
        return try await withClient(try server.client()) {
            try await $0.send(method, server.opsURL + path, headers: headers, body: body)
        }
    }

    /// `POST /v1/authz/mqtt`; returns (result, reason) of a 200 answer.
    func decide(
        _ fields: [String: String], path: String = "/v1/authz/mqtt", sourceLocation: SourceLocation = #_sourceLocation
    )
        async throws -> (result: String, reason: String)
    {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
        let reply = try await authz("POST", path, body: body)
        #expect(reply.status == 200, "\(reply.body)", sourceLocation: sourceLocation)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
        return (json["result"] as? String ?? "", json["reason"] as? String ?? "")
    }

    static func pem(_ certificate: Certificate) throws -> String {
        try certificate.serializeAsPEM().pemString
    }

    /// `openssl x509 -fingerprint -sha256` style: upper case with colons.
    static func colonFingerprint(_ certificate: Certificate) -> String {
        var pairs: [String] = []
        let hex = Array(certificate.sha256Fingerprint.uppercased())
        for index in stride(from: 0, to: hex.count, by: 2) { pairs.append(String(hex[index..<index + 2])) }
        return pairs.joined(separator: ":")
    }
}

/// The HTTP error body Hummingbird writes: `{"error":{"message":"..."}}`.
func errorMessage(_ reply: Reply) -> String? {
    guard let json = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any],
        let error = json["error"] as? [String: Any]
    else { return nil }
    return error["message"] as? String
}

@Suite("Policy decisions (/v1/authz)", .serialized)
struct AuthzTests {
    @Test("connect, publish and subscribe by certificate, fingerprint and device; the first decision confirms")
    func decisionsByEveryIdentity() async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("m-1")
        let certificate = identity.certificate
        let pem = try ESTFixture.pem(certificate)
        let serial = certificate.devidSerial

        // By device identity first: allowed, but a device-only decision does not confirm a credential.
        #expect(try await f.decide(["device": "m-1", "action": "connect"]) == ("allow", "ok"))
        #expect(try await f.store.credential(serial: serial)?.confirmedAt == nil)

        for who in [["certificate": pem], ["fingerprint": ESTFixture.colonFingerprint(certificate)], ["device": "m-1"]]
        {
            func ask(_ extra: [String: String]) async throws -> (result: String, reason: String) {
                try await f.decide(who.merging(extra) { $1 })
            }
            #expect(try await ask(["action": "connect"]) == ("allow", "ok"))
            #expect(
                try await ask(["action": "publish", "topic": "tenants/acme/devices/m-1/telemetry/temp"]) == (
                    "allow", "ok"
                ))
            #expect(
                try await ask(["action": "subscribe", "topic": "tenants/acme/devices/m-1/commands/+"]) == (
                    "allow", "ok"
                ))
            #expect(try await ask(["action": "subscribe", "topic": "tenants/acme/broadcast"]) == ("allow", "ok"))
            #expect(
                try await ask(["action": "publish", "topic": "tenants/acme/devices/m-2/telemetry/temp"])
                    == ("deny", "topic_not_allowed"))
            #expect(
                try await ask(["action": "publish", "topic": "tenants/globex/devices/m-1/telemetry/temp"])
                    == ("deny", "wrong_tenant"))
            #expect(try await ask(["action": "subscribe", "topic": "#"]) == ("deny", "topic_not_allowed"))
            #expect(try await ask(["action": "subscribe", "topic": "$SYS/#"]) == ("deny", "topic_not_allowed"))
            #expect(
                try await ask(["action": "publish", "topic": "tenants/acme/devices/m-1/telemetry/+"])
                    == ("deny", "invalid_topic"))
            #expect(try await ask(["action": "connect", "tenant": "globex"]) == ("deny", "wrong_tenant"))
            #expect(try await ask(["action": "connect", "tenant": "acme"]) == ("allow", "ok"))
        }

        // The certificate decision confirmed the credential (rotation step 3), once.
        #expect(try await f.store.credential(serial: serial)?.confirmedAt != nil)
        let confirms = try await f.store.auditEvents(AuditFilter(action: "rotation.confirm"))
        #expect(confirms.count == 1)
        #expect(confirms.first?.reason.contains("policy decision") == true)

        // Denials are audited; connect grants are audited; publish grants are only counted.
        let denied = try await f.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .denied))
        #expect(denied.contains { $0.reason == "publish tenants/acme/devices/m-2/telemetry/temp: topic_not_allowed" })
        #expect(try await f.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .success)).isEmpty)
        #expect(!(try await f.store.auditEvents(AuditFilter(action: "authz.connect", outcome: .success))).isEmpty)

        let stats = try await f.authz("GET", "/v1/authz/stats")
        #expect(stats.status == 200)
        #expect(
            stats.body.contains(#"{"action":"publish","count":3,"reason":"wrong_tenant","result":"deny"}"#),
            "\(stats.body)")
        #expect(f.server.state.authz.counters.count(action: "connect", allowed: true) == 7)
        try await f.server.stop()
    }

    @Test("a suspension, resume and revocation through the admin API change the very next decision")
    func liveState() async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("live-1")
        let byCertificate = ["fingerprint": identity.certificate.sha256Fingerprint, "action": "connect"]
        let topic = ["device": "live-1", "action": "publish", "topic": "tenants/acme/devices/live-1/telemetry/x"]
        #expect(try await f.decide(byCertificate) == ("allow", "ok"))
        #expect(try await f.decide(topic) == ("allow", "ok"))
        #expect(f.server.state.authz.size.devices == 1, "the decision is now served from the index")

        #expect(try await f.admin("POST", "/v1/admin/devices/live-1/suspend").status == 200)
        #expect(try await f.decide(byCertificate) == ("deny", "suspended"))
        #expect(try await f.decide(topic) == ("deny", "suspended"))
        #expect(try await f.admin("POST", "/v1/admin/devices/live-1/resume").status == 200)
        #expect(try await f.decide(byCertificate) == ("allow", "ok"))

        #expect(
            try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"live-1","reason":"keyCompromise"}"#).status
                == 200)
        #expect(try await f.decide(byCertificate) == ("deny", "revoked"))
        #expect(try await f.decide(topic) == ("deny", "revoked"))

        // A lot- or tenant-wide revocation reaches devices already in the index too.
        let other = try await f.enroll("live-2")
        #expect(
            try await f.decide(["fingerprint": other.certificate.sha256Fingerprint, "action": "connect"]) == (
                "allow", "ok"
            ))
        #expect(try await f.admin("POST", "/v1/admin/revoke", body: #"{"tenant":"acme"}"#).status == 200)
        #expect(
            try await f.decide(["fingerprint": other.certificate.sha256Fingerprint, "action": "connect"]) == (
                "deny", "revoked"
            ))
        try await f.server.stop()
    }

    /// The change stream carries it (RegistryChangeStreamTests covers another writer on the same file); the
    /// entry's maximum age stays as a backstop.
    @Test("a change made in the registry without a route reaches the next decision; entries still age out")
    func sharedDatabase() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("shared-1")
        #expect(try await f.decide(["device": "shared-1", "action": "connect"]) == ("allow", "ok"))
        try await f.store.updateDeviceState(DeviceID(rawValue: "shared-1")!, from: .active, to: .suspended, audit: nil)
        #expect(try await f.decide(["device": "shared-1", "action": "connect"]) == ("deny", "suspended"))
        f.server.clock.advance(by: f.server.state.authz.maximumAge)
        #expect(try await f.decide(["device": "shared-1", "action": "connect"]) == ("deny", "suspended"))
        try await f.server.stop()
    }

    @Test("warming fills the index from the registry: active devices, their credentials, their tenants' rules")
    func warm() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("w-1")
        _ = try await f.enroll("w-2")
        let engine = f.server.state.authz
        engine.invalidateAll()
        #expect(engine.size.devices == 0)
        #expect(try await engine.warm(store: f.store, now: f.server.clock.now()) == 2)
        #expect(engine.size == (devices: 2, credentials: 2, tenants: 1))
        let query = DecisionEngine.Query(subject: .device(DeviceID(rawValue: "w-1")!), action: .connect)
        guard case .decided(let decision, _) = engine.decide(query, now: f.server.clock.now()) else {
            Issue.record("a warmed index answers without the store")
            return
        }
        #expect(decision.allowed)

        // A rough in-process figure (debug build, no I/O on this path); the release benchmark comes separately.
        let publish = DecisionEngine.Query(
            subject: .device(DeviceID(rawValue: "w-1")!),
            action: .publish(topic: "tenants/acme/devices/w-1/telemetry/temp"))
        let now = f.server.clock.now()
        let rounds = 20_000
        var allowed = 0
        let elapsed = ContinuousClock().measure {
            for _ in 0..<rounds {
                if case .decided(let decision, _) = engine.decide(publish, now: now), decision.allowed { allowed += 1 }
            }
        }
        #expect(allowed == rounds)
        print("in-process decide (debug build): \(elapsed / rounds) per decision over \(rounds)")
        try await f.server.stop()
    }

    @Test("superseded past its overlap, expired, not yet valid")
    func rotationAndTime() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-a")
        let new = try (try await f.reenrollKeyed(old)).identity()
        let oldAsk = ["fingerprint": old.certificate.sha256Fingerprint, "action": "connect"]
        let newAsk = ["fingerprint": new.certificate.sha256Fingerprint, "action": "connect"]
        #expect(try await f.decide(oldAsk) == ("allow", "ok"), "both work during the overlap")
        #expect(try await f.decide(newAsk) == ("allow", "ok"))
        f.server.clock.advance(by: 7 * 86_400 + 1)
        #expect(try await f.decide(oldAsk) == ("deny", "superseded"))
        #expect(try await f.decide(newAsk) == ("allow", "ok"))
        #expect(try await f.decide(["device": "rot-a", "action": "connect"]) == ("allow", "ok"))
        f.server.clock.advance(by: 30 * 86_400)
        #expect(try await f.decide(newAsk) == ("deny", "expired"))
        #expect(try await f.decide(["device": "rot-a", "action": "connect"]) == ("deny", "expired"))
        f.server.clock.advance(by: -60 * 86_400)
        #expect(try await f.decide(newAsk) == ("deny", "not_yet_valid"))
        try await f.server.stop()
    }

    @Test("unknown issuer, unknown certificate, unknown device")
    func unknowns() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("u-1")
        let key = try KeyMaterial.generate(.p256)
        // Signed by another CA (the manufacturer CA), shaped like an LDevID of a real device.
        let foreign = try #require(f.hierarchy.manufacturer).issueLDevID(
            device: DeviceID(rawValue: "u-1")!, tenant: f.tenant, trustDomain: f.hierarchy.trustDomain,
            publicKey: key.publicKey, now: f.server.clock.now())
        #expect(
            try await f.decide(["certificate": try ESTFixture.pem(foreign), "action": "connect"]) == (
                "deny", "unknown_issuer"
            ))
        // Signed by the issuing CA but never recorded (not issued through DevID's registry).
        let unrecorded = try f.hierarchy.issuing.issueLDevID(
            device: DeviceID(rawValue: "u-1")!, tenant: f.tenant, trustDomain: f.hierarchy.trustDomain,
            publicKey: key.publicKey, now: f.server.clock.now())
        #expect(
            try await f.decide(["certificate": try ESTFixture.pem(unrecorded), "action": "connect"])
                == ("deny", "unknown_certificate"))
        #expect(
            try await f.decide(["fingerprint": String(repeating: "ab", count: 32), "action": "connect"])
                == ("deny", "unknown_certificate"))
        #expect(try await f.decide(["device": "nobody", "action": "connect"]) == ("deny", "unknown_device"))
        // An IDevID is a factory identity: not for operating.
        let (_, idevid) = try await f.idevid("HW-U2")
        #expect(
            try await f.decide(["certificate": try ESTFixture.pem(idevid), "action": "connect"]) == (
                "deny", "unknown_issuer"
            ))
        // A device that has not enrolled.
        #expect(try await f.decide(["device": "HW-U2", "action": "connect"]) == ("deny", "device_not_active"))
        #expect(try await f.store.credentialCount() == 1, "nothing is recorded by a decision")
        try await f.server.stop()
    }

    @Test(
        "bad decision requests are refused 400 with a one-line reason, and count nothing",
        arguments: [
            (#"{"action":"connect"}"#, "give exactly one of certificate, fingerprint, device"),
            (
                #"{"action":"connect","device":"b-1","fingerprint":"00"}"#,
                "give exactly one of certificate, fingerprint, device"
            ),
            (#"{"action":"fly","device":"b-1"}"#, "action must be connect, publish or subscribe"),
            (#"{"action":"publish","device":"b-1"}"#, "topic is required for publish and subscribe"),
            (#"{"action":"connect","device":"bad id!"}"#, "invalid device id"),
            (#"{"action":"connect","device":"b-1","tenant":"bad tenant"}"#, "invalid tenant"),
            (
                #"{"action":"connect","fingerprint":"zz"}"#,
                "fingerprint must be the certificate's SHA-256 (64 hex digits, colons allowed)"
            ),
            (#"{"action":"connect","certificate":"not a certificate"}"#, "certificate is not a PEM X.509 certificate"),
        ])
    func badRequests(body: String, reason: String) async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("b-1")
        let before = try await f.store.auditEvents(AuditFilter(limit: 1)).first?.sequence
        let reply = try await f.authz("POST", "/v1/authz/mqtt", body: body)
        #expect(reply.status == 400, "\(reply.body)")
        #expect(errorMessage(reply) == reason)
        #expect(f.server.state.authz.counters.count() == 0)
        #expect(try await f.store.credential(serial: identity.certificate.devidSerial)?.confirmedAt == nil)
        #expect(try await f.store.auditEvents(AuditFilter(limit: 1)).first?.sequence == before, "nothing recorded")
        let unparsable = try await f.authz("POST", "/v1/authz/mqtt", body: "{")
        #expect(unparsable.status == 400)
        try await f.server.stop()
    }

    @Test("the decision API needs the authz token (or an admin token); the authz token opens nothing else")
    func authentication() async throws {
        let f = try await ESTFixture()
        let body = #"{"action":"connect","device":"x"}"#
        let none = try await f.authz("POST", "/v1/authz/mqtt", body: body, token: "")
        #expect(none.status == 401)
        #expect(errorMessage(none) == "missing authz token")
        let wrong = try await f.authz("POST", "/v1/authz/mqtt", body: body, token: "devid_authz_wrong")
        #expect(wrong.status == 401)
        #expect(errorMessage(wrong) == "invalid authz token")
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: body, token: f.server.adminToken).status == 200)
        #expect(try await f.authz("POST", "/v1/authz/mqtt", body: body).status == 200)
        #expect(f.authzToken.hasPrefix("devid_authz_"))
        let attrs = try FileManager.default.attributesOfItem(
            atPath: f.server.configuration.secretsDirectory + "/authz-token")
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect(try await f.authz("GET", "/v1/admin/tenants").status == 401, "not an admin token")
        let refusals = try await f.store.auditEvents(AuditFilter(action: "authz.auth", outcome: .denied))
        #expect(refusals.count == 2)
        #expect(!refusals.contains { $0.reason.contains("devid_authz_") }, "no secret in the audit trail")
        try await f.server.stop()
    }

    @Test("topic policy admin API: default, replace, refuse a bad rule (nothing stored), reset; decisions follow")
    func topicPolicyAdmin() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("p-1")
        let shown = try await f.admin("GET", "/v1/admin/tenants/acme/topic-policy")
        #expect(shown.status == 200)
        #expect(shown.body.contains(#""default":true"#))
        #expect(
            shown.body.contains(
                ##"{"action":"publish","topic":"tenants/{tenant}/devices/{device}/telemetry/#"}"##),
            "\(shown.body)")

        let ask = ["device": "p-1", "action": "publish", "topic": "tenants/acme/lines/7/status"]
        #expect(try await f.decide(ask) == ("deny", "topic_not_allowed"))
        let policy =
            #"{"rules":[{"action":"publish","topic":"tenants/{tenant}/lines/+/status"}],"scopes":["telemetry:write"]}"#
        let put = try await f.admin("PUT", "/v1/admin/tenants/acme/topic-policy", body: policy)
        #expect(put.status == 200, "\(put.body)")
        #expect(put.body.contains(#""default":false"#))
        #expect(try await f.decide(ask) == ("allow", "ok"), "the next decision uses the new rules")
        #expect(
            try await f.decide(["device": "p-1", "action": "publish", "topic": "tenants/acme/devices/p-1/telemetry/x"])
                == ("deny", "topic_not_allowed"), "the default no longer applies")

        // The enrollment-policy endpoint leaves the topic policy alone.
        #expect(
            try await f.admin("PUT", "/v1/admin/tenants/acme/policy", body: #"{"autoRegister":true}"#).status == 200)
        #expect(try await f.store.tenant(f.tenant)?.policy.topics?.scopes == ["telemetry:write"])

        for (body, reason) in [
            (
                ##"{"rules":[{"action":"subscribe","topic":"#"}]}"##,
                "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"
            ),
            (
                #"{"rules":[{"action":"publish","topic":"tenants/{tenant}/ok"},{"action":"publish","topic":"tenants/+/x"}]}"#,
                "rule 2: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"
            ),
            (
                #"{"rules":[{"action":"publish","topic":"tenants/{tenant}/{user}"}]}"#,
                "rule 1: unknown variable (use {tenant}, {device} or {lot})"
            ),
            (#"{"rules":[],"scopes":["bad scope"]}"#, "scope 1: 1-128 characters of A-Z a-z 0-9 . _ - : /"),
            (
                #"{"rules":[{"action":"read","topic":"tenants/{tenant}/x"}]}"#,
                #"body must be {"rules":[{"action":"publish|subscribe|all","topic":"..."}],"scopes":["..."]}"#
            ),
            (
                "not json",
                #"body must be {"rules":[{"action":"publish|subscribe|all","topic":"..."}],"scopes":["..."]}"#
            ),
        ] {
            let refused = try await f.admin("PUT", "/v1/admin/tenants/acme/topic-policy", body: body)
            #expect(refused.status == 400, "\(body)")
            #expect(errorMessage(refused) == reason)
            #expect(try await f.store.tenant(f.tenant)?.policy.topics?.rules.count == 1, "nothing stored")
            let audit = try await f.store.auditEvents(AuditFilter(action: "tenant.topic_policy", limit: 1))
            #expect(audit.first?.outcome == .denied)
            #expect(audit.first?.reason == reason)
        }
        #expect(try await f.decide(ask) == ("allow", "ok"))
        #expect(try await f.admin("GET", "/v1/admin/tenants/nobody/topic-policy").status == 404)
        #expect(try await f.admin("PUT", "/v1/admin/tenants/nobody/topic-policy", body: policy).status == 404)

        let reset = try await f.admin("DELETE", "/v1/admin/tenants/acme/topic-policy")
        #expect(reset.status == 200)
        #expect(reset.body.contains(#""default":true"#))
        #expect(try await f.decide(ask) == ("deny", "topic_not_allowed"))
        let changes = try await f.store.auditEvents(AuditFilter(action: "tenant.topic_policy", outcome: .success))
        #expect(changes.map(\.reason) == ["reset topic policy to the default", "set topic policy: 1 rules, 1 scopes"])
        try await f.server.stop()
    }

    @Test("API scopes for HTTP relying parties")
    func scopes() async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("s-1")
        let policy = #"{"rules":[],"scopes":["telemetry:write","config:read"]}"#
        #expect(try await f.admin("PUT", "/v1/admin/tenants/acme/topic-policy", body: policy).status == 200)
        let fingerprint = identity.certificate.sha256Fingerprint
        #expect(
            try await f.decide(["fingerprint": fingerprint, "scope": "telemetry:write"], path: "/v1/authz/http") == (
                "allow", "ok"
            ))
        #expect(
            try await f.decide(["fingerprint": fingerprint, "scope": "admin:all"], path: "/v1/authz/http")
                == ("deny", "scope_not_allowed"))
        #expect(
            try await f.decide(["device": "s-1", "scope": "config:read", "tenant": "globex"], path: "/v1/authz/http")
                == ("deny", "wrong_tenant"))
        #expect(
            try await f.decide(["device": "s-1", "action": "publish", "topic": "tenants/acme/devices/s-1/telemetry/x"])
                == ("deny", "topic_not_allowed"), "no rules: every topic denied")
        let bad = try await f.authz("POST", "/v1/authz/http", body: #"{"device":"s-1","scope":"has space"}"#)
        #expect(bad.status == 400)
        #expect(errorMessage(bad) == "scope must be 1-128 characters of A-Z a-z 0-9 . _ - : /")
        #expect(try await f.admin("POST", "/v1/admin/devices/s-1/suspend").status == 200)
        #expect(
            try await f.decide(["fingerprint": fingerprint, "scope": "telemetry:write"], path: "/v1/authz/http")
                == ("deny", "suspended"))
        try await f.server.stop()
    }
}
