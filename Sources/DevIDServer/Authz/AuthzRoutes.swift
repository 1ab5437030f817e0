import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `POST /v1/authz/mqtt`: who (exactly one of `certificate` PEM, `fingerprint`, `device`), what (`action`:
/// connect, publish, subscribe) and where (`topic`, for publish and subscribe); optionally the `tenant` the
/// caller expects.
struct MQTTDecisionRequest: Decodable {
    var certificate: String?
    var fingerprint: String?
    var device: String?
    var tenant: String?
    var action: String
    var topic: String?
    /// The client's address as the broker saw it (optional): lets `conflicting_client_id` tell two connections
    /// of one certificate apart.
    var peer: String?
}

extension MQTTDecisionRequest {
    /// From the members of a flat JSON object (``DecisionJSON/flatObject(_:)``); nil without `action`.
    init?(fields: [String: String]) {
        guard let action = fields["action"] else { return nil }
        self.init(
            certificate: fields["certificate"], fingerprint: fields["fingerprint"], device: fields["device"],
            tenant: fields["tenant"], action: action, topic: fields["topic"], peer: fields["peer"])
    }
}

/// `POST /v1/authz/http`: an HTTP relying party asks whether a device holds an API `scope`.
struct HTTPDecisionRequest: Decodable {
    var certificate: String?
    var fingerprint: String?
    var device: String?
    var tenant: String?
    var scope: String
}

extension HTTPDecisionRequest {
    /// From the members of a flat JSON object (``DecisionJSON/flatObject(_:)``); nil without `scope`.
    init?(fields: [String: String]) {
        guard let scope = fields["scope"] else { return nil }
        self.init(
            certificate: fields["certificate"], fingerprint: fields["fingerprint"], device: fields["device"],
            tenant: fields["tenant"], scope: scope)
    }
}

/// The answer of every native decision route (HTTP 200 whether allowed or denied), written by
/// ``DecisionJSON/response(_:)``.
struct DecisionResponse: ResponseCodable {
    /// `allow` or `deny`.
    var result: String
    /// `ok` or why not (see ``AuthzReason``).
    var reason: String
    var device: String?
    var tenant: String?
    var serial: String?

    init(_ decision: AuthzDecision) {
        result = decision.allowed ? "allow" : "deny"
        reason = decision.reason.rawValue
        device = decision.device?.rawValue
        tenant = decision.tenant?.rawValue
        serial = decision.serial?.rawValue
    }
}

struct DecisionStats: Codable, Sendable {
    struct Counter: Codable, Sendable {
        var action: String
        var result: String
        var reason: String
        var count: Int
    }
    struct IndexSize: Codable, Sendable {
        var devices: Int
        var credentials: Int
        var tenants: Int
    }
    var total: Int
    var allowed: Int
    var denied: Int
    var decisions: [Counter]
    var index: IndexSize
}

/// The policy-decision API on the operations listener, behind ``AuthzAuthMiddleware``.
enum AuthzRoutes {
    /// Returns the authz token it read (or created), nil when it could not; ``AuthzFastPathHandler`` takes the same.
    @discardableResult
    static func register(_ router: Router<OpsRequestContext>, state: ServerState) -> AuthzToken? {
        var token: AuthzToken?
        do {
            token = try AuthzToken.loadOrCreate(state.configuration)
        } catch {
            state.logger.error(
                "cannot read or create the authz token; /v1/authz accepts admin tokens only",
                metadata: ["error": "\(error)"])
        }
        let group = router.group("/v1/authz").add(
            middleware: AuthzAuthMiddleware(state: state, token: token))
        let service = AuthzService(state: state)

        group.post("/mqtt") { request, context -> Response in
            let body = try await DecisionJSON.decode(
                MQTTDecisionRequest.self, request, context: context, fast: MQTTDecisionRequest.init(fields:))
            let presented = try presented(
                certificate: body.certificate, fingerprint: body.fingerprint, device: body.device)
            let tenant = try tenant(body.tenant)
            let action: AuthzAction
            switch body.action {
            case "connect":
                action = .connect
            case "publish", "subscribe":
                guard let topic = body.topic else {
                    throw HTTPError(.badRequest, message: "topic is required for publish and subscribe")
                }
                action = body.action == "publish" ? .publish(topic: topic) : .subscribe(topic: topic)
            default:
                throw HTTPError(.badRequest, message: "action must be connect, publish or subscribe")
            }
            let peer = body.peer.map { String($0.prefix(64)) }
            return DecisionJSON.response(
                DecisionResponse(try await decide(service, presented, action, tenant, peer: peer)))
        }

        group.post("/http") { request, context -> Response in
            let body = try await DecisionJSON.decode(
                HTTPDecisionRequest.self, request, context: context, fast: HTTPDecisionRequest.init(fields:))
            let presented = try presented(
                certificate: body.certificate, fingerprint: body.fingerprint, device: body.device)
            let tenant = try tenant(body.tenant)
            guard TopicPolicy.isValidScope(body.scope) else {
                throw HTTPError(
                    .badRequest,
                    message: "scope must be 1-\(TopicPolicy.maximumScopeLength) characters of A-Z a-z 0-9 . _ - : /")
            }
            return DecisionJSON.response(
                DecisionResponse(try await decide(service, presented, .scope(body.scope), tenant)))
        }

        group.get("/stats") { _, _ -> JSONBody<DecisionStats> in
            let counters = state.authz.counters
            let snapshot = counters.snapshot()
            let size = state.authz.size
            return JSONBody(
                DecisionStats(
                    total: counters.count(), allowed: counters.count(allowed: true),
                    denied: counters.count(allowed: false),
                    decisions: snapshot.map {
                        .init(
                            action: $0.key.action, result: $0.key.allowed ? "allow" : "deny",
                            reason: $0.key.reason.rawValue, count: $0.count)
                    },
                    index: .init(devices: size.devices, credentials: size.credentials, tenants: size.tenants)))
        }

        BrokerAuthzRoutes.register(group, service: service)
        return token
    }

    static func decide(
        _ service: AuthzService, _ presented: AuthzService.Presented, _ action: AuthzAction, _ tenant: TenantID?,
        peer: String? = nil
    ) async throws -> AuthzDecision {
        do {
            return try await service.decide(presented, action: action, claimedTenant: tenant, peer: peer)
        } catch let error as AuthzService.BadRequest {
            throw HTTPError(.badRequest, message: error.reason)
        } catch let error as StoreError where error.code == .unavailable {
            // Nothing in memory to answer from (see DecisionEngine.outageMaximumAge): the broker asks again.
            throw HTTPError(
                .serviceUnavailable, headers: [.retryAfter: "10"],
                message: "the registry is unavailable and this decision is not in memory; retry later")
        }
    }

    static func presented(certificate: String?, fingerprint: String?, device: String?) throws -> AuthzService.Presented
    {
        switch (certificate, fingerprint, device) {
        case (let pem?, nil, nil):
            return .pem(pem)
        case (nil, let text?, nil):
            return .fingerprint(text)
        case (nil, nil, let name?):
            guard let id = DeviceID(rawValue: name) else { throw HTTPError(.badRequest, message: "invalid device id") }
            return .device(id)
        default:
            throw HTTPError(.badRequest, message: "give exactly one of certificate, fingerprint, device")
        }
    }

    static func tenant(_ name: String?) throws -> TenantID? {
        guard let name else { return nil }
        guard let id = TenantID(rawValue: name) else { throw HTTPError(.badRequest, message: "invalid tenant") }
        return id
    }
}
