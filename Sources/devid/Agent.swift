import ArgumentParser
import DevIDAgent
import DevIDCore
import DevIDPKCS11
import DevIDPKI
import Foundation
import SwiftASN1
import Logging
import ServiceLifecycle
import UnixSignals
import X509

struct Agent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The device agent: enroll this device, keep its identity rotated, and inspect it.",
        subcommands: [Enroll.self, Run.self, Status.self, CSR.self])

    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll with an EST server and write the LDevID into the state directory.",
            discussion: """
                Bootstraps with the factory identity (--idevid-cert and --idevid-key: TLS client authentication) or \
                a claim token (--token or --token-file; with --device the token is sent as HTTP Basic with the \
                device id as user, else as Bearer). A new P-256 key is generated for the LDevID. The issued \
                certificate must be for that key and chain to --trust-bundle, or nothing is written. Writes \
                DIR/key.pem (0600), cert.pem, chain.pem, trust.pem and identity.json; DIR is created 0700. \
                Also writes DIR/agent.json (server, label, the IDevID's absolute paths, --on-rotate) so that \
                `devid agent run --state-dir DIR` needs nothing else.
                """)

        @Option(name: .long, help: "EST base URL, e.g. https://127.0.0.1:8443.") var server: String
        @Option(name: .long, help: "PEM file with the CA certificates to trust (the DevID root).") var trustBundle:
            String
        @Option(name: .long, help: "State directory for the key, certificates and identity.json.") var stateDir: String
        @Option(name: .long, help: "IDevID certificate PEM (may hold the chain, leaf first).") var idevidCert: String?
        @Option(name: .long, help: "IDevID private key PEM (unencrypted PKCS#8 or SEC1), or its pkcs11: URI.")
        var idevidKey: String?
        @Option(
            name: .long,
            help: "Generate the LDevID key inside this PKCS#11 token (a pkcs11: token URI with module-path and pin-source).")
        var keyUri: String?
        @Option(
            name: .long, help: "Claim token (visible to other local users in the process list; prefer --token-file).")
        var token: String?
        @Option(name: .long, help: "File holding the claim token.") var tokenFile: String?
        @Option(name: .long, help: "Device id to enroll as (with a claim token).") var device: String?
        @Option(name: .long, help: "EST label (/.well-known/est/LABEL/): the tenant an unlisted IDevID registers into.")
        var label: String?
        @Option(name: .long, help: "Reload hook for `devid agent run`, saved in agent.json (run with /bin/sh -c).")
        var onRotate: String?
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
                    if PKCS11URI.isURI(idevidKey) {
                        key = try AgentKeys.open(idevidKey)
                    } else {
                        key = try KeyMaterial.privateKey(
                            pem: try AgentFiles.text(idevidKey, what: "IDevID key"), passphrase: nil)
                    }
                } catch let error as DevIDPKIError {
                    throw CLIError("IDevID key \(idevidKey): \(error.reason)")
                } catch let error as AgentError {
                    throw CLIError("IDevID key: \(error.reason)")
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

            // The settings go into agent.json before the identity is installed (Enroller), with the URL it used.
            var configuration = AgentConfiguration(
                serverURL: server, label: label, idevidCertificate: idevidCert.map(AgentFiles.absolute),
                idevidKey: idevidKey.map { PKCS11URI.isURI($0) ? $0 : AgentFiles.absolute($0) }, onRotate: onRotate)
            configuration.keyURI = keyUri
            let identity: EnrolledIdentity
            let serverClock = ServerClock(local: SystemWallClock())
            do {
                if let keyUri { _ = try PKCS11URI(keyUri) }
                identity = try await Enroller(keyURI: keyUri).enroll(
                    server: server, trustBundle: trust, stateDirectory: stateDir, bootstrap: bootstrap,
                    label: label, clock: serverClock, serverClock: serverClock, configuration: configuration)
            } catch let error as AgentError {
                throw CLIError("enrollment failed: \(error)")
            } catch let error as PKCS11Error {
                throw CLIError("--key-uri: \(error.reason)")
            }
            let directory = AgentStateDirectory(path: stateDir)
            let files =
                AgentStateDirectory.File.allCases.map { directory.path($0) }
                + [directory.path + "/" + AgentConfiguration.fileName]
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
            if let scheduled = status.scheduledRenewal {
                print("          scheduled \(Output.date(scheduled)) (with jitter, drawn once for this certificate)")
            }
            print(
                "key:      "
                    + (status.keyMatchesCertificate == true ? "matches the certificate" : "MISSING OR DOES NOT MATCH"))
            if let server = status.serverURL { print("server:   \(server)") }
            if let skew = status.clockSkew {
                print("skew:     \(Agent.seconds(skew)) (server minus this device's clock, corrected for)")
            } else {
                print("skew:     not measured yet (the agent has not talked to the server)")
            }
            if let checkIn = status.lastCheckIn { print("check-in: last \(Output.date(checkIn))") }
            if let wake = status.nextWake { print("next run: \(Output.date(wake))") }
            if let failures = status.failures {
                print("failures: \(failures) in a row" + (status.lastError.map { ": \($0)" } ?? ""))
            }
            for (name, slot) in [("next", status.next), ("previous", status.previous)] {
                guard let slot else { continue }
                var line = "\(name):".padding(toLength: 10, withPad: " ", startingAt: 0) + slot.state.rawValue
                if let serial = slot.serial { line += ", serial \(serial)" }
                if let notBefore = slot.notBefore, let notAfter = slot.notAfter {
                    line += ", valid \(Output.date(notBefore)) to \(Output.date(notAfter))"
                }
                print(line)
            }
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Keep the identity in a state directory valid: check in, rotate, recover.",
            discussion: """
                Reads DIR/agent.json (written by `devid agent enroll`); the flags override it. Checks in with the \
                server (GET /v1/device/status over mTLS), renews at the renewal time drawn with jitter for each \
                certificate (a new key each time: staged in DIR/next/, re-enrolled, installed, reload hook, \
                confirmed with a check-in, then DIR/previous/ forgotten), renews late within the grace period after \
                expiry, and bootstraps with the IDevID when the identity is beyond repair. Decisions use the \
                server's time (DevID-Time), corrected for this device's clock skew. Failures retry with \
                exponential backoff and full jitter. Killed at any point, it resumes where it stopped. \
                Logs one line per step on stderr. Stops on SIGTERM or SIGINT.
                """)

        @Option(name: .long, help: "State directory written by `devid agent enroll`.") var stateDir: String
        @Option(
            name: .long,
            help: "Reload hook, run with /bin/sh -c after a new identity is installed (env DEVID_STATE_DIR).")
        var onRotate: String?
        @Flag(name: .long, help: "Do one step, print what it did, and exit (non-zero if it failed).") var once = false
        @Option(name: .long, help: "EST base URL (default: from agent.json).") var server: String?
        @Option(name: .long, help: "EST label (default: from agent.json).") var label: String?
        @Option(name: .long, help: "IDevID certificate PEM for bootstrap (default: from agent.json).") var idevidCert:
            String?
        @Option(name: .long, help: "IDevID private key PEM or pkcs11: URI for bootstrap (default: from agent.json).")
        var idevidKey: String?
        @Option(name: .long, help: "PKCS#11 token URI for new LDevID keys (default: from agent.json).") var keyUri: String?
        @Option(name: .long, help: "Seconds between check-ins while nothing is due (default 3600).")
        var checkInInterval: Double?
        @Option(
            name: .long,
            help: "When told to rotate now, wait up to this many seconds first, drawn at random (default 60; 0: at once).")
        var rotateNowJitter: Double = RotationAgent.defaultRotateNowJitter
        @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel =
            "info"

        func validate() throws {
            if (idevidCert == nil) != (idevidKey == nil) {
                throw ValidationError("--idevid-cert and --idevid-key go together")
            }
            if let checkInInterval, checkInInterval <= 0 {
                throw ValidationError("--check-in-interval must be positive")
            }
            if !(0...3_600).contains(rotateNowJitter) {
                throw ValidationError("--rotate-now-jitter must be 0 to 3600 seconds")
            }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("unknown log level \(logLevel)")
            }
        }

        func run() async throws {
            LoggingSetup.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info)
            let logger = Logger(label: "devid.agent")
            var configuration: AgentConfiguration
            do {
                if let saved = try AgentConfiguration.load(stateDirectory: stateDir) {
                    configuration = saved
                } else if let identity = try AgentStateDirectory(path: stateDir).identity() {
                    configuration = AgentConfiguration(serverURL: identity.serverURL)
                } else if let server {
                    configuration = AgentConfiguration(serverURL: server)
                } else {
                    throw CLIError("\(stateDir) holds no agent.json and no identity: run `devid agent enroll` first")
                }
            } catch let error as AgentError {
                throw CLIError("cannot read \(stateDir): \(error)")
            }
            if let server { configuration.serverURL = server }
            if let label { configuration.label = label }
            if let onRotate { configuration.onRotate = onRotate }
            if let idevidCert, let idevidKey {
                configuration.idevidCertificate = AgentFiles.absolute(idevidCert)
                configuration.idevidKey = PKCS11URI.isURI(idevidKey) ? idevidKey : AgentFiles.absolute(idevidKey)
            }
            if let keyUri { configuration.keyURI = keyUri }
            if let checkInInterval { configuration.checkInInterval = checkInInterval }

            let agent: RotationAgent
            do {
                agent = try RotationAgent(
                    stateDirectory: stateDir, configuration: configuration,
                    options: RotationAgent.Options(rotateNowJitter: rotateNowJitter), clock: SystemWallClock(),
                    logger: logger)
            } catch {
                throw CLIError("cannot start the agent: \(error)")
            }
            logger.info(
                "agent starting",
                metadata: [
                    "state_dir": "\(stateDir)", "server": "\(configuration.serverURL)",
                    "idevid": "\(configuration.idevidCertificate != nil)",
                    "on_rotate": "\(configuration.onRotate != nil)",
                ])
            if once {
                let wake = await agent.step()
                Agent.log(wake, agent: agent, logger: logger)
                if let error = wake.error { throw CLIError("step failed: \(error)") }
                return
            }
            let service = RotationService(agent: agent, logger: logger)
            let group = ServiceGroup(
                configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            logger.info("agent stopped")
        }
    }

    /// `devid agent run` as a `Service`: the agent's loop on the real clock, cancelled on graceful shutdown (every
    /// step is resumable, so cancelling one mid-way is as safe as a crash).
    struct RotationService: Service {
        let agent: RotationAgent
        let logger: Logger

        func run() async throws {
            let agent = self.agent
            let logger = self.logger
            do {
                try await cancelWhenGracefulShutdown {
                    try await agent.run(clock: ContinuousClock()) { wake in
                        Agent.log(wake, agent: agent, logger: logger)
                    }
                }
            } catch is CancellationError {
                return
            }
        }
    }

    /// One structured line per step.
    static func log(_ wake: Wake, agent: RotationAgent, logger: Logger) {
        var metadata: Logger.Metadata = [
            "result": "\(wake.reason.rawValue)",
            "next_in_s": "\(Int(wake.delay.rounded(.up)))",
            "next_at": "\(Output.date(wake.at))",
            "skew_s": "\(String(format: "%.1f", agent.serverClock.skew))",
        ]
        if !wake.completed.isEmpty { metadata["steps"] = "\(wake.completed.map(\.rawValue).joined(separator: ","))" }
        if let change = wake.change { metadata["change"] = "\(change.rawValue)" }
        if let hook = wake.hook { metadata["hook"] = "\(hook)" }
        if let status = wake.status {
            metadata["serial"] = "\(status.serial)"
            metadata["not_after"] = "\(Output.date(status.notAfter))"
        }
        if let error = wake.error {
            metadata["error"] = "\(error)"
            logger.warning("step failed", metadata: metadata)
        } else if wake.change != nil {
            logger.notice("identity replaced", metadata: metadata)
        } else {
            logger.info("step", metadata: metadata)
        }
    }

    /// `+300.0 s (5 min)`, `-86400.0 s (1.0 d)`.
    static func seconds(_ value: TimeInterval) -> String {
        let sign = value < 0 ? "-" : "+"
        let magnitude = abs(value)
        let human: String
        switch magnitude {
        case ..<120: human = ""
        case ..<7_200: human = " (\(Int((magnitude / 60).rounded())) min)"
        case ..<172_800: human = " (\(String(format: "%.1f", magnitude / 3_600)) h)"
        default: human = " (\(String(format: "%.1f", magnitude / 86_400)) d)"
        }
        return "\(sign)\(String(format: "%.1f", magnitude)) s\(human)"
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
    /// `path` made absolute against the working directory (agent.json outlives the shell it was written from).
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

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

extension Agent {
    struct CSR: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "csr",
            abstract: "On the production line: a factory key inside the device's token, and a CSR for its IDevID.",
            discussion: """
                Generates a P-256 key inside the PKCS#11 token --key-uri names (object --label, sensitive, not \
                extractable), writes a PKCS#10 CSR signed with it whose subject serialNumber is --serial, and prints \
                the key's URI. Collect the CSRs of a lot in one directory for `devid factory mint --csr-dir`; the \
                device then enrolls with `devid agent enroll --idevid-cert chain.pem --idevid-key <the URI>`.
                """)
        @Option(name: .long, help: "The device's token: a pkcs11: URI with module-path and pin-source.") var keyUri: String
        @Option(name: .long, help: "The key's object label in the token.") var label: String = "idevid"
        @Option(name: .long, help: "The hardware serial (the CSR subject's serialNumber).") var serial: String
        @Option(name: .long, help: "Where to write the CSR (PEM).") var out: String

        func run() async throws {
            let key: PKCS11PrivateKey
            do {
                key = try PKCS11PrivateKey.generate(in: try PKCS11URI(keyUri).tokenURI, label: label, curve: .p256)
            } catch {
                throw CLIError("\(error.reason)")
            }
            do {
                let subject = try DeviceNames.idevidSubject(hardwareSerial: serial, manufacturer: "DevID")
                let request = try CertificateSigningRequest(
                    version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key), attributes: .init(),
                    signatureAlgorithm: .ecdsaWithSHA256)
                try SecureFile.write(Array(try request.serializeAsPEM().pemString.utf8) + [0x0A], to: out, mode: 0o644)
            } catch {
                try? key.destroy()
                throw CLIError("the CSR could not be written: \(error)")
            }
            print(key.uri.description)
        }
    }
}

