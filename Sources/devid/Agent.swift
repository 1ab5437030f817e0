import ArgumentParser
import DevIDAgent
import DevIDCore
import DevIDPKI
import Foundation
import Logging
import X509

struct Agent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The device agent: enroll this device and inspect its identity.",
        subcommands: [Enroll.self, Status.self])

    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll with an EST server and write the LDevID into the state directory.",
            discussion: """
                Bootstraps with the factory identity (--idevid-cert and --idevid-key: TLS client authentication) or \
                a claim token (--token or --token-file; with --device the token is sent as HTTP Basic with the \
                device id as user, else as Bearer). A new P-256 key is generated for the LDevID. The issued \
                certificate must be for that key and chain to --trust-bundle, or nothing is written. Writes \
                DIR/key.pem (0600), cert.pem, chain.pem, trust.pem and identity.json; DIR is created 0700.
                """)

        @Option(name: .long, help: "EST base URL, e.g. https://127.0.0.1:8443.") var server: String
        @Option(name: .long, help: "PEM file with the CA certificates to trust (the DevID root).") var trustBundle:
            String
        @Option(name: .long, help: "State directory for the key, certificates and identity.json.") var stateDir: String
        @Option(name: .long, help: "IDevID certificate PEM (may hold the chain, leaf first).") var idevidCert: String?
        @Option(name: .long, help: "IDevID private key PEM (unencrypted PKCS#8 or SEC1).") var idevidKey: String?
        @Option(
            name: .long, help: "Claim token (visible to other local users in the process list; prefer --token-file).")
        var token: String?
        @Option(name: .long, help: "File holding the claim token.") var tokenFile: String?
        @Option(name: .long, help: "Device id to enroll as (with a claim token).") var device: String?
        @Option(name: .long, help: "EST label (/.well-known/est/LABEL/): the tenant an unlisted IDevID registers into.")
        var label: String?
        @Flag(name: .long, help: "Print machine-readable JSON.") var json: Bool = false

        func validate() throws {
            let idevid = idevidCert != nil || idevidKey != nil
            let claim = token != nil || tokenFile != nil
            if idevid && claim {
                throw ValidationError("give either --idevid-cert/--idevid-key or a claim token, not both")
            }
            if !idevid && !claim {
                throw ValidationError("give --idevid-cert and --idevid-key, or --token (or --token-file)")
            }
            if idevid && (idevidCert == nil || idevidKey == nil) {
                throw ValidationError("--idevid-cert and --idevid-key go together")
            }
            if token != nil && tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
            if device != nil && !claim { throw ValidationError("--device goes with a claim token") }
        }

        func run() async throws {
            LoggingSetup.bootstrap(level: .warning)
            let trust = try AgentFiles.certificates(trustBundle, what: "trust bundle")
            let bootstrap: Enroller.Bootstrap
            if let idevidCert, let idevidKey {
                let chain = try AgentFiles.certificates(idevidCert, what: "IDevID certificate")
                let key: Certificate.PrivateKey
                do {
                    key = try KeyMaterial.privateKey(
                        pem: try AgentFiles.text(idevidKey, what: "IDevID key"), passphrase: nil)
                } catch let error as DevIDPKIError {
                    throw CLIError("IDevID key \(idevidKey): \(error.reason)")
                }
                bootstrap = .idevid(certificateChain: chain, key: key)
            } else {
                var secret = token ?? ""
                if let tokenFile {
                    secret = try AgentFiles.text(tokenFile, what: "token file").trimmingCharacters(
                        in: .whitespacesAndNewlines)
                }
                bootstrap = .token(secret, deviceID: device)
            }

            let identity: EnrolledIdentity
            do {
                identity = try await Enroller().enroll(
                    server: server, trustBundle: trust, stateDirectory: stateDir, bootstrap: bootstrap,
                    label: label, clock: SystemWallClock())
            } catch let error as AgentError {
                throw CLIError("enrollment failed: \(error)")
            }
            let directory = AgentStateDirectory(path: stateDir)
            let files = AgentStateDirectory.File.allCases.map { directory.path($0) }
            if json {
                return try Output.json(EnrollOutput(identity: identity, stateDirectory: directory.path, files: files))
            }
            print("enrolled device \(identity.deviceID)" + (identity.tenant.map { " (tenant \($0))" } ?? ""))
            print("serial:   \(identity.serial)")
            print("valid:    \(Output.date(identity.notBefore)) to \(Output.date(identity.notAfter))")
            print("renewal:  planned \(Output.date(identity.plannedRenewal))")
            print("files:    " + files.joined(separator: "\n          "))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the identity in a state directory: ids, validity, planned renewal, key match.",
            discussion: "Exits 0 whenever the directory could be read; the state (valid, expired, not-yet-valid, "
                + "missing) is in the output.")

        @Option(name: .long, help: "State directory written by `devid agent enroll`.") var stateDir: String
        @Flag(name: .long, help: "Print machine-readable JSON.") var json: Bool = false

        func run() async throws {
            let status: IdentityStatus
            do {
                status = try IdentityStatus.read(stateDirectory: stateDir, clock: SystemWallClock())
            } catch {
                throw CLIError("cannot read \(stateDir): \(error)")
            }
            if json { return try Output.json(status) }
            print("state:    \(status.state.rawValue)")
            guard status.state != .missing else {
                print("no certificate in \(status.stateDirectory); enroll with `devid agent enroll`")
                return
            }
            if let device = status.deviceID {
                print("device:   \(device)" + (status.tenant.map { " (tenant \($0))" } ?? ""))
            }
            if let serial = status.serial { print("serial:   \(serial)") }
            if let issuer = status.issuer { print("issuer:   \(issuer)") }
            if let notBefore = status.notBefore, let notAfter = status.notAfter {
                print("valid:    \(Output.date(notBefore)) to \(Output.date(notAfter))")
            }
            if let renewal = status.plannedRenewal {
                print("renewal:  planned \(Output.date(renewal))" + (status.renewalDue == true ? " (due)" : ""))
            }
            print(
                "key:      "
                    + (status.keyMatchesCertificate == true ? "matches the certificate" : "MISSING OR DOES NOT MATCH"))
            if let server = status.serverURL { print("server:   \(server)") }
        }
    }

    /// `devid agent enroll --json`: the identity's fields plus where the files are.
    struct EnrollOutput: Encodable {
        let identity: EnrolledIdentity
        let stateDirectory: String
        let files: [String]

        enum CodingKeys: String, CodingKey { case stateDirectory, files }

        func encode(to encoder: any Encoder) throws {
            try identity.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(stateDirectory, forKey: .stateDirectory)
            try container.encode(files, forKey: .files)
        }
    }
}

/// Reading the agent's input files, with one-line errors.
enum AgentFiles {
    static func text(_ path: String, what: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError("cannot read \(what) \(path)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func certificates(_ path: String, what: String) throws -> [Certificate] {
        do {
            return try PEM.certificates(try text(path, what: what))
        } catch let error as DevIDPKIError {
            throw CLIError("\(what) \(path): \(error.reason)")
        }
    }
}
