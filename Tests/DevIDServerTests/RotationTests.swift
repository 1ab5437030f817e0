import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

extension ESTFixture {
    /// Enrolls `device` with a fresh claim token; returns its key and LDevID.
    func enroll(_ device: String) async throws -> (key: Certificate.PrivateKey, certificate: Certificate) {
        let token = try await token(device: device)
        let key = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try server.client()) {
            try await post(
                "simpleenroll", csr: try ESTFixture.csr(key: key), client: $0,
                headers: [("Authorization", "Bearer \(token.secret)")])
        }
        return (key, try ESTFixture.certificate(reply))
    }

    func status(_ identity: (key: Certificate.PrivateKey, certificate: Certificate)) async throws -> Reply {
        try await withClient(try server.client(certificate: [identity.certificate], key: identity.key)) {
            try await $0.send("GET", server.estURL + "/v1/device/status")
        }
    }

    func admin(_ method: String, _ path: String, body: String? = nil) async throws -> Reply {
        try await withClient(try server.client()) {
            try await $0.send(
                method, server.opsURL + path,
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: body)
        }
    }
}

/// A reply that remembers the key its CSR was made with.
struct KeyedReply {
    let reply: Reply
    let key: Certificate.PrivateKey
    var status: Int { reply.status }
    func identity() throws -> (key: Certificate.PrivateKey, certificate: Certificate) {
        (key, try ESTFixture.certificate(reply))
    }
}

extension Reply {
    func withKey(_ key: Certificate.PrivateKey) -> KeyedReply { KeyedReply(reply: self, key: key) }
}

extension ESTFixture {
    /// Re-enrolls with `current` for a new key.
    func reenrollKeyed(_ current: (key: Certificate.PrivateKey, certificate: Certificate)) async throws -> KeyedReply {
        let key = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try server.client(certificate: [current.certificate], key: current.key)) {
            try await post("simplereenroll", csr: try ESTFixture.csr(key: key), client: $0)
        }
        return reply.withKey(key)
    }
}

@Suite("Staged rotation on the server", .serialized)
struct RotationTests {
    @Test("status check-in: server time header, policy, and confirmation of a new credential")
    func statusCheckIn() async throws {
        let f = try await ESTFixture()
        let first = try await f.enroll("rot-1")
        let reply = try await f.status(first)
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.header("DevID-Time") == f.server.clock.now().formatted(Date.ISO8601FormatStyle()))
        #expect(reply.body.contains("\"device\":\"rot-1\""))
        #expect(reply.body.contains("\"rotateNow\":false"))
        let stored = try #require(try await f.store.credential(serial: first.certificate.devidSerial))
        #expect(stored.confirmedAt != nil)
        let confirms = try await f.store.auditEvents(AuditFilter(action: "rotation.confirm"))
        #expect(confirms.count == 1)
        _ = try await f.status(first)
        #expect(try await f.store.auditEvents(AuditFilter(action: "rotation.confirm")).count == 1, "confirmed once")

