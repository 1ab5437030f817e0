import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// A real RabbitMQ node (Debian's `rabbitmq-server`, MQTT plugin over TLS) that asks DevID on connect and on every
/// topic access (`rabbitmq_auth_backend_http` → `/v1/authz/rabbitmq/<token>/...`), checks each client certificate
/// against DevID's CRL (`crl_check` fetching the certificate's CRL Distribution Point), and whose open connections
/// DevID closes through the management API when a device is revoked or suspended.
///
/// One test, because a node takes ~15 s to boot.
@Suite(.serialized)
struct RabbitMQE2ETests {
    /// Upper bound, in seconds, from the admin API's answer to each effect (documented in
    /// docs/integrations/rabbitmq.md).
    static let revocationBound: TimeInterval = 3

    @Test("RabbitMQ enforces topic policies, revocation, suspension, expiry, rotation and the tenant boundary")
    func rabbitMQ() async throws {
        let directory = try TemporaryDirectory(prefix: "devid-rabbitmq")
        let managementPort = try Loopback.freePort()
        let managementPassword = UUID().uuidString
        let fixture = try await ESTFixture { configuration in
            configuration.rabbitMQManagement = RabbitMQManagement(
                url: "http://127.0.0.1:\(managementPort)", user: "devid-admin", password: managementPassword)
            configuration.rotationSweepInterval = 1
            configuration.ldevidPolicy.rotation.overlap = 3_600
            configuration.ldevidPolicy.rotation.confidence = 0
        }
        let other = try await fixture.createTenant("globex")
        try await fixture.setBrokerTestPolicy(fixture.tenant)
        try await fixture.setBrokerTestPolicy(other)

        // The broker's TLS identity from DevID's services CA, recorded in the registry; devices trust DevID's root.
        let brokerDirectory = directory.file("broker")
        let state = fixture.server.state
        let recorder = ServiceCertificateRecorder(store: state.store, auditor: state.auditor, clock: state.clock)
        try await BrokerCertificate.ensure(
            directory: brokerDirectory, names: ["127.0.0.1", "localhost"],
            services: try fixture.hierarchy.requireServices(), now: Date()
        ) { certificate in
            try await recorder.record(certificate, service: "rabbitmq", names: ["127.0.0.1", "localhost"], actor: "test")
        }
        let caFile = try directory.write(
            "ca.pem", PEM.bundle([fixture.hierarchy.issuing.certificate, fixture.hierarchy.root]))
        let token = try String(
            contentsOfFile: fixture.server.configuration.secretsDirectory + "/authz-token", encoding: .utf8
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        let broker = try await RabbitMQBroker(
            directory: directory, caFile: caFile, certFile: "\(brokerDirectory)/\(BrokerCertificate.certificateFile)",
            keyFile: "\(brokerDirectory)/\(BrokerCertificate.keyFile)",
            authBaseURL: "\(fixture.server.opsURL)/v1/authz/rabbitmq/\(token)", managementPort: managementPort,
            managementPassword: managementPassword)
        defer { directory.remove() }
        let port = broker.mqttPort

        func device(_ id: String, tenant: TenantID? = nil, suffix: String = "") async throws -> BrokerDevice {
            let identity = try await fixture.enroll(id, tenant: tenant ?? fixture.tenant)
            return try BrokerDevice.write(id, identity, caFile: caFile, directory: directory, suffix: suffix)
        }
        func publish(_ device: BrokerDevice, _ topic: String, _ message: String) async throws -> MQTTPublishResult {
            try await MQTTClients.publish(
                port: port, credentials: device.files, topic: topic, message: message, version: "mqttv311",
                clientID: device.id)
        }

        let alpha = try await device("alpha")
        let beta = try await device("beta")
        let gamma = try await device("gamma", tenant: other)

        // 1. Own telemetry is delivered; another device's and another tenant's topics are not.
        let watcher = try await MQTTSubscription(
            port: port, credentials: beta.files, topic: "tenants/acme/devices/+/telemetry/#", clientID: "beta",
            version: "mqttv311", directory: directory)
        let own = try await publish(alpha, "tenants/acme/devices/alpha/telemetry/temp", "21.5")
        #expect(own.accepted, "\(own.output)")
        #expect(
            await eventually(timeout: 5) { watcher.messages.contains("tenants/acme/devices/alpha/telemetry/temp 21.5") }
                != nil, "\(watcher.process.log)")
        let spoof = try await publish(alpha, "tenants/acme/devices/beta/telemetry/temp", "spoof")
        #expect(spoof.pubackReason == nil, "RabbitMQ closes a connection that publishes where it may not: \(spoof.output)")
        let cross = try await publish(gamma, "tenants/acme/devices/alpha/telemetry/temp", "cross")
        #expect(cross.pubackReason == nil, "\(cross.output)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(!watcher.messages.contains { $0.hasSuffix(" spoof") || $0.hasSuffix(" cross") }, "\(watcher.messages)")
        await watcher.stop()

        // 2. Revocation: the open connection is closed, new ones are refused.
        let alphaSession = try await MQTTSubscription(
            port: port, credentials: alpha.files, topic: "tenants/acme/broadcast", clientID: "alpha",
            version: "mqttv311", directory: directory)
        // The node lists a connection a moment after it opened.
        let listed = await eventually(timeout: 5) { ((try? await broker.connectedUsers()) ?? []).contains("alpha") }
        let users: String
        do { users = "\(try await broker.connectedUsers())" } catch { users = "\(error)" }
        try #require(listed != nil, "alpha's subscription never showed up in list_connections: \(users) \(alphaSession.process.log.replacingOccurrences(of: "\n", with: " / "))")
        let revokeStart = ContinuousClock.now
        let revoked = try await fixture.admin(
            "POST", "/v1/admin/revoke", body: #"{"device":"alpha","reason":"keyCompromise"}"#)
        #expect(revoked.status == 200, "\(revoked.body)")
        let closed = await eventually(timeout: Self.revocationBound) {
            !((try? await broker.connectedUsers()) ?? ["alpha"]).contains("alpha")
        }
        let closedAfter = ContinuousClock.now - revokeStart
        #expect(closed != nil, "the revoked device's connection is still open")
        let refused = try await publish(alpha, "tenants/acme/devices/alpha/telemetry/t", "after")
        let refusedAfter = ContinuousClock.now - revokeStart
        #expect(!refused.connected, "a revoked device must not connect: \(refused.output)")
        await alphaSession.stop()
        print("rabbitmq revoke → open connection closed: \(closedAfter); → new connection refused: \(refusedAfter)")

        // 3. Suspension closes the connection and refuses new ones until resume.
        let betaSession = try await MQTTSubscription(
            port: port, credentials: beta.files, topic: "tenants/acme/broadcast", clientID: "beta",
            version: "mqttv311", directory: directory)
        let betaListed = await eventually(timeout: 5) { ((try? await broker.connectedUsers()) ?? []).contains("beta") }
        try #require(betaListed != nil)
        let suspended = try await fixture.admin("POST", "/v1/admin/devices/beta/suspend")
        #expect(suspended.status == 200, "\(suspended.body)")
        #expect(
            await eventually(timeout: Self.revocationBound) {
                !((try? await broker.connectedUsers()) ?? ["beta"]).contains("beta")
            } != nil)
        let held = try await publish(beta, "tenants/acme/devices/beta/telemetry/t", "held")
        #expect(!held.connected, "a suspended device must not connect: \(held.output)")
        await betaSession.stop()
        let resumed = try await fixture.admin("POST", "/v1/admin/devices/beta/resume")
        #expect(resumed.status == 200, "\(resumed.body)")
        let back = try await publish(beta, "tenants/acme/devices/beta/telemetry/t", "back")
        #expect(back.accepted, "\(back.output)")

        // 4. Rotation: the new LDevID works at once, the old one until it is revoked as superseded.
        var epsilon = try await device("epsilon")
        let renewed = try await fixture.reenrollKeyed(epsilon.identity)
        #expect(renewed.status == 200, "\(renewed.reply.body)")
        let next = try BrokerDevice.write(
            "epsilon", try renewed.identity(), caFile: caFile, directory: directory, suffix: "-next")
        let newWorks = try await publish(next, "tenants/acme/devices/epsilon/telemetry/t", "new")
        #expect(newWorks.accepted, "\(newWorks.output)")
        let oldWorks = try await publish(epsilon, "tenants/acme/devices/epsilon/telemetry/t", "old")
        #expect(oldWorks.accepted, "during the overlap: \(oldWorks.output)")
        let status = try await fixture.status(next.identity)
        #expect(status.status == 200)
        let oldRefused = await eventually(timeout: 5) {
            let attempt = try? await publish(epsilon, "tenants/acme/devices/epsilon/telemetry/t", "x")
            return attempt.map { !$0.connected } ?? false
        }
        #expect(oldRefused != nil, "the superseded LDevID still connects after its revocation")
        let stillNew = try await publish(next, "tenants/acme/devices/epsilon/telemetry/t", "new2")
        #expect(stillNew.connected, "\(stillNew.output)")
        epsilon = next

        // 5. An expired LDevID fails RabbitMQ's TLS check.
        let now = fixture.server.clock.now()
        fixture.server.clock.set(now.addingTimeInterval(-40 * 86_400))
        let expiredIdentity = try await fixture.enroll("delta", tenant: fixture.tenant)
        fixture.server.clock.set(now)
        let delta = try BrokerDevice.write("delta", expiredIdentity, caFile: caFile, directory: directory)
        let expired = try await publish(delta, "tenants/acme/devices/delta/telemetry/t", "late")
        #expect(!expired.connected, "\(expired.output)")

        // 6. A dot does not cross the tenant boundary (issue #12): RabbitMQ makes `tenants/initech.eu/x` and
        // `tenants/initech/eu/x` the same routing key. `initech` may use its whole tree; `initech.eu` is legacy data
        // (a tenant id with a dot can no longer be created), so it goes straight into the registry.
        let initech = try await fixture.createTenant("initech")
        let wide = try await fixture.admin(
            "PUT", "/v1/admin/tenants/initech/topic-policy",
            body: #"{"rules":[{"action":"all","topic":"tenants/{tenant}/#"}]}"#)
        #expect(wide.status == 200, "\(wide.body)")
        let legacy = try await fixture.createTenant("initech.eu")
        try await fixture.setBrokerTestPolicy(legacy)
        // Written behind the running server's back: seen once what the server read at start has aged out.
        fixture.server.clock.set(fixture.server.clock.now().addingTimeInterval(fixture.server.state.authz.maximumAge + 1))
        let zeta = try await device("zeta", tenant: initech)
        let eta = try await device("eta", tenant: legacy)
        let zetaOwn = try await publish(zeta, "tenants/initech/devices/zeta/telemetry/t", "own")
        #expect(zetaOwn.accepted, "\(zetaOwn.output)")
        let crossing = try await publish(zeta, "tenants/initech.eu/devices/eta/commands/reboot", "cross")
        #expect(crossing.connected, "\(crossing.output)")
        #expect(crossing.pubackReason == nil, "RabbitMQ must refuse the cross-tenant publish: \(crossing.output)")
        let aliased = try await publish(zeta, "tenants/initech/eu/devices/eta/commands/reboot", "alias")
        #expect(aliased.pubackReason == nil, "the same routing key, however it is spelled: \(aliased.output)")
        // A device of the dotted tenant is refused every topic on RabbitMQ, its own included (fail closed).
        let etaOwn = try await publish(eta, "tenants/initech.eu/devices/eta/telemetry/t", "legacy")
        #expect(etaOwn.pubackReason == nil, "\(etaOwn.output)")
        let denials = try await fixture.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .denied))
        #expect(
            denials.contains { $0.reason == "publish tenants/initech/eu/devices/eta/commands/reboot: wrong_tenant" },
            "\(denials.map(\.reason))")
        #expect(
            denials.contains { $0.reason == "publish tenants/initech/eu/devices/eta/telemetry/t: dotted_id" },
            "\(denials.map(\.reason))")

        // 6. Break glass: the issuing CA is replaced and revoked; the open session of a device still on it is closed,
        // and its LDevID no longer connects (docs/runbooks/break-glass.md).
        let theta = try await device("theta")
        let thetaSession = try await MQTTSubscription(
            port: port, credentials: theta.files, topic: "tenants/acme/broadcast", clientID: "theta",
            version: "mqttv311", directory: directory)
        try #require(
            await eventually(timeout: 5) { ((try? await broker.connectedUsers()) ?? []).contains("theta") } != nil)
        let layout = CALayout(dataDirectory: fixture.server.configuration.dataDirectory)
        _ = try CAStore.prepareIssuing(
            layout: layout, rootKeyPath: layout.rootKey,
            passphrase: Array((fixture.server.configuration.caPassphrase ?? "").utf8), now: fixture.server.clock.now(),
            keyEncryptionRounds: fixture.server.configuration.keyEncryptionRounds)
        for (path, body) in [
            ("/v1/admin/ca/issuing/register", "{}"), ("/v1/admin/ca/issuing/2/emergency", "{}"),
            ("/v1/admin/ca/issuing/1/revoke", #"{"force":true}"#),
        ] {
            let reply = try await fixture.admin("POST", path, body: body)
            #expect(reply.status == 200, "\(path): \(reply.body)")
        }
        #expect(
            await eventually(timeout: Self.revocationBound) {
                !((try? await broker.connectedUsers()) ?? ["theta"]).contains("theta")
            } != nil, "the session of a device of the revoked issuing CA is still open")
        let afterCA = try await publish(theta, "tenants/acme/devices/theta/telemetry/t", "after")
        #expect(!afterCA.connected, "an LDevID of a revoked issuing CA must not connect: \(afterCA.output)")
        await thetaSession.stop()

        await broker.stop()
        try await fixture.server.stop()
    }
}
