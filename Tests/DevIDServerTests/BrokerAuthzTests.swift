import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// Requests as RabbitMQ's `rabbitmq_auth_backend_http` (with the MQTT plugin and `mqtt.ssl_cert_login`) and EMQX
/// 5's HTTP authenticator and authorizer send them (the documented shapes, with the body templates docs/policy.md
/// recommends), replayed against a live server.
enum RecordedBrokerRequests {
    // RabbitMQ, http_method = post: application/x-www-form-urlencoded bodies.
    static let rabbitUser = "username=m-1&vhost=%2F&client_id=m-1"
    static let rabbitUserWithPassword = "username=m-1&password=guess"
    static let rabbitVhost = "username=m-1&vhost=%2F&ip=127.0.0.1"
    static let rabbitVhostOfTenant = "username=m-1&vhost=acme&ip=127.0.0.1"
    static let rabbitVhostOfOtherTenant = "username=m-1&vhost=globex&ip=127.0.0.1"
    static let rabbitExchangeWrite = "username=m-1&vhost=%2F&resource=exchange&name=amq.topic&permission=write"
    static let rabbitExchangeConfigure = "username=m-1&vhost=%2F&resource=exchange&name=amq.topic&permission=configure"
    static let rabbitOwnQueue =
        "username=m-1&vhost=%2F&resource=queue&name=mqtt-subscription-m-1qos1&permission=configure"
    static let rabbitOtherQueue = "username=m-1&vhost=%2F&resource=queue&name=mqtt-subscription-m-2qos1&permission=read"
    static let rabbitPublish =
        "username=m-1&vhost=%2F&resource=topic&name=amq.topic&permission=write"
        + "&routing_key=tenants.acme.devices.m-1.telemetry.temp&variable_map.client_id=m-1&variable_map.username=m-1"
        + "&variable_map.vhost=%2F"
    static let rabbitPublishOtherDevice =
        "username=m-1&vhost=%2F&resource=topic&name=amq.topic&permission=write&routing_key=tenants.acme.devices.m-2.telemetry.temp"
    static let rabbitSubscribeCommands =
        "username=m-1&vhost=%2F&resource=topic&name=amq.topic&permission=read&routing_key=tenants.acme.devices.m-1.commands.%23"
    static let rabbitSubscribeStar =
        "username=m-1&vhost=%2F&resource=topic&name=amq.topic&permission=read&routing_key=tenants.acme.devices.m-1.commands.*"
    static let rabbitSubscribeAll =
        "username=m-1&vhost=%2F&resource=topic&name=amq.topic&permission=read&routing_key=%23"
    static let rabbitOtherExchange =
        "username=m-1&vhost=%2F&resource=topic&name=amq.direct&permission=write&routing_key=tenants.acme.devices.m-1.telemetry.x"

    // EMQX 5: JSON bodies.
    static let emqxAuthn =
        #"{"clientid":"m-1","username":"m-1","password":"","peerhost":"127.0.0.1","cert_common_name":"m-1","cert_subject":"CN=m-1,O=acme"}"#
    static let emqxAuthnWithoutCertificate =
        #"{"clientid":"m-1","username":"m-1","password":"secret","peerhost":"127.0.0.1"}"#
    static let emqxPublish =
        #"{"clientid":"m-1","username":"m-1","peerhost":"127.0.0.1","action":"publish","topic":"tenants/acme/devices/m-1/telemetry/temp","qos":"1","retain":"false"}"#
    static let emqxSubscribeAll = ##"{"clientid":"m-1","username":"m-1","action":"subscribe","topic":"#","qos":"0"}"##
    static let emqxSharedSubscribe =
        #"{"clientid":"m-1","username":"m-1","cert_common_name":"m-1","action":"subscribe","topic":"$share/g/tenants/acme/broadcast"}"#
}

@Suite("Broker formats: RabbitMQ HTTP backend and EMQX HTTP auth", .serialized)
struct BrokerAuthzTests {
    func rabbit(_ f: ESTFixture, _ kind: String, _ form: String, get: Bool = false, token: String? = nil) async throws
        -> Reply
    {
        let path = "/v1/authz/rabbitmq/\(token ?? f.authzToken)/\(kind)"
        return try await withClient(try f.server.client()) {
            if get { return try await $0.send("GET", f.server.opsURL + path + "?" + form) }
            return try await $0.send(
                "POST", f.server.opsURL + path, headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: form)
        }
    }

    func expectRabbit(
        _ f: ESTFixture, _ kind: String, _ form: String, _ expected: String, get: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let reply = try await rabbit(f, kind, form, get: get)
        #expect(reply.status == 200, sourceLocation: sourceLocation)
        #expect(reply.body == expected, "\(kind) \(form)", sourceLocation: sourceLocation)
    }

