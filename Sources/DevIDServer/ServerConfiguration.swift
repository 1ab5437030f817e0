public import DevIDCore
import DevIDStore
public import Foundation
public import Logging

/// Everything `devid serve` can be told. Defaults make a zero-config development server.
///
/// Sources, highest precedence first: command-line flags, environment variables (`DEVID_*`), the JSON config
/// file, these defaults. See `ServerConfiguration+ConfigReader.swift` for the keys and `docs/configuration.md`.
public struct ServerConfiguration: Sendable, Hashable {
    /// Where the CA hierarchy, the registry and the secrets live.
    public var dataDirectory: String = "./devid-data"
    /// The SPIFFE trust domain written into LDevIDs (used when the CA hierarchy is created).
    public var trustDomain: String = "devid.local"
    /// The EST / mTLS listener.
    public var estHost: String = "127.0.0.1"
    public var estPort: Int = 8443
    /// The operations listener: admin API, health (later metrics, CRL, OCSP, dashboard).
    public var opsHost: String = "127.0.0.1"
    public var opsPort: Int = 8080
    /// Extra names for the server certificate (created at CA init).
    public var serverNames: [String] = []
    public var logLevel: Logger.Level = .info
    /// File holding the CA key passphrase. When neither this nor `DEVID_CA_PASSPHRASE` is set, DevID runs in dev
    /// mode: it generates a random passphrase into `DATA/secrets/ca-passphrase` (0600) and says so.
    public var caPassphraseFile: String?
    /// The CA key passphrase itself (from `DEVID_CA_PASSPHRASE`); a secret, never logged.
    public var caPassphrase: String?
    /// PBKDF2 rounds for encrypting key files.
    public var keyEncryptionRounds: Int = 100_000
    /// Largest request body accepted on the EST listener, in bytes.
    public var maxRequestBodyBytes: Int = 64 * 1024
    /// Handshake and idle timeouts, connection caps and the operations body cap (docs/operations.md).
    public var connectionLimits = ConnectionLimits()
    /// Token buckets and the cap on enrollments in flight (docs/operations.md, "Back-pressure").
    public var rateLimits = RateLimits()
    /// The LDevID profile: lifetime, backdate, allowed keys, new key on re-enrollment.
    public var ldevidPolicy: ProfilePolicy = .ldevid
    /// Seconds a parked (manual-approval) device is told to wait before retrying.
    public var approvalRetryAfterSeconds: Int = 60
    /// Run the registry's pending schema migrations at start (`registry.migrate`); when false, a registry that needs
    /// one refuses to start until `devid registry migrate` ran (several servers on one registry: migrate once).
    public var registryMigrate = true
    /// The shared registry of several servers: `postgres://USER@HOST:PORT/DATABASE[?sslmode=...]` (`registry.url`,
    /// `DEVID_REGISTRY`, `--registry`). Nil: the embedded SQLite registry in the data directory.
    public var registryURL: String?
    /// The file holding the registry's password, first line (`registry.password.file`, `DEVID_REGISTRY_PASSWORD_FILE`).
    public var registryPasswordFile: String?
    /// The registry's password itself (`DEVID_REGISTRY_PASSWORD`, secret); the file wins when both are set.
    public var registryPassword: String?
    /// How often superseded credentials are checked for revocation.
    public var rotationSweepInterval: Int = 60
    /// A device not seen for this long counts as unreachable in rotation progress.
    public var unreachableAfter: TimeInterval = 3 * 86_400
    /// The anomaly checks' thresholds (`health.*`).
    public var healthThresholds = HealthThresholds()
    /// The base URL of the CRLs and the OCSP responder, written into every certificate DevID issues (CRL
    /// Distribution Points, Authority Information Access). Nil: `http://<ops host>:<ops port>` as bound.
    public var revocationBaseURL: String?
    /// A CRL's validity (nextUpdate - thisUpdate). CRLs are re-signed at half of it, and within a second of a
    /// revocation.
    public var crlValidity: TimeInterval = 86_400
    /// How many CRL partitions the issuing CA's certificates are spread over (1: one complete CRL). Fixed at
    /// issuance in each LDevID's CRL Distribution Point; size it so no partition exceeds `crlMaximumBytes`.
    public var crlPartitions: Int = 1
    /// The largest CRL DevID publishes as one file; the complete CRL of a partitioned CA is not served above it.
    public var crlMaximumBytes: Int = 1_000_000
    /// How long an OCSP response is valid (nextUpdate - thisUpdate), and cached by DevID until a revocation.
    public var ocspValidity: TimeInterval = 3_600
    /// Lifetime of the delegated OCSP signing certificate; a new one is issued when less than half remains.
    public var ocspSignerLifetime: TimeInterval = 2 * 86_400
    /// Revocations within this window are published by one CRL rebuild (at most one second in total).
    public var revocationCoalesceMilliseconds: Int = 200
    /// Keep a Mosquitto broker's files (CA bundle, CRLs, ACL, listener block) in this directory and reload it on
    /// every change (`--mosquitto-dir`, `--mosquitto-pid-file`). Nil: no Mosquitto sync.
    public var mosquitto: MosquittoSyncConfiguration?
    /// Close a revoked or suspended device's RabbitMQ connections through this management API. Nil: none.
    public var rabbitMQManagement: RabbitMQManagement?
    /// The management API's user and password as the environment or file give them (`rabbitmq.management.user`,
    /// `.password`, `.password.file`), kept even without a URL there: `--rabbitmq-management-url` on the command line
    /// logs in with them. The password is a secret: never printed.
    public var rabbitMQManagementLogin = RabbitMQLogin()

