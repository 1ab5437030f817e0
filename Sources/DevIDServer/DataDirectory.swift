import Crypto
public import DevIDCore
import DevIDPKCS11
public import DevIDPKI
public import DevIDStore
import Foundation
public import Logging
public import X509

/// What the first start (or `devid ca init`) created, for the operator to read once.
public struct FirstStartReport: Sendable, Hashable {
    public var createdHierarchy: Bool
    public var rootCertificatePath: String?
    public var rootKeyPath: String?
    /// The admin token in clear: shown once, stored only as a hash in the registry (and, in dev mode, in a
    /// 0600 file so the CLI on this machine can find it).
    public var adminToken: String?
    public var adminTokenPath: String?
    /// Set when DevID generated the CA passphrase itself (dev mode).
    public var generatedPassphrasePath: String?

    public var isEmpty: Bool { !createdHierarchy && adminToken == nil && generatedPassphrasePath == nil }
}

/// Prepares a data directory: passphrase, CA hierarchy, registry, first admin token.
public enum DataDirectory {
    public struct Prepared: Sendable {
        public let hierarchy: CAHierarchy
        public let store: any Store
        public let report: FirstStartReport
    }

    /// Creates whatever is missing and loads the rest.
    public static func prepare(
        configuration: ServerConfiguration,
        initOptions: CAInitOptions? = nil,
        clock: any WallClock,
        logger: Logger
    ) async throws -> Prepared {
        var report = FirstStartReport(createdHierarchy: false)
        try SecureFile.createDirectory(configuration.dataDirectory)
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, generatedPath) = try resolvePassphrase(configuration, creating: !layout.isInitialized)
        report.generatedPassphrasePath = generatedPath

