import Crypto
import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Audit trail")
struct AuditTests {
    /// The chain hash, computed here independently of the stores.
    static func expectedHash(previous: String, _ event: AuditEvent) -> String {
        Hex.encode(SHA256.hash(data: Data((previous + "|" + event.canonicalContent).utf8)))
    }

    @Test(arguments: StoreKind.allCases)
    func appendChainsEntries(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let first = try await store.appendAudit(Fixture.event("ca.init", at: 1))
            let second = try await store.appendAudit(
                Fixture.event("admin.auth", outcome: .denied, at: 2, reason: "bad token"))
            let third = try await store.appendAudit(
                Fixture.event("est.enroll", device: "dev-1", serial: Fixture.serial(1), at: 3))

            #expect([first.sequence, second.sequence, third.sequence] == [1, 2, 3])
            #expect(first.previousHash == String(repeating: "0", count: 64))
            #expect(second.previousHash == first.hash)
            #expect(third.previousHash == second.hash)
            for event in [first, second, third] {
                #expect(event.hash == Self.expectedHash(previous: event.previousHash, event))
                #expect(event.hash.count == 64)
                #expect(event.hash == event.hash.lowercased())
            }
            #expect(first.hash != second.hash)

            // Read back exactly as returned, newest first.
            #expect(try await store.auditEvents(AuditFilter()) == [third, second, first])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func emptyTrailVerifies(kind: StoreKind) async throws {
        try await withStore(kind) { store throws in
            #expect(try await store.auditEvents(AuditFilter()) == [])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func timeIsKeptToTheMillisecond(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var event = Fixture.event("clock.check")
            event.time = Fixture.epoch.addingTimeInterval(0.123_456)
            let stored = try await store.appendAudit(event)
            #expect(stored.time == Date(timeIntervalSince1970: 1_790_000_000.123))
            #expect(try await store.auditEvents(AuditFilter()) == [stored])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func filtersAndLimit(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.appendAudit(Fixture.event("est.enroll", device: "dev-1", at: 1))
            try await store.appendAudit(Fixture.event("est.enroll", outcome: .denied, device: "dev-2", at: 2))
            try await store.appendAudit(Fixture.event("admin.auth", outcome: .denied, at: 3))
            try await store.appendAudit(Fixture.event("est.reenroll", device: "dev-1", at: 4))
            try await store.appendAudit(Fixture.event("est.enroll", device: "dev-1", at: 5))

            func sequences(_ filter: AuditFilter) async throws -> [Int64] {
                try await store.auditEvents(filter).map(\.sequence)
            }
            #expect(try await sequences(AuditFilter()) == [5, 4, 3, 2, 1])
            #expect(try await sequences(AuditFilter(limit: 2)) == [5, 4])
            #expect(try await sequences(AuditFilter(action: "est.enroll")) == [5, 2, 1])
            #expect(try await sequences(AuditFilter(device: Fixture.deviceID("dev-1"))) == [5, 4, 1])
            #expect(try await sequences(AuditFilter(outcome: .denied)) == [3, 2])
            #expect(
                try await sequences(AuditFilter(action: "est.enroll", device: Fixture.deviceID("dev-1"), limit: 1)) == [
                    5
                ])
            #expect(try await sequences(AuditFilter(action: "est.enroll", outcome: .denied)) == [2])
            #expect(try await sequences(AuditFilter(action: "nothing")) == [])

            // Only what came after a known entry; still newest first, and the limit keeps the newest.
            #expect(try await sequences(AuditFilter(afterSequence: 2)) == [5, 4, 3])
            #expect(try await sequences(AuditFilter(afterSequence: 0)) == [5, 4, 3, 2, 1])
            #expect(try await sequences(AuditFilter(afterSequence: -7)) == [5, 4, 3, 2, 1])
            #expect(try await sequences(AuditFilter(afterSequence: 5)) == [])
            #expect(try await sequences(AuditFilter(afterSequence: 99)) == [])
            #expect(try await sequences(AuditFilter(limit: 2, afterSequence: 1)) == [5, 4])
            #expect(try await sequences(AuditFilter(action: "est.enroll", afterSequence: 1)) == [5, 2])
            #expect(
                try await sequences(AuditFilter(device: Fixture.deviceID("dev-1"), outcome: .success, afterSequence: 4))
                    == [5])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func changesAndStandaloneEventsShareOneChain(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.createTenant(Fixture.tenant(), audit: Fixture.event("tenant.create", at: 1))
            try await store.appendAudit(Fixture.event("admin.auth", at: 2))
            try await store.insertDevice(
                Fixture.device("dev-1"), audit: Fixture.event("device.import", device: "dev-1", at: 3))
            try await store.updateDeviceState(
                Fixture.deviceID("dev-1"), from: .manufactured, to: .active, audit: Fixture.event("est.enroll", at: 4))
            let credential = Fixture.credential(1, device: "dev-1")
            try await store.insertCredential(
                credential, audit: Fixture.event("est.enroll", serial: credential.serial, at: 5))
            try await store.insertClaimToken(Fixture.claimToken("tok"), audit: Fixture.event("token.create", at: 6))
            try await store.revokeClaimToken(id: "tok", audit: Fixture.event("token.revoke", at: 7))
            try await store.updateCredentialStatus(
                serial: credential.serial, status: .revoked, revokedAt: Fixture.time(8), reason: .superseded,
                audit: Fixture.event("credential.revoke", at: 8))
            try await store.insertAdminToken(
                AdminToken(id: "adm", secretHash: Fixture.sha256Hex([1]), createdAt: Fixture.time(9)),
                audit: Fixture.event("admin.token.create", at: 9))

            let events = try await store.auditEvents(AuditFilter()).reversed()
            #expect(
                events.map(\.action) == [
                    "tenant.create", "admin.auth", "device.import", "est.enroll", "est.enroll", "token.create",
                    "token.revoke", "credential.revoke", "admin.token.create",
                ])
            #expect(events.map(\.sequence) == Array(1...9))
            var previous = String(repeating: "0", count: 64)
            for event in events {
                #expect(event.previousHash == previous)
                #expect(event.hash == Self.expectedHash(previous: previous, event))
                previous = event.hash
            }
            #expect(try await store.verifyAuditChain() == nil)
        }
    }
}