        let anonymous = try await withClient(try f.server.client()) {
            try await $0.send("GET", f.server.estURL + "/v1/device/status")
        }
        #expect(anonymous.status == 401)
        #expect(anonymous.header("DevID-Time") != nil)
        try await f.server.stop()
    }

    @Test("overlap: both certificates work during the window; the old one is refused after it")
    func overlapWindow() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-2")
        let new = try (try await f.reenrollKeyed(old)).identity()
        #expect(try await f.store.credential(serial: old.certificate.devidSerial)?.status == .superseded)
        let deadline = try #require(try await f.store.credential(serial: old.certificate.devidSerial)?.overlapDeadline)
        #expect(abs(deadline.timeIntervalSince(f.server.clock.now()) - 7 * 86_400) < 1)

        f.server.clock.advance(by: 6 * 86_400)
        #expect(try await f.status(old).status == 200)
        #expect(try await f.status(new).status == 200)

        f.server.clock.advance(by: 86_400 + 1)
        let refused = try await f.status(old)
        #expect(refused.status == 403)
        #expect(refused.body == "credential superseded and its overlap has ended\n")
        #expect(try await f.status(new).status == 200)
        let denied = try await f.store.auditEvents(AuditFilter(action: "device.status", outcome: .denied))
        #expect(denied.first?.reason == "credential superseded and its overlap has ended")
        try await f.server.stop()
    }

    @Test("the old credential is revoked (superseded) after confirmation plus the confidence period")
    func revokeAfterConfirmation() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-3")
        let new = try (try await f.reenrollKeyed(old)).identity()
        let sweeper = RotationSweeper(state: f.server.state)
        #expect(try await sweeper.sweep() == 0, "nothing is due before the new credential is seen")

        #expect(try await f.status(new).status == 200)  // confirms the successor
        f.server.clock.advance(by: 30 * 60)
        #expect(try await sweeper.sweep() == 0, "confidence period (1 h) not over")
        f.server.clock.advance(by: 31 * 60)
        #expect(try await sweeper.sweep() == 1)
        let revoked = try #require(try await f.store.credential(serial: old.certificate.devidSerial))
        #expect(revoked.status == .revoked)
        #expect(revoked.revocationReason == .superseded)
        #expect(try await f.status(old).body == "credential is revoked\n")
        #expect(try await f.store.auditEvents(AuditFilter(action: "rotation.revoke_superseded")).count == 1)
        try await f.server.stop()
    }

    @Test("an unconfirmed successor: the old credential is revoked at the overlap deadline at the latest")
    func revokeAtDeadline() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-4")
        _ = try await f.reenrollKeyed(old)
        let sweeper = RotationSweeper(state: f.server.state)
        f.server.clock.advance(by: 7 * 86_400 - 60)
        #expect(try await sweeper.sweep() == 0)
        f.server.clock.advance(by: 61)
        #expect(try await sweeper.sweep() == 1)
        #expect(try await f.store.credential(serial: old.certificate.devidSerial)?.revocationReason == .superseded)
        try await f.server.stop()
    }

    @Test("a device that never used its new certificate may retry with the old one until the deadline")
    func retryWithOldDuringOverlap() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-5")
        let lost = try (try await f.reenrollKeyed(old)).identity()
        f.server.clock.advance(by: 86_400)
        let retry = try await f.reenrollKeyed(old)
        let replacement = try retry.identity()
        #expect(try await f.store.credential(serial: lost.certificate.devidSerial)?.status == .superseded)
        #expect(try await f.store.credential(serial: replacement.certificate.devidSerial)?.status == .active)
        f.server.clock.advance(by: 7 * 86_400)
        let tooLate = try await f.reenrollKeyed(old)
        #expect(tooLate.status == 403)
        #expect(tooLate.reply.body == "credential superseded and its overlap has ended\n")
        try await f.server.stop()
    }

    @Test("once the successor is in use, the old certificate cannot mint another")
    func noSecondSuccessorOnceConfirmed() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-9")
        let new = try (try await f.reenrollKeyed(old)).identity()
        #expect(try await f.status(new).status == 200)  // confirms the successor
        let before = try await f.store.credentialCount()
        let reply = try await f.reenrollKeyed(old)
        try await f.expectRefused(
            reply.reply, status: 403, reason: "credential superseded and its successor is in use",
            credentialsBefore: before, action: "est.reenroll")
        let active = try await f.store.credentials(device: DeviceID(rawValue: "rot-9")!).filter { $0.status == .active }
        #expect(active.map(\.serial) == [new.certificate.devidSerial])
        try await f.server.stop()
    }

    @Test("late renewal within grace is allowed and audited; beyond grace the handshake fails")
    func lateRenewal() async throws {
        let f = try await ESTFixture()
        let first = try await f.enroll("rot-6")
        f.server.clock.advance(by: 35 * 86_400)  // expired 5 days ago, grace is 30
        #expect(try await f.status(first).body == "credential has expired\n")
        let renewed = try await f.reenrollKeyed(first)
        #expect(renewed.status == 200, "\(renewed.reply.body)")
        let audit = try await f.store.auditEvents(AuditFilter(action: "est.reenroll", outcome: .success))
        #expect(audit.first?.reason.contains("late renewal") == true)

        let second = try await f.enroll("rot-7")
        f.server.clock.advance(by: 61 * 86_400)
        await #expect(throws: (any Error).self) { try await f.reenrollKeyed(second) }
        try await f.server.stop()
    }

    @Test("a superseded credential cannot late-renew: only the newest of the lineage may")
    func supersededCannotLateRenew() async throws {
        let f = try await ESTFixture()
        let old = try await f.enroll("rot-8")
        _ = try await f.reenrollKeyed(old)
        f.server.clock.advance(by: 31 * 86_400)
        let reply = try await f.reenrollKeyed(old)
        #expect(reply.status == 403)
        try await f.server.stop()
    }

    @Test("campaign: dry run counts, marking sets rotateNow at check-in, status shows progress")
    func campaign() async throws {
        let f = try await ESTFixture()
        let a = try await f.enroll("camp-1")
        let b = try await f.enroll("camp-2")
        let dry = try await f.admin("POST", "/v1/admin/rotate", body: #"{"tenant":"acme","dryRun":true}"#)
        #expect(dry.status == 200, "\(dry.body)")
        #expect(dry.body.contains("\"credentials\":2"))
        #expect(try await f.store.credential(serial: a.certificate.devidSerial)?.rotationDue == false, "dry run changes nothing")

        let bad = try await f.admin("POST", "/v1/admin/rotate", body: #"{"tenant":"acme","device":"camp-1"}"#)
        #expect(bad.status == 400)

        let mark = try await f.admin("POST", "/v1/admin/rotate", body: #"{"device":"camp-1"}"#)
        #expect(mark.body.contains("\"credentials\":1"))
        let dryAfter = try await f.admin("POST", "/v1/admin/rotate", body: #"{"tenant":"acme","dryRun":true}"#)
        #expect(dryAfter.body.contains("\"credentials\":1"), "only camp-2 is left to mark: \(dryAfter.body)")
        // An unknown scope is a 404 with the reason, for a dry run, a campaign and the status alike; nothing is marked.
        for (method, path, body, reason) in [
            ("POST", "/v1/admin/rotate", #"{"lot":"L9","dryRun":true}"#, "preview rotation: no such lot"),
            ("POST", "/v1/admin/rotate", #"{"device":"nobody","dryRun":true}"#, "preview rotation: no such device"),
            ("POST", "/v1/admin/rotate", #"{"tenant":"nobody","dryRun":true}"#, "preview rotation: no such tenant"),
            ("POST", "/v1/admin/rotate", #"{"lot":"L9"}"#, "mark rotation due: no such lot"),
            ("GET", "/v1/admin/rotate/status?device=nobody", nil, "rotation progress: no such device"),
            ("GET", "/v1/admin/rotate/status?lot=L9", nil, "rotation progress: no such lot"),
            ("GET", "/v1/admin/rotate/status?tenant=nobody", nil, "rotation progress: no such tenant"),
        ] {
            let reply = try await f.admin(method, path, body: body)
            #expect(reply.status == 404, "\(method) \(path) \(body ?? ""): \(reply.body)")
            #expect(reply.body == #"{"error":{"message":"\#(reason)"}}"#, "\(method) \(path) \(body ?? "")")
        }
        #expect(try await f.store.credential(serial: b.certificate.devidSerial)?.rotationDue == false)
        #expect(try await f.status(a).body.contains("\"rotateNow\":true"))
        #expect(try await f.status(b).body.contains("\"rotateNow\":false"))

        var progress = try await f.admin("GET", "/v1/admin/rotate/status?tenant=acme")
        #expect(progress.body.contains("\"due\":1"))
        #expect(progress.body.contains("\"rotated\":0"))
        _ = try (try await f.reenrollKeyed(a)).identity()
        progress = try await f.admin("GET", "/v1/admin/rotate/status?tenant=acme")
        #expect(progress.body.contains("\"rotated\":1"), "\(progress.body)")

        let profile = try await f.admin("GET", "/v1/admin/profile")
        #expect(profile.body.contains("\"overlap\":604800"))
        try await f.server.stop()
    }
}
