import ArgumentParser
import DevIDCore
import Foundation

struct Tenant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage tenants (the boundary no identity may cross).", subcommands: [Create.self, List.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Tenant id: 1-64 characters of A-Z a-z 0-9 . _ -")
        var id: String
        @Option(name: .long, help: "Display name.")
        var name: String?

        func run() async throws {
            struct Body: Encodable { var id: String; var displayName: String? }
            let tenant = try await AdminClient(options: global).post(
                "/v1/admin/tenants", json: Body(id: id, displayName: name), as: DevIDCore.Tenant.self)
            if global.json { try Output.json(tenant) } else { print("created tenant \(tenant.id)") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let list = try await AdminClient(options: global).get(
                "/v1/admin/tenants", as: ItemList<DevIDCore.Tenant>.self)
            if global.json { return try Output.json(list.items) }
            Output.table(
                ["TENANT", "NAME", "CREATED"],
                list.items.map { [$0.id.rawValue, $0.displayName, Output.date($0.createdAt)] })
        }
    }
}

struct Device: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect the device registry.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List devices.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Only this tenant.") var tenant: String?
        @Option(name: .long, help: "Only this lot.") var lot: String?
        @Option(name: .long, help: "Only this state.") var state: String?

        func run() async throws {
            var query: [String] = []
            if let tenant { query.append("tenant=\(tenant)") }
            if let lot { query.append("lot=\(lot)") }
            if let state { query.append("state=\(state)") }
            let path = "/v1/admin/devices" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
            let list = try await AdminClient(options: global).get(path, as: ItemList<DevIDCore.Device>.self)
            if global.json { return try Output.json(list.items) }
            Output.table(
                ["DEVICE", "TENANT", "LOT", "STATE", "HARDWARE SERIAL", "LAST SEEN"],
                list.items.map {
                    [
                        $0.id.rawValue, $0.tenant.rawValue, $0.lot?.rawValue ?? "-", $0.state.rawValue,
                        $0.hardwareSerial, $0.lastSeen.map(Output.date) ?? "-",
                    ]
                })
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read and verify the tamper-evident audit trail.", subcommands: [List.self, Verify.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit events, newest first.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Only this action, e.g. admin.auth.") var action: String?
        @Option(name: .long, help: "Only this outcome: success, denied, failure.") var outcome: String?
        @Option(name: .long, help: "How many.") var limit: Int = 50

        func run() async throws {
            var query = ["limit=\(limit)"]
            if let action { query.append("action=\(action)") }
            if let outcome { query.append("outcome=\(outcome)") }
            let list = try await AdminClient(options: global).get(
                "/v1/admin/audit?" + query.joined(separator: "&"), as: ItemList<AuditEvent>.self)
            if global.json { return try Output.json(list.items) }
            Output.table(
                ["SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "REASON"],
                list.items.map {
                    [String($0.sequence), Output.date($0.time), $0.actor, $0.action, $0.outcome.rawValue, $0.reason]
                })
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check the audit hash chain end to end.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            struct Result: Codable { var intact: Bool; var firstBrokenSequence: Int64? }
            let result = try await AdminClient(options: global).get("/v1/admin/audit/verify", as: Result.self)
            if global.json { try Output.json(result) }
            if let broken = result.firstBrokenSequence {
                throw CLIError("audit chain broken at sequence \(broken)")
            }
            if !global.json { print("audit chain intact") }
        }
    }
}
