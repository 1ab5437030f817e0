import DevIDCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Policy decisions in the formats brokers already speak. Both always answer HTTP 200: a broker treats any other
/// status as "no opinion" (EMQX: `ignore`, which may let the client through), so a malformed request is denied in
/// the body, never answered 400.
///
/// **RabbitMQ** (`rabbitmq_auth_backend_http`, GET query or POST form-encoded; body `allow` or `deny`):
/// `/v1/authz/rabbitmq/<authz token>/{user,vhost,resource,topic}`. RabbitMQ cannot send headers, so the token is a
/// path segment. With `mqtt.ssl_cert_login` the broker verifies the client certificate itself and sends only its
/// CN (the device id) as `username`, never the certificate, so decisions are by device identity: the device must be
/// `active` and hold a good LDevID (active, or superseded within its overlap, within validity). A request carrying
/// a password is denied: DevID authenticates certificates, not passwords.
/// - `user`: connect decision for `username`.
/// - `vhost`: the device's identity again; vhost `/` or one named after the device's tenant.
/// - `resource`: exchange `amq.topic` (read, write) and the device's own MQTT queues
///   (`mqtt-subscription-<device>qos0|1`, `mqtt-will-<device>`: the MQTT client id must be the device id).
/// - `topic`: exchange `amq.topic`; `write` is publish, `read` subscribe; `routing_key` is translated back to an
///   MQTT topic (`.` → `/`, `*` → `+`, `#` stays) and checked against the topic policy.
///
/// **EMQX 5** (HTTP authenticator and HTTP authorizer, POST JSON; body `{"result":"allow"|"deny"}`):
/// - `/v1/authz/emqx/authn`: `{"clientid","username","password","peerhost","cert_common_name",...}`: connect decision
///   for `cert_common_name` (required: the listener must verify client certificates).
/// - `/v1/authz/emqx/authz`: `{"clientid","username","cert_common_name"?,"action","topic"}`: the device is
///   `cert_common_name` if sent, else `username` (set `peer_cert_as_username = cn` on the listener).
enum BrokerAuthzRoutes {
    static func register(_ group: RouterGroup<OpsRequestContext>, service: AuthzService) {
        for kind in ["user", "vhost", "resource", "topic"] {
            let handler: @Sendable (Request, OpsRequestContext) async throws -> Response = { request, _ in
                let fields = try await formFields(request)
                let allowed = await rabbitMQ(kind, fields, service: service)
                return text(allowed ? "allow" : "deny")
            }
            group.get("/rabbitmq/:token/\(kind)", use: handler)
            group.post("/rabbitmq/:token/\(kind)", use: handler)
        }

        group.post("/emqx/authn") { request, _ -> Response in
            let body = try? await jsonObject(request)
            let allowed = await emqxAuthn(body ?? [:], service: service)
            return try emqxResult(allowed, authentication: true)
        }
        group.post("/emqx/authz") { request, _ -> Response in
            let body = try? await jsonObject(request)
            let allowed = await emqxAuthz(body ?? [:], service: service)
            return try emqxResult(allowed, authentication: false)
        }
    }

    // MARK: - RabbitMQ

    static func rabbitMQ(_ kind: String, _ fields: [String: String], service: AuthzService) async -> Bool {
        guard let username = fields["username"], let device = DeviceID(rawValue: username) else { return false }
        if let password = fields["password"], !password.isEmpty { return false }
        var tenant: TenantID?
        if let vhost = fields["vhost"], vhost != "/" {
            guard let id = TenantID(rawValue: vhost) else { return false }
            tenant = id
        }
        switch kind {
        case "user", "vhost":
            return await allowed(service, device, .connect, tenant, audit: kind == "user")
        case "resource":
            guard let resource = fields["resource"], let name = fields["name"], let permission = fields["permission"]
            else { return false }
            guard rabbitMQResource(resource: resource, name: name, permission: permission, device: device) else {
                return false
            }
            return await allowed(service, device, .connect, tenant, audit: false)
        case "topic":
            guard fields["name"] == "amq.topic", let key = fields["routing_key"], let permission = fields["permission"]
            else { return false }
            let topic = mqttTopic(routingKey: key)
            let action: AuthzAction
            switch permission {
            case "write": action = .publish(topic: topic)
            case "read": action = .subscribe(topic: topic)
            default: return false
            }
            return await allowed(service, device, action, tenant, encoding: .amqp)
        default:
            return false
        }
    }

