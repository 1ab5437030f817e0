import ArgumentParser
import DevIDServer
import DevIDStore
import Foundation

/// `devid registry status|migrate`: the registry's schema migrations, offline (the data directory's file).
struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "The registry's schema: which migrations it has, and running the pending ones.",
        discussion: """
            `devid serve` runs pending migrations at start unless started with --no-registry-migrate \
            (registry.migrate=false), which several servers on one registry use so that one migration runs, once. \
            A registry migrated by a newer DevID is never opened.
            """,
        subcommands: [Status.self, Migrate.self])

    struct View: Codable {
        var path: String
        var applied: [String]
        var pending: [String]
        var unknown: [String]

        init(path: String, _ status: SQLiteStore.MigrationStatus) {
            self.path = path
            applied = status.applied
            pending = status.pending
            unknown = status.unknown
        }

        func print() {
            Swift.print("registry:  \(path)")
            Swift.print("applied:   \(applied.count) (last \(applied.last ?? "none"))")
            Swift.print("pending:   \(pending.isEmpty ? "none" : pending.joined(separator: ", "))")
            if !unknown.isEmpty {
                Swift.print("unknown:   \(unknown.joined(separator: ", ")) (migrated by a newer DevID: not opened)")
            }
        }
    }

    static func path(_ global: GlobalOptions) async throws -> String {
        var configuration = try await ServerConfiguration.load(configFile: nil)
        configuration.dataDirectory = global.dataDir
        guard FileManager.default.fileExists(atPath: configuration.databasePath) else {
            throw CLIError("no registry at \(configuration.databasePath)")
        }
        return configuration.databasePath
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List applied, pending and unknown migrations.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let path = try await RegistryCommand.path(global)
            let view = View(path: path, try SQLiteStore.migrationStatus(path: path))
            if global.json { return try Output.json(view) }
            view.print()
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the pending migrations (each in its transaction).")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let path = try await RegistryCommand.path(global)
            let before = try SQLiteStore.migrationStatus(path: path)
            do {
                try SQLiteStore(path: path).close()
            } catch {
                throw CLIError("\(error)")
            }
            let view = View(path: path, try SQLiteStore.migrationStatus(path: path))
            if global.json { return try Output.json(view) }
            print(before.pending.isEmpty ? "nothing to migrate" : "ran \(before.pending.joined(separator: ", "))")
            view.print()
        }
    }
}
