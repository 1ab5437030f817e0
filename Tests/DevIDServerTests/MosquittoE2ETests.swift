import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

#if canImport(Glibc)
import Glibc
#endif

/// A real Mosquitto 2.0 (Debian's package) enforcing DevID: the files come from `devid serve --mosquitto-dir`, which
/// rewrites them and sends SIGHUP on every identity change. Clients are the real `mosquitto_pub`/`mosquitto_sub`
/// presenting LDevIDs that DevID issued over EST.
@Suite(.serialized)
struct MosquittoE2ETests {
    /// Upper bound, in seconds, from the admin API's answer to each effect at the broker (documented in
    /// docs/integrations/mosquitto.md): 100 ms coalescing + CRL re-signing + SIGHUP + one client connect.
    static let revocationBound: TimeInterval = 3

    struct Setup {
        let fixture: ESTFixture
        let directory: TemporaryDirectory
        let exportDirectory: String
        let broker: MosquittoBroker
        let other: TenantID

        func stop() async throws {
            await broker.stop()
            try await fixture.server.stop()
            if ProcessInfo.processInfo.environment["DEVID_KEEP_TEST_DIRS"] == nil { directory.remove() }
        }
    }

    func start() async throws -> Setup {
        let directory = try TemporaryDirectory(prefix: "devid-mosquitto")
        let exportDirectory = directory.file("export")
        let pidFile = directory.file("mosquitto.pid")
        let port = try Loopback.freePort()
        let fixture = try await ESTFixture { configuration in
            configuration.mosquitto = MosquittoSyncConfiguration(
                directory: exportDirectory, pidFile: pidFile, port: port, bindAddress: "127.0.0.1",
                brokerNames: ["127.0.0.1", "localhost"])
            configuration.rotationSweepInterval = 1
            configuration.ldevidPolicy.rotation.overlap = 3_600
            configuration.ldevidPolicy.rotation.confidence = 0
        }
        let other = try await fixture.createTenant("globex")
        try await fixture.setBrokerTestPolicy(fixture.tenant)
        try await fixture.setBrokerTestPolicy(other)
        let config = "\(exportDirectory)/\(MosquittoExport.configurationFile)"
        let written = await eventually(timeout: 10) { FileManager.default.fileExists(atPath: config) }
        try #require(written != nil, "devid serve did not write the Mosquitto files")
        let broker = try await MosquittoBroker(exportDirectory: exportDirectory, port: port, directory: directory)
        try "\(broker.process.pid)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        // Anything DevID wrote between Mosquitto reading its files and the pid file existing is picked up now.
        broker.reload()
        return Setup(fixture: fixture, directory: directory, exportDirectory: exportDirectory, broker: broker, other: other)
    }

    func acl(_ setup: Setup) -> String {
        (try? String(contentsOfFile: "\(setup.exportDirectory)/\(MosquittoExport.aclFile)", encoding: .utf8)) ?? ""
    }

    /// Enrolls and waits until the broker's ACL names the device (an enrollment triggers a rewrite).
    func device(_ id: String, tenant: TenantID? = nil, _ setup: Setup) async throws -> BrokerDevice {
        let identity = try await setup.fixture.enroll(id, tenant: tenant ?? setup.fixture.tenant)
        let listed = await eventually(timeout: 5) { acl(setup).contains("user \(id)\n") }
        try #require(listed != nil, "the ACL never listed \(id)")
        return try BrokerDevice.write(
            id, identity, caFile: "\(setup.exportDirectory)/\(MosquittoExport.caFile)", directory: setup.directory)
    }

