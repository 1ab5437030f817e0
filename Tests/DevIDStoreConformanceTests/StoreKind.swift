import DevIDStore
import DevIDTesting
import Foundation
import Testing

/// Every backend the conformance suite runs against. Add a case (and a branch in ``withStore(_:_:)``) for
/// each new backend; every `@Test(arguments: StoreKind.allCases)` then covers it.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// SQLite in a fresh file in a temporary directory (a `DatabasePool` in WAL mode).
    case sqliteFile
    /// SQLite in memory (a `DatabaseQueue`).
    case sqliteMemory
    /// The `MemoryStore` actor.
    case memory
    /// PostgreSQL: a fresh database of the sandbox `scripts/test` starts (``PostgresSandbox``), dropped afterwards.
    case postgres

    var testDescription: String { rawValue }
}

/// Runs `body` against a fresh, empty store of `kind` (keyed with `auditKey` if given), and removes whatever it
/// left on disk or in PostgreSQL.
func withStore(
    _ kind: StoreKind, auditKey: AuditKey? = nil, _ body: (any Store) async throws -> Void
) async throws {
    switch kind {
    case .sqliteFile:
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.file("registry.sqlite"), auditKey: auditKey)
        try await body(store)
        try store.close()
    case .sqliteMemory:
        try await body(try SQLiteStore.inMemory(auditKey: auditKey))
    case .memory:
        try await body(MemoryStore(auditKey: auditKey))
    case .postgres:
        let sandbox = try PostgresSandbox()
        await PostgresSandbox.limit.acquire()
        do {
            try await sandbox.withDatabase { database in
                var location = database.location
                location.maximumConnections = 2
                let store = try await PostgresStore.open(location, auditKey: auditKey)
                defer { store.close() }
                try await body(store)
            }
        } catch {
            await PostgresSandbox.limit.release()
            throw error
        }
        await PostgresSandbox.limit.release()
    }
}

/// A directory under the system's temporary directory, unique to one test.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("devid-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Runs `body`, expecting it to fail with a `StoreError` of `code`; returns the error for further checks.
@discardableResult
func expectStoreError<T>(
    _ code: StoreError.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws(StoreError) -> T
) async -> StoreError? {
    do {
        _ = try await body()
        Issue.record("expected StoreError \(code), but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == code, "expected \(code), got \(error)", sourceLocation: sourceLocation)
        return error
    }
}
