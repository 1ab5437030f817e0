import DevIDCore
import DevIDStore
import Foundation
import Synchronization
import Testing

/// The registry's change stream (``RegistryChange``): every change a cache depends on is recorded with its write,
/// nothing is recorded for the writes of every request (last seen, last used, a token's remaining uses), and the
/// feed delivers each change once.
@Suite("Change stream")
struct ChangeStreamTests {
    /// The changes after `sequence`, as `kind subject detail` lines.
    static func lines(_ store: any Store, after sequence: Int64 = 0) async throws -> [String] {
        try await store.changes(after: sequence, limit: 10_000).map {
            "\($0.kind.rawValue) \($0.subject) \($0.detail)"
                + ($0.device.map { " device=\($0)" } ?? "") + ($0.tenant.map { " tenant=\($0)" } ?? "")
        }
    }

    static func latest(_ store: any Store) async throws -> Int64 {
        try await store.changes(after: 0, limit: 1_000_000).last?.sequence ?? 0
    }

    @Test("each write a cache depends on records its change, in order", arguments: StoreKind.allCases)
    func recordsChanges(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            #expect(
                try await Self.lines(store) == [
                    "tenant acme created tenant=acme", "tenant other created tenant=other",
                    "lot lot-a created tenant=acme", "lot lot-b created tenant=acme",
                    "device dev-1 created device=dev-1 tenant=acme",
                ])
            var mark = try await Self.latest(store)

