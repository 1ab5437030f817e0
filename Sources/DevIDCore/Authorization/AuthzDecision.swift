public import Foundation

/// Why a policy decision came out as it did. A closed set with stable snake_case names: brokers, dashboards and
/// the decision counters key on them.
public enum AuthzReason: String, Sendable, Codable, Hashable, CaseIterable {
    /// Allowed.
    case ok
    case revoked
    case suspended
    case expired
    case notYetValid = "not_yet_valid"
    /// Superseded by a newer credential, and its overlap has ended.
    case superseded
    /// The certificate or fingerprint is not one DevID issued (or not in the registry).
    case unknownCertificate = "unknown_certificate"
    /// The certificate was not signed by DevID's issuing CA.
    case unknownIssuer = "unknown_issuer"
    case unknownDevice = "unknown_device"
    /// The request names another tenant than the device's (in the topic or the claimed tenant).
    case wrongTenant = "wrong_tenant"
    case topicNotAllowed = "topic_not_allowed"
    case invalidTopic = "invalid_topic"
    /// The device is not `active` (manufactured, pending approval, decommissioned).
    case deviceNotActive = "device_not_active"
    /// The tenant's policy does not grant the requested API scope.
    case scopeNotAllowed = "scope_not_allowed"
    /// A RabbitMQ topic for a device whose tenant or device id has a `.` (stored before new ids were refused one):
    /// RabbitMQ cannot tell that dot from a level separator, so it is denied until the device is re-provisioned
    /// under an id without one.
    case dottedID = "dotted_id"
}

/// What is being asked.
public enum AuthzAction: Sendable, Hashable {
    case connect
    case publish(topic: String)
    case subscribe(topic: String)
    /// An HTTP relying party asks whether the device holds an API scope.
    case scope(String)

    /// The stable name used in counters and audit events.
    public var name: String {
        switch self {
        case .connect: "connect"
        case .publish: "publish"
        case .subscribe: "subscribe"
        case .scope: "scope"
        }
    }
}

/// A decision: allow or deny, why, and who it was about (as far as known).
public struct AuthzDecision: Sendable, Hashable {
    public var allowed: Bool
    public var reason: AuthzReason
    public var device: DeviceID?
    public var tenant: TenantID?
    /// The credential the decision was made on (certificate or fingerprint requests, or the newest usable one).
    public var serial: SerialNumber?

    public init(
        allowed: Bool, reason: AuthzReason, device: DeviceID? = nil, tenant: TenantID? = nil,
        serial: SerialNumber? = nil
    ) {
        self.allowed = allowed
        self.reason = reason
        self.device = device
        self.tenant = tenant
        self.serial = serial
    }

    public static func deny(
        _ reason: AuthzReason, device: DeviceID? = nil, tenant: TenantID? = nil, serial: SerialNumber? = nil
    ) -> Self {
        Self(allowed: false, reason: reason, device: device, tenant: tenant, serial: serial)
    }
}

/// What a decision needs to know about a device: a snapshot, no certificate bytes.
public struct DeviceSnapshot: Sendable, Hashable {
    public var id: DeviceID
    public var tenant: TenantID
    public var lot: LotID?
    public var state: DeviceState

    public init(id: DeviceID, tenant: TenantID, lot: LotID?, state: DeviceState) {
        self.id = id
        self.tenant = tenant
        self.lot = lot
        self.state = state
    }

    public init(_ device: Device) {
        self.init(id: device.id, tenant: device.tenant, lot: device.lot, state: device.state)
    }
}

/// What a decision needs to know about one credential.
public struct CredentialSnapshot: Sendable, Hashable {
    public var serial: SerialNumber
    public var kind: CredentialKind
    public var status: CredentialStatus
    public var notBefore: Date
    public var notAfter: Date
    public var overlapDeadline: Date?
    public var confirmed: Bool

    public init(
        serial: SerialNumber, kind: CredentialKind = .ldevid, status: CredentialStatus, notBefore: Date,
        notAfter: Date, overlapDeadline: Date? = nil, confirmed: Bool = false
    ) {
        self.serial = serial
        self.kind = kind
        self.status = status
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.overlapDeadline = overlapDeadline
        self.confirmed = confirmed
    }

    public init(_ credential: Credential) {
        self.init(
            serial: credential.serial, kind: credential.kind, status: credential.status,
            notBefore: credential.notBefore, notAfter: credential.notAfter,
            overlapDeadline: credential.overlapDeadline, confirmed: credential.confirmedAt != nil)
    }
}

/// The identity half of a decision: is this credential, of this device, good at `now`? Pure.
public enum IdentityCheck {
    /// `.ok`, or the first reason it is not, in this order: the credential is revoked; the device is revoked,
    /// suspended or not active; the credential is an IDevID (it only enrolls), not yet valid, expired, or superseded
    /// past its overlap deadline.
    public static func check(_ credential: CredentialSnapshot, of device: DeviceSnapshot, at now: Date) -> AuthzReason {
        if credential.status == .revoked { return .revoked }
        if let reason = check(device) { return reason }
        if credential.kind != .ldevid { return .unknownCertificate }
        // Grace only lets a credential renew late, never authorize: within grace is expired here.
        switch CredentialLifecycle(policy: RotationPolicy(grace: 0)).standing(credential, at: now) {
        case .current, .overlap: return .ok
        case .revoked: return .revoked
        case .notYetValid: return .notYetValid
        case .withinGrace, .expired: return .expired
        case .superseded: return .superseded
        }
    }

    /// The device-state half: nil when the device is `active`.
    public static func check(_ device: DeviceSnapshot) -> AuthzReason? {
        switch device.state {
        case .active: nil
        case .revoked: .revoked
        case .suspended: .suspended
        case .manufactured, .pendingApproval, .decommissioned: .deviceNotActive
        }
    }

    /// A decision by device identity alone (a broker that authenticated the certificate itself and passes only
    /// the CN): the device must be active and hold at least one good LDevID (active, or superseded within its
    /// overlap, and within its validity). Returns that credential, newest first; otherwise the reason of the
    /// newest LDevID (`unknown_certificate` if it has none).
    public static func check(
        device: DeviceSnapshot, credentials: [CredentialSnapshot], at now: Date
    ) -> (reason: AuthzReason, credential: CredentialSnapshot?) {
        if let reason = check(device) { return (reason, nil) }
        let ldevids = credentials.filter { $0.kind == .ldevid }.sorted { $0.notBefore > $1.notBefore }
        if let good = ldevids.first(where: { check($0, of: device, at: now) == .ok }) { return (.ok, good) }
        guard let newest = ldevids.first else { return (.unknownCertificate, nil) }
        return (check(newest, of: device, at: now), newest)
    }
}
