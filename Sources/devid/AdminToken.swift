import ArgumentParser
import DevIDCore
import Foundation

/// `devid admin-token`: named admin API tokens with a role, optionally limited to tenants.
struct AdminTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin-token",
        abstract: "Admin API tokens: named, with a role (admin, operator, factory, auditor, broker), optionally "
            + "limited to tenants and expiring.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct View: Codable {
        var id: String
        var token: String?
        var name: String
        var role: String
        var tenants: [String]?
        var createdAt: Date
        var expiresAt: Date?
        var lastUsedAt: Date?
        var revoked: Bool?
        var status: String?
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an admin token; its secret is printed once and stored only as a hash.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "A name for the token (unique among tokens that are not revoked).") var name: String
        @Option(name: .long, help: "admin, operator, factory, auditor or broker.") var role: String
        @Option(name: .long, help: "Limit the token to this tenant (repeat for several; default: every tenant).")
        var tenant: [String] = []
        @Option(name: .long, help: "Lifetime: seconds, or with a unit: 90s, 15m, 12h, 90d (default: no expiry).")
        var expiresIn: String?

        func run() async throws {
            var seconds: Int?
            if let expiresIn {
                guard let value = Duration.seconds(expiresIn) else {
                    throw CLIError("invalid --expires-in \(expiresIn): use e.g. 12h, 30d, 90d")
                }
                seconds = value
            }
            struct Body: Encodable {
                var name: String
                var role: String
                var tenants: [String]?
                var expiresInSeconds: Int?
            }
            let created = try await AdminClient(options: global).post(
                "/v1/admin/admin-tokens",
                json: Body(name: name, role: role, tenants: tenant.isEmpty ? nil : tenant, expiresInSeconds: seconds),
                as: View.self)
            if global.json { return try Output.json(created) }
            let tenants = created.tenants.map { "tenants \($0.joined(separator: " "))" } ?? "every tenant"
            let expiry = created.expiresAt.map { "expires \(Output.date($0))" } ?? "does not expire"
            Output.secret(
                created.token ?? "",
                note:
                    "admin token \(created.id) (\(created.name), role \(created.role), \(tenants)), \(expiry). The secret above is shown once."
            )
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List admin tokens (never their secrets).")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let list = try await AdminClient(options: global).get("/v1/admin/admin-tokens", as: ItemList<View>.self)
            if global.json { return try Output.json(list.items) }
            Output.table(
                ["ID", "NAME", "ROLE", "TENANTS", "EXPIRES", "LAST USED", "STATUS"],
                list.items.map {
                    [
                        $0.id, $0.name, $0.role, $0.tenants?.joined(separator: ",") ?? "*",
                        $0.expiresAt.map(Output.date) ?? "never", $0.lastUsedAt.map(Output.date) ?? "-",
                        $0.status ?? "-",
                    ]
                })
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End an admin token now (refused for the last admin token).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Token id, or the name of a token that is not revoked.") var id: String

        func run() async throws {
            let view = try await AdminClient(options: global).post(
                "/v1/admin/admin-tokens/\(id)/revoke", json: [String: String](), as: View.self)
            if global.json { return try Output.json(view) }
            print("revoked admin token \(view.id) (\(view.name), role \(view.role))")
        }
    }
}
