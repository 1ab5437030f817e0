import ArgumentParser
import DevIDCore
import DevIDServer
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the DevID server: EST/mTLS listener and operations listener (admin API, health).",
        discussion: """
            With no options it runs a development server in ./devid-data, creating the CA hierarchy and an admin \
            token on first start. Precedence: flags, then DEVID_* environment variables, then --config FILE \
            (JSON), then defaults. See docs/configuration.md.
            """)

    @Option(name: .long, help: "Data directory (default ./devid-data; env DEVID_DATA_DIR).")
    var dataDir: String?
    @Option(name: .long, help: "JSON configuration file.")
    var config: String?
    @Option(name: .long, help: "SPIFFE trust domain, used when the CA hierarchy is created.")
    var trustDomain: String?
    @Option(name: .long, help: "EST/mTLS listener address.")
    var estHost: String?
    @Option(name: .long, help: "EST/mTLS listener port (0 picks a free port).")
    var estPort: Int?
    @Option(name: .long, help: "Operations listener address.")
    var opsHost: String?
    @Option(name: .long, help: "Operations listener port (0 picks a free port).")
    var opsPort: Int?
    @Option(name: .long, help: "Extra DNS name or IP for the server certificate (repeatable; at CA creation).")
    var serverName: [String] = []
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?
    @Option(
        name: .long,
        help: "Base URL of the CRLs and OCSP responder written into certificates (default http://OPS-HOST:OPS-PORT).")
    var revocationBaseURL: String?
    @Option(name: .long, help: "CRL partitions of the issuing CA (default 1: one complete CRL).")
    var crlPartitions: Int?
    @Option(name: .long, help: "Keep a Mosquitto broker's DevID files (CA, CRLs, ACL, listener block) in this directory.")
    var mosquittoDir: String?
    @Option(name: .long, help: "Mosquitto's pid file: it gets SIGHUP after every change to the files.")
    var mosquittoPidFile: String?
    @Option(name: .long, help: "The Mosquitto TLS listener port written into the listener block (default 8883).")
    var mosquittoPort: Int?
    @Option(
        name: .long,
        help: "A DNS name or IP address for the broker certificate (repeatable; default localhost and 127.0.0.1).")
    var mosquittoBrokerName: [String] = []
    @Flag(name: .long, help: "Do not run the registry's pending schema migrations: refuse to start if it needs one.")
    var noRegistryMigrate = false
    @Option(
        name: .long,
        help: "A PostgreSQL registry shared by several servers: postgres://USER@HOST:PORT/DATABASE (env DEVID_REGISTRY).")
    var registry: String?
    @Option(name: .long, help: "The file holding the PostgreSQL registry's password (env DEVID_REGISTRY_PASSWORD_FILE).")
    var registryPasswordFile: String?
    @Option(name: .long, help: "RabbitMQ management API URL: revoked and suspended devices' connections are closed.")
    var rabbitmqManagementURL: String?

    func run() async throws {
        let configuration = try await loadConfiguration()
        LoggingSetup.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "devid")

        let app: DevIDServerApp
        do {
            app = try await DevIDServerApp(configuration: configuration, logger: logger)
        } catch {
            throw CLIError("cannot start: \(error)")
        }
        Self.printBanner(app: app, configuration: configuration, configFile: config)
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        Task {
            let ports = await app.waitUntilRunning()
            print("EST (mTLS):  https://\(configuration.estHost):\(ports.est)/.well-known/est")
            print("Operations:  http://\(configuration.opsHost):\(ports.ops)  (admin API /v1/admin, health /healthz, ready /readyz)")
            print("Revocation:  CRLs at /crl/issuing.crl, OCSP at /ocsp (see docs/revocation.md)")
            print("Stop with Ctrl-C (SIGINT) or SIGTERM; DevID finishes open requests and exits.")
            fflush(nil)
        }
        // SIGHUP: the file and the environment are read again; their live settings (rotation policy, rate limits,
        // anomaly thresholds) take effect at the next decision, the rest at the next start.
        let command = self
        let reloads = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                do {
                    try app.state.live.reload(base: try await command.loadConfiguration())
                    logger.notice(
                        "configuration reloaded (SIGHUP)", metadata: ["file": "\(command.config ?? "none")"])
                } catch {
                    logger.error(
                        "configuration not reloaded (SIGHUP); the previous one stays in effect",
                        metadata: ["error": "\(error)"])
                }
            }
        }
        defer { reloads.cancel() }
        try await group.run()
        print("DevID stopped.")
    }

    /// The file, the environment and the flags, as at start.
    func loadConfiguration() async throws -> ServerConfiguration {
        var configuration = try await ServerConfiguration.load(configFile: config)
        if let dataDir { configuration.dataDirectory = dataDir }
        if let trustDomain { configuration.trustDomain = trustDomain }
        if let estHost { configuration.estHost = estHost }
        if let estPort { configuration.estPort = estPort }
        if let opsHost { configuration.opsHost = opsHost }
        if let opsPort { configuration.opsPort = opsPort }
        if !serverName.isEmpty { configuration.serverNames = serverName }
        if let revocationBaseURL { configuration.revocationBaseURL = revocationBaseURL }
        if let crlPartitions { configuration.crlPartitions = crlPartitions }
        if noRegistryMigrate { configuration.registryMigrate = false }
        if let registry { configuration.registryURL = registry }
        if let registryPasswordFile { configuration.registryPasswordFile = registryPasswordFile }
        if let mosquittoDir {
            var sync = configuration.mosquitto ?? MosquittoSyncConfiguration(directory: mosquittoDir)
            sync.directory = URL(fileURLWithPath: mosquittoDir).standardizedFileURL.path
            configuration.mosquitto = sync
        }
        if let mosquittoPidFile {
            guard configuration.mosquitto != nil else { throw CLIError("--mosquitto-pid-file needs --mosquitto-dir") }
            configuration.mosquitto?.pidFile = mosquittoPidFile
        }
        if let mosquittoPort {
            guard configuration.mosquitto != nil else { throw CLIError("--mosquitto-port needs --mosquitto-dir") }
            configuration.mosquitto?.port = mosquittoPort
        }
        if !mosquittoBrokerName.isEmpty {
            guard configuration.mosquitto != nil else {
                throw CLIError("--mosquitto-broker-name needs --mosquitto-dir")
            }
            configuration.mosquitto?.brokerNames = mosquittoBrokerName
        }
        if let rabbitmqManagementURL {
            // The user and password from the environment or file, as with a URL from there.
            let login = configuration.rabbitMQManagementLogin
            configuration.rabbitMQManagement = RabbitMQManagement(
                url: rabbitmqManagementURL, user: login.user, password: login.password)
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else { throw CLIError("unknown log level \(logLevel)") }
            configuration.logLevel = level
        }
        return configuration
    }

    static func printBanner(app: DevIDServerApp, configuration: ServerConfiguration, configFile: String?) {
        let report = app.firstStart
        let data = configuration.dataDirectory
        print("DevID \(report.isEmpty ? "starting" : "first start") in \(data)")
        print("  root certificate: \(data)/ca/root.crt   (trust anchor for devices and relying parties)")
        if let rootKey = report.rootKeyPath {
            print("  root key:         \(rootKey)   (encrypted; the server never needs it day to day: move it offline)")
        }
        if let token = report.adminToken, let path = report.adminTokenPath {
            print("  admin token:      \(token)")
            print("                    shown once; the registry keeps only its hash. A 0600 copy for the local CLI")
            print("                    is in \(path): delete it in production and use DEVID_ADMIN_TOKEN.")
        } else {
            print("  admin token:      created on first start (local CLI copy: \(configuration.devAdminTokenPath))")
        }
        if let generated = report.generatedPassphrasePath {
            print("  CA passphrase:    dev mode: generated into \(generated) (0600).")
            print("                    In production set DEVID_CA_PASSPHRASE or DEVID_CA_PASSPHRASE_FILE.")
        }
        print("  config:           \(configFile ?? "no file (defaults, DEVID_* environment, flags)"); see docs/configuration.md")
        fflush(nil)
    }
}
