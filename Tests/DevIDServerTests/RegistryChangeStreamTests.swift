import DevIDCore
import DevIDPKI
@testable import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// The change stream in a running server: a route handler only changes the registry, and every cache follows the
/// registry. A change written by another writer on the same registry file (another process, as a second server on
/// PostgreSQL will be) reaches the server's decision API, check-in, CRL and OCSP within about a second, with no
/// call to the server at all.
@Suite("Registry change stream")
struct RegistryChangeStreamTests {
    @Test("a revocation written by another writer: decisions, check-in, CRL and OCSP follow within 1 s")
    func revocationFromAnotherWriter() async throws {
        let f = try await PublicationFixture.start()
        let (certificate, key) = try await MetricsTests.enroll(f.server, device: "dev-1")
        let (other, otherKey) = try await MetricsTests.enroll(f.server, device: "dev-2")
        let connect = #"{"device":"dev-1","action":"connect"}"#
        #expect(try await IdentityHealthTests.authz(f.server, connect).body.contains(#""result":"allow""#))
        #expect(try await IdentityHealthTests.checkIn(f.server, certificate, key).status == 200)

        // Another writer: its own connection to the same file, keyed like the server so the audit chain stays one.
        let secret = try AuditSecret.load(f.server.configuration).0
        let writer = try SQLiteStore(path: f.server.configuration.databasePath, auditKey: secret.chainKey)
        let start = ContinuousClock.now
        _ = try await writer.revoke(
            .device(DeviceID(rawValue: "dev-1")!), reason: .keyCompromise, at: f.server.clock.now(),
            audit: AuditEvent(
                time: f.server.clock.now(), actor: "test:other-writer", action: "revoke", outcome: .success,
                reason: "revoked dev-1 from another writer", tenant: f.tenant,
                device: DeviceID(rawValue: "dev-1")!))
        try writer.close()

        var denied: Duration?
        while ContinuousClock.now - start < .seconds(5) {
            let reply = try await IdentityHealthTests.authz(f.server, connect)
            if reply.body.contains(#""result":"deny""#) {
                denied = ContinuousClock.now - start
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let elapsed = try #require(denied, "the decision API still allows dev-1 5 s after another writer revoked it")
        print("RegistryChangeStreamTests: another writer's revocation denied after \(elapsed)")
        #expect(elapsed < .seconds(1), "denied after \(elapsed)")
        #expect(try await IdentityHealthTests.checkIn(f.server, certificate, key).status == 403)
        #expect(try await f.waitUntilListed(certificate.serialNumber, in: "issuing") != nil)
        _ = try f.scratch.write("dev-1.pem", certificate.pemString)
        let ocsp = try await f.sh(
            "openssl ocsp -issuer issuing.pem -cert dev-1.pem -url \(f.server.opsURL)/ocsp -CAfile chain.pem -no_nonce 2>&1")
        #expect(ocsp.stdout.contains("dev-1.pem: revoked"), "\(ocsp.stdout)")
        // Only dev-1: the other device is still served.
        #expect(try await IdentityHealthTests.checkIn(f.server, other, otherKey).status == 200)
        #expect(try await f.server.state.store.verifyAuditChain() == nil)
        try await f.stop()
    }

    @Test("a setting written by another writer is in effect within 1 s")
    func settingFromAnotherWriter() async throws {
        let f = try await PublicationFixture.start()
        let secret = try AuditSecret.load(f.server.configuration).0
        let writer = try SQLiteStore(path: f.server.configuration.databasePath, auditKey: secret.chainKey)
        let start = ContinuousClock.now
        try await writer.updateSettings(["ldevid.lifetime.days": "3"], audit: nil)
        try writer.close()
        let threeDays = TimeInterval(3 * 86_400)
        while f.server.state.configuration.ldevidPolicy.lifetime != threeDays, ContinuousClock.now - start < .seconds(5) {
            try await Task.sleep(for: .milliseconds(10))
        }
        let elapsed = ContinuousClock.now - start
        print("RegistryChangeStreamTests: another writer's setting in effect after \(elapsed)")
        #expect(f.server.state.configuration.ldevidPolicy.lifetime == threeDays)
        #expect(elapsed < .seconds(1), "in effect after \(elapsed)")
        let (certificate, _) = try await MetricsTests.enroll(f.server, device: "dev-3")
        #expect(abs(certificate.notValidAfter.timeIntervalSince(f.server.clock.now()) - threeDays) < 1)
        try await f.stop()
    }

    @Test("a route handler only changes the registry: suspend, resume, revoke reach the decision API at once")
    func routeChangesReachCachesBeforeTheReply() async throws {
        let f = try await PublicationFixture.start()
        let (certificate, key) = try await MetricsTests.enroll(f.server, device: "dev-1")
        let connect = #"{"device":"dev-1","action":"connect"}"#
        #expect(try await IdentityHealthTests.authz(f.server, connect).body.contains(#""result":"allow""#))
        // Served from the decision index, now warm.
        #expect(try await f.admin("POST", "/v1/admin/devices/dev-1/suspend").status == 200)
        #expect(try await IdentityHealthTests.authz(f.server, connect).body.contains(#""result":"deny""#))
        #expect(try await f.admin("POST", "/v1/admin/devices/dev-1/resume").status == 200)
        #expect(try await IdentityHealthTests.authz(f.server, connect).body.contains(#""result":"allow""#))
        let revoke = try await f.admin(
            "POST", "/v1/admin/revoke", body: #"{"serial":"\#(certificate.devidSerial.rawValue)","reason":"keyCompromise"}"#)
        #expect(revoke.status == 200, "\(revoke.body)")
        #expect(try await IdentityHealthTests.authz(f.server, connect).body.contains(#""result":"deny""#))
        #expect(try await IdentityHealthTests.checkIn(f.server, certificate, key).status == 403)
        try await f.stop()
    }
}

/// What each change makes the server do (``RegistryChangeRouter/Plan``): pure logic, so an in-memory check.
@Suite("Registry change router")
struct RegistryChangeRouterTests {
    static func change(_ kind: RegistryChange.Kind, _ subject: String, device: String? = nil, _ detail: String)
        -> RegistryChange
    {
        RegistryChange(sequence: 1, kind: kind, subject: subject, device: device.flatMap(DeviceID.init(rawValue:)), detail: detail)
    }

    @Test("a revocation ends the device's broker sessions; a rotation retiring a superseded credential does not")
    func sessions() {
        let revoked = RegistryChangeRouter.Plan([Self.change(.credential, "7e01", device: "dev-1", "revoked")])
        #expect(revoked.revocation && revoked.brokers && revoked.endSessions == [DeviceID(rawValue: "dev-1")!])
        let retired = RegistryChangeRouter.Plan([Self.change(.credential, "7e02", device: "dev-2", "revoked:superseded")])
        // The re-signed CRL reaches the brokers through the publisher; the grants do not change.
        #expect(retired.revocation && !retired.brokers && retired.endSessions.isEmpty)
        #expect(retired.devices == [DeviceID(rawValue: "dev-2")!])
        let issued = RegistryChangeRouter.Plan([Self.change(.credential, "7e03", device: "dev-3", "active")])
        #expect(!issued.revocation && !issued.brokers && issued.devices == [DeviceID(rawValue: "dev-3")!])
        let suspended = RegistryChangeRouter.Plan([Self.change(.device, "dev-4", device: "dev-4", "suspended")])
        #expect(suspended.brokers && suspended.endSessions == [DeviceID(rawValue: "dev-4")!] && !suspended.revocation)
    }

    @Test("issuing CAs, settings and missed changes reload what depends on them")
    func reloads() {
        let ca = RegistryChangeRouter.Plan([Self.change(.issuingCA, "2", "active")])
        #expect(ca.issuingCAs && ca.everyDecision && ca.revocation && !ca.adminTokens)
        let setting = RegistryChangeRouter.Plan([Self.change(.setting, "ldevid.lifetime.days", "updated")])
        #expect(setting.settings && setting.everyDecision && !setting.revocation)
        let missed = RegistryChangeRouter.Plan([Self.change(.missed, "1...9", "pruned before read")])
        #expect(missed.settings && missed.issuingCAs && missed.everyDecision && missed.revocation && missed.adminTokens)
        let token = RegistryChangeRouter.Plan([Self.change(.claimToken, "tok", "created")])
        #expect(token == RegistryChangeRouter.Plan())
    }
}
