import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// `/v1/admin/ca/issuing`: what each change does to signing, `/cacerts` and the TLS handshake, and every bad
/// request refused with a one-line reason and nothing changed.
@Suite("Issuing CA routes")
struct IssuingCARouteTests {
    /// A fixture with a second issuing CA prepared on disk and recorded.
    static func withPrepared() async throws -> (ESTFixture, IssuingAuthority) {
        let fixture = try await ESTFixture()
        let server = fixture.server
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        let prepared = try CAStore.prepareIssuing(
            layout: layout, rootKeyPath: layout.rootKey, passphrase: Array((server.configuration.caPassphrase ?? "").utf8),
            now: server.clock.now(), keyEncryptionRounds: server.configuration.keyEncryptionRounds)
        let registered = try await fixture.admin("POST", "/v1/admin/ca/issuing/register", body: "{}")
        #expect(registered.status == 200, "\(registered.body)")
        return (fixture, prepared)
    }

    static func cacerts(_ fixture: ESTFixture) async throws -> [Certificate] {
        let reply = try await withClient(try fixture.server.client()) { try await $0.send("GET", fixture.url("cacerts")) }
        let der = try #require(ESTBase64.decode(Array(reply.body.utf8)))
        return try CertsOnlyCMS(derEncoded: der).certificates
    }

    @Test("prepare publishes, activate signs at once, revoke drops the CA from /cacerts and from the handshake")
    func lifecycle() async throws {
        let (fixture, prepared) = try await Self.withPrepared()
        let first = fixture.hierarchy.issuing.certificate
        #expect(Set(try await Self.cacerts(fixture)) == [first, prepared.certificate, fixture.hierarchy.root])
        let before = try await fixture.enroll("before", tenant: fixture.tenant)
        #expect(before.certificate.issuer == first.subject, "a prepared CA signs nothing")

        let activated = try await fixture.admin("POST", "/v1/admin/ca/issuing/2/activate", body: "{}")
        #expect(activated.status == 200, "\(activated.body)")
        let after = try await fixture.enroll("after", tenant: fixture.tenant)
        #expect(after.certificate.issuer == prepared.certificate.subject)
        #expect(prepared.certificate.publicKey.isValidSignature(after.certificate.signature, for: after.certificate))
        let cdp = RevocationExtensions.crlDistributionPointURI(of: after.certificate)
        #expect(cdp?.hasSuffix("/crl/issuing2.crl") == true, "\(String(describing: cdp))")
        // The first CA's LDevID still works in the handshake and at check-in while it is retiring.
        let status = try await fixture.deviceStatus(before)
        #expect(status.status == 200, "\(status.body)")

        #expect((try await fixture.admin("POST", "/v1/admin/ca/issuing/1/taint", body: "{}")).status == 200)
        let tainted = try await fixture.deviceStatus(before)
        #expect(tainted.body.contains(#""rotateNow":true"#) && tainted.body.contains("issuing CA tainted"), "\(tainted.body)")
        let revoked = try await fixture.admin(
            "POST", "/v1/admin/ca/issuing/1/revoke", body: #"{"force":true,"reason":"keyCompromise"}"#)
        #expect(revoked.status == 200, "\(revoked.body)")
        #expect(Set(try await Self.cacerts(fixture)) == [prepared.certificate, fixture.hierarchy.root])
        let refused = try? await fixture.deviceStatus(before)
        #expect(refused == nil || refused?.status != 200, "an LDevID of a revoked CA still checks in: \(String(describing: refused))")
        let credential = try #require(try await fixture.store.credential(serial: before.certificate.devidSerial))
        #expect(credential.status == .revoked && credential.revocationReason == .caCompromise)
        #expect((try await fixture.deviceStatus(after)).status == 200)
        let list = try await fixture.admin("GET", "/v1/admin/ca/issuing")
        #expect(list.body.contains(#""state":"revoked""#) && list.body.contains(#""revocationReason":"keyCompromise""#))
        try await fixture.server.stop()
    }

    @Test(
        "bad requests are refused with one line and change nothing",
        arguments: [
            ("/v1/admin/ca/issuing/abc/activate", "{}", 400, "an issuing CA id is a whole number (devid ca issuing list)"),
            ("/v1/admin/ca/issuing/0/taint", "{}", 400, "an issuing CA id is a whole number (devid ca issuing list)"),
            ("/v1/admin/ca/issuing/9/activate", "{}", 404, "no issuing CA 9 (devid ca issuing list)"),
            ("/v1/admin/ca/issuing/2/revoke", #"{"reason":"bogus"}"#, 400, "reason must be one of: unspecified"),
            ("/v1/admin/ca/issuing/2/revoke", #"{"reason":"removeFromCRL"}"#, 400, "reason must be one of: unspecified"),
            ("/v1/admin/ca/issuing/1/activate", "{}", 409, "issuing CA 1 is already active"),
            ("/v1/admin/ca/issuing/1/taint", "{}", 409, "issuing CA 1 is the active CA: activate another one first"),
            ("/v1/admin/ca/issuing/1/revoke", #"{"force":true}"#, 409, "issuing CA 1 is the active CA"),
            ("/v1/admin/ca/issuing/1/emergency", "{}", 409, "issuing CA 1 is already active: prepare a new one first"),
            ("/v1/admin/ca/issuing/2/activate", #"{"dryRun":"yes"}"#, 400, "Type mismatch for `dryRun` key"),
        ])
    func refusals(path: String, body: String, status: Int, reason: String) async throws {
        let (fixture, _) = try await Self.withPrepared()
        let cas = try await fixture.store.issuingCAs()
        let reply = try await fixture.admin("POST", path, body: body)
        #expect(reply.status == status, "\(reply.body)")
        #expect(reply.body.contains(reason), "\(reply.body)")
        #expect(!reply.body.contains("\n"), "one line: \(reply.body)")
        #expect(try await fixture.store.issuingCAs() == cas, "nothing changed")
        if status == 409 {
            let denied = try await fixture.store.auditEvents(AuditFilter(outcome: .denied, limit: 10))
            #expect(denied.contains { $0.action.hasPrefix("ca.issuing.") && $0.reason.contains(reason) }, "\(denied)")
        }
        try await fixture.server.stop()
    }

    @Test("a dry run changes nothing and counts what would change")
    func dryRuns() async throws {
        let (fixture, _) = try await Self.withPrepared()
        _ = try await fixture.enroll("one", tenant: fixture.tenant)
        let cas = try await fixture.store.issuingCAs()
        let audit = try await fixture.store.auditEvents(AuditFilter(limit: 1_000)).count
        let emergency = try await fixture.admin("POST", "/v1/admin/ca/issuing/2/emergency", body: #"{"dryRun":true}"#)
        #expect(emergency.status == 200, "\(emergency.body)")
        #expect(emergency.body.contains(#""rotationDue":1"#), "\(emergency.body)")
        #expect(emergency.body.contains(#""from":"active","id":1,"to":"tainted""#) || emergency.body.contains(#""to":"tainted""#))
        #expect(try await fixture.store.issuingCAs() == cas)
        #expect(try await fixture.store.auditEvents(AuditFilter(limit: 1_000)).count == audit + 1, "only admin.auth")
        try await fixture.server.stop()
    }
}

extension ESTFixture {
    /// `GET /v1/device/status` over mTLS with `identity` (a new connection each time).
    func deviceStatus(_ identity: (key: Certificate.PrivateKey, certificate: Certificate)) async throws -> Reply {
        try await withClient(try server.client(certificate: [identity.certificate], key: identity.key)) {
            try await $0.send("GET", server.estURL + "/v1/device/status")
        }
    }
}
