import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// A device for rotation tests: a state directory enrolled against the live server, the device's own clock (a
/// `ManualWallClock` that may be offset from the server's), and fresh agents over the directory — a "restart" is a
/// new agent.
final class TestDevice: Sendable {
    let server: AgentTestServer
    let work: TemporaryDirectory
    let name: String
    let localClock: ManualWallClock
    var stateDir: String { work.file("state") }
    var directory: AgentStateDirectory { AgentStateDirectory(path: stateDir) }
    var hookLog: String { work.file("hook.log") }

    private init(server: AgentTestServer, work: TemporaryDirectory, name: String, localClock: ManualWallClock) {
        self.server = server
        self.work = work
        self.name = name
        self.localClock = localClock
    }

    /// Enrolls a new device. With `idevid`, it bootstraps with a factory identity (whose files `agent.json` points
    /// at); else with a claim token. `localClock` is the device clock (default: the server's time).
    static func enroll(
        _ server: AgentTestServer, name: String, idevid: Bool = false, localClock: ManualWallClock? = nil,
        onRotate: String? = "echo \"$DEVID_SERIAL $DEVID_STATE_DIR\" >> hook.log"
    ) async throws -> TestDevice {
        let work = try TemporaryDirectory(prefix: "devid-rotation")
        let clock = localClock ?? ManualWallClock(server.clock.now())
        let device = TestDevice(server: server, work: work, name: name, localClock: clock)
        let serverClock = ServerClock(local: clock)
        var configuration = AgentConfiguration(serverURL: server.estURL)
        let bootstrap: Enroller.Bootstrap
        if idevid {
            let (key, certificate) = try await server.idevid(hardwareSerial: name)
            configuration.idevidCertificate = try work.write("idevid.pem", PEM.bundle([certificate]))
            configuration.idevidKey = try work.write("idevid.key", try key.serializeAsPEM().pemString + "\n")
            bootstrap = .idevid(certificateChain: [certificate], key: key)
        } else {
            bootstrap = .token(try await server.claimToken(), deviceID: name)
        }
        // The hook runs in the agent's working directory; make its log path absolute.
        configuration.onRotate = onRotate?.replacingOccurrences(of: "hook.log", with: device.hookLog)
        _ = try await Enroller().enroll(
            server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: device.stateDir,
            bootstrap: bootstrap, clock: serverClock, serverClock: serverClock)
        try configuration.save(stateDirectory: device.stateDir)
        return device
    }

    var deviceID: DeviceID {
        get throws {
            try #require(try directory.identity()).deviceID
        }
    }

    /// A fresh agent over the state directory (a restart). Deterministic jitter from `seed`.
    /// `rotateNowJitter` is 0 here: a campaign renews at the step that learns it (the jitter has its own tests).
    func agent(
        crashAfter: RotationStep? = nil, checkInInterval: TimeInterval = 86_400, seed: UInt64 = 1,
        configuration: AgentConfiguration? = nil, rotateNowJitter: TimeInterval = 0
    ) throws -> RotationAgent {
        try RotationAgent(
            stateDirectory: stateDir, configuration: configuration,
            options: RotationAgent.Options(
                checkInInterval: checkInInterval, backoff: Backoff(base: 30, cap: 3_600), hookTimeout: .seconds(30),
                crashAfter: crashAfter, rotateNowJitter: rotateNowJitter),
            clock: localClock, random: SplitMix64(seed: seed))
    }

    /// Moves the server's and the device's clocks together.
    func advance(_ seconds: TimeInterval) {
        server.clock.advance(by: seconds)
        localClock.advance(by: seconds)
    }

    /// The current (certificate, key) pair, which must match.
    func current(sourceLocation: SourceLocation = #_sourceLocation) throws -> (
        certificate: Certificate, key: Certificate.PrivateKey
    ) {
        let certificate = try #require(try directory.certificate(), sourceLocation: sourceLocation)
        let key = try #require(try directory.privateKey(), sourceLocation: sourceLocation)
        #expect(
            key.publicKey == certificate.publicKey, "current key.pem matches cert.pem", sourceLocation: sourceLocation)
        return (certificate, key)
    }

    /// `GET /v1/device/status` with a given identity, as a broker or any relying party would see it.
    func status(_ certificate: Certificate, _ key: Certificate.PrivateKey) async throws -> Result<
        DeviceStatus, AgentError
    > {
        let client = try ESTClient(
            baseURL: server.estURL, trustRoots: [server.hierarchy.root],
            clientIdentity: .init(
                certificateChain: [certificate, server.hierarchy.issuing.certificate], privateKey: key))
        let result: Result<DeviceStatus, AgentError>
        do {
            result = .success(try await client.deviceStatus())
        } catch let error as AgentError {
            result = .failure(error)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try? await client.shutdown()
        return result
    }

    /// The server's revocation pass at its current time.
    func sweep() async throws {
        try await RotationSweeper(state: server.state).sweep()
    }

    func credentials() async throws -> [Credential] {
        try await server.store.credentials(device: try deviceID).sorted { $0.createdAt < $1.createdAt }
    }

    func hookLines() -> [String] {
        guard let data = FileManager.default.contents(atPath: hookLog) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    func remove() {
        work.remove()
    }
}

/// Runs `body` with an enrolled device on a fresh server; always cleans up.
func withDevice<T>(
    name: String = "sensor-1", idevid: Bool = false, localClock: ManualWallClock? = nil,
    onRotate: String? = "echo \"$DEVID_SERIAL $DEVID_STATE_DIR\" >> hook.log",
    _ body: (TestDevice) async throws -> T
) async throws -> T {
    try await withServer { server in
        let device = try await TestDevice.enroll(
            server, name: name, idevid: idevid, localClock: localClock, onRotate: onRotate)
        defer { device.remove() }
        return try await body(device)
    }
}

/// A day in seconds.
let day: TimeInterval = 86_400
