import ArgumentParser
import DevIDCore
import DevIDServer
import Foundation

struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rotation campaigns: mark credentials rotation-due; agents rotate at their next check-in.",
        discussion: "Give exactly one scope. See docs/runbooks/rotation.md.",
        subcommands: [Mark.self, Status.self], defaultSubcommand: Mark.self)

    struct Scope: ParsableArguments {
        @Option(name: .long, help: "One device.") var device: String?
        @Option(name: .long, help: "A manufacturing lot.") var lot: String?
        @Option(name: .long, help: "A tenant.") var tenant: String?
    }

    struct Mark: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "mark", abstract: "Mark credentials rotation-due.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var scope: Scope
        @Option(name: .long, help: "Every active LDevID expiring before this date (ISO 8601, e.g. 2027-01-31 or 2027-01-31T00:00:00Z).")
        var expiringBefore: String?
        @Flag(name: .long, help: "Only print how many credentials and devices are in scope.") var dryRun: Bool = false

        func run() async throws {
            struct Body: Encodable {
                var device: String?; var lot: String?; var tenant: String?; var expiringBefore: Date?; var dryRun: Bool
            }
            var date: Date?
            if let expiringBefore {
                guard let parsed = ISODate.parse(expiringBefore) else {
                    throw CLIError("invalid --expiring-before \(expiringBefore): use 2027-01-31 or 2027-01-31T00:00:00Z")
                }
                date = parsed
            }
            struct Counts: Codable { var devices: Int; var credentials: Int }
            struct Radius: Codable { var devices: Int; var credentials: Int; var byTenant: [String: Counts]; var byLot: [String: Counts] }
            struct Result: Codable { var dryRun: Bool; var credentials: Int; var blastRadius: Radius? }
            let result = try await AdminClient(options: global).post(
                "/v1/admin/rotate",
                json: Body(device: scope.device, lot: scope.lot, tenant: scope.tenant, expiringBefore: date, dryRun: dryRun),
                as: Result.self)
            if global.json { return try Output.json(result) }
            if let radius = result.blastRadius {
                print("dry run: \(radius.credentials) credentials on \(radius.devices) devices would be marked rotation-due")
                for (tenant, counts) in radius.byTenant.sorted(by: { $0.key < $1.key }) {
                    print("  tenant \(tenant): \(counts.devices) devices, \(counts.credentials) credentials")
                }
                for (lot, counts) in radius.byLot.sorted(by: { $0.key < $1.key }) {
                    print("  lot \(lot): \(counts.devices) devices, \(counts.credentials) credentials")
                }
            } else {
                print("marked \(result.credentials) credentials rotation-due; agents rotate at their next check-in")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Campaign progress: due, rotated, pending, unreachable.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var scope: Scope
        @Option(name: .long, help: "The LDevIDs of one issuing CA (a taint's progress).") var issuingCA: Int?

        func run() async throws {
            var query: [String] = []
            if let issuingCA { query.append("issuingCA=\(issuingCA)") }
            if let device = scope.device { query.append("device=\(device)") }
            if let lot = scope.lot { query.append("lot=\(lot)") }
            if let tenant = scope.tenant { query.append("tenant=\(tenant)") }
            struct Progress: Codable { var due: Int; var rotated: Int; var pending: Int; var unreachable: Int }
            let progress = try await AdminClient(options: global).get(
                "/v1/admin/rotate/status" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: Progress.self)
            if global.json { return try Output.json(progress) }
            Output.table(
                ["DUE", "ROTATED", "PENDING", "UNREACHABLE"],
                [[String(progress.due), String(progress.rotated), String(progress.pending), String(progress.unreachable)]])
        }
    }
}

struct Profile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Certificate profiles and their rotation policy.", subcommands: [Show.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the effective LDevID profile and rotation policy.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let profile = try await AdminClient(options: global).get("/v1/admin/profile", as: ProfilePolicy.self)
            if global.json { return try Output.json(profile) }
            let r = profile.rotation
            func days(_ seconds: TimeInterval) -> String { String(format: "%.4g days", seconds / 86_400) }
            print("profile:             \(profile.name)")
            print("lifetime:            \(profile.lifetime.map(days) ?? "never expires")")
            print("key algorithms:      \(profile.allowedKeyAlgorithms.map(\.rawValue).sorted().joined(separator: ", "))")
            print("new key on renewal:  \(profile.requireNewKeyOnReenroll ? "required" : "optional")")
            print("notBefore backdate:  \(Int(profile.backdate)) s")
            print("renewal starts at:   \(String(format: "%.1f", r.renewalFraction * 100)) % of the lifetime, jitter ±\(String(format: "%.0f", r.jitterFraction * 100)) % of the window")
            print("overlap window:      \(days(r.overlap))")
            print("confidence period:   \(Int(r.confidence)) s after the new credential is first seen")
            print("grace after expiry:  \(days(r.grace)) (newest credential only)")
            print("max clock skew:      \(Int(r.maxClockSkew)) s")
        }
    }
}

enum ISODate {
    static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle().year().month().day())
    }
}
