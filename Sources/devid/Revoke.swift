import ArgumentParser
import DevIDCore
import DevIDServer
import Foundation

struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Revoke credentials: one device, a lot, a tenant, one serial, or what a claim token enrolled. Dry run first.",
        discussion: """
            Revoking a device (or a lot or tenant) revokes every credential and moves the devices to `revoked`: \
            policy decisions and EST refuse them at once, and an IDevID enrollment is refused too until \
            `devid device reprovision`. `--token ct_...` revokes the claim token and every device that first \
            enrolled with it (a leaked bulk token). Reasons (RFC 5280): unspecified, keyCompromise, caCompromise, \
            affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aaCompromise. \
            See docs/runbooks/compromise.md.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "One device.") var device: String?
    @Option(name: .long, help: "A manufacturing lot.") var lot: String?
    @Option(name: .long, help: "A tenant.") var tenant: String?
    @Option(name: .long, help: "One certificate, by serial (hex, colons allowed).") var serial: String?
    @Option(name: .long, help: "A claim token id (ct_...): the token and every device it enrolled.") var token: String?
    @Option(name: .long, help: "RFC 5280 reason, e.g. keyCompromise.") var reason: String = "unspecified"
    @Flag(name: .long, help: "Only print the blast radius.") var dryRun: Bool = false

    struct Counts: Codable { var devices: Int; var credentials: Int }
    struct Radius: Codable { var devices: Int; var credentials: Int; var byTenant: [String: Counts]; var byLot: [String: Counts] }
    struct Service: Codable { var serial: String; var service: String; var names: [String]; var status: String }
    struct Result: Codable {
        var dryRun: Bool; var reason: String; var blastRadius: Radius
        /// Set when `--serial` named a broker's certificate (of the services CA).
        var serviceCertificate: Service?
    }

    func run() async throws {
        struct Body: Encodable {
            var device: String?; var lot: String?; var tenant: String?; var serial: String?; var token: String?
            var reason: String
            var dryRun: Bool
        }
        let result = try await AdminClient(options: global).post(
            "/v1/admin/revoke",
            json: Body(
                device: device, lot: lot, tenant: tenant, serial: serial, token: token, reason: reason, dryRun: dryRun),
            as: Result.self)
        if global.json { return try Output.json(result) }
        let radius = result.blastRadius
        if let service = result.serviceCertificate {
            let what = "\(service.service) broker certificate \(service.serial) (\(service.names.joined(separator: ", ")))"
            return print(
                result.dryRun
                    ? "dry run: would revoke \(radius.credentials) \(what) (\(result.reason))"
                    : radius.credentials == 0
                        ? "\(what) was already revoked"
                        : "revoked \(what) (\(result.reason)): the services CRL lists it, OCSP answers revoked")
        }
        print(
            (result.dryRun ? "dry run: would revoke " : "revoked ")
                + "\(radius.credentials) credentials on \(radius.devices) devices (\(result.reason))")
        for (tenant, counts) in radius.byTenant.sorted(by: { $0.key < $1.key }) {
            print("  tenant \(tenant): \(counts.devices) devices, \(counts.credentials) credentials")
        }
        for (lot, counts) in radius.byLot.sorted(by: { $0.key < $1.key }) {
            print("  lot \(lot): \(counts.devices) devices, \(counts.credentials) credentials")
        }
    }
}

/// `devid device suspend|resume|reprovision`.
struct DeviceHold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "suspend", abstract: "Hold a device: EST and the status check-in refuse it; no CRL entry.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device id.") var id: String

    func run() async throws {
        let device = try await AdminClient(options: global).post(
            "/v1/admin/devices/\(id)/suspend", json: [String: String](), as: DevIDCore.Device.self)
        if global.json { return try Output.json(device) }
        print("suspended \(device.id): enrollment and policy decisions refuse it until `devid device resume`")
    }
}

struct DeviceResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Lift a suspension.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device id.") var id: String

    func run() async throws {
        let device = try await AdminClient(options: global).post(
            "/v1/admin/devices/\(id)/resume", json: [String: String](), as: DevIDCore.Device.self)
        if global.json { return try Output.json(device) }
        print("resumed \(device.id): \(device.state.rawValue)")
    }
}

struct DeviceReprovision: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reprovision",
        abstract: "Compromise response: revoke everything the device holds and issue a fresh single-use claim token.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device id.") var id: String

    func run() async throws {
        let created = try await AdminClient(options: global).post(
            "/v1/admin/devices/\(id)/reprovision", json: [String: String](), as: Token.View.self)
        if global.json { return try Output.json(created) }
        Output.secret(
            created.token ?? "",
            note:
                "device \(id) re-provisioned: every credential revoked; enroll it again with the claim token above (\(created.id), single use, expires \(Output.date(created.expiresAt)))"
        )
    }
}

struct Cert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Certificates as relying parties see them.", subcommands: [Status.self, Services.self])

    struct Services: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the brokers' TLS certificates DevID issued from its services CA (newest first).",
            discussion: "Revoke one with `devid revoke --serial S`; `devid cert status --serial S` shows its CRL and OCSP view.")
        @OptionGroup var global: GlobalOptions

        struct View: Codable {
            var serial: String; var service: String; var names: [String]; var status: String; var notBefore: Date
            var notAfter: Date; var sha256: String; var revokedAt: Date?; var revocationReason: String?
        }
        struct List: Codable { var certificates: [View] }

        func run() async throws {
            let list = try await AdminClient(options: global).get("/v1/admin/service-certificates", as: List.self)
            if global.json { return try Output.json(list.certificates) }
            if list.certificates.isEmpty { return print("no broker certificates") }
            for view in list.certificates {
                let status = view.status == "revoked" ? "revoked (\(view.revocationReason ?? "unspecified"))" : view.status
                print(
                    "\(view.serial)  \(view.service)  \(status)  until \(Output.date(view.notAfter))  "
                        + view.names.joined(separator: ", "))
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a certificate's status by serial: the registry, the served CRL and the OCSP answer.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Serial (hex, colons allowed).") var serial: String?
        @Option(name: .long, help: "Every certificate of this device instead of one serial.") var device: String?

        struct CRLView: Codable {
            var name: String; var url: String; var number: UInt64; var thisUpdate: Date; var nextUpdate: Date
            var listed: Bool; var revokedAt: Date?; var reason: String?
        }
        struct OCSPView: Codable {
            var url: String; var status: String; var revokedAt: Date?; var reason: String?; var thisUpdate: Date?
            var nextUpdate: Date?
        }
        struct View: Codable {
            var serial: String; var kind: String; var status: String; var notBefore: Date; var notAfter: Date
            var sha256: String; var revokedAt: Date?; var revocationReason: String?
            var crl: CRLView?; var ocsp: OCSPView?; var notes: [String]?
            /// A broker's certificate (kind `service`): what it is for and the names it carries.
            var service: String?; var names: [String]?
        }

        func run() async throws {
            let client = try AdminClient(options: global)
            var serials: [String] = []
            switch (serial, device) {
            case (let serial?, nil):
                serials = [serial.replacingOccurrences(of: ":", with: "")]
            case (nil, let device?):
                struct Credential: Codable { var serial: String; var createdAt: Date? }
                struct Detail: Codable { var credentials: [Credential] }
                serials = try await client.get("/v1/admin/devices/\(device)", as: Detail.self).credentials.map(\.serial)
                if serials.isEmpty { throw CLIError("device \(device) holds no certificate") }
            default:
                throw CLIError("give exactly one of --serial, --device")
            }
            var views: [View] = []
            for serial in serials {
                views.append(try await client.get("/v1/admin/certificates/\(serial)", as: View.self))
            }
            if global.json { return try Output.json(serial != nil ? AnyEncodable(views[0]) : AnyEncodable(views)) }
            for (index, view) in views.enumerated() {
                if index > 0 { print("") }
                Self.show(view)
            }
        }

        static func show(_ view: View) {
            print("serial:   \(view.serial)")
            print("kind:     \(view.kind)")
            if let service = view.service {
                print("service:  \(service) (\((view.names ?? []).joined(separator: ", ")))")
            }
            print("status:   \(view.status)")
            print("valid:    \(Output.date(view.notBefore)) .. \(Output.date(view.notAfter))")
            if let revokedAt = view.revokedAt {
                print("revoked:  \(Output.date(revokedAt)) (\(view.revocationReason ?? "unspecified"))")
            }
            print("sha256:   \(view.sha256)")
            if let crl = view.crl {
                let listed =
                    crl.listed
                    ? "listed (\(crl.reason ?? "unspecified"), revoked \(crl.revokedAt.map(Output.date) ?? "?"))"
                    : "not listed"
                print("crl:      \(listed) in \(crl.name).crl #\(crl.number), next update \(Output.date(crl.nextUpdate))")
                print("          \(crl.url)")
            }
            if let ocsp = view.ocsp {
                var line = ocsp.status
                if let revokedAt = ocsp.revokedAt {
                    line += " (\(ocsp.reason ?? "unspecified"), revoked \(Output.date(revokedAt)))"
                }
                if let nextUpdate = ocsp.nextUpdate { line += ", next update \(Output.date(nextUpdate))" }
                print("ocsp:     \(line)")
                print("          \(ocsp.url)")
            }
            for note in view.notes ?? [] { print("note:     \(note)") }
        }
    }
}

/// Lets `--json` print one view or a list through the same path.
struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}
