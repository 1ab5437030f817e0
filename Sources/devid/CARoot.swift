import ArgumentParser
import DevIDCore
import DevIDServer
import Foundation
import Logging

/// `devid ca root ...`: root rollover with cross-certificates. See docs/runbooks/break-glass.md.
struct CARoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root",
        abstract: "Roots: prepare a new root with cross-certificates, activate it, retire the old one.",
        discussion: """
            A new root is certified by the old one and the old by the new, so devices that trust either validate \
            chains of both; agents learn the new root from /cacerts through the cross-certificate, and drop the old \
            one when it is retired. See docs/runbooks/break-glass.md.
            """,
        subcommands: [List.self, Prepare.self, Activate.self, Retire.self], defaultSubcommand: List.self)

    struct View: Codable {
        var id: Int
        var state: String
        var subject: String
        var sha256: String
        var notAfter: Date
        var crl: String
        var certifiedBy: [Int]
    }

    struct Items: Codable { var items: [View] }

    static func printList(_ items: [View]) {
        Output.table(
            ["ID", "STATE", "SHA256", "NOT AFTER", "CERTIFIED BY", "CRL"],
            items.map {
                [
                    String($0.id), $0.state, String($0.sha256.prefix(16)), Output.date($0.notAfter),
                    $0.certifiedBy.isEmpty ? "-" : $0.certifiedBy.map { "root \($0)" }.joined(separator: ", "),
                    "/crl/\($0.crl).crl",
                ]
            })
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every root: state, fingerprint, cross-certificates.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let list = try await AdminClient(options: global).get("/v1/admin/ca/roots", as: Items.self)
            if global.json { return try Output.json(list) }
            printList(list.items)
        }
    }

    struct Prepare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A new root, certified by the active root and certifying it (trusted, signing nothing yet).",
            discussion: """
                Generates a P-384 root (`DevID Root CA <id>`), signs 13 months of its CRLs ahead, and writes the \
                two cross-certificates (new by old, old by new) to DATA/ca/roots/. The active root's key \
                (--root-key, default DATA/ca/root.key) is used and dropped; the new root's key goes to \
                --new-root-key-out (default DATA/ca/roots/<id>.key), encrypted with the CA passphrase: move it \
                offline. The running server lists the new root in /cacerts at once; restart it so that its TLS \
                chain carries the cross-certificate.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The active root's key: a file, or a pkcs11: URI (default DATA/ca/root.key).")
        var rootKey: String?
        @Option(name: .long, help: "Where to write the new root's key (default DATA/ca/roots/<id>.key).")
        var newRootKeyOut: String?

        func run() async throws {
            LoggingSetup.bootstrap(level: .warning)
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            let id: Int
            do {
                id = try DataDirectory.prepareRoot(
                    configuration: configuration, rootKeyPath: rootKey, newRootKeyOut: newRootKeyOut,
                    clock: SystemWallClock())
            } catch {
                throw CLIError("\(error)")
            }
            _ = try await AdminClient(options: global).post(
                "/v1/admin/ca/issuing/register", json: [String: String](), as: CAIssuing.Items.self)
            let list = try await AdminClient(options: global).get("/v1/admin/ca/roots", as: Items.self)
            if global.json { return try Output.json(list.items.first { $0.id == id }) }
            print("prepared root \(id); restart devid serve, then: devid ca root activate \(id)")
            printList(list.items)
        }
    }

    struct Activate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "New issuing CAs are signed by this root (devid ca issuing prepare --root-key ITS-KEY).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The root's id (devid ca root list).") var id: Int

        func run() async throws {
            let list = try await AdminClient(options: global).post(
                "/v1/admin/ca/roots/\(id)/activate", json: [String: String](), as: Items.self)
            if global.json { return try Output.json(list) }
            print("root \(id) is active: prepare the next issuing CA with its key")
            printList(list.items)
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Devices stop trusting this root (not the active one; its issuing CAs revoked first).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The root's id (devid ca root list).") var id: Int

        func run() async throws {
            let list = try await AdminClient(options: global).post(
                "/v1/admin/ca/roots/\(id)/retire", json: [String: String](), as: Items.self)
            if global.json { return try Output.json(list) }
            print("root \(id) retired: agents drop it from their trust bundle at their next check-in")
            printList(list.items)
        }
    }
}
