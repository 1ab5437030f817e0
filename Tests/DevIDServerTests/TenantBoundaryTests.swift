import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// Issue #12, findings 4 and 7: a topic rule must not inject lines into the Mosquitto ACL, and a dot in an id must
/// not carry a device across the tenant boundary on RabbitMQ (which turns MQTT's `/` into `.`).
@Suite("Tenant boundary (issue #12: ACL injection, dotted ids on RabbitMQ)", .serialized)
struct TenantBoundaryTests {
    static let injectedRule = "tenants/{tenant}/x\ntopic readwrite tenants/+/#"

    // MARK: - Finding 4: a rule can inject lines into the Mosquitto ACL

    @Test("PUT topic-policy with the reported rule: 400 naming the rule, nothing stored, audited")
    func injectedRuleRefusedOverHTTP() async throws {
        let f = try await ESTFixture()
        let body = String(
            decoding: try JSONEncoder().encode(
                TopicPolicy(rules: [
                    TopicRule(.subscribe, "tenants/{tenant}/broadcast"), TopicRule(.publish, Self.injectedRule),
                ])), as: UTF8.self)
        let reply = try await f.admin("PUT", "/v1/admin/tenants/acme/topic-policy", body: body)
        #expect(reply.status == 400, "\(reply.body)")
        #expect(errorMessage(reply) == "rule 2: control character U+000A not allowed")
        #expect(try await f.store.tenant(f.tenant)?.policy.topics == nil, "nothing stored")
        let audit = try await f.store.auditEvents(AuditFilter(action: "tenant.topic_policy", limit: 1))
        #expect(audit.first?.outcome == .denied)
        #expect(audit.first?.reason == "rule 2: control character U+000A not allowed")
        try await f.server.stop()
    }

    @Test("a stored policy with a control character (written before this check) fails closed: deny, no ACL line")
    func storedPoisonedPolicyFailsClosed() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("m-1")
        var policy = TenantPolicy()
        policy.topics = TopicPolicy(rules: [TopicRule(.all, Self.injectedRule)])
        try await f.store.updateTenantPolicy(f.tenant, policy: policy, audit: nil)
        f.server.state.authz.invalidateAll()