    @Test("RabbitMQ: user, vhost, resource and topic paths; the next answer after a suspension is deny")
    func rabbitMQ() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("m-1")
        typealias R = RecordedBrokerRequests
        for get in [false, true] {
            try await expectRabbit(f, "user", R.rabbitUser, "allow", get: get)
            try await expectRabbit(f, "user", R.rabbitUserWithPassword, "deny", get: get)
            try await expectRabbit(f, "vhost", R.rabbitVhost, "allow", get: get)
            try await expectRabbit(f, "vhost", R.rabbitVhostOfTenant, "allow", get: get)
            try await expectRabbit(f, "vhost", R.rabbitVhostOfOtherTenant, "deny", get: get)
            try await expectRabbit(f, "resource", R.rabbitExchangeWrite, "allow", get: get)
            try await expectRabbit(f, "resource", R.rabbitExchangeConfigure, "deny", get: get)
            try await expectRabbit(f, "resource", R.rabbitOwnQueue, "allow", get: get)
            try await expectRabbit(f, "resource", R.rabbitOtherQueue, "deny", get: get)
            try await expectRabbit(f, "topic", R.rabbitPublish, "allow", get: get)
            try await expectRabbit(f, "topic", R.rabbitPublishOtherDevice, "deny", get: get)
            try await expectRabbit(f, "topic", R.rabbitSubscribeCommands, "allow", get: get)
            try await expectRabbit(f, "topic", R.rabbitSubscribeStar, "allow", get: get)
            try await expectRabbit(f, "topic", R.rabbitSubscribeAll, "deny", get: get)
            try await expectRabbit(f, "topic", R.rabbitOtherExchange, "deny", get: get)
            try await expectRabbit(f, "topic", "", "deny", get: get)
            try await expectRabbit(f, "user", "username=no%20such%20device", "deny", get: get)
        }
        #expect(try await rabbit(f, "user", R.rabbitUser, token: "wrong").status == 401)

        #expect(try await f.admin("POST", "/v1/admin/devices/m-1/suspend").status == 200)
        try await expectRabbit(f, "user", R.rabbitUser, "deny")
        try await expectRabbit(f, "topic", R.rabbitPublish, "deny")
        let denied = try await f.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .denied, limit: 1))
        #expect(denied.first?.reason == "publish tenants/acme/devices/m-1/telemetry/temp: suspended")
        try await f.server.stop()
    }

    @Test("RabbitMQ: a device id with a dot (stored before dots were refused) is denied every topic; MQTT is not")
    func rabbitMQDottedIdentifiers() async throws {
        let f = try await ESTFixture()
        // New ids cannot have a dot; this one is legacy data, written straight into the registry.
        try await f.store.insertDevice(
            Device(
                id: DeviceID(rawValue: "dev.9")!, tenant: f.tenant, hardwareSerial: "claim:dev.9", lot: nil,
                state: .manufactured, createdAt: f.server.clock.now()),
            audit: nil)
        _ = try await f.enroll("dev.9")
        try await expectRabbit(f, "user", "username=dev.9&vhost=%2F", "allow")
        for key in [
            "tenants.acme.devices.dev.9.telemetry.x", "tenants.acme.devices.dev.8.telemetry.x",
            "tenants.globex.devices.dev.9.telemetry.x",
        ] {
            try await expectRabbit(
                f, "topic",
                "username=dev.9&vhost=%2F&resource=topic&name=amq.topic&permission=write&routing_key=\(key)", "deny")
        }
        #expect(f.server.state.authz.counters.count(reason: .dottedID) == 3)
        // The first denial is written with its routing key; the two after it, the same decision, are counted
        // (RepeatedDecisions) until the minute's summary row.
        let denied = try await f.store.auditEvents(AuditFilter(action: "authz.publish", outcome: .denied, limit: 10))
        #expect(denied.map(\.reason) == ["publish tenants/acme/devices/dev/9/telemetry/x: dotted_id"])
        #expect(await f.server.state.repeatedDenials.pending == 2)
        #expect(
            try await f.decide(["device": "dev.9", "action": "publish", "topic": "tenants/acme/devices/dev.9/telemetry/x"])
                == ("allow", "ok"), "MQTT keeps the dot: nothing to confuse")
        try await f.server.stop()
    }

    @Test("EMQX: authentication and authorization shapes; malformed requests are denied with 200, never ignored")
    func emqx() async throws {
        let f = try await ESTFixture()
        _ = try await f.enroll("m-1")
        typealias R = RecordedBrokerRequests
        func post(_ path: String, _ body: String) async throws -> [String: String] {
            let reply = try await f.authz("POST", "/v1/authz/emqx/\(path)", body: body)
            #expect(reply.status == 200)
            #expect(reply.header("Content-Type") == "application/json")
            let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8))
            #expect(object is [String: Any], "a JSON object")
            let json = object as? [String: Any] ?? [:]
            var fields: [String: String] = [:]
            if let result = json["result"] as? String { fields["result"] = result }
            if json["is_superuser"] != nil {
                fields["is_superuser"] = reply.body.contains(#""is_superuser":false"#) ? "false" : "?"
            }
            return fields
        }
        #expect(try await post("authn", R.emqxAuthn) == ["result": "allow", "is_superuser": "false"])
        #expect(try await post("authn", R.emqxAuthnWithoutCertificate) == ["result": "deny"])
        #expect(try await post("authn", "not json") == ["result": "deny"])
        #expect(try await post("authz", R.emqxPublish) == ["result": "allow"])
        #expect(try await post("authz", R.emqxSubscribeAll) == ["result": "deny"])
        #expect(try await post("authz", R.emqxSharedSubscribe) == ["result": "allow"])
        #expect(try await post("authz", #"{"username":"m-1","action":"retain","topic":"x"}"#) == ["result": "deny"])
        #expect(try await post("authz", "[]") == ["result": "deny"])

        #expect(try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"m-1"}"#).status == 200)
        #expect(try await post("authn", R.emqxAuthn) == ["result": "deny"])
        #expect(try await post("authz", R.emqxPublish) == ["result": "deny"])
        #expect(f.server.state.authz.counters.count(reason: .revoked) == 2)
        try await f.server.stop()
    }
}