    /// What the MQTT plugin needs besides topics: the topic exchange, and the device's own session queues.
    static func rabbitMQResource(resource: String, name: String, permission: String, device: DeviceID) -> Bool {
        switch resource {
        case "exchange":
            return name == "amq.topic" && (permission == "read" || permission == "write")
        case "queue":
            let own = [
                "mqtt-subscription-\(device.rawValue)qos0", "mqtt-subscription-\(device.rawValue)qos1",
                "mqtt-will-\(device.rawValue)",
            ]
            return own.contains(name) && ["configure", "write", "read"].contains(permission)
        default:
            return false
        }
    }

    /// RabbitMQ's MQTT plugin turns a topic into a routing key with `/` → `.` and `+` → `*`; this undoes it.
    static func mqttTopic(routingKey: String) -> String {
        routingKey.replacingOccurrences(of: "*", with: "+").replacingOccurrences(of: ".", with: "/")
    }

    // MARK: - EMQX

    static func emqxAuthn(_ body: [String: Any], service: AuthzService) async -> Bool {
        guard let name = body["cert_common_name"] as? String, let device = DeviceID(rawValue: name) else {
            return false
        }
        let peer = (body["peerhost"] as? String).map { String($0.prefix(64)) }
        return await allowed(service, device, .connect, nil, peer: peer)
    }

    static func emqxAuthz(_ body: [String: Any], service: AuthzService) async -> Bool {
        let name =
            (body["cert_common_name"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? body["username"] as? String
        guard let name, let device = DeviceID(rawValue: name), let topic = body["topic"] as? String else {
            return false
        }
        let action: AuthzAction
        switch body["action"] as? String {
        case "publish": action = .publish(topic: topic)
        case "subscribe": action = .subscribe(topic: topic)
        default: return false
        }
        return await allowed(service, device, action, nil)
    }

    /// `{"result": "allow"|"deny"}`; an allowed authentication also says `"is_superuser": false`.
    static func emqxResult(_ allowed: Bool, authentication: Bool) throws -> Response {
        var body: [String: Any] = ["result": allowed ? "allow" : "deny"]
        if authentication && allowed { body["is_superuser"] = false }
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Common

    static func allowed(
        _ service: AuthzService, _ device: DeviceID, _ action: AuthzAction, _ tenant: TenantID?,
        encoding: DecisionEngine.TopicEncoding = .mqtt, audit: Bool = true, peer: String? = nil
    ) async -> Bool {
        do {
            return try await service.decide(
                .device(device), action: action, claimedTenant: tenant, encoding: encoding, auditGrant: audit,
                peer: peer
            ).allowed
        } catch {
            return false
        }
    }

    static func text(_ body: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static let maximumBody = 64 * 1024

    /// The request's fields: the query string (GET) or the form-encoded body (POST).
    static func formFields(_ request: Request) async throws -> [String: String] {
        var text = request.uri.query ?? ""
        if request.method == .post {
            let buffer = try await request.body.collect(upTo: maximumBody)
            text = String(buffer: buffer)
        }
        return parseForm(text)
    }

    /// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; the first occurrence of a name wins.
    static func parseForm(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]) else { continue }
            let value = parts.count > 1 ? decode(parts[1]) : ""
            if fields[name] == nil, let value { fields[name] = value }
        }
        return fields
    }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    static func jsonObject(_ request: Request) async throws -> [String: Any] {
        let buffer = try await request.body.collect(upTo: maximumBody)
        return (try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any]) ?? [:]
    }
}