            try await store.updateDeviceState(
                Fixture.deviceID("dev-1"), from: .manufactured, to: .active, audit: nil)
            try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("enroll"))
            var policy = TenantPolicy()
            policy.autoRegister = true
            try await store.updateTenantPolicy(Fixture.tenantID(), policy: policy, audit: nil)
            #expect(
                try await Self.lines(store, after: mark) == [
                    "device dev-1 active device=dev-1 tenant=acme",
                    "credential \(Fixture.serial(1)) active device=dev-1",
                    "tenant acme updated tenant=acme",
                ])
            mark = try await Self.latest(store)

            _ = try await store.markRotationDue(.device(Fixture.deviceID("dev-1")), at: Fixture.time(20), audit: Fixture.event("rotation.campaign"))
            _ = try await store.revoke(
                .device(Fixture.deviceID("dev-1")), reason: .keyCompromise, at: Fixture.time(30),
                audit: Fixture.event("revoke"))
            #expect(
                try await Self.lines(store, after: mark) == [
                    "credential \(Fixture.serial(1)) updated device=dev-1",
                    "credential \(Fixture.serial(1)) revoked device=dev-1",
                    "device dev-1 revoked device=dev-1 tenant=acme",
                ])
            mark = try await Self.latest(store)

            try await store.insertClaimToken(Fixture.claimToken("tok-1", device: "dev-2"), audit: nil)
            try await store.revokeClaimToken(id: "tok-1", audit: nil)
            for id in ["adm-1", "adm-2"] {
                try await store.insertAdminToken(
                    AdminToken(id: id, secretHash: Fixture.sha256Hex(Array(id.utf8)), createdAt: Fixture.epoch),
                    audit: nil)
            }
            _ = try await store.revokeAdminToken(id: "adm-1", now: Fixture.time(40), audit: nil)
            #expect(
                try await Self.lines(store, after: mark) == [
                    "claim_token tok-1 created device=dev-2 tenant=acme",
                    "claim_token tok-1 revoked device=dev-2 tenant=acme",
                    "admin_token adm-1 created", "admin_token adm-2 created", "admin_token adm-1 revoked",
                ])
        }
    }

    /// Only a superseded credential's revocation is `revoked:superseded` (its device is connected with the
    /// successor); an active one revoked with the reason `superseded` by an operator is a plain `revoked`.
    @Test("a superseded credential revoked is recorded as revoked:superseded", arguments: StoreKind.allCases)
    func supersededRevocation(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            for index in 1...3 {
                try await store.insertCredential(Fixture.credential(index, device: "dev-1"), audit: Fixture.event("enroll"))
            }
            try await store.updateCredentialStatus(
                serial: Fixture.serial(1), status: .superseded, revokedAt: nil, reason: nil, audit: nil)
            let mark = try await Self.latest(store)
            _ = try await store.revokeCredentials([Fixture.serial(1)], reason: .superseded, at: Fixture.time(40), audit: Fixture.event("rotation.revoke_superseded"))
            _ = try await store.revokeCredentials([Fixture.serial(2)], reason: .superseded, at: Fixture.time(41), audit: Fixture.event("revoke"))
            _ = try await store.revokeCredentials([Fixture.serial(3)], reason: .keyCompromise, at: Fixture.time(42), audit: Fixture.event("revoke"))
            #expect(
                try await Self.lines(store, after: mark) == [
                    "credential \(Fixture.serial(1)) revoked:superseded device=dev-1",
                    "credential \(Fixture.serial(2)) revoked device=dev-1",
                    "credential \(Fixture.serial(3)) revoked device=dev-1",
                ])
        }
    }

    @Test("a change of a kind this DevID does not know is delivered as missed, and the write still succeeds")
    func unknownKind() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Fixture.seed(store)
        let kinds = Mutex<[RegistryChange.Kind]>([])
        store.changeFeed.subscribe { changes in kinds.withLock { $0 += changes.map(\.kind) } }
        // What a newer DevID sharing the file would record.
        try SQLiteTests.tamper(path, "INSERT INTO registry_changes (kind, subject, detail) VALUES ('future', 'x', 'y')")
        try await store.insertDevice(Fixture.device("dev-2"), audit: nil)
        #expect(kinds.withLock { $0 } == [.missed, .device])
        try store.close()
    }

    @Test("no change for last seen, last used or a claim token's remaining uses", arguments: StoreKind.allCases)
    func noChangesForPerRequestWrites(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            try await store.insertClaimToken(Fixture.claimToken("tok-1", uses: 3), audit: nil)
            try await store.insertAdminToken(
                AdminToken(id: "adm-1", secretHash: Fixture.sha256Hex(Array("a".utf8)), createdAt: Fixture.epoch),
                audit: nil)
            let mark = try await Self.latest(store)
            try await store.recordSeen(Fixture.deviceID("dev-1"), at: Fixture.time(50))
            try await store.recordAdminTokenUse(["adm-1": Fixture.time(50)])
            _ = try await store.consumeClaimToken(id: "tok-1", now: Fixture.time(50))
            _ = try await store.appendAudit(Fixture.event("authz.mqtt"))
            // A state "change" to the same state is refused by the optimistic check, so no row changes either.
            #expect(try await Self.lines(store, after: mark) == [])
        }
    }

    @Test("a refused write records no change", arguments: StoreKind.allCases)
    func refusedWriteRecordsNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let mark = try await Self.latest(store)
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.updateDeviceState(Fixture.deviceID("dev-1"), from: .active, to: .suspended, audit: nil)
            }
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertDevice(Fixture.device("dev-1"), audit: nil)
            }
            #expect(try await Self.lines(store, after: mark) == [])
        }
    }

    @Test("pruning keeps the newest changes and never reuses a sequence number", arguments: StoreKind.allCases)
    func pruning(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let before = try await store.changes(after: 0, limit: 100)
            #expect(before.count == 5)
            #expect(try await store.pruneChanges(keepingLatest: 2) == 3)
            let kept = try await store.changes(after: 0, limit: 100)
            #expect(kept.map(\.sequence) == before.suffix(2).map(\.sequence))
            try await store.insertDevice(Fixture.device("dev-2"), audit: nil)
            let next = try await store.changes(after: 0, limit: 100)
            #expect(next.last.map { $0.sequence > before.last!.sequence } == true)
        }
    }

    @Test("the feed delivers every change once, and reports changes pruned before it read them", arguments: StoreKind.allCases)
    func feedCatchUp(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let seen = Mutex<[RegistryChange]>([])
            let feed = ChangeFeed()
            feed.subscribe { changes in seen.withLock { $0 += changes } }
            try await Fixture.seed(store)
            #expect(try await feed.catchUp(from: store, limit: 2) == 5)
            #expect(try await feed.catchUp(from: store) == 0)
            #expect(seen.withLock { $0.map(\.kind) } == [.tenant, .tenant, .lot, .lot, .device])

            // Three more changes, of which two are pruned before the feed reads them.
            for name in ["dev-2", "dev-3", "dev-4"] { try await store.insertDevice(Fixture.device(name), audit: nil) }
            _ = try await store.pruneChanges(keepingLatest: 1)
            try await feed.catchUp(from: store)
            let last = seen.withLock { Array($0.suffix(2)) }
            #expect(last.map(\.kind) == [.missed, .device])
            #expect(last.last?.subject == "dev-4")
        }
    }

    /// SQLite delivers a write's changes before the write returns: a route handler's next request sees every
    /// cache in step. Another connection's writes (another process) arrive with the next catch-up.
    @Test("SQLite: delivered before the write returns; another writer's changes at the next catch-up")
    func sqliteDeliversInline() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        let seen = Mutex<[String]>([])
        store.changeFeed.subscribe { changes in seen.withLock { $0 += changes.map(\.description) } }
        try await Fixture.seed(store)
        #expect(seen.withLock { $0.count } == 5)
        try await store.updateDeviceState(Fixture.deviceID("dev-1"), from: .manufactured, to: .active, audit: nil)
        #expect(seen.withLock { $0.last?.hasSuffix("device dev-1 active") } == true)

        let other = try SQLiteStore(path: path)
        try await other.updateDeviceState(Fixture.deviceID("dev-1"), from: .active, to: .suspended, audit: nil)
        #expect(seen.withLock { $0.count } == 6)
        // The next write of this store picks it up too (it reads every change after its cursor), else catch-up.
        #expect(try await store.changeFeed.catchUp(from: store) == 1)
        #expect(seen.withLock { $0.last?.hasSuffix("device dev-1 suspended") } == true)
        #expect(seen.withLock { Set($0).count } == 7)
        try other.close()
        try store.close()
    }

    /// A write whose changes another write read first still returns only once they are applied: batches are
    /// applied one at a time, and a slow subscriber holds every write that changed something.
    @Test("every write returns with its own changes applied, even when another write delivered them")
    func writesReturnApplied() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.file("registry.sqlite"))
        final class Names: Sendable {
            let applied = Mutex<Set<String>>([])
            let late = Mutex<[String]>([])
        }
        let names = Names()
        store.changeFeed.subscribe { changes in
            try? await Task.sleep(for: .milliseconds(5))
            names.applied.withLock { $0.formUnion(changes.map(\.subject)) }
        }
        try await store.createTenant(Fixture.tenant(), audit: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<60 {
                group.addTask {
                    let name = "dev-\(index)"
                    try await store.insertDevice(Fixture.device(name), audit: nil)
                    if !names.applied.withLock({ $0.contains(name) }) { names.late.withLock { $0.append(name) } }
                }
            }
            try await group.waitForAll()
        }
        #expect(names.late.withLock { $0 } == [], "returned before their changes were applied")
        try store.close()
    }

    /// The race the gate closes, made deterministic: write B (or the poller) read A's change and is still applying
    /// it when A delivers the same change; A must not return before B's application finishes.
    @Test("a write whose change another delivery took waits until that delivery is applied")
    func deliveryWaitsForTheOneInProgress() async throws {
        final class Probe: Sendable {
            let release = Mutex<CheckedContinuation<Void, Never>?>(nil)
            let applied = Mutex<[Int64]>([])
            let secondReturned = Mutex(false)
        }
        let probe = Probe()
        let feed = ChangeFeed()
        feed.subscribe { changes in
            await withCheckedContinuation { continuation in probe.release.withLock { $0 = continuation } }
            probe.applied.withLock { $0 += changes.map(\.sequence) }
        }
        let change = RegistryChange(sequence: 1, kind: .device, subject: "dev-1", detail: "created")
        let first = Task { await feed.deliver([change]) }
        while probe.release.withLock({ $0 == nil }) { try await Task.sleep(for: .milliseconds(5)) }
        let second = Task {
            await feed.deliver([change])
            probe.secondReturned.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!probe.secondReturned.withLock { $0 }, "returned while its change was still being applied")
        probe.release.withLock { $0?.resume() }
        await first.value
        await second.value
        #expect(probe.applied.withLock { $0 } == [1])
    }

    /// Two writers racing: each batch may carry the other's changes; each is delivered once.
    @Test("concurrent writes: each change delivered exactly once")
    func concurrentWritesDeliverOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.file("registry.sqlite"))
        let seen = Mutex<[Int64]>([])
        store.changeFeed.subscribe { changes in seen.withLock { $0 += changes.map(\.sequence) } }
        try await store.createTenant(Fixture.tenant(), audit: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<200 {
                group.addTask { try await store.insertDevice(Fixture.device("dev-\(index)"), audit: nil) }
            }
            try await group.waitForAll()
        }
        let sequences = seen.withLock { $0 }
        #expect(sequences.count == 201)
        #expect(Set(sequences).count == 201)
        try store.close()
    }
}

@Suite("Settings in the registry")
struct SettingsStoreTests {
    @Test("set, replace and remove settings in one transaction with the audit event; each change is streamed", arguments: StoreKind.allCases)
    func roundTrip(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            #expect(try await store.settings() == [:])
            let mark = try await ChangeStreamTests.latest(store)
            try await store.updateSettings(
                ["ldevid.lifetime.days": "7", "limits.device.burst": "40"], audit: Fixture.event("settings.update"))
            try await store.updateSettings(
                ["ldevid.lifetime.days": "14", "limits.device.burst": nil, "ldevid.grace.days": nil], audit: nil)
            // The same value again is no change.
            try await store.updateSettings(["ldevid.lifetime.days": "14"], audit: nil)
            #expect(try await store.settings() == ["ldevid.lifetime.days": "14"])
            #expect(
                try await ChangeStreamTests.lines(store, after: mark) == [
                    "setting ldevid.lifetime.days updated", "setting limits.device.burst updated",
                    "setting ldevid.lifetime.days updated", "setting limits.device.burst deleted",
                ])
            #expect(try await store.auditEvents(AuditFilter(action: "settings.update")).count == 1)
        }
    }
}
