import ArgumentParser
import DevIDCore
import DevIDPKCS11
import DevIDPKI
import DevIDServer
import Foundation
import Logging

/// `devid ca issuing ...`: several issuing CAs and their states. See docs/runbooks/break-glass.md.
struct CAIssuing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issuing",
        abstract: "Issuing CAs: prepare, activate, taint, revoke (break glass).",
        discussion: """
            One issuing CA is active and signs every new LDevID; others are prepared (published, not signing), \
            retiring (their LDevIDs stay valid), tainted (their LDevIDs must rotate now) or revoked. See \
            docs/runbooks/break-glass.md.
            """,
        subcommands: [List.self, Prepare.self, Activate.self, Taint.self, Revoke.self, Emergency.self],
        defaultSubcommand: List.self)

    struct View: Codable {
        struct Counts: Codable { var current: Int; var online: Int }
        var id: Int
        var state: String
        var subject: String
        var sha256: String
        var serial: String
        var notBefore: Date
        var notAfter: Date
        var stateChangedAt: Date
        var revocationReason: String?
        var crl: String
        var ldevids: Counts
    }

    struct Items: Codable { var items: [View] }

    struct Change: Codable { var id: Int; var from: String; var to: String }
    struct Radius: Codable { var devices: Int; var credentials: Int }
    struct Result: Codable {
        var dryRun: Bool
        var action: String
        var changes: [Change]
        var rotationDue: Int?
        var blastRadius: Radius?
        var onlineHolders: Int?
        var notes: [String]
    }

    struct Body: Encodable {
        var dryRun: Bool
        var force: Bool?
        var reason: String?
    }

    static func printList(_ items: [View]) {
        Output.table(
            ["ID", "STATE", "SHA256", "NOT AFTER", "LDEVIDS", "ONLINE", "CRL"],
            items.map {
                [
                    String($0.id), $0.state, String($0.sha256.prefix(16)), Output.date($0.notAfter),
                    String($0.ldevids.current), String($0.ldevids.online), "/crl/\($0.crl).crl",
                ]
            })
    }

    static func printResult(_ result: Result) {
        let moves = result.changes.map { "issuing CA \($0.id): \($0.from) -> \($0.to)" }
        print((result.dryRun ? "dry run, nothing changed: " : "") + moves.joined(separator: "; "))
        if let due = result.rotationDue {
            print(result.dryRun ? "\(due) LDevIDs would be marked rotation-due" : "\(due) LDevIDs marked rotation-due")
        }
        if let radius = result.blastRadius {
            print(
                (result.dryRun ? "would revoke " : "revoked ")
                    + "\(radius.credentials) LDevIDs of \(radius.devices) devices (\(result.onlineHolders ?? 0) seen recently)")
        }
        for note in result.notes { print("note: \(note)") }
    }

    static func change(
        _ action: String, id: Int, body: Body, global: GlobalOptions
    ) async throws -> Result {
        try await AdminClient(options: global).post("/v1/admin/ca/issuing/\(id)/\(action)", json: body, as: Result.self)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every issuing CA: state, fingerprint, validity, current LDevIDs (and how many are online).")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let list = try await AdminClient(options: global).get("/v1/admin/ca/issuing", as: Items.self)
            if global.json { return try Output.json(list) }
            printList(list.items)
        }
    }

    struct Prepare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A new issuing CA from the root (published and trusted, signing nothing yet).",
            discussion: """
                Generates a P-256 key and a certificate signed by the root key (encrypted with the CA passphrase; \
                used and dropped, never kept), writes DATA/ca/issuing/<id>.crt and .key (0600), and tells the \
                running server, which records it as prepared, lists it in /cacerts and trusts it for mTLS. Run it on \
                the machine that holds the data directory, with the root key brought from its offline store.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The root CA key: a file, or a pkcs11: URI (default DATA/ca/root.key).")
        var rootKey: String?

        func run() async throws {
            let id = try await Self.prepare(global: global, rootKey: rootKey)
            let list = try await AdminClient(options: global).post(
                "/v1/admin/ca/issuing/register", json: [String: String](), as: Items.self)
            if global.json { return try Output.json(list.items.first { $0.id == id }) }
            print("prepared issuing CA \(id); activate it with: devid ca issuing activate \(id)")
            printList(list.items)
        }

        static func prepare(global: GlobalOptions, rootKey: String?) async throws -> Int {
            LoggingSetup.bootstrap(level: .warning)
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            do {
                return try DataDirectory.prepareIssuingCA(
                    configuration: configuration, rootKeyPath: rootKey, clock: SystemWallClock()
                ).id
            } catch {
                throw CLIError("\(error)")
            }
        }
    }

    struct Activate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an issuing CA the signing one; the CA active until now becomes retiring.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The CA's id (devid ca issuing list).") var id: Int
        @Flag(name: .long, help: "Only show what would change.") var dryRun: Bool = false

        func run() async throws {
            let result = try await change("activate", id: id, body: Body(dryRun: dryRun), global: global)
            if global.json { return try Output.json(result) }
            printResult(result)
        }
    }

    struct Taint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every LDevID of an issuing CA becomes rotation-due now (not the active CA).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The CA's id (devid ca issuing list).") var id: Int
        @Flag(name: .long, help: "Only show how many LDevIDs would be marked.") var dryRun: Bool = false

        func run() async throws {
            let result = try await change("taint", id: id, body: Body(dryRun: dryRun), global: global)
            if global.json { return try Output.json(result) }
            printResult(result)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an issuing CA and every LDevID it signed.",
            discussion: """
                Refused while devices seen recently still hold its LDevIDs, unless --force (taint it first and \
                follow `devid rotate status --issuing-ca ID`). When the root key is at hand (--root-key, or \
                DATA/ca/root.key), the root's CRL is re-signed at once to list the CA (starting now; 13 CRLs ahead, \
                as `devid ca root-crl`); otherwise a note says to run `devid ca root-crl` at the next ceremony.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The CA's id (devid ca issuing list).") var id: Int
        @Option(name: .long, help: "RFC 5280 reason (keyCompromise, superseded, cessationOfOperation, ...).")
        var reason: String = "keyCompromise"
        @Flag(name: .long, help: "Revoke although online devices still hold its LDevIDs.") var force: Bool = false
        @Flag(name: .long, help: "Only show what would be revoked.") var dryRun: Bool = false
        @Option(name: .long, help: "The root CA key, to re-sign the root's CRL (default DATA/ca/root.key if there).")
        var rootKey: String?

        func run() async throws {
            if let rootKey, !PKCS11URI.isURI(rootKey), !FileManager.default.fileExists(atPath: rootKey) {
                throw CLIError("root key \(rootKey) not found")
            }
            var result = try await change(
                "revoke", id: id, body: Body(dryRun: dryRun, force: force, reason: reason), global: global)
            let defaultRootKey = "\(global.dataDir)/ca/root.key"
            // The default root key: DATA/ca/root.key, or the token key its reference file names.
            let defaultAtHand = [defaultRootKey, CAKeys.referencePath(defaultRootKey)].contains {
                FileManager.default.fileExists(atPath: $0)
            }
            let rootKey = rootKey ?? (defaultAtHand ? defaultRootKey : nil)
            if !dryRun, let rootKey {
                let list = try await AdminClient(options: global).get("/v1/admin/ca/issuing", as: Items.self)
                LoggingSetup.bootstrap(level: .warning)
                var configuration = try await ServerConfiguration.load(configFile: nil)
                configuration.dataDirectory = global.dataDir
                let revoked = list.items.filter { $0.state == IssuingCAState.revoked.rawValue }.map {
                    IssuingCA(
                        id: $0.id, subject: $0.subject, sha256: $0.sha256, serial: $0.serial, notBefore: $0.notBefore,
                        notAfter: $0.notAfter, state: .revoked, createdAt: $0.stateChangedAt,
                        stateChangedAt: $0.stateChangedAt, revocationReason: $0.revocationReason)
                }
                do {
                    _ = try DataDirectory.signRootCRLs(
                        configuration: configuration, rootKeyPath: rootKey, count: RootCRLs.defaultCount,
                        clock: SystemWallClock(), revokedIssuing: revoked)
                } catch {
                    throw CLIError("the CA is revoked, but the root's CRL was not re-signed: \(error)")
                }
                _ = try await AdminClient(options: global).post(
                    "/v1/admin/ca/issuing/register", json: [String: String](), as: Items.self)
                result.notes = result.notes.filter { !$0.hasPrefix("the root's CRL") }
                result.notes.append("re-signed the root's CRL: /crl/root.crl lists issuing CA \(id)")
            }
            if global.json { return try Output.json(result) }
            printResult(result)
        }
    }

    struct Emergency: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Break glass: prepare a new issuing CA, activate it and taint the active one, in one step.",
            discussion: """
                For the night the active issuing CA's key leaks: every new LDevID comes from the new CA at once, and \
                every device rotates at its next check-in. Revoke the old CA once `devid rotate status \
                --issuing-ca ID` shows nothing pending. With --id, uses a CA prepared earlier instead.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The root CA key: a file, or a pkcs11: URI (default DATA/ca/root.key).")
        var rootKey: String?
        @Option(name: .long, help: "A CA prepared earlier, instead of preparing one now.") var id: Int?
        @Flag(name: .long, help: "Only show what would change (needs --id: nothing is prepared).") var dryRun: Bool = false

        func run() async throws {
            if dryRun, id == nil { throw CLIError("--dry-run needs --id: a dry run prepares no CA") }
            var target = id
            if target == nil {
                target = try await Prepare.prepare(global: global, rootKey: rootKey)
                _ = try await AdminClient(options: global).post(
                    "/v1/admin/ca/issuing/register", json: [String: String](), as: Items.self)
            }
            guard let target else { return }
            let result = try await change("emergency", id: target, body: Body(dryRun: dryRun), global: global)
            if global.json { return try Output.json(result) }
            printResult(result)
        }
    }
}