        // The audit chain's key lives in secrets/, never in the registry (see AuditSecret). Servers sharing a
        // PostgreSQL registry share it too: they extend one chain.
        let (auditSecret, createdAuditKey) = try AuditSecret.load(configuration, creating: true)
        if createdAuditKey {
            logger.notice("created audit key", metadata: ["path": "\(AuditSecret.path(configuration))"])
        }
        let store = try await openRegistry(configuration, auditKey: auditSecret.chainKey, logger: logger)
        let hierarchy: CAHierarchy
        if layout.isInitialized {
            try await upgrade(layout: layout, passphrase: passphrase, configuration: configuration, store: store,
                clock: clock, logger: logger)
            hierarchy = try CAStore.load(layout: layout, passphrase: passphrase)
        } else {
            var options = initOptions ?? CAInitOptions(trustDomain: configuration.trustDomain)
            if initOptions == nil { options.serverNames = configuration.serverNames }
            options.keyEncryptionRounds = configuration.keyEncryptionRounds
            if options.revocationBaseURL == nil { options.revocationBaseURL = configuration.caRevocationBaseURL }
            let created = try CAStore.initialize(layout: layout, options: options, passphrase: passphrase, now: clock.now())
            hierarchy = created.hierarchy
            report.createdHierarchy = true
            report.rootCertificatePath = layout.rootCertificate
            report.rootKeyPath = created.rootKeyPath
            try await store.appendAudit(
                AuditEvent(
                    time: clock.now(), actor: "system", action: "ca.init", outcome: .success,
                    reason: "created CA hierarchy for trust domain \(options.trustDomain)"))
            logger.info(
                "created CA hierarchy",
                metadata: ["trust_domain": "\(options.trustDomain)", "root": "\(hierarchy.root.sha256Fingerprint)"])
        }
        if try await store.adminTokens().isEmpty {
            let token = AdminTokens.generate()
            try await store.insertAdminToken(
                AdminToken(id: token.id, name: "bootstrap", secretHash: token.hash, role: .admin, createdAt: clock.now()),
                audit: AuditEvent(
                    time: clock.now(), actor: "system", action: "admin.token.create", outcome: .success,
                    reason: "created admin token \(token.id) (bootstrap, role admin)"))
            try SecureFile.createDirectory(configuration.secretsDirectory)
            try SecureFile.write(Array(token.secret.utf8), to: configuration.devAdminTokenPath, mode: 0o600)
            report.adminToken = token.secret
            report.adminTokenPath = configuration.devAdminTokenPath
        }
        return Prepared(hierarchy: hierarchy, store: store, report: report)
    }

    /// The registry `configuration` names: PostgreSQL at ``ServerConfiguration/registryURL``, else SQLite in the data
    /// directory (created 0600 first: it holds token hashes and the audit trail, and SQLite gives its -wal and -shm
    /// files the database file's mode).
    public static func openRegistry(
        _ configuration: ServerConfiguration, auditKey: AuditKey?, logger: Logger
    ) async throws -> any Store {
        if let location = try configuration.registryLocation() {
            return try await PostgresStore.open(
                location, auditKey: auditKey, migrate: configuration.registryMigrate, jobs: true,
                logger: Logger(label: "devid.registry"))
        }
        if !FileManager.default.fileExists(atPath: configuration.databasePath) {
            try SecureFile.write([], to: configuration.databasePath, mode: 0o600)
        }
        return try SQLiteStore(
            path: configuration.databasePath, auditKey: auditKey, migrate: configuration.registryMigrate)
    }

    /// Brings a hierarchy of an earlier DevID up to date (``CAStore/upgrade(layout:passphrase:now:keyEncryptionRounds:)``)
    /// and audits what changed: the services CA created from the root key in the data directory, the listener
    /// certificate re-issued with id-kp-cmcRA. Without the root key, warns that broker certificates need
    /// `devid ca init-services`.
    static func upgrade(
        layout: CALayout, passphrase: [UInt8], configuration: ServerConfiguration, store: any Store,
        clock: any WallClock, logger: Logger
    ) async throws {
        let upgrade = try CAStore.upgrade(
            layout: layout, passphrase: passphrase, now: clock.now(),
            keyEncryptionRounds: configuration.keyEncryptionRounds)
        if upgrade.createdServicesCA {
            try await store.appendAudit(
                AuditEvent(
                    time: clock.now(), actor: "system", action: "ca.services.init", outcome: .success,
                    reason: "created the services CA for broker certificates from the root key in the data directory"))
            logger.notice("created the services CA", metadata: ["path": "\(layout.servicesCertificate)"])
        } else if FileManager.default.fileExists(atPath: layout.servicesCertificate),
            try await store.auditEvents(AuditFilter(action: "ca.services.init", limit: 1)).isEmpty
        {
            // `devid ca init-services` works offline on the files; the trail records the CA at the next start.
            try await store.appendAudit(
                AuditEvent(
                    time: clock.now(), actor: "system", action: "ca.services.init", outcome: .success,
                    reason: "found the services CA created by `devid ca init-services`"))
        }
        if upgrade.reissuedServerCertificate {
            try await store.appendAudit(
                AuditEvent(
                    time: clock.now(), actor: "system", action: "ca.server.reissue", outcome: .success,
                    reason: "re-issued the listener certificate with id-kp-cmcRA, the EST server's mark"))
            logger.notice("re-issued the listener certificate", metadata: ["path": "\(layout.serverCertificate)"])
        }
        if upgrade.servicesCAMissing {
            logger.warning("\(CAHierarchy.noServicesCA)")
        }
    }

    /// `devid ca init-services`: creates the services CA of an existing hierarchy with the root key at `rootKeyPath`
    /// (encrypted with the CA passphrase). The running server picks it up at its next start.
    public static func createServicesCA(
        configuration: ServerConfiguration, rootKeyPath: String?, clock: any WallClock
    ) throws -> CertificateAuthority {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        return try CAStore.createServicesCA(
            layout: layout, rootKeyPath: rootKeyPath ?? layout.rootKey, passphrase: passphrase, now: clock.now(),
            keyEncryptionRounds: configuration.keyEncryptionRounds)
    }

    /// The key file of a CA role (`root`, `issuing`, `services`, `manufacturer`, and `root<id>`,
    /// `issuing<id>`, `manufacturer<id>` for later CAs) in the data directory; nil for an unknown role.
    public static func keyPath(role: String, layout: CALayout) -> String? {
        switch role {
        case "root": return layout.rootKey
        case "issuing": return layout.issuingKey
        case "services": return layout.servicesKey
        case "manufacturer": return layout.manufacturerKey
        default:
            for (prefix, path) in [
                ("root", layout.rootKey(id:)), ("issuing", layout.issuingKey(id:)), ("manufacturer", layout.manufacturerKey(id:)),
            ] as [(String, (Int) -> String)] {
                if role.hasPrefix(prefix), let id = Int(role.dropFirst(prefix.count)), id > 1 { return path(id) }
            }
            return nil
        }
    }

    /// `devid ca import-key ROLE --to TOKEN-URI`: moves the role's encrypted key file into the token (object named
    /// after the role), checks it there and removes the file from the data directory. Returns the key's URI and the
    /// removed file. The server uses the token from its next start.
    public static func importKey(
        configuration: ServerConfiguration, role: String, token: String
    ) throws -> (uri: String, removed: String) {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        guard let path = keyPath(role: role, layout: layout) ?? (role == "server-tls" ? layout.serverKey : nil) else {
            throw DevIDPKIError(
                .notFound, "unknown key role \(role): root, issuing, services, manufacturer, server-tls, issuing<id>, ...")
        }
        guard role != "server-tls" else {
            // The listeners' key is no CA key: it moves to memory (a new one at every start), not into the token.
            try CAStore.moveListenerKeyToMemory(layout: layout)
            return ("memory (a new key at every start of devid serve)", layout.serverKey)
        }
        let uri: PKCS11URI
        do { uri = try PKCS11URI(token).tokenURI } catch { throw DevIDPKIError(error) }
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        guard CAKeys.exists(path) else { throw DevIDPKIError(.notFound, "no \(role) key in \(layout.dataDirectory)") }
        let imported = try CAKeys.importKey(path, token: uri, label: role, passphrase: passphrase)
        return (imported.description, path)
    }

    /// `devid ca root-crl`: signs `count` more root CRLs with the root key (default `DATA/ca/root.key`).
    /// `revokedIssuing` are issuing CAs the root revokes (from the registry): a CA no CRL lists yet makes the new
    /// series start now (``RootCRLs/sign(root:revoked:count:now:directory:)``).
    public static func signRootCRLs(
        configuration: ServerConfiguration, rootKeyPath: String?, count: Int, clock: any WallClock,
        revokedIssuing: [IssuingCA] = []
    ) throws -> RootCRLs {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        let revoked = revokedIssuing.filter { $0.state == .revoked }.compactMap { ca -> RevokedEntry? in
            guard let serial = SerialNumber(rawValue: ca.serial) else { return nil }
            return RevokedEntry(
                serial: serial, revokedAt: ca.stateChangedAt,
                reason: ca.revocationReason.flatMap(RevocationReason.init(rawValue:)) ?? .unspecified)
        }
        return try CAStore.signRootCRLs(
            layout: layout, rootKeyPath: rootKeyPath ?? layout.rootKey, passphrase: passphrase, count: count,
            now: clock.now(), revoked: revoked)
    }

    /// `devid ca root prepare`: a new root with cross-certificates to and from the active root, whose key is at
    /// `rootKeyPath` (default `DATA/ca/root.key`); the new root's key goes to `newRootKeyOut` or
    /// `DATA/ca/roots/<id>.key`. Returns the new root's id.
    public static func prepareRoot(
        configuration: ServerConfiguration, rootKeyPath: String?, newRootKeyOut: String?, clock: any WallClock
    ) throws -> Int {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        return try CAStore.prepareRoot(
            layout: layout, rootKeyPath: rootKeyPath ?? layout.rootKey, passphrase: passphrase, now: clock.now(),
            newRootKeyOut: newRootKeyOut, keyEncryptionRounds: configuration.keyEncryptionRounds
        ).id
    }

    /// `devid ca manufacturer prepare|activate|distrust`, and the list: DevID's own manufacturer CAs.
    public enum ManufacturerAction: Sendable { case list, prepare, activate(Int), distrust(Int) }

    /// Runs `action` on the data directory; returns each own manufacturer CA with its state (`active`, `trusted`
    /// or `distrusted`), by id.
    public static func manufacturers(
        configuration: ServerConfiguration, _ action: ManufacturerAction, clock: any WallClock
    ) throws -> [(id: Int, state: String, certificate: X509.Certificate)] {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        switch action {
        case .list: break
        case .prepare:
            _ = try CAStore.prepareManufacturer(
                layout: layout, passphrase: passphrase, now: clock.now(),
                keyEncryptionRounds: configuration.keyEncryptionRounds)
        case .activate(let id): try CAStore.activateManufacturer(layout: layout, id: id, passphrase: passphrase)
        case .distrust(let id): try CAStore.distrustManufacturer(layout: layout, id: id, passphrase: passphrase)
        }
        let own = try CAStore.loadOwnManufacturers(layout: layout, passphrase: passphrase)
        return own.cas.keys.sorted().compactMap { id in
            guard let ca = own.cas[id] else { return nil }
            let trusted = FileManager.default.fileExists(atPath: layout.trustedOwnManufacturer(id: id))
            let state = own.state.active == id ? "active" : trusted ? "trusted" : "distrusted"
            return (id, state, ca.certificate)
        }
    }

    /// `devid ca issuing prepare`: a new issuing CA signed with the root key (default `DATA/ca/root.key`), written
    /// to `DATA/ca/issuing/<id>.crt` and `.key`; the server records it as `prepared` when told (`register`).
    public static func prepareIssuingCA(
        configuration: ServerConfiguration, rootKeyPath: String?, clock: any WallClock
    ) throws -> IssuingAuthority {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        return try CAStore.prepareIssuing(
            layout: layout, rootKeyPath: rootKeyPath ?? layout.rootKey, passphrase: passphrase, now: clock.now(),
            keyEncryptionRounds: configuration.keyEncryptionRounds)
    }

    /// Loads an existing hierarchy with the configured passphrase (for local tools such as `devid factory mint`).
    public static func loadHierarchy(configuration: ServerConfiguration) throws -> CAHierarchy {
        let layout = CALayout(dataDirectory: configuration.dataDirectory)
        let (passphrase, _) = try resolvePassphrase(configuration, creating: false)
        return try CAStore.load(layout: layout, passphrase: passphrase)
    }

    /// The CA passphrase: `DEVID_CA_PASSPHRASE`, else the passphrase file, else the dev-mode file (generated when
    /// the hierarchy is about to be created). Returns the path when it generated one.
    static func resolvePassphrase(_ configuration: ServerConfiguration, creating: Bool) throws -> ([UInt8], String?) {
        if let passphrase = configuration.caPassphrase, !passphrase.isEmpty {
            return (Array(passphrase.utf8), nil)
        }
        if let file = configuration.caPassphraseFile {
            return (try readPassphrase(file), nil)
        }
        let devPath = configuration.devPassphrasePath
        if FileManager.default.fileExists(atPath: devPath) {
            return (try readPassphrase(devPath), nil)
        }
        guard creating else {
            throw DevIDPKIError(
                .wrongPassphrase,
                "no CA passphrase: set DEVID_CA_PASSPHRASE or DEVID_CA_PASSPHRASE_FILE (or restore \(devPath))")
        }
        var generator = SystemRandomNumberGenerator()
        let secret = Data((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }).base64EncodedString()
        try SecureFile.createDirectory(configuration.secretsDirectory)
        try SecureFile.write(Array(secret.utf8), to: devPath, mode: 0o600)
        return (Array(secret.utf8), devPath)
    }

    static func readPassphrase(_ path: String) throws -> [UInt8] {
        var bytes = try SecureFile.read(path)
        while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard !bytes.isEmpty else { throw DevIDPKIError(.wrongPassphrase, "passphrase file \(path) is empty") }
        return bytes
    }
}

/// Admin bearer tokens: `devid_<id>_<secret>`; only SHA-256 of the whole token is stored.
public enum AdminTokens {
    public struct Generated: Sendable {
        public let id: String
        public let secret: String
        public let hash: String
    }

    public static func generate() -> Generated {
        let id = randomBase32(8)
        let secret = "devid_adm_\(id)_\(randomBase32(32))"
        return Generated(id: id, secret: secret, hash: hash(secret))
    }

    public static func hash(_ secret: String) -> String {
        Hex.encode(SHA256.hash(data: Array(secret.utf8)))
    }

    /// Lowercase base32 (RFC 4648 alphabet) of `count` characters, 5 random bits each.
    static func randomBase32(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var generator = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in alphabet[Int.random(in: 0..<32, using: &generator)] })
    }
}
