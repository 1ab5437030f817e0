import ArgumentParser
import DevIDCore
import DevIDPKI
import DevIDServer
import Foundation
import Logging
import X509

/// `devid ca manufacturer ...`: DevID's own manufacturer CAs (the factory side). See docs/runbooks/break-glass.md.
struct CAManufacturer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manufacturer",
        abstract: "DevID's own manufacturer CAs: prepare a new one for new lots, activate it, distrust an old one.",
        discussion: """
            Runs on the data directory (where `devid factory mint` runs: it needs the CA passphrase). New lots are \
            minted by the active CA; lots of an earlier CA stay valid while it is trusted. Restart `devid serve` \
            after prepare and distrust: it reads the trusted manufacturer CAs at start.
            """,
        subcommands: [List.self, Prepare.self, Activate.self, Distrust.self], defaultSubcommand: List.self)

    struct View: Encodable {
        var id: Int
        var state: String
        var subject: String
        var sha256: String
        var notAfter: Date
    }

    static func run(_ global: GlobalOptions, _ action: DataDirectory.ManufacturerAction, message: String?) async throws {
        LoggingSetup.bootstrap(level: .warning)
        var configuration = try await ServerConfiguration.load(configFile: nil)
        configuration.dataDirectory = global.dataDir
        let list: [View]
        do {
            list = try DataDirectory.manufacturers(configuration: configuration, action, clock: SystemWallClock()).map {
                View(
                    id: $0.id, state: $0.state, subject: String(describing: $0.certificate.subject),
                    sha256: $0.certificate.sha256Fingerprint, notAfter: $0.certificate.notValidAfter)
            }
        } catch {
            throw CLIError("\(error)")
        }
        if global.json { return try Output.json(list) }
        if let message { print(message.replacingOccurrences(of: "{last}", with: String(list.last?.id ?? 0))) }
        Output.table(
            ["ID", "STATE", "SHA256", "NOT AFTER", "CRL"],
            list.map {
                [
                    String($0.id), $0.state, String($0.sha256.prefix(16)), Output.date($0.notAfter),
                    $0.id == 1 ? "/crl/manufacturer.crl" : "/crl/manufacturer\($0.id).crl",
                ]
            })
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "DevID's own manufacturer CAs and their state.")
        @OptionGroup var global: GlobalOptions
        func run() async throws { try await CAManufacturer.run(global, .list, message: nil) }
    }

    struct Prepare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A new manufacturer CA (trusted from the next start of devid serve, minting nothing yet).")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            try await CAManufacturer.run(
                global, .prepare,
                message: "prepared manufacturer CA {last}; restart devid serve, then: devid ca manufacturer activate {last}")
        }
    }

    struct Activate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "devid factory mint signs new lots with this CA.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The CA's id (devid ca manufacturer list).") var id: Int
        func run() async throws {
            try await CAManufacturer.run(
                global, .activate(id), message: "manufacturer CA \(id) mints new lots (devid factory mint)")
        }
    }

    struct Distrust: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "IDevIDs of this CA no longer enroll, from the next start of devid serve (not the active CA).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The CA's id (devid ca manufacturer list).") var id: Int
        func run() async throws {
            try await CAManufacturer.run(
                global, .distrust(id),
                message: "manufacturer CA \(id) distrusted; restart devid serve: its IDevIDs no longer enroll")
        }
    }
}
