import ArgumentParser
import DevIDCore
import DevIDServer
import DevIDStore
import Foundation

struct Tenant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage tenants (the boundary no identity may cross).",
        subcommands: [Create.self, List.self, Policy.self])

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Set a tenant's enrollment policy (auto-registration, manual approval, caps on claim tokens that name no device).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Tenant id.") var id: String
        @Flag(name: .long, inversion: .prefixedNo, help: "IDevIDs not in the allowlist register themselves.")
        var autoRegister: Bool = false
        @Flag(name: .long, inversion: .prefixedNo, help: "Unknown devices wait for `devid device approve`.")
        var manualApproval: Bool = false
        @Option(name: .long, help: "Most uses of a claim token that names no device (default 1: a bulk token is a choice).")
        var maxTokenUses: Int?
        @Option(name: .long, help: "Longest lifetime of a claim token that names no device: 90s, 15m, 1h, 7d (default 24h).")
        var maxTokenTTL: String?

        func run() async throws {
            struct Body: Encodable {
                var autoRegister: Bool
                var manualApproval: Bool
                var maxUnboundTokenUses: Int?
                var maxUnboundTokenTTL: Int?
            }
            var ttl: Int?
            if let maxTokenTTL {
                guard let seconds = Duration.seconds(maxTokenTTL) else {
                    throw CLIError("invalid --max-token-ttl \(maxTokenTTL): use e.g. 90s, 15m, 1h, 7d")
                }
                ttl = seconds
            }
            let tenant = try await AdminClient(options: global).send(
                "PUT", "/v1/admin/tenants/\(id)/policy",
                json: Body(
                    autoRegister: autoRegister, manualApproval: manualApproval, maxUnboundTokenUses: maxTokenUses,
                    maxUnboundTokenTTL: ttl),
                as: DevIDCore.Tenant.self)
            if global.json { return try Output.json(tenant) }
            let policy = tenant.policy
            print(
                "tenant \(tenant.id): auto-register \(policy.autoRegister), manual approval \(policy.manualApproval), "
                    + "claim tokens without a device: at most \(policy.maxUnboundTokenUses) use(s), "
                    + "\(Duration.describe(seconds: policy.maxUnboundTokenTTL))")
        }
    }

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
        abstract: "The device registry: import, list, show, approve, suspend, resume, reprovision.",
        subcommands: [
            Import.self, List.self, Show.self, Approve.self, DeviceHold.self, DeviceResume.self,
            DeviceReprovision.self,
        ])

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a lot's devices from a factory manifest as `manufactured` (the allowlist).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "manifest.json written by `devid factory mint`.") var manifest: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: manifest) else {
                throw CLIError("cannot read \(manifest)")
            }
            let decoded: LotManifest
            do {
                decoded = try DevIDJSON.decoder.decode(LotManifest.self, from: data)
            } catch {
                throw CLIError("\(manifest) is not a DevID lot manifest")
            }
            struct Result: Codable {
                var created: Int
                var unchanged: Int
                var lotsCreated: Int
                var idevidsRegistered: Int?
            }
            let result = try await AdminClient(options: global).post(
                "/v1/admin/devices/import", json: decoded, as: Result.self)
            if global.json { return try Output.json(result) }
            var line = "lot \(decoded.lot): \(result.created) devices registered, \(result.unchanged) already present"
            if let registered = result.idevidsRegistered, registered > 0 {
                line += " (\(registered) of them now with their IDevID serial)"
            }
            print(line)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a device and its credentials.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String

        func run() async throws {
            struct Credential: Codable {
                var serial: String; var kind: String; var status: String; var notBefore: Date; var notAfter: Date
                var sha256: String; var revokedAt: Date?; var revocationReason: String?
            }
            struct Detail: Codable { var device: DevIDCore.Device; var credentials: [Credential] }
            let detail = try await AdminClient(options: global).get("/v1/admin/devices/\(id)", as: Detail.self)
            if global.json { return try Output.json(detail) }
            let device = detail.device
            print("device:    \(device.id)")
            print("tenant:    \(device.tenant)")
            print("lot:       \(device.lot?.rawValue ?? "-")")
            print("state:     \(device.state.rawValue)")
            print("hardware:  \(device.hardwareSerial)")
            if let serial = device.idevidSerial {
                let revoked = device.idevidRevokedAt.map {
                    " (revoked \(Output.date($0)), \(device.idevidRevocationReason?.rawValue ?? "unspecified"))"
                }
                print("idevid:    \(serial)\(revoked ?? "")")
            }
            print("last seen: \(device.lastSeen.map(Output.date) ?? "-")")
            print("")
            Output.table(
                ["SERIAL", "KIND", "STATUS", "NOT BEFORE", "NOT AFTER"],
                detail.credentials.map {
                    [$0.serial, $0.kind, $0.status, Output.date($0.notBefore), Output.date($0.notAfter)]
                })
        }
    }

    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let a device parked by manual approval enroll on its next attempt.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String

        func run() async throws {
            let device = try await AdminClient(options: global).post(
                "/v1/admin/devices/\(id)/approve", json: [String: String](), as: DevIDCore.Device.self)
            if global.json { return try Output.json(device) }
            print("approved \(device.id): its next enrollment attempt will be served")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List devices.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Only this tenant.") var tenant: String?
        @Option(name: .long, help: "Only this lot.") var lot: String?
        @Option(name: .long, help: "Only this state.") var state: String?
        @Option(name: .long, help: "At most this many devices (default: every one, fetched 1000 at a time).")
        var limit: Int?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more") }
        }

        func run() async throws {
            var query: [String] = []
            if let tenant { query.append("tenant=\(tenant)") }
            if let lot { query.append("lot=\(lot)") }
            if let state { query.append("state=\(state)") }
            // Page by page, in id order, until the server says there is no more (or --limit is reached).
            let client = try AdminClient(options: global)
            var devices: [DevIDCore.Device] = []
            var after: String?
            repeat {
                let page = min(1000, (limit ?? Int.max) - devices.count)
                var pageQuery = query + ["limit=\(page)"]
                if let after { pageQuery.append("after=\(after)") }
                let list = try await client.get(
                    "/v1/admin/devices?" + pageQuery.joined(separator: "&"), as: ItemList<DevIDCore.Device>.self)
                devices += list.items
                after = list.next
            } while after != nil && devices.count < (limit ?? Int.max)
            if global.json { return try Output.json(devices) }
            Output.table(
                ["DEVICE", "TENANT", "LOT", "STATE", "HARDWARE SERIAL", "LAST SEEN"],
                devices.map {
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
        abstract: "Read, verify and export the tamper-evident audit trail.",
        subcommands: [List.self, Verify.self, Export.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit events, newest first.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Only this action, e.g. admin.auth.") var action: String?
        @Option(name: .long, help: "Only this outcome: success, denied, failure.") var outcome: String?
        @Option(name: .long, help: "Only this actor, e.g. admin:<token id>.") var actor: String?
        @Option(name: .long, help: "How many.") var limit: Int = 50

        func run() async throws {
            var query = ["limit=\(limit)"]
            if let action { query.append("action=\(Audit.queryValue(action))") }
            if let outcome { query.append("outcome=\(Audit.queryValue(outcome))") }
            if let actor { query.append("actor=\(Audit.queryValue(actor))") }
            // Rows as stored (AuditEntry): an odd row is listed as it is instead of failing the command.
            let list = try await AdminClient(options: global).get(
                "/v1/admin/audit?" + query.joined(separator: "&"), as: ItemList<AuditEntry>.self)
            if global.json { return try Output.json(list.items) }
            Output.table(
                ["SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "REASON"],
                list.items.map {
                    [String($0.sequence), Output.date($0.time), $0.actor, $0.action, $0.outcome, $0.reason]
                })
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the audit chain end to end, against the newest signed checkpoint.",
            discussion: """
                Exits 0 and prints "audit chain intact: ..." when every entry is in place and hashes right. \
                Otherwise prints one line naming the first problem and exits 1: an edited entry, entries \
                missing from the middle, entries missing from the end (the signed checkpoint covers more), a \
                recomputed chain (not keyed, or not matching the checkpoint), or a tampered checkpoint file.
                """)
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            struct Result: Codable {
                var intact: Bool
                var firstBrokenSequence: Int64?
                var code: String?
                var message: String?
                var entries: Int64?
                var headSequence: Int64?
                var headHash: String?
                var keyedFrom: Int64?
                var checkpointSequence: Int64?
                var checkpointTime: String?
                var invalidCheckpoints: Int?
            }
            let result = try await AdminClient(options: global).get("/v1/admin/audit/verify", as: Result.self)
            if global.json { try Output.json(result) }
            guard result.intact else {
                throw CLIError(
                    result.message ?? "audit chain broken at sequence \(result.firstBrokenSequence.map(String.init) ?? "?")")
            }
            if !global.json { print(result.message ?? "audit chain intact") }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the audit trail as JSON lines (for a SIEM), oldest first.",
            discussion: """
                One JSON object per line with every field as stored (sequence, time, timeMillis, actor, action, \
                outcome, reason, tenant, device, serial) plus previousHash and hash. Pages through the admin \
                API; pass --after with the last sequence exported to continue where a previous export ended.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Only entries after this sequence number.") var after: Int64 = 0
        @Option(name: .long, help: "Write to this file (created 0600, replaced) instead of standard output.")
        var out: String?
        @Option(name: .long, help: "Entries per request (1-10000).") var pageSize: Int = 1000

        func validate() throws {
            guard after >= 0 else { throw ValidationError("--after must be 0 or more") }
            guard (1...10_000).contains(pageSize) else { throw ValidationError("--page-size must be 1-10000") }
        }

        func run() async throws {
            let client = try AdminClient(options: global)
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let output: FileHandle
            if let out {
                FileManager.default.createFile(atPath: out, contents: nil, attributes: [.posixPermissions: 0o600])
                guard let handle = FileHandle(forWritingAtPath: out) else { throw CLIError("cannot write \(out)") }
                try handle.truncate(atOffset: 0)
                output = handle
            } else {
                output = FileHandle.standardOutput
            }
            defer { if out != nil { try? output.close() } }
            var cursor = after
            var count = 0
            var first: Int64?
            var newest: Int64?
            while true {
                let page = try await client.get(
                    "/v1/admin/audit?order=asc&after=\(cursor)&limit=\(pageSize)", as: ItemList<AuditEntry>.self
                ).items
                var lines = Data()
                for entry in page {
                    lines.append(try encoder.encode(entry))
                    lines.append(UInt8(ascii: "\n"))
                }
                try output.write(contentsOf: lines)
                count += page.count
                if first == nil { first = page.first?.sequence }
                if let last = page.last?.sequence { newest = last }
                guard page.count == pageSize, let last = page.last?.sequence, last > cursor else { break }
                cursor = last
            }
            if let out {
                let range = first.map { "sequence \($0)-\(newest ?? $0)" } ?? "nothing after \(after)"
                print("exported \(count) audit \(count == 1 ? "entry" : "entries") (\(range)) to \(out)")
            }
        }
    }

    /// Percent-encodes a query value.
    static func queryValue(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
            ?? value
    }
}
