public import Configuration
import DevIDCore
public import DevIDStore
import Foundation
import Logging
import SystemPackage

extension ServerConfiguration {
    /// Reads the configuration from a `ConfigReader`.
    ///
    /// Keys (JSON file key → environment variable):
    /// - `data.dir` → `DEVID_DATA_DIR` (default `./devid-data`)
    /// - `trust.domain` → `DEVID_TRUST_DOMAIN` (default `devid.local`)
    /// - `est.host`, `est.port` → `DEVID_EST_HOST`, `DEVID_EST_PORT` (default `127.0.0.1`, `8443`)
    /// - `ops.host`, `ops.port` → `DEVID_OPS_HOST`, `DEVID_OPS_PORT` (default `127.0.0.1`, `8080`)
    /// - `server.names` → `DEVID_SERVER_NAMES` (comma-separated; extra SANs for the server certificate)
    /// - `log.level` → `DEVID_LOG_LEVEL` (`trace` … `critical`, default `info`)
    /// - `ca.passphrase.file` → `DEVID_CA_PASSPHRASE_FILE`
    /// - `ca.passphrase` → `DEVID_CA_PASSPHRASE` (secret)
    /// - `keys.pbkdf2.rounds` → `DEVID_KEYS_PBKDF2_ROUNDS` (default 100000)
    /// - `est.max.body.bytes` → `DEVID_EST_MAX_BODY_BYTES` (default 65536)
    /// - `listener.handshake.timeout.seconds` → `DEVID_LISTENER_HANDSHAKE_TIMEOUT_SECONDS` (default 10; mTLS listener)
    /// - `listener.idle.timeout.seconds` → `DEVID_LISTENER_IDLE_TIMEOUT_SECONDS` (default 60; both listeners)
    /// - `listener.max.connections` → `DEVID_LISTENER_MAX_CONNECTIONS` (default 4096 per listener; 0 = no cap)
    /// - `listener.max.connections.per.address` → `DEVID_LISTENER_MAX_CONNECTIONS_PER_ADDRESS` (default 256; 0 = no cap)
    /// - `ops.max.body.bytes` → `DEVID_OPS_MAX_BODY_BYTES` (default 2097152)
    /// - `limits.*` → `DEVID_LIMITS_*`: back-pressure, listed at ``RateLimits/init(reader:)``
    /// - `ldevid.lifetime.days` → `DEVID_LDEVID_LIFETIME_DAYS` (default 30)
    /// - `ldevid.backdate.seconds` → `DEVID_LDEVID_BACKDATE_SECONDS` (default 300)
    /// - `ldevid.require.new.key` → `DEVID_LDEVID_REQUIRE_NEW_KEY` (default true)
    /// - `est.approval.retry.after.seconds` → `DEVID_EST_APPROVAL_RETRY_AFTER_SECONDS` (default 60)
    /// - `registry.migrate` → `DEVID_REGISTRY_MIGRATE` (default true: run pending schema migrations at start)
    /// - `registry.url` (or `registry`) → `DEVID_REGISTRY_URL` or `DEVID_REGISTRY`: a PostgreSQL registry
    ///   (`postgres://USER@HOST:PORT/DATABASE[?sslmode=disable|require|verify-full&sslrootcert=PATH]`); unset: SQLite
    /// - `registry.password.file` → `DEVID_REGISTRY_PASSWORD_FILE`; `registry.password` → `DEVID_REGISTRY_PASSWORD` (secret)
    /// - `ldevid.renewal.fraction` → `DEVID_LDEVID_RENEWAL_FRACTION` (default 0.6667: renew at 2/3 of the lifetime)
    /// - `ldevid.jitter.fraction` → `DEVID_LDEVID_JITTER_FRACTION` (default 0.1: ±10 % of the renewal window)
    /// - `ldevid.overlap.hours` → `DEVID_LDEVID_OVERLAP_HOURS` (default 168 = 7 days)
    /// - `ldevid.confidence.minutes` → `DEVID_LDEVID_CONFIDENCE_MINUTES` (default 60)
    /// - `ldevid.grace.days` → `DEVID_LDEVID_GRACE_DAYS` (default 30)
    /// - `ldevid.max.skew.seconds` → `DEVID_LDEVID_MAX_SKEW_SECONDS` (default 300)
    /// - `rotation.sweep.seconds` → `DEVID_ROTATION_SWEEP_SECONDS` (default 60)
    /// - `rotation.unreachable.hours` → `DEVID_ROTATION_UNREACHABLE_HOURS` (default 72)
    /// - `health.<threshold>` → `DEVID_HEALTH_<THRESHOLD>`: the anomaly checks' thresholds, named in
    ///   ``HealthThresholds/names`` with dots for underscores (`health.expiry.wave.percent`)
    /// - `revocation.base.url` → `DEVID_REVOCATION_BASE_URL` (default `http://<ops host>:<ops port>` as bound)
    /// - `crl.validity.hours` → `DEVID_CRL_VALIDITY_HOURS` (default 24; re-signed at half)
    /// - `crl.partitions` → `DEVID_CRL_PARTITIONS` (default 1)
    /// - `crl.max.bytes` → `DEVID_CRL_MAX_BYTES` (default 1000000)
    /// - `ocsp.validity.minutes` → `DEVID_OCSP_VALIDITY_MINUTES` (default 60)
    /// - `ocsp.signer.lifetime.hours` → `DEVID_OCSP_SIGNER_LIFETIME_HOURS` (default 48)
    /// - `mosquitto.dir`, `mosquitto.pid.file`, `mosquitto.port`, `mosquitto.bind`, `mosquitto.broker.names` →
    ///   `DEVID_MOSQUITTO_DIR`, … (Mosquitto sync; off unless the directory is set)
    /// - `rabbitmq.management.url`, `.user`, `.password` (secret), `.password.file` → `DEVID_RABBITMQ_MANAGEMENT_URL`, …
    public init(reader: ConfigReader) {
        self.init()
        dataDirectory = reader.string(forKey: "data.dir", default: dataDirectory)
        trustDomain = reader.string(forKey: "trust.domain", default: trustDomain)
        estHost = reader.string(forKey: "est.host", default: estHost)
        estPort = reader.int(forKey: "est.port", default: estPort)
        opsHost = reader.string(forKey: "ops.host", default: opsHost)
        opsPort = reader.int(forKey: "ops.port", default: opsPort)
        serverNames = reader.stringArray(forKey: "server.names", default: serverNames)
        if let level = reader.string(forKey: "log.level").flatMap(Logger.Level.init(rawValue:)) {
            logLevel = level
        }
        caPassphraseFile = reader.string(forKey: "ca.passphrase.file")
        caPassphrase = reader.string(forKey: "ca.passphrase", isSecret: true)
        keyEncryptionRounds = reader.int(forKey: "keys.pbkdf2.rounds", default: keyEncryptionRounds)
        maxRequestBodyBytes = reader.int(forKey: "est.max.body.bytes", default: maxRequestBodyBytes)
        var limits = connectionLimits
        limits.handshakeTimeoutSeconds = reader.double(
            forKey: "listener.handshake.timeout.seconds", default: limits.handshakeTimeoutSeconds)
        limits.idleTimeoutSeconds = reader.double(forKey: "listener.idle.timeout.seconds", default: limits.idleTimeoutSeconds)
        limits.maxConnections = reader.int(forKey: "listener.max.connections", default: limits.maxConnections)
        limits.maxConnectionsPerAddress = reader.int(
            forKey: "listener.max.connections.per.address", default: limits.maxConnectionsPerAddress)
        limits.opsMaxBodyBytes = reader.int(forKey: "ops.max.body.bytes", default: limits.opsMaxBodyBytes)
        connectionLimits = limits
        rateLimits = RateLimits(reader: reader)
        if let days = reader.double(forKey: "ldevid.lifetime.days") { ldevidPolicy.lifetime = days * 86_400 }
        ldevidPolicy.backdate = Double(reader.int(forKey: "ldevid.backdate.seconds", default: Int(ldevidPolicy.backdate)))
        ldevidPolicy.requireNewKeyOnReenroll = reader.bool(
            forKey: "ldevid.require.new.key", default: ldevidPolicy.requireNewKeyOnReenroll)
        registryMigrate = reader.bool(forKey: "registry.migrate", default: registryMigrate)
        registryURL = reader.string(forKey: "registry.url") ?? reader.string(forKey: "registry")
        registryPasswordFile = reader.string(forKey: "registry.password.file")
        registryPassword = reader.string(forKey: "registry.password", isSecret: true)
        approvalRetryAfterSeconds = reader.int(
            forKey: "est.approval.retry.after.seconds", default: approvalRetryAfterSeconds)
        var rotation = ldevidPolicy.rotation
        rotation.renewalFraction = reader.double(forKey: "ldevid.renewal.fraction", default: rotation.renewalFraction)
        rotation.jitterFraction = reader.double(forKey: "ldevid.jitter.fraction", default: rotation.jitterFraction)
        if let hours = reader.double(forKey: "ldevid.overlap.hours") { rotation.overlap = hours * 3_600 }
        if let minutes = reader.double(forKey: "ldevid.confidence.minutes") { rotation.confidence = minutes * 60 }
        if let days = reader.double(forKey: "ldevid.grace.days") { rotation.grace = days * 86_400 }
        if let seconds = reader.double(forKey: "ldevid.max.skew.seconds") { rotation.maxClockSkew = seconds }
        ldevidPolicy.rotation = rotation
        rotationSweepInterval = max(1, reader.int(forKey: "rotation.sweep.seconds", default: rotationSweepInterval))
        if let hours = reader.double(forKey: "rotation.unreachable.hours") { unreachableAfter = hours * 3_600 }
        for (name, keyPath) in HealthThresholds.names {
            let key = "health." + name.replacingOccurrences(of: "_", with: ".")
            if let value = reader.double(forKey: ConfigKey(key)), value.isFinite, value >= 0 {
                healthThresholds[keyPath: keyPath] = value
            }
        }
        revocationBaseURL = reader.string(forKey: "revocation.base.url")
        if let hours = reader.double(forKey: "crl.validity.hours") { crlValidity = hours * 3_600 }
        crlPartitions = reader.int(forKey: "crl.partitions", default: crlPartitions)
        crlMaximumBytes = reader.int(forKey: "crl.max.bytes", default: crlMaximumBytes)
        if let minutes = reader.double(forKey: "ocsp.validity.minutes") { ocspValidity = minutes * 60 }
        if let hours = reader.double(forKey: "ocsp.signer.lifetime.hours") { ocspSignerLifetime = hours * 3_600 }
        if let directory = reader.string(forKey: "mosquitto.dir") {
            var sync = MosquittoSyncConfiguration(directory: directory)
            sync.pidFile = reader.string(forKey: "mosquitto.pid.file")
            sync.port = reader.int(forKey: "mosquitto.port", default: sync.port)
            sync.bindAddress = reader.string(forKey: "mosquitto.bind", default: sync.bindAddress)
            sync.brokerNames = reader.stringArray(forKey: "mosquitto.broker.names", default: sync.brokerNames)
            mosquitto = sync
        }
        var password = reader.string(forKey: "rabbitmq.management.password", isSecret: true) ?? ""
        if password.isEmpty, let file = reader.string(forKey: "rabbitmq.management.password.file"),
            let data = FileManager.default.contents(atPath: file)
        {
            password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        rabbitMQManagementLogin = RabbitMQLogin(
            user: reader.string(forKey: "rabbitmq.management.user", default: "guest"), password: password)
        if let url = reader.string(forKey: "rabbitmq.management.url") {
            rabbitMQManagement = RabbitMQManagement(
                url: url, user: rabbitMQManagementLogin.user, password: rabbitMQManagementLogin.password)
        }
    }

    /// Environment variables over the optional JSON file over defaults. Flags are applied by the caller on top.
    public static func load(
        configFile: String?, environment: [String: String]? = nil
    ) async throws -> ServerConfiguration {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(
                environmentVariables: environment ?? ProcessInfo.processInfo.environment,
                secretsSpecifier: .specific([
                    "DEVID_CA_PASSPHRASE", "DEVID_ADMIN_TOKEN", "DEVID_RABBITMQ_MANAGEMENT_PASSWORD",
                    "DEVID_REGISTRY_PASSWORD",
                ])
            ).prefixKeys(with: "devid")
        ]
        if let configFile {
            providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(configFile)))
        }
        return ServerConfiguration(reader: ConfigReader(providers: providers))
    }
}

extension ServerConfiguration {
    /// The PostgreSQL registry ``registryURL`` names, with its password from ``registryPasswordFile`` (first line) or
    /// ``registryPassword``; nil for the SQLite registry. Each refusal is one line that shows no password.
    public func registryLocation() throws -> PostgresStore.Location? {
        guard let url = registryURL, !url.isEmpty else { return nil }
        var password = registryPassword
        if let file = registryPasswordFile {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw StoreError(.unavailable, "cannot read the registry password file \(file)")
            }
            let first = String(decoding: contents, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                .first.map(String.init) ?? ""
            guard !first.isEmpty else { throw StoreError(.unavailable, "the registry password file \(file) is empty") }
            password = first
        }
        return try PostgresStore.Location(url: url, password: password)
    }
}