    @Test("own telemetry is delivered; another device's and another tenant's topics are refused with 0x87")
    func topicPolicies() async throws {
        let setup = try await start()
        let alpha = try await device("alpha", setup)
        let beta = try await device("beta", setup)
        let gamma = try await device("gamma", tenant: setup.other, setup)
        #expect(acl(setup).contains("topic write tenants/acme/devices/alpha/telemetry/#"))
        let port = setup.broker.port

        let watcher = try await MQTTSubscription(
            port: port, credentials: beta.files, topic: "tenants/acme/devices/+/telemetry/#", clientID: "beta",
            directory: setup.directory)
        let foreign = try await MQTTSubscription(
            port: port, credentials: gamma.files, topic: "tenants/globex/devices/+/telemetry/#", clientID: "gamma",
            directory: setup.directory)

        let own = try await MQTTClients.publish(
            port: port, credentials: alpha.files, topic: "tenants/acme/devices/alpha/telemetry/temp", message: "21.5")
        #expect(own.accepted, "\(own.output)")
        let delivered = await eventually(timeout: 5) {
            watcher.messages.contains("tenants/acme/devices/alpha/telemetry/temp 21.5")
        }
        #expect(delivered != nil, "\(watcher.process.log)")

        let spoof = try await MQTTClients.publish(
            port: port, credentials: alpha.files, topic: "tenants/acme/devices/beta/telemetry/temp", message: "spoof")
        #expect(spoof.pubackReason == 135, "publishing as another device must be not-authorized: \(spoof.output)")
        let cross = try await MQTTClients.publish(
            port: port, credentials: alpha.files, topic: "tenants/globex/devices/gamma/telemetry/temp", message: "cross")
        #expect(cross.pubackReason == 135, "another tenant's topic must be not-authorized: \(cross.output)")
        let dollar = try await MQTTClients.publish(
            port: port, credentials: alpha.files, topic: "$SYS/broker/x", message: "sys")
        #expect(dollar.pubackReason == 135, "\(dollar.output)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(!watcher.messages.contains { $0.contains("spoof") })
        #expect(!foreign.messages.contains { $0.hasSuffix(" cross") }, "\(foreign.messages)")

        // Mosquitto 2.0's ACL file grants any SUBSCRIBE and filters each delivery by the `topic read` lines: a
        // subscription wider than the policy receives only what the policy lets the device read.
        let wide = try await MQTTSubscription(
            port: port, credentials: alpha.files, topic: "tenants/#", clientID: "alpha", directory: setup.directory)
        let foreignTelemetry = try await MQTTClients.publish(
            port: port, credentials: gamma.files, topic: "tenants/globex/devices/gamma/telemetry/temp", message: "g1")
        #expect(foreignTelemetry.accepted, "\(foreignTelemetry.output)")
        let neighbour = try await MQTTClients.publish(
            port: port, credentials: beta.files, topic: "tenants/acme/devices/beta/telemetry/temp", message: "b1")
        #expect(neighbour.accepted, "\(neighbour.output)")
        #expect(await eventually(timeout: 5) { wide.messages.contains("tenants/acme/devices/beta/telemetry/temp b1") } != nil)
        #expect(await eventually(timeout: 5) { foreign.messages.contains("tenants/globex/devices/gamma/telemetry/temp g1") } != nil)
        #expect(!wide.messages.contains { $0.contains("globex") }, "another tenant's message reached alpha: \(wide.messages)")
        await wide.stop()
        await watcher.stop()
        await foreign.stop()
        try await setup.stop()
    }

