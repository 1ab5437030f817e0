import ArgumentParser
import DevIDCore
import DevIDPKCS11
import DevIDPKI
import DevIDServer
import Foundation
import Logging
import X509

struct CA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Create and inspect the CA hierarchy.",
        subcommands: [
            Init.self, InitServices.self, RootCRL.self, Show.self, ImportKey.self, CAIssuing.self, CARoot.self,
            CAManufacturer.self,
        ])

    struct ImportKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-key",
            abstract: "Move a CA key from its encrypted file into a PKCS#11 token.",
            discussion: """
                Decrypts the key of ROLE (root, issuing, services, manufacturer, or issuing<id>, root<id>, \
                manufacturer<id>) with the CA passphrase, creates it in the token named by --to (object ROLE, \
                sensitive and not extractable), checks that the token's key signs for the certificate's public key, \
                records the key's URI beside the file (DATA/ca/<role>.key.uri) and removes the file. Restart \
                `devid serve` to sign through the token. The file existed before: destroy every copy and backup of \
                it. ROLE server-tls (the listeners' key, no CA key) is not moved into the token: its file is removed \
                and `devid serve` makes a new one in memory at every start.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The key's role: root, issuing, services, manufacturer, server-tls, issuing<id>, ...")
        var role: String
        @Option(name: .long, help: "The token: a pkcs11: URI with module-path and pin-source (not for server-tls).")
        var to: String?

        func validate() throws {
            if to == nil && role != "server-tls" { throw ValidationError("--to TOKEN-URI names the token") }
        }

        func run() async throws {
            LoggingSetup.bootstrap(level: .warning)
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            let result: (uri: String, removed: String)
            do {
                result = try DataDirectory.importKey(configuration: configuration, role: role, token: to ?? "")
            } catch {
                throw CLIError("\(error)")
            }
            if global.json { return try Output.json(["role": role, "keyURI": result.uri, "removed": result.removed]) }
            if role == "server-tls" {
                print("the listeners' key now lives in memory only: devid serve makes a new one at every start")
                print("removed \(result.removed) from the data directory; restart `devid serve`")
                return
            }
            print("imported the \(role) key into the token: \(result.uri)")
            print("removed \(result.removed) from the data directory; destroy every other copy and backup of it")
            print("restart `devid serve` to sign with the token")
        }
    }

    struct RootCRL: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "root-crl",
            abstract: "Sign the root's CRLs ahead (a root ceremony): one every 30 days, each valid 45 days.",
            discussion: """
                The root key stays offline, so the CRL the root publishes for its issuing CAs (served at \
                /crl/root.crl, named by the issuing and services CA certificates) is signed ahead: `devid ca init` \
                signs 13 months; this command signs COUNT more after the last one, with the root key (encrypted with \
                the CA passphrase). The server serves new ones within a minute, without a restart. `devid health` \
                warns 60 days before the last one ends.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The root CA key (default DATA/ca/root.key).") var rootKey: String?
        @Option(name: .long, help: "How many CRLs to sign (1-120; 13 is a little over a year).") var count: Int = 13

        func run() async throws {
            LoggingSetup.bootstrap(level: .warning)
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            let crls: RootCRLs
            do {
                crls = try DataDirectory.signRootCRLs(
                    configuration: configuration, rootKeyPath: rootKey, count: count, clock: SystemWallClock())
            } catch {
                throw CLIError("\(error)")
            }
            struct Summary: Encodable { var crls: Int; var lastNumber: UInt64?; var signedUntil: Date? }
            let summary = Summary(
                crls: crls.crls.count, lastNumber: crls.crls.last?.crlNumber, signedUntil: crls.signedUntil)
            if global.json { return try Output.json(summary) }
            print(
                "signed \(count) root CRL\(count == 1 ? "" : "s"); \(summary.crls) in \(global.dataDir)/ca/root-crl, the last (number "
                    + "\(summary.lastNumber.map(String.init) ?? "-")) valid until \(summary.signedUntil.map(Output.date) ?? "-")")
        }
    }

    struct InitServices: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init-services",
            abstract: "Create the services CA (brokers' TLS certificates) of a hierarchy made before it existed.",
            discussion: """
                Signs a new services CA with the root key (encrypted with the CA passphrase, as `devid ca init` wrote \
                it) and writes DATA/ca/services.crt, services.key (0600) and services-chain.pem. Only needed when the \
                root key is kept outside the data directory: otherwise `devid serve` creates the services CA at its \
                next start. Restart `devid serve` afterwards.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The root CA key (default DATA/ca/root.key).") var rootKey: String?

        func run() async throws {
            LoggingSetup.bootstrap(level: .warning)
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            let services: X509.Certificate
            do {
                services = try DataDirectory.createServicesCA(
                    configuration: configuration, rootKeyPath: rootKey, clock: SystemWallClock()
                ).certificate
            } catch {
                throw CLIError("\(error)")
            }
            let summary = CertificateSummary(role: "services", certificate: services)
            if global.json { return try Output.json(summary) }
            print("Created the services CA in \(global.dataDir)/ca; restart `devid serve` to issue broker certificates")
            Show.printSummary(HierarchySummary(trustDomain: "", certificates: [summary]))
        }
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the root, issuing and manufacturer CAs and the server certificate.",
            discussion: """
                Keys are written PKCS#8-encrypted (PBES2, AES-256-CBC) with mode 0600. The passphrase comes from \
                DEVID_CA_PASSPHRASE or DEVID_CA_PASSPHRASE_FILE; without either, a random one is generated into \
                DATA/secrets/ca-passphrase (dev mode). Also creates the registry and the first admin token.
                """)

        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "SPIFFE trust domain for LDevIDs, e.g. factory.example.com.")
        var trustDomain: String = "devid.local"
        @Option(name: .long, help: "Write the root CA key here instead of the data directory.")
        var rootKeyOut: String?
        @Option(name: .long, help: "Trust an external manufacturer CA (PEM); repeatable.")
        var manufacturerCa: [String] = []
        @Flag(name: .long, help: "Also create DevID's own manufacturer CA when external ones are given.")
        var createManufacturerCa: Bool = false
        @Option(name: .long, help: "Extra DNS name or IP for the server certificate; repeatable.")
        var serverName: [String] = []
        @Option(
            name: .long,
            help: ArgumentHelp(
                "Generate the CA keys inside this PKCS#11 token (a pkcs11: token URI with module-path and pin-source).",
                discussion: "Objects root, issuing, services and manufacturer are created, sensitive and not extractable."))
        var keyUri: String?
        @Option(name: .long, help: "Generate the root key in this PKCS#11 token instead (an offline token).")
        var rootKeyUri: String?

        func run() async throws {
            LoggingSetup.bootstrap(level: .warning)
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            configuration.trustDomain = trustDomain
            let layout = CALayout(dataDirectory: global.dataDir)
            if layout.isInitialized { throw CLIError("a CA hierarchy already exists in \(global.dataDir)") }
            var external: [X509.Certificate] = []
            for file in manufacturerCa {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw CLIError("cannot read manufacturer CA \(file)")
                }
                external.append(contentsOf: try PEM.certificates(String(decoding: data, as: UTF8.self)))
            }
            var options = CAInitOptions(
                trustDomain: trustDomain, rootKeyOut: rootKeyOut, externalManufacturerCAs: external,
                createManufacturerCA: external.isEmpty || createManufacturerCa, serverNames: serverName,
                keyEncryptionRounds: configuration.keyEncryptionRounds)
            options.keyURI = keyUri
            options.rootKeyURI = rootKeyUri
            let prepared: DataDirectory.Prepared
            do {
                prepared = try await DataDirectory.prepare(
                    configuration: configuration, initOptions: options, clock: SystemWallClock(),
                    logger: Logger(label: "devid"))
            } catch {
                throw CLIError("\(error)")
            }
            // With keys in a token, the summary read back from the data directory names where each key lives.
            let summary =
                (keyUri ?? rootKeyUri) != nil
                ? (try? HierarchySummary.read(layout: layout)) ?? HierarchySummary(hierarchy: prepared.hierarchy)
                : HierarchySummary(hierarchy: prepared.hierarchy)
            if global.json {
                try Output.json(summary)
                return
            }
            print("Created CA hierarchy in \(global.dataDir) for trust domain \(trustDomain)")
            Show.printSummary(summary)
            let report = prepared.report
            if let rootKey = report.rootKeyPath {
                print(PKCS11URI.isURI(rootKey) ? "root key: \(rootKey) (in the token)" : "root key: \(rootKey) (encrypted, 0600)")
            }
            if let token = report.adminToken, let path = report.adminTokenPath {
                print("admin token (shown once, stored hashed): \(token)")
                print("  local CLI copy: \(path) (0600)")
            }
            if let generated = report.generatedPassphrasePath {
                print("CA passphrase: dev mode, generated into \(generated) (0600)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the hierarchy: subject, key type, validity and SHA-256 fingerprints.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let summary: HierarchySummary
            do {
                summary = try HierarchySummary.read(layout: CALayout(dataDirectory: global.dataDir))
            } catch {
                throw CLIError("\(error)")
            }
            if global.json {
                try Output.json(summary)
            } else {
                print("trust domain: \(summary.trustDomain)")
                Self.printSummary(summary)
            }
        }

        static func printSummary(_ summary: HierarchySummary) {
            for entry in summary.certificates {
                print("")
                print("\(entry.role)")
                print("  subject:    \(entry.subject)")
                print("  issuer:     \(entry.issuer)")
                print("  key:        \(entry.keyType)")
                print("  serial:     \(entry.serial)")
                print("  valid:      \(Output.date(entry.notBefore)) .. \(Output.date(entry.notAfter))")
                print("  sha256:     \(entry.sha256)")
                if let uri = entry.keyURI { print("  key in:     \(uri)") }
            }
        }
    }
}
