public import DevIDCore
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
    /// The LDevID profile: lifetime, backdate, allowed keys, new key on re-enrollment.
    public var ldevidPolicy: ProfilePolicy = .ldevid
    /// Seconds a parked (manual-approval) device is told to wait before retrying.
    public var approvalRetryAfterSeconds: Int = 60
    /// How often superseded credentials are checked for revocation.
    public var rotationSweepInterval: Int = 60
    /// A device not seen for this long counts as unreachable in rotation progress.
    public var unreachableAfter: TimeInterval = 3 * 86_400

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
}

extension ServerConfiguration: CustomStringConvertible {
    /// Never shows the passphrase.
    public var description: String {
        "ServerConfiguration(dataDirectory: \(dataDirectory), trustDomain: \(trustDomain), est: \(estHost):\(estPort), "
            + "ops: \(opsHost):\(opsPort), passphrase: \(caPassphrase == nil ? "unset" : "<redacted>"))"
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
