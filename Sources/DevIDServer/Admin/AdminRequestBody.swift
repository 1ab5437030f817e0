import DevIDCore
import DevIDPKI
import Foundation

/// Every JSON request body the operations listener decodes, read as its route reads it: decoded with the route's
/// decoder (``DevIDJSON/decoder``, or a plain `JSONDecoder` for the topic policy, as `PolicyRoutes` does), then
/// put through the checks the route makes before it reads or writes the registry.
///
/// The fuzz targets (`Fuzz/Targets`, docs/fuzzing.md) and their corpus tests call this; the routes do not. Where a
/// route's check is a method or a Core validator (`RevokeRequest.scope()`, `AuthzRoutes.presented`,
/// `TopicPolicy.validate()`, `TenantID(newID:)`, ...), the same one is called here; the few inline range checks of the
/// handlers (ttl, uses, port) are repeated, as the route states them.
public enum AdminRequestBody: String, CaseIterable, Sendable {
    /// `POST /v1/admin/tenants`
    case tenant
    /// `POST /v1/admin/tokens`
    case claimToken
    /// `POST /v1/admin/admin-tokens`
    case adminToken
    /// `POST /v1/admin/devices/import` (a lot manifest)
    case lotManifest
    /// `PUT /v1/admin/tenants/:id/policy`
    case tenantPolicy
    /// `PUT /v1/admin/tenants/:id/topic-policy`
    case topicPolicy
    /// `POST /v1/admin/revoke`
    case revoke
    /// `POST /v1/admin/rotate`
    case rotate
    /// `POST /v1/admin/exports/mosquitto`
    case mosquittoExport
    /// `POST /v1/authz/mqtt`
    case mqttDecision
    /// `POST /v1/authz/http`
    case httpDecision

    /// Why a body was refused, one line (what the route would answer 400 with, or the decoding error's kind).
    public struct Refused: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// Decodes `body` and runs the route's checks that come before the registry. Returns normally when the route
    /// would go on to the registry; throws when it would refuse the body.
    public func check(_ body: [UInt8]) throws {
        let data = Data(body)
        let decoder = DevIDJSON.decoder
        switch self {
        case .tenant:
            let request = try decoder.decode(TenantRequest.self, from: data)
            _ = try TenantID(newID: request.id)
        case .claimToken:
            let request = try decoder.decode(TokenCreateRequest.self, from: data)
            guard TenantID(rawValue: request.tenant) != nil else { throw Refused(reason: "invalid tenant") }
            if let name = request.device, DeviceID(rawValue: name) == nil { throw Refused(reason: "invalid device id") }
            guard (1...AdminRoutes.maximumTokenTTL).contains(request.ttlSeconds ?? 3_600) else {
                throw Refused(reason: "ttlSeconds out of range")
            }
            guard (1...10_000).contains(request.uses ?? 1) else { throw Refused(reason: "uses out of range") }
            if let lot = request.lot, LotID(rawValue: lot) == nil { throw Refused(reason: "invalid lot") }
            if let pattern = request.namePattern, !NamePattern.isValid(pattern) {
                throw Refused(reason: "invalid namePattern")
            }
        case .adminToken:
            let request = try decoder.decode(AdminTokenCreateRequest.self, from: data)
            guard AdminToken.isValidName(request.name) else { throw Refused(reason: "invalid name") }
            guard let role = AdminRole(rawValue: request.role) else { throw Refused(reason: "invalid role") }
            if let names = request.tenants {
                guard !names.isEmpty, names.count <= AdminTokenRoutes.maximumTenants else {
                    throw Refused(reason: "tenants count out of range")
                }
                for name in names where TenantID(rawValue: name) == nil { throw Refused(reason: "invalid tenant") }
            }
            guard role != .factory || request.tenants != nil else { throw Refused(reason: "factory token unlimited") }
            if let seconds = request.expiresInSeconds, !(1...AdminTokenRoutes.maximumLifetime).contains(seconds) {
                throw Refused(reason: "expiresInSeconds out of range")
            }
        case .lotManifest:
            let manifest = try decoder.decode(LotManifest.self, from: data)
            guard manifest.devices.count <= AdminRoutes.maximumImport else { throw Refused(reason: "too many devices") }
            for entry in manifest.devices where !DeviceNames.isValidHardwareSerial(entry.hardwareSerial) {
                throw Refused(reason: "invalid hardware serial")
            }
            for entry in manifest.devices where entry.deviceID.hasDot { throw Refused(reason: "dotted device id") }
        case .tenantPolicy:
            let update = try decoder.decode(TenantPolicyUpdate.self, from: data)
            if let uses = update.maxUnboundTokenUses, !(1...10_000).contains(uses) {
                throw Refused(reason: "maxUnboundTokenUses out of range")
            }
            if let ttl = update.maxUnboundTokenTTL, !(1...AdminRoutes.maximumTokenTTL).contains(ttl) {
                throw Refused(reason: "maxUnboundTokenTTL out of range")
            }
        case .topicPolicy:
            let policy = try JSONDecoder().decode(TopicPolicy.self, from: data)
            try policy.validate()
        case .revoke:
            let request = try decoder.decode(RevokeRequest.self, from: data)
            _ = try request.scope()
            _ = try request.revocationReason()
        case .rotate:
            let request = try decoder.decode(RotateRequest.self, from: data)
            _ = try request.scope()
        case .mosquittoExport:
            let request = try decoder.decode(MosquittoExportRequest.self, from: data)
            guard request.directory.hasPrefix("/"), !request.directory.contains(" "),
                ControlCharacters.first(in: request.directory) == nil
            else { throw Refused(reason: "invalid directory") }
            guard (1...65_535).contains(request.port ?? 8883) else { throw Refused(reason: "invalid port") }
            let bind = request.bindAddress ?? "0.0.0.0"
            guard !bind.isEmpty, bind.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                throw Refused(reason: "invalid bind address")
            }
            let names = request.brokerNames ?? ["localhost", "127.0.0.1"]
            guard !names.isEmpty, names.allSatisfy(BrokerRoutes.isValidHostName) else {
                throw Refused(reason: "invalid broker names")
            }
            if let csr = request.csr {
                guard let der = Data(base64Encoded: csr) else { throw Refused(reason: "csr is not base64") }
                _ = try EnrollmentRequest(der: Array(der))
            }
        case .mqttDecision:
            let request = try decoder.decode(MQTTDecisionRequest.self, from: data)
            _ = try AuthzRoutes.presented(
                certificate: request.certificate, fingerprint: request.fingerprint, device: request.device)
            _ = try AuthzRoutes.tenant(request.tenant)
            switch request.action {
            case "connect": break
            case "publish", "subscribe":
                guard request.topic != nil else { throw Refused(reason: "topic is required") }
            default: throw Refused(reason: "invalid action")
            }
        case .httpDecision:
            let request = try decoder.decode(HTTPDecisionRequest.self, from: data)
            _ = try AuthzRoutes.presented(
                certificate: request.certificate, fingerprint: request.fingerprint, device: request.device)
            _ = try AuthzRoutes.tenant(request.tenant)
            guard TopicPolicy.isValidScope(request.scope) else { throw Refused(reason: "invalid scope") }
        }
    }
}
