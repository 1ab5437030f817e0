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
    let tenant = TenantID(rawValue: "acme")!

    var state: ServerState { app.state }
    var store: any Store { state.store }
    var hierarchy: CAHierarchy { state.hierarchy }
    var estURL: String { "https://127.0.0.1:\(estPort)" }
    var layout: CALayout { CALayout(dataDirectory: state.configuration.dataDirectory) }

    init(clock: ManualWallClock = ManualWallClock(Date()), policy: TenantPolicy = TenantPolicy()) async throws {
        directory = try TemporaryDirectory(prefix: "devid-agent-server")
        var configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
        configuration.caPassphrase = "agent-test-passphrase"
        self.clock = clock
        var logger = Logger(label: "devid-agent-test")
        logger.logLevel = .warning
        app = try await DevIDServerApp(configuration: configuration, clock: clock, logger: logger)
        group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let group = self.group
        runTask = Task { try await group.run() }
        estPort = await app.waitUntilRunning().est
        try await store.createTenant(
            Tenant(id: tenant, displayName: "Acme", createdAt: clock.now(), policy: policy), audit: nil)
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
}

/// Runs `body` against a fresh server and always stops it.
func withServer<T>(
    clock: ManualWallClock = ManualWallClock(Date()), policy: TenantPolicy = TenantPolicy(),
    _ body: (AgentTestServer) async throws -> T
) async throws -> T {
    let server = try await AgentTestServer(clock: clock, policy: policy)
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
