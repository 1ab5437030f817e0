import DevIDCore
@testable import DevIDStore
import DevIDTesting
import Foundation
import GRDB
import Testing

/// A certificate is recorded before its bytes are returned; that promise only holds if a commit survives power
/// loss, so every connection of the store must run with `synchronous = FULL` (2), not WAL's default NORMAL (1).
@Suite("SQLite durability")
struct SQLiteDurabilityTests {
    @Test func everyConnectionSyncsEachCommit() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.file("registry.sqlite"))
        let reader = try await store.read("pragma") { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        let writer = try await store.write("pragma") { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(reader == 2)
        #expect(writer == 2)
        try store.close()
    }
}
