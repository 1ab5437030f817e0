import DevIDCore
@testable import DevIDStore
import DevIDTesting
import Foundation
import GRDB
import Synchronization
import Testing

/// Group commit (``GroupCommit``): concurrent writes on a SQLite registry share a transaction, and each stays atomic
/// on its own. A write that fails (a refusal, a unique key) leaves no trace and does not take the others with it; a
/// write returns with its changes delivered; the audit chain stays whole.
@Suite("SQLite group commit")
struct SQLiteGroupCommitTests {
    static func open(_ directory: TemporaryDirectory) async throws -> SQLiteStore {
        let store = try SQLiteStore(path: directory.file("registry.sqlite"))
        try await Fixture.seed(store)
        return store
    }

    @Test("writes that arrive during a commit share the next transaction")
    func concurrentWritesShareTransactions() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try await Self.open(directory)
        let before = store.groupCommit.totals
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                group.addTask {
                    try await store.write("slow write") { db in
                        // Long enough that the other writes queue behind this one.
                        usleep(2_000)
                        try db.execute(
                            sql: "INSERT INTO lots (id, tenant_id, created_at) VALUES (?, 'acme', 0)",
                            arguments: ["lot-\(index)"])
                    }
                }
            }
            try await group.waitForAll()
        }
        let after = store.groupCommit.totals
        #expect(after.writes - before.writes == 64)
        #expect(after.transactions - before.transactions < 64)
        let lots = try await store.read("count") { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM lots WHERE id LIKE 'lot-%' AND id NOT IN ('lot-a', 'lot-b')")
        }
        #expect(lots == 64)
        try store.close()
    }

    @Test("a write that throws inside a shared transaction is rolled back alone")
    func failedWriteRollsBackAlone() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try await Self.open(directory)
        let before = store.groupCommit.totals
        let outcomes = Shared<[Int: String]>([:])
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<48 {
                group.addTask {
                    do {
                        try await store.write("write \(index)") { db in
                            usleep(1_000)
                            try db.execute(
                                sql: "INSERT INTO lots (id, tenant_id, created_at) VALUES (?, 'acme', 0)",
                                arguments: ["lot-\(index)"])
                            // Every third write changes its mind after writing: nothing of it may remain.
                            if index % 3 == 0 { throw StoreError(.conflict, "write \(index) refused") }
                        }
                        outcomes.withLock { $0[index] = "stored" }
                    } catch {
                        let error = error as? StoreError
                        outcomes.withLock { $0[index] = "\(error.map { "\($0.code)" } ?? "?"): \(error?.reason ?? "?")" }
                    }
                }
            }
        }
        let after = store.groupCommit.totals
        #expect(after.transactions - before.transactions < 48, "the writes did not share any transaction")
        let stored = try await store.read("lots") { db in
            try String.fetchAll(db, sql: "SELECT id FROM lots WHERE id NOT IN ('lot-a', 'lot-b')")
        }
        let expected = (0..<48).filter { $0 % 3 != 0 }.map { "lot-\($0)" }
        #expect(Set(stored) == Set(expected))
        for index in 0..<48 {
            let outcome = outcomes.withLock { $0[index] }
            #expect(outcome == (index % 3 == 0 ? "conflict: write \(index) refused" : "stored"))
        }
        try store.close()
    }

    @Test("a unique-key violation in a shared transaction fails only the write that made it")
    func duplicateFailsAlone() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try await Self.open(directory)
        // Ten writers race to issue the same serial, and ten more issue serials of their own, all audited.
        let results = Shared<[String]>([])
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    let serial = index < 10 ? 1 : 100 + index
                    do {
                        try await store.insertCredential(
                            Fixture.credential(serial, device: "dev-1", variant: index),
                            audit: Fixture.event("est.enroll", device: "dev-1", serial: Fixture.serial(serial)))
                        results.withLock { $0.append("stored \(serial)") }
                    } catch {
                        let code = (error as? StoreError).map { "\($0.code)" } ?? "?"
                        results.withLock { $0.append("\(code) \(serial)") }
                    }
                }
            }
        }
        let outcome = results.withLock { $0 }
        #expect(outcome.filter { $0 == "stored 1" }.count == 1)
        #expect(outcome.filter { $0 == "duplicate 1" }.count == 9)
        #expect(outcome.filter { $0.hasPrefix("stored 1") && $0 != "stored 1" }.count == 10)
        let credentials = try await store.credentials(device: Fixture.deviceID("dev-1"))
        #expect(credentials.count == 11)
        // One audit event per stored credential, none for the refused ones, and the chain intact.
        let audited = try await store.auditEvents(AuditFilter(action: "est.enroll", limit: 1_000))
        #expect(audited.count == 11)
        #expect(try await store.verifyAuditChain() == nil)
        try store.close()
    }

    @Test("each write returns with its changes delivered to the feed's subscribers")
    func changesDeliveredBeforeReturn() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try await Self.open(directory)
        let seen = Shared<Set<String>>([])
        let id = store.changeFeed.subscribe { changes in
            seen.withLock { for change in changes { $0.insert(change.subject) } }
        }
        defer { store.changeFeed.unsubscribe(id) }
        let missing = Shared<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<40 {
                group.addTask {
                    let name = "batch-\(index)"
                    try await store.insertDevice(Fixture.device(name), audit: Fixture.event("device.add", device: name))
                    if !seen.withLock({ $0.contains(name) }) { missing.withLock { $0.append(name) } }
                }
            }
            try await group.waitForAll()
        }
        #expect(missing.withLock { $0 } == [])
        #expect(try await store.verifyAuditChain() == nil)
        try store.close()
    }
}

/// A value the tasks of a test share.
private final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
