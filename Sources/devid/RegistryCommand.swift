import ArgumentParser
import DevIDServer
import DevIDStore
import Foundation

/// `devid registry status|migrate`: the registry's schema migrations, offline: the data directory's SQLite file, or
/// the PostgreSQL registry `--registry` (or `DEVID_REGISTRY`) names.
struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "The registry's schema (which migrations it has, running the pending ones) and moving it to PostgreSQL.",
        discussion: """
            `devid serve` runs pending migrations at start unless started with --no-registry-migrate \
            (registry.migrate=false), which several servers on one registry use so that one migration runs, once. \
            A registry migrated by a newer DevID is never opened.
            """,
        subcommands: [Status.self, Migrate.self, Copy.self])

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

    /// Where the registry is: `--registry` or the configuration's PostgreSQL URL, else the data directory's file.
    struct Target {
        var configuration: ServerConfiguration
        var location: PostgresStore.Location?
        var name: String { location?.description ?? configuration.databasePath }
    }

    struct RegistryOptions: ParsableArguments {
        @Option(name: .long, help: "A PostgreSQL registry: postgres://USER@HOST:PORT/DATABASE (env DEVID_REGISTRY).")
        var registry: String?
        @Option(name: .long, help: "The file holding its password (env DEVID_REGISTRY_PASSWORD_FILE).")
        var registryPasswordFile: String?
    }

    static func target(_ global: GlobalOptions, _ options: RegistryOptions) async throws -> Target {
        var configuration = try await ServerConfiguration.load(configFile: nil)
        configuration.dataDirectory = global.dataDir
        if let registry = options.registry { configuration.registryURL = registry }
        if let file = options.registryPasswordFile { configuration.registryPasswordFile = file }
        let location: PostgresStore.Location?
        do {
            location = try configuration.registryLocation()
        } catch {
            throw CLIError("\(error)")
        }
        if location == nil, !FileManager.default.fileExists(atPath: configuration.databasePath) {
            throw CLIError("no registry at \(configuration.databasePath)")
        }
        return Target(configuration: configuration, location: location)
    }

    static func status(_ target: Target) async throws -> SQLiteStore.MigrationStatus {
        do {
            if let location = target.location { return try await PostgresStore.migrationStatus(location) }
            return try SQLiteStore.migrationStatus(path: target.configuration.databasePath)
        } catch {
            throw CLIError("\(error)")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List applied, pending and unknown migrations.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: RegistryOptions

        func run() async throws {
            let target = try await RegistryCommand.target(global, options)
            let view = View(path: target.name, try await RegistryCommand.status(target))
            if global.json { return try Output.json(view) }
            view.print()
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the pending migrations (each in its transaction).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: RegistryOptions

        func run() async throws {
            let target = try await RegistryCommand.target(global, options)
            let before = try await RegistryCommand.status(target)
            do {
                if let location = target.location {
                    try await PostgresStore.open(location).close()
                } else {
                    try SQLiteStore(path: target.configuration.databasePath).close()
                }
            } catch {
                throw CLIError("\(error)")
            }
            let view = View(path: target.name, try await RegistryCommand.status(target))
            if global.json { return try Output.json(view) }
            print(before.pending.isEmpty ? "nothing to migrate" : "ran \(before.pending.joined(separator: ", "))")
            view.print()
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a SQLite registry into a new PostgreSQL one, verified row by row and by the audit chain.",
            discussion: """
                Stop the server first: the SQLite file is read as it is. The PostgreSQL database must be empty; it \
                is migrated, filled in one transaction and then compared with the source, row by row, and its audit \
                chain verified with the data directory's audit key. Then start the servers with --registry.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The SQLite registry (default: DATA/registry.sqlite).")
        var from: String?
        @Option(name: .long, help: "The PostgreSQL registry: postgres://USER@HOST:PORT/DATABASE.")
        var to: String
        @Option(name: .long, help: "The file holding its password (env DEVID_REGISTRY_PASSWORD_FILE).")
        var toPasswordFile: String?

        func run() async throws {
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            configuration.registryURL = to
            if let toPasswordFile { configuration.registryPasswordFile = toPasswordFile }
            let source = from ?? configuration.databasePath
            guard FileManager.default.fileExists(atPath: source) else { throw CLIError("no registry at \(source)") }
            let report: RegistryCopy.Report
            do {
                guard let location = try configuration.registryLocation() else { throw CLIError("--to is empty") }
                let (secret, _) = try AuditSecret.load(configuration, creating: false)
                report = try await RegistryCopy.copy(from: source, to: location, auditKey: secret.chainKey)
                if global.json { return try Output.json(report) }
                print("copied \(source) to \(location)")
            } catch let error as CLIError {
                throw error
            } catch {
                throw CLIError("\(error)")
            }
            for table in report.tables {
                print("  \(table.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(table.rows) rows, identical")
            }
            print("audit chain: \(report.auditEntries) entries verified, last hash \(report.auditHeadHash ?? "none")")
        }
    }
}