        let topic = "tenants/acme/x\ntopic readwrite tenants/+/a"
        #expect(try await f.decide(["device": "m-1", "action": "publish", "topic": topic]).result == "deny")
        #expect(
            try await f.decide(["device": "m-1", "action": "subscribe", "topic": "tenants/acme/broadcast"])
                == ("deny", "topic_not_allowed"), "the whole stored policy is void, not only the bad rule")

        let reply = try await f.admin("POST", "/v1/admin/exports/mosquitto", body: #"{"directory":"/etc/devid"}"#)
        #expect(reply.status == 200, "\(reply.body)")
        let export = try JSONDecoder().decode(BrokerExportTests.ExportResponse.self, from: Data(reply.body.utf8))
        let acl = try #require(export.files[MosquittoExport.aclFile])
        #expect(!acl.contains("readwrite"), "\(acl)")
        #expect(acl.hasSuffix("\nuser m-1\n"), "the device has a block and no topic: \(acl)")
        try await f.server.stop()
    }

    @Test("the ACL writer refuses an entry with a newline even if one slipped past validation")
    func writerRefusesPoisonedEntries() throws {
        let export = MosquittoExport(certificateFile: "/etc/devid/broker.pem", keyFile: "/etc/devid/broker.key")
        let poisoned = BrokerGrant(
            device: DeviceID(rawValue: "m-1")!, publish: ["tenants/acme/x\ntopic readwrite tenants/+/#"],
            subscribe: [])
        #expect(throws: (any Error).self) {
            try export.files(directory: "/etc/devid", trust: [], crls: [], grants: [poisoned])
        }
        #expect(throws: (any Error).self) { try MosquittoExport.acl([poisoned]) }
        for bad in ["\r", "\u{0}", "\u{7F}", "\u{85}", "\u{2028}", "\u{2029}", "\t"] {
            let grant = BrokerGrant(
                device: DeviceID(rawValue: "m-1")!, publish: [], subscribe: ["tenants/acme/a\(bad)b"])
            #expect(throws: (any Error).self, "\(bad.debugDescription)") { try MosquittoExport.acl([grant]) }
        }
        // The configuration's values are entries too.
        let badDirectory = MosquittoExport(certificateFile: "/etc/devid/b.pem\nallow_anonymous true", keyFile: "/k")
        #expect(throws: (any Error).self) {
            try badDirectory.files(directory: "/etc/devid", trust: [], crls: [], grants: [])
        }
        // A clean grant still gives the expected block.
        let clean = BrokerGrant(
            device: DeviceID(rawValue: "m-1")!, publish: ["tenants/acme/devices/m-1/telemetry/#"], subscribe: [])
        #expect(try MosquittoExport.acl([clean]).hasSuffix("\nuser m-1\ntopic write tenants/acme/devices/m-1/telemetry/#\n"))
    }

    @Test("writing files: a poisoned ACL or configuration is refused and nothing is written")
    func writeRefusesPoisonedFiles() throws {
        let directory = try TemporaryDirectory(prefix: "devid-acl")
        defer { directory.remove() }
        let target = directory.file("export")
        let injected = "# DevID\n\nuser m-1\ntopic write tenants/acme/x\ntopic readwrite tenants/+/#\n"
        let cases: [[String: String]] = [
            [MosquittoExport.aclFile: injected],
            [MosquittoExport.aclFile: "user m-1\ntopic write tenants/acme/x\r\n"],
            [MosquittoExport.aclFile: "user m-1\ntopic write tenants/+/x\n"],
            [MosquittoExport.aclFile: "user m-1\ntopic write tenants/acme/a\u{2028}topic read #\n"],
            [MosquittoExport.configurationFile: "listener 8883\rallow_anonymous true\n"],
            [MosquittoExport.caFile: "-----BEGIN CERTIFICATE-----\u{0}\n"],
        ]
        for files in cases {
            #expect(throws: (any Error).self, "\(files)") {
                try MosquittoExport.write(files.mapValues { Array($0.utf8) }, to: target)
            }
            for name in files.keys {
                #expect(!FileManager.default.fileExists(atPath: "\(target)/\(name)"), "\(name) written")
            }
        }
        // A clean ACL is written.
        let clean = "# DevID\n\nuser m-1\ntopic write tenants/acme/devices/m-1/telemetry/#\ntopic read tenants/acme/b c\n"
        #expect(try MosquittoExport.write([MosquittoExport.aclFile: Array(clean.utf8)], to: target) == ["acl"])
    }

    // MARK: - Finding 7: a dot crosses the tenant boundary on RabbitMQ

    /// Tenant `acme` (rule `tenants/{tenant}/#`) with device `m-1`, and a legacy tenant `acme.eu` (written before
    /// dots were refused, so straight into the store) with device `e-1`.
    func dottedFixture() async throws -> ESTFixture {
        let f = try await ESTFixture()
        let policy = #"{"rules":[{"action":"all","topic":"tenants/{tenant}/#"}]}"#
        #expect(try await f.admin("PUT", "/v1/admin/tenants/acme/topic-policy", body: policy).status == 200)
        let legacy = try await f.createTenant("acme.eu")
        #expect(try await f.admin("PUT", "/v1/admin/tenants/acme.eu/topic-policy", body: policy).status == 200)
        _ = try await f.enroll("m-1")
        _ = try await f.enroll("e-1", tenant: legacy)
        // The legacy tenant was written behind the running server's back (as another server, or data from before
        // the rule): the engine re-reads the dotted tenants once what it read at start has aged out.
        f.server.clock.set(f.server.clock.now().addingTimeInterval(f.server.state.authz.maximumAge + 1))
        return f
    }

    @Test("decision: acme's tenants/{tenant}/# never reaches tenants.acme.eu...; acme.eu is denied on RabbitMQ")
    func dottedTenantDecisions() async throws {
        let f = try await dottedFixture()
        let service = AuthzService(state: f.server.state)
        func decide(_ device: String, _ action: AuthzAction, _ encoding: DecisionEngine.TopicEncoding) async throws
            -> AuthzDecision
        {
            try await service.decide(.device(DeviceID(rawValue: device)!), action: action, encoding: encoding)
        }
        // The routing key tenants.acme.eu.devices.x.telemetry.t, as BrokerAuthzRoutes translates it.
        let fromKey = "tenants/acme/eu/devices/x/telemetry/t"
        let cross = try await decide("m-1", .publish(topic: fromKey), .amqp)
        #expect(!cross.allowed)
        #expect(cross.reason == .wrongTenant)
        #expect(try await !decide("m-1", .subscribe(topic: "tenants/acme/eu/#"), .amqp).allowed)
        #expect(try await !decide("m-1", .subscribe(topic: "tenants/acme/+/devices/#"), .amqp).allowed)
        #expect(
            try await !decide("m-1", .subscribe(topic: "tenants/acme/#"), .amqp).allowed,
            "on RabbitMQ tenants.acme.# also matches every key of acme.eu")
        // The same through MQTT (where the topic keeps its dot) was already denied.
        let mqtt = try await decide("m-1", .publish(topic: "tenants/acme.eu/devices/x/telemetry/t"), .mqtt)
        #expect(mqtt.reason == .wrongTenant)
        // acme's own topics still work both ways.
        #expect(try await decide("m-1", .publish(topic: "tenants/acme/devices/m-1/telemetry/t"), .amqp).allowed)
        #expect(try await decide("m-1", .subscribe(topic: "tenants/acme/devices/+/telemetry/#"), .amqp).allowed)
        #expect(try await decide("m-1", .publish(topic: "tenants/acme/eu/x"), .mqtt).allowed, "MQTT is unambiguous")

        // A device of the legacy dotted tenant: every RabbitMQ topic decision is denied (fail closed), MQTT is not.
        let own = try await decide("e-1", .publish(topic: "tenants/acme/eu/devices/e-1/telemetry/t"), .amqp)
        #expect(!own.allowed)
        #expect(own.reason.rawValue == "dotted_id")
        #expect(try await decide("e-1", .publish(topic: "tenants/acme.eu/devices/e-1/telemetry/t"), .mqtt).allowed)
        #expect(try await decide("e-1", .connect, .amqp).allowed, "connecting is not a topic decision")
        try await f.server.stop()
    }

    @Test("a legacy device id with a dot: RabbitMQ topic decisions deny it, and no one reaches its topics")
    func dottedDeviceDecisions() async throws {
        let f = try await ESTFixture()
        // Written before dots were refused.
        try await f.store.insertDevice(
            Device(
                id: DeviceID(rawValue: "dev.telemetry")!, tenant: f.tenant, hardwareSerial: "claim:dev.telemetry",
                lot: nil, state: .manufactured, createdAt: f.server.clock.now()),
            audit: nil)
        _ = try await f.enroll("dev.telemetry")
        _ = try await f.enroll("dev")
        let service = AuthzService(state: f.server.state)
        let legacy = try await service.decide(
            .device(DeviceID(rawValue: "dev.telemetry")!),
            action: .publish(topic: "tenants/acme/devices/dev/telemetry/telemetry/x"), encoding: .amqp)
        #expect(legacy.reason.rawValue == "dotted_id")
        // Device `dev` publishing into the routing key of `dev.telemetry`'s telemetry.
        let collision = try await service.decide(
            .device(DeviceID(rawValue: "dev")!), action: .publish(topic: "tenants/acme/devices/dev/telemetry/telemetry/x"),
            encoding: .amqp)
        #expect(!collision.allowed)
        #expect(collision.reason == .topicNotAllowed)
        // tenants/acme/devices/dev/telemetry/x is the routing key of dev.telemetry's topic `x` too: ambiguous, denied.
        let same = try await service.decide(
            .device(DeviceID(rawValue: "dev")!), action: .publish(topic: "tenants/acme/devices/dev/telemetry/x"),
            encoding: .amqp)
        #expect(same.reason == .topicNotAllowed)
        // MQTT keeps the dot, so there is nothing to confuse; and other devices are not affected.
        let mqtt = try await service.decide(
            .device(DeviceID(rawValue: "dev")!), action: .publish(topic: "tenants/acme/devices/dev/telemetry/x"))
        #expect(mqtt.allowed)
        _ = try await f.enroll("dev-2")
        let other = try await service.decide(
            .device(DeviceID(rawValue: "dev-2")!), action: .publish(topic: "tenants/acme/devices/dev-2/telemetry/x"),
            encoding: .amqp)
        #expect(other.allowed)
        try await f.server.stop()
    }

    @Test("HTTP: /v1/authz/rabbitmq/<token>/topic with routing_key=tenants.acme.eu.devices.x.telemetry.t is deny")
    func dottedTenantOverRabbitMQRoute() async throws {
        let f = try await dottedFixture()
        let form =
            "username=m-1&vhost=%2F&resource=topic&name=amq.topic&permission=write"
            + "&routing_key=tenants.acme.eu.devices.x.telemetry.t"
        let reply = try await withClient(try f.server.client()) {
            try await $0.send(
                "POST", f.server.opsURL + "/v1/authz/rabbitmq/\(f.authzToken)/topic",
                headers: [("Content-Type", "application/x-www-form-urlencoded")], body: form)
        }
        #expect(reply.status == 200)
        #expect(reply.body == "deny")
        let denied = try await f.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .denied, limit: 1))
        #expect(denied.first?.reason == "publish tenants/acme/eu/devices/x/telemetry/t: wrong_tenant")
        #expect(
            try await f.decide(["device": "m-1", "action": "publish", "topic": "tenants/acme.eu/devices/x/telemetry/t"])
                == ("deny", "wrong_tenant"), "the MQTT decision agrees")
        try await f.server.stop()
    }

    @Test("new ids with a dot are refused: tenant create, manifest import, claim-token enrollment")
    func newDottedIDsRefused() async throws {
        let f = try await ESTFixture()
        let created = try await f.admin("POST", "/v1/admin/tenants", body: #"{"id":"acme.eu"}"#)
        #expect(created.status == 400, "\(created.body)")
        #expect(
            errorMessage(created)
                == "a new tenant id may not contain a dot (RabbitMQ reads it as a topic level separator); use _ or -")
        #expect(try await f.store.tenant(TenantID(rawValue: "acme.eu")!) == nil, "nothing stored")
        #expect(try await f.admin("POST", "/v1/admin/tenants", body: #"{"id":"acme-eu"}"#).status == 201)

        let manufacturer = try #require(f.hierarchy.manufacturer)
        let manifest = LotManifest(
            lot: LotID(rawValue: "L1")!, tenant: f.tenant,
            manufacturerCASHA256: manufacturer.certificate.sha256Fingerprint, createdAt: f.server.clock.now(),
            devices: [
                .init(
                    deviceID: DeviceID(rawValue: "ok-1")!, hardwareSerial: "SN1",
                    idevidSHA256: String(repeating: "a", count: 64), idevidSerial: SerialNumber(rawValue: "01")!),
                .init(
                    deviceID: DeviceID(rawValue: "dev.2")!, hardwareSerial: "SN2",
                    idevidSHA256: String(repeating: "b", count: 64), idevidSerial: SerialNumber(rawValue: "02")!),
            ])
        let imported = try await f.admin(
            "POST", "/v1/admin/devices/import",
            body: String(decoding: try DevIDJSON.encoder.encode(manifest), as: UTF8.self))
        #expect(imported.status == 400, "\(imported.body)")
        #expect(
            errorMessage(imported)
                == "device 2 (dev.2): a new device id may not contain a dot (RabbitMQ reads it as a topic level separator); use _ or -")
        #expect(try await f.store.device(DeviceID(rawValue: "ok-1")!) == nil, "nothing imported")

        let before = try await f.store.credentialCount()
        let token = try await f.token(device: "dev.3")
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0,
                headers: [("Authorization", "Bearer \(token.secret)")])
        }
        try await f.expectRefused(
            reply, status: 400,
            reason: "a new device id may not contain a dot (RabbitMQ reads it as a topic level separator); use _ or -",
            credentialsBefore: before)
        #expect(try await f.store.device(DeviceID(rawValue: "dev.3")!) == nil)
        try await f.server.stop()
    }
}
