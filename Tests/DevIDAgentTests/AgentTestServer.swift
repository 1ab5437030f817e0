import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Logging
import ServiceLifecycle
import Testing
import X509

/// A real `DevIDServerApp` on loopback ephemeral ports, in a temporary data directory, with one tenant.
///
/// The shape of `Tests/DevIDServerTests/LiveServer.swift`, which this target cannot import.
final class AgentTestServer: Sendable {
    let directory: TemporaryDirectory
    let clock: ManualWallClock
    let app: DevIDServerApp
    let group: ServiceGroup
    let runTask: Task<Void, any Error>
    let estPort: Int
    let opsPort: Int
    let estHost: String
    let tenant = TenantID(rawValue: "acme")!

    var state: ServerState { app.state }
    var store: any Store { state.store }
    var hierarchy: CAHierarchy { state.hierarchy }
    var estURL: String { "https://\(estHost):\(estPort)" }
    var opsURL: String { "http://127.0.0.1:\(opsPort)" }
    /// The bootstrap admin token `devid serve` wrote on first start.
    var adminToken: String {
        ((try? String(contentsOfFile: state.configuration.devAdminTokenPath, encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
    var layout: CALayout { CALayout(dataDirectory: state.configuration.dataDirectory) }

    /// - Parameters:
    ///   - serverTLSLifetime: the lifetime of the server's TLS certificate (see ``reissueServerCertificate``).
    ///   - estHost: the address the EST listener binds (its certificate names only `localhost` and `127.0.0.1`).
    init(
        clock: ManualWallClock = ManualWallClock(Date()), policy: TenantPolicy = TenantPolicy(),
        serverTLSLifetime: TimeInterval = AgentTestServer.defaultServerTLSLifetime, estHost: String = "127.0.0.1",
        rateLimits: RateLimits = RateLimits(), idleTimeoutSeconds: Double? = nil
    ) async throws {
        directory = try TemporaryDirectory(prefix: "devid-agent-server")
        var configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
        configuration.rateLimits = rateLimits
        if let idleTimeoutSeconds { configuration.connectionLimits.idleTimeoutSeconds = idleTimeoutSeconds }
        configuration.caPassphrase = "agent-test-passphrase"
        configuration.estHost = estHost
        self.clock = clock
        self.estHost = estHost
        var logger = Logger(label: "devid-agent-test")
        logger.logLevel = .warning
        try await Self.reissueServerCertificate(
            lifetime: serverTLSLifetime, configuration: configuration, clock: clock, logger: logger)
        app = try await DevIDServerApp(configuration: configuration, clock: clock, logger: logger)
        group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let group = self.group
        runTask = Task { try await group.run() }
        let ports = await app.waitUntilRunning()
        estPort = ports.est
        opsPort = ports.ops
        try await store.createTenant(
            Tenant(id: tenant, displayName: "Acme", createdAt: clock.now(), policy: policy), audit: nil)
    }

    /// Three years: the agent validates the server's TLS certificate at the server's (virtual) time, and tests
    /// move that time a year and more on, past the one-year certificate `devid serve` creates.
    static let defaultServerTLSLifetime: TimeInterval = 3 * 365 * 86_400

    /// Creates the data directory (CA hierarchy, registry) and replaces the server's TLS certificate with one of
    /// the same key, subject and names, valid for `lifetime` from the server's time. A real server's operator renews
    /// the one-year certificate before it expires; this server cannot during a test run.
    static func reissueServerCertificate(
        lifetime: TimeInterval, configuration: ServerConfiguration, clock: ManualWallClock, logger: Logger
    ) async throws {
        let hierarchy = try await DataDirectory.prepare(configuration: configuration, clock: clock, logger: logger)
            .hierarchy
        let old = try #require(hierarchy.serverChain.first)
        let names = try old.extensions.subjectAlternativeNames.map { Array($0) } ?? []
        let profile = CertificateProfile(
            kind: .serverTLS,
            policy: ProfilePolicy(
                name: "server-tls", lifetime: lifetime, backdate: 300, allowedKeyAlgorithms: [.p256]))
        let renewed = try hierarchy.issuing.issue(
            subject: old.subject, publicKey: old.publicKey, profile: profile, subjectAlternativeNames: names,
            now: clock.now())
        try SecureFile.write(
            Array(PEM.bundle([renewed, hierarchy.issuing.certificate]).utf8),
            to: CALayout(dataDirectory: configuration.dataDirectory).serverCertificate, mode: 0o644)
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await runTask.value
        directory.remove()
    }

    /// A claim token in the registry; returns its secret. A token bound to a device needs the device registered
    /// (the store enforces it), so the device is added as `manufactured` first.
    func claimToken(device: String? = nil, uses: Int = 1) async throws -> String {
        if let device {
            try await store.insertDevice(
                Device(
                    id: DeviceID(device), tenant: tenant, hardwareSerial: "claim:\(device)", lot: nil,
                    state: .manufactured, createdAt: clock.now()),
                audit: nil)
        }
        let generated = ClaimTokens.generate()
        try await store.insertClaimToken(
            ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: tenant,
                device: device.map { DeviceID(rawValue: $0)! },
                expiresAt: clock.now().addingTimeInterval(3_600), usesRemaining: uses, createdAt: clock.now()),
            audit: nil)
        return generated.secret
    }

    /// An IDevID from the server's manufacturer CA, for a device allowlisted as `manufactured` unless told otherwise.
    func idevid(hardwareSerial: String, register: Bool = true) async throws -> (
        key: Certificate.PrivateKey, certificate: Certificate
    ) {
        if register {
            try await store.insertDevice(
                Device(
                    id: DeviceID(derivedFromHardwareSerial: hardwareSerial), tenant: tenant,
                    hardwareSerial: hardwareSerial, lot: nil, state: .manufactured, createdAt: clock.now()),
                audit: nil)
        }
        let key = try KeyMaterial.generate(.p256)
        let certificate = try #require(hierarchy.manufacturer).issueIDevID(
            hardwareSerial: hardwareSerial, publicKey: key.publicKey, now: clock.now())
        return (key, certificate)
    }

    /// An EST client of this server that trusts its root and presents `certificate` (an IDevID or LDevID) with `key`.
    func estClient(presenting certificate: Certificate, key: Certificate.PrivateKey, label: String? = nil) throws
        -> ESTClient
    {
        try ESTClient(
            baseURL: estURL, trustRoots: [hierarchy.root],
            clientIdentity: .init(certificateChain: [certificate], privateKey: key), label: label)
    }
}

/// Runs `body` against a fresh server and always stops it.
func withServer<T>(
    clock: ManualWallClock = ManualWallClock(Date()), policy: TenantPolicy = TenantPolicy(),
    serverTLSLifetime: TimeInterval = AgentTestServer.defaultServerTLSLifetime, estHost: String = "127.0.0.1",
    idleTimeoutSeconds: Double? = nil, _ body: (AgentTestServer) async throws -> T
) async throws -> T {
    let server = try await AgentTestServer(
        clock: clock, policy: policy, serverTLSLifetime: serverTLSLifetime, estHost: estHost,
        idleTimeoutSeconds: idleTimeoutSeconds)
    do {
        let result = try await body(server)
        try await server.stop()
        return result
    } catch {
        try? await server.stop()
        throw error
    }
}

/// File-system helpers for asserting on a state directory.
enum Files {
    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    /// Every entry of `directory` (hidden ones too) with its content; empty if the directory does not exist.
    static func snapshot(_ directory: String) -> [String: Data] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [:] }
        var result: [String: Data] = [:]
        for name in names { result[name] = FileManager.default.contents(atPath: "\(directory)/\(name)") ?? Data() }
        return result
    }

    static func text(_ path: String) throws -> String {
        String(decoding: try #require(FileManager.default.contents(atPath: path)), as: UTF8.self)
    }
}
