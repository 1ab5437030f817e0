import ArgumentParser
import DevIDCore
import Foundation

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Claim tokens: short-lived, scoped, single-use bootstrap secrets for devices without an IDevID.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct View: Codable {
        var id: String
        var token: String?
        var tenant: String
        var device: String?
        var expiresAt: Date
        var uses: Int?
        var usesRemaining: Int?
        var revoked: Bool?
        var lot: String?
        var namePattern: String?
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a claim token; its secret is printed once and stored only as a hash.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Tenant the token enrolls into.") var tenant: String
        @Option(name: .long, help: "Restrict the token to this device id.") var device: String?
        @Option(name: .long, help: "Lifetime: seconds, or with a unit: 90s, 15m, 1h, 7d.") var ttl: String = "1h"
        @Option(
            name: .long,
            help: "How many enrollments it allows. Without --device, at most the tenant's --max-token-uses (default 1).")
        var uses: Int = 1
        @Option(name: .long, help: "Without --device: the new devices it enrolls join this lot of the tenant.")
        var lot: String?
        @Option(name: .long, help: "Without --device: new device ids must match this pattern (* and ?), e.g. 'sensor-*'.")
        var namePattern: String?

        func run() async throws {
            guard let seconds = Duration.seconds(ttl) else { throw CLIError("invalid --ttl \(ttl): use e.g. 90s, 15m, 1h, 7d") }
            struct Body: Encodable {
                var tenant: String
                var device: String?
                var ttlSeconds: Int
                var uses: Int
                var lot: String?
                var namePattern: String?
            }
            let created = try await AdminClient(options: global).post(
                "/v1/admin/tokens",
                json: Body(
                    tenant: tenant, device: device, ttlSeconds: seconds, uses: uses, lot: lot, namePattern: namePattern),
                as: View.self)
            if global.json { return try Output.json(created) }
            var scope = created.device.map { ", device \($0)" } ?? ", new devices only"
            if let lot = created.lot { scope += ", lot \(lot)" }
            if let pattern = created.namePattern { scope += ", ids \(pattern)" }
            Output.secret(
                created.token ?? "",
                note:
                    "claim token \(created.id) for tenant \(created.tenant)\(scope), \(created.uses ?? 1) use(s), expires \(Output.date(created.expiresAt)). The secret above is shown once."
            )
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List claim tokens (never their secrets).")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Only this tenant.") var tenant: String?
        @Option(name: .long, help: "At most this many tokens, newest first (default: every one, fetched 1000 at a time).")
        var limit: Int?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more") }
        }

        func run() async throws {
            // Page by page, newest first, until the server says there is no more (or --limit is reached).
            let client = try AdminClient(options: global)
            var tokens: [View] = []
            var after: String?
            repeat {
                var query = ["limit=\(min(1000, (limit ?? Int.max) - tokens.count))"]
                if let tenant { query.append("tenant=\(tenant)") }
                if let after { query.append("after=\(after)") }
                let list = try await client.get(
                    "/v1/admin/tokens?" + query.joined(separator: "&"), as: ItemList<View>.self)
                tokens += list.items
                after = list.next
            } while after != nil && tokens.count < (limit ?? Int.max)
            if global.json { return try Output.json(tokens) }
            Output.table(
                ["ID", "TENANT", "DEVICE", "USES LEFT", "EXPIRES", "REVOKED"],
                tokens.map {
                    [
                        $0.id, $0.tenant, $0.device ?? "-", String($0.usesRemaining ?? 0), Output.date($0.expiresAt),
                        ($0.revoked ?? false) ? "yes" : "no",
                    ]
                })
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a claim token now.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Token id (ct_...).") var id: String

        func run() async throws {
            let view = try await AdminClient(options: global).post(
                "/v1/admin/tokens/\(id)/revoke", json: [String: String](), as: View.self)
            if global.json { return try Output.json(view) }
            print("revoked claim token \(view.id)")
        }
    }
}

extension Duration {
    /// Parses `90`, `90s`, `15m`, `1h`, `7d` into seconds.
    static func seconds(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        guard let last = text.last else { return nil }
        if let multiplier = units[last] {
            return Int(text.dropLast()).flatMap { $0 > 0 ? $0 * multiplier : nil }
        }
        return Int(text).flatMap { $0 > 0 ? $0 : nil }
    }

    /// `86400` → `24h`, `604800` → `7d`, `90` → `90s`: the largest unit that divides the value.
    static func describe(seconds: Int) -> String {
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] where seconds % size == 0 && seconds >= size {
            if unit == "d", seconds < 2 * 86_400 { return "\(seconds / 3_600)h" }
            return "\(seconds / size)\(unit)"
        }
        return "\(seconds)s"
    }
}