    public init() {}

    /// A development preset: every default, with the data directory given.
    public static func development(dataDirectory: String) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.dataDirectory = dataDirectory
        return configuration
    }

    /// A preset for tests: ephemeral ports on loopback, fast key encryption.
    public static func testing(dataDirectory: String) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.dataDirectory = dataDirectory
        configuration.estPort = 0
        configuration.opsPort = 0
        configuration.keyEncryptionRounds = 1_000
        configuration.logLevel = .warning
        return configuration
    }

    public var databasePath: String { dataDirectory + "/registry.sqlite" }
    public var secretsDirectory: String { dataDirectory + "/secrets" }
    public var devPassphrasePath: String { secretsDirectory + "/ca-passphrase" }
    public var devAdminTokenPath: String { secretsDirectory + "/admin-token" }
    /// Written at start: the listeners' actual URLs, so the CLI finds a running server from `--data-dir`.
    public var endpointsPath: String { dataDirectory + "/server.json" }
    /// CRL state that must survive a restart (the last CRL number issued, the partition counts in use).
    public var crlDirectory: String { dataDirectory + "/crl" }

    /// The base URL the CA certificates made at first start name for the root's CRL: `revocation.base.url`, else
    /// the operations listener's configured address when it is a fixed one (not port 0, not a wildcard address).
    public var caRevocationBaseURL: String? {
        if let revocationBaseURL { return revocationBaseURL }
        guard opsPort > 0, !["0.0.0.0", "::", "[::]", ""].contains(opsHost) else { return nil }
        let host = opsHost.contains(":") && !opsHost.hasPrefix("[") ? "[\(opsHost)]" : opsHost
        return "http://\(host):\(opsPort)"
    }

    /// Refuses revocation settings that would publish nothing usable.
    public func validateRevocation() throws(DevIDCoreError) {
        if let url = revocationBaseURL {
            let valid = (url.hasPrefix("http://") || url.hasPrefix("https://")) && url.utf8.count > 8
                && url.utf8.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
            guard valid else {
                throw DevIDCoreError(
                    code: .invalidPolicy, reason: "revocation base URL must be http(s)://host[:port][/path], printable ASCII")
            }
        }
        guard crlValidity >= 2, ocspValidity >= 60, ocspSignerLifetime >= 3_600 else {
            throw DevIDCoreError(
                code: .invalidPolicy,
                reason: "CRL validity must be at least 2 seconds, OCSP validity a minute, the OCSP signer lifetime an hour")
        }
        guard (1...4_096).contains(crlPartitions) else {
            throw DevIDCoreError(code: .invalidPolicy, reason: "CRL partitions must be 1-4096")
        }
        guard crlMaximumBytes >= 10_000 else {
            throw DevIDCoreError(code: .invalidPolicy, reason: "the CRL size limit must be at least 10000 bytes")
        }
        guard (0...900).contains(revocationCoalesceMilliseconds) else {
            throw DevIDCoreError(code: .invalidPolicy, reason: "the revocation coalescing window must be 0-900 ms")
        }
    }
}

extension ServerConfiguration: CustomStringConvertible {
    /// Never shows the passphrase, the RabbitMQ management password or the registry's password (nor a registry URL
    /// that fails to parse: it might hold one).
    public var description: String {
        "ServerConfiguration(dataDirectory: \(dataDirectory), trustDomain: \(trustDomain), est: \(estHost):\(estPort), "
            + "ops: \(opsHost):\(opsPort), passphrase: \(caPassphrase == nil ? "unset" : "<redacted>"), "
            + "rabbitmq: \(rabbitMQManagement.map { "\($0.url) as \($0.user), password <redacted>" } ?? "none"), "
            + "registry: \(registryURL.flatMap { try? PostgresStore.Location(url: $0, password: nil).description } ?? "sqlite"))"
    }
}

/// What the CLI reads to find a running server.
public struct ServerEndpoints: Codable, Sendable, Hashable {
    public var estURL: String
    public var opsURL: String
    public var pid: Int32

    public init(estURL: String, opsURL: String, pid: Int32) {
        self.estURL = estURL
        self.opsURL = opsURL
        self.pid = pid
    }
}
