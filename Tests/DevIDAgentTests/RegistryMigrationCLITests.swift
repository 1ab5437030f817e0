import DevIDStore
import DevIDTesting
import Foundation
import Testing

/// `devid registry status|migrate` and `devid serve --no-registry-migrate`: a registry that needs a migration is not
/// opened by a server told not to migrate, and one a newer DevID migrated is never opened.
@Suite("devid registry")
struct RegistryMigrationCLITests {
    @Test("status lists pending migrations; serve --no-registry-migrate refuses; migrate runs them; a newer schema is refused")
    func migrations() async throws {
        let work = try TemporaryDirectory(prefix: "devid-registry-cli")
        defer { work.remove() }
        try FileManager.default.createDirectory(atPath: work.file("data"), withIntermediateDirectories: true)
        let path = work.file("data/registry.sqlite")
        try SQLiteStore(path: path).close()
        // What a registry of the release before live settings looks like.
        let tamper = try await ExternalTool.runAsync([
            "sqlite3", path,
            "DROP TRIGGER registry_changes_setting_insert; DROP TRIGGER registry_changes_setting_update; "
                + "DROP TRIGGER registry_changes_setting_delete; DROP TABLE settings; "
                + "DELETE FROM grdb_migrations WHERE identifier = 'v15-settings';",
        ])
        #expect(tamper.succeeded, "\(tamper.stderr)")

        let status = try await ServeCLITests.devid(["registry", "status", "--data-dir", "data"], in: work.path)
        #expect(status.succeeded, "\(status)")
        #expect(status.stdout.contains("pending:   v15-settings"), "\(status.stdout)")

        let refused = try await ServeCLITests.devid(
            ["serve", "--data-dir", "data", "--est-port", "0", "--ops-port", "0", "--no-registry-migrate"], in: work.path)
        #expect(refused.status == 1)
        // The last line (a first start logs the audit key it created before it opens the registry).
        #expect(
            refused.stderr.split(separator: "\n").last.map(String.init)
                == "Error: cannot start: store unavailable: the registry needs 1 migration(s) (v15-settings): "
                + "run devid registry migrate, or start without --no-registry-migrate", "\(refused)")

        let migrate = try await ServeCLITests.devid(["registry", "migrate", "--data-dir", "data"], in: work.path)
        #expect(migrate.succeeded && migrate.stdout.hasPrefix("ran v15-settings\n"), "\(migrate)")
        #expect(try SQLiteStore.migrationStatus(path: path).pending.isEmpty)
        let again = try await ServeCLITests.devid(["registry", "migrate", "--data-dir", "data", "--json"], in: work.path)
        #expect(again.succeeded && again.stdout.contains(#""pending" : ["#), "\(again)")

        _ = try await ExternalTool.runAsync(["sqlite3", path, "INSERT INTO grdb_migrations VALUES ('v99-future');"])
        let newer = try await ServeCLITests.devid(
            ["serve", "--data-dir", "data", "--est-port", "0", "--ops-port", "0"], in: work.path)
        #expect(newer.status == 1)
        #expect(newer.stderr.contains("the registry was migrated by a newer DevID (v99-future)"), "\(newer)")
        let migrateNewer = try await ServeCLITests.devid(["registry", "migrate", "--data-dir", "data"], in: work.path)
        #expect(migrateNewer.status != 0 && migrateNewer.stderr.contains("newer DevID"), "\(migrateNewer)")
        #expect(try SQLiteStore.migrationStatus(path: path).unknown == ["v99-future"])
    }
}