    @Test("revoke: new connections refused via the CRL, the open session loses every topic; suspend and resume")
    func revocationAndSuspension() async throws {
        let setup = try await start()
        let alpha = try await device("alpha", setup)
        let beta = try await device("beta", setup)
        let port = setup.broker.port

        // alpha listens to the tenant broadcast on a session opened before anything happens to it.
        let alphaSession = try await MQTTSubscription(
            port: port, credentials: alpha.files, topic: "tenants/acme/broadcast", clientID: "alpha",
            directory: setup.directory)
        let before = try await MQTTClients.publish(
            port: port, credentials: beta.files, topic: "tenants/acme/broadcast", message: "before")
        #expect(before.accepted, "\(before.output)")
        #expect(await eventually(timeout: 5) { alphaSession.messages.contains("tenants/acme/broadcast before") } != nil)

        let revokeStart = ContinuousClock.now
        let reply = try await setup.fixture.admin(
            "POST", "/v1/admin/revoke", body: #"{"device":"alpha","reason":"keyCompromise"}"#)
        #expect(reply.status == 200, "\(reply.body)")
        // New connections: the TLS handshake fails once Mosquitto has re-read the CRL.
        let refused = await eventually(timeout: Self.revocationBound) {
            let attempt = try? await MQTTClients.publish(
                port: port, credentials: alpha.files, topic: "tenants/acme/devices/alpha/telemetry/t", message: "x")
            return attempt.map { !$0.connected } ?? false
        }
        let connectRefusedAfter = ContinuousClock.now - revokeStart
        #expect(refused != nil, "a revoked LDevID still connects after \(Self.revocationBound) s")
        #expect(!acl(setup).contains("user alpha\n"))
        // The session opened before: nothing more is delivered to it.
        let after = try await MQTTClients.publish(
            port: port, credentials: beta.files, topic: "tenants/acme/broadcast", message: "after")
        #expect(after.accepted)
        try await Task.sleep(for: .milliseconds(500))
        #expect(!alphaSession.messages.contains("tenants/acme/broadcast after"), "\(alphaSession.messages)")
        print("mosquitto revoke → new connection refused: \(connectRefusedAfter)")

        // Suspension: no CRL entry (the TLS handshake still succeeds), but every topic is denied until resume.
        let suspended = try await setup.fixture.admin("POST", "/v1/admin/devices/beta/suspend")
        #expect(suspended.status == 200, "\(suspended.body)")
        #expect(await eventually(timeout: Self.revocationBound) { !acl(setup).contains("user beta\n") } != nil)
        try await Task.sleep(for: .milliseconds(300))
        let held = try await MQTTClients.publish(
            port: port, credentials: beta.files, topic: "tenants/acme/devices/beta/telemetry/t", message: "held")
        #expect(held.pubackReason == 135, "\(held.output)")
        let resumed = try await setup.fixture.admin("POST", "/v1/admin/devices/beta/resume")
        #expect(resumed.status == 200, "\(resumed.body)")
        #expect(await eventually(timeout: Self.revocationBound) { acl(setup).contains("user beta\n") } != nil)
        let back = await eventually(timeout: Self.revocationBound) {
            let attempt = try? await MQTTClients.publish(
                port: port, credentials: beta.files, topic: "tenants/acme/devices/beta/telemetry/t", message: "back")
            return attempt?.accepted == true
        }
        #expect(back != nil)
        await alphaSession.stop()
        try await setup.stop()
    }

    @Test("rotation: the new LDevID works at once, the old one until it is revoked as superseded; expired is refused")
    func rotationAndExpiry() async throws {
        let setup = try await start()
        let alpha = try await device("alpha", setup)
        let port = setup.broker.port
        let topic = "tenants/acme/devices/alpha/telemetry/t"

        let renewed = try await setup.fixture.reenrollKeyed(alpha.identity)
        #expect(renewed.status == 200, "\(renewed.reply.body)")
        let next = try BrokerDevice.write(
            "alpha", try renewed.identity(), caFile: alpha.files.caFile, directory: setup.directory, suffix: "-next")
        let newWorks = try await MQTTClients.publish(port: port, credentials: next.files, topic: topic, message: "new")
        #expect(newWorks.accepted, "\(newWorks.output)")
        let oldWorks = try await MQTTClients.publish(port: port, credentials: alpha.files, topic: topic, message: "old")
        #expect(oldWorks.accepted, "the superseded LDevID must work during the overlap: \(oldWorks.output)")

        // The device checks in with the new certificate: confirmed; with confidence 0 the sweeper (1 s) revokes
        // the old one as superseded, the CRL is re-signed and Mosquitto reloads it.
        let status = try await setup.fixture.status(next.identity)
        #expect(status.status == 200, "\(status.body)")
        let oldRefused = await eventually(timeout: 5) {
            let attempt = try? await MQTTClients.publish(port: port, credentials: alpha.files, topic: topic, message: "x")
            return attempt.map { !$0.connected } ?? false
        }
        #expect(oldRefused != nil, "the superseded LDevID still connects after its revocation")
        let stillNew = try await MQTTClients.publish(port: port, credentials: next.files, topic: topic, message: "new2")
        #expect(stillNew.accepted, "\(stillNew.output)")

        // An LDevID that expired (issued 40 days ago on the server's clock) fails Mosquitto's own TLS check.
        let now = setup.fixture.server.clock.now()
        setup.fixture.server.clock.set(now.addingTimeInterval(-40 * 86_400))
        let oldIdentity = try await setup.fixture.enroll("delta", tenant: setup.fixture.tenant)
        setup.fixture.server.clock.set(now)
        let delta = try BrokerDevice.write("delta", oldIdentity, caFile: alpha.files.caFile, directory: setup.directory)
        _ = await eventually(timeout: 5) { acl(setup).contains("user delta\n") }
        let expired = try await MQTTClients.publish(
            port: port, credentials: delta.files, topic: "tenants/acme/devices/delta/telemetry/t", message: "late")
        #expect(!expired.connected, "an expired LDevID must not connect: \(expired.output)")
        try await setup.stop()
    }
}
