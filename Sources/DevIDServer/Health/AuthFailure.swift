public import DevIDCore
import Foundation
import X509

/// Where an identity was refused: the `stage` label of `devid_auth_failures_total`.
public enum AuthStage: String, Sendable, CaseIterable {
    /// The mTLS handshake (``ClientCertificateVerifier``).
    case tls
    /// `simpleenroll` and `simplereenroll`.
    case est
    /// The broker and relying-party decision API (`/v1/authz/*`).
    case authz
    /// The device check-in (`GET /v1/device/status`).
    case deviceStatus = "device_status"
}

/// Why an identity was refused: the fixed `reason` label set of `devid_auth_failures_total`. Every refusal DevID
/// knows (``RefusalCode``, ``AuthzReason``, the TLS verifier's outcome) maps onto one of these; anything else is
/// `other`, so no label value ever comes from outside input.
public enum AuthFailureReason: String, Sendable, CaseIterable {
    case expired
    case notYetValid = "not_yet_valid"
    case revoked
    case superseded
    case unknownIssuer = "unknown_issuer"
    case suspended
    case unknownDevice = "unknown_device"
    case badToken = "bad_token"
    case wrongTenant = "wrong_tenant"
    case topicNotAllowed = "topic_not_allowed"
    case other

    /// An EST or check-in refusal code. Codes that are not about who the device is (a bad CSR, overload, a full
    /// disk, a pending approval) return nil: they are not authentication failures.
    public init?(_ code: RefusalCode) {
        switch code {
        case .credentialExpired: self = .expired
        case .credentialNotYetValid: self = .notYetValid
        case .credentialRevoked, .deviceRevoked, .idevidRevoked: self = .revoked
        case .credentialSuperseded, .successorInUse: self = .superseded
        case .credentialUnknown, .idevidMismatch: self = .unknownIssuer
        case .deviceSuspended: self = .suspended
        case .deviceUnknown, .idevidNotAllowed, .deviceDecommissioned, .deviceNotActive: self = .unknownDevice
        case .tokenInvalid, .tokenRevoked, .tokenExpired, .tokenUsedUp, .tokenOtherDevice,
            .tokenNotForExistingDevice, .tokenOutOfScope, .authenticationRequired:
            self = .badToken
        case .wrongTenant: self = .wrongTenant
        case .nameNotAllowed, .wrongEndpoint: self = .other
        case .devicePendingApproval, .badRequest, .keyReused, .conflict, .internalError, .rateLimited, .overloaded,
            .storageFull, .caKeyUnavailable, .registryUnavailable:
            return nil
        }
    }

    /// A policy decision's reason; nil for a grant.
    public init?(_ reason: AuthzReason) {
        switch reason {
        case .ok: return nil
        case .revoked: self = .revoked
        case .suspended: self = .suspended
        case .expired: self = .expired
        case .notYetValid: self = .notYetValid
        case .superseded: self = .superseded
        case .unknownCertificate, .unknownIssuer: self = .unknownIssuer
        case .unknownDevice, .deviceNotActive: self = .unknownDevice
        case .wrongTenant: self = .wrongTenant
        case .topicNotAllowed, .invalidTopic, .scopeNotAllowed, .dottedID: self = .topicNotAllowed
        }
    }

    /// A client certificate the TLS verifier refused, judged at `now`: outside its validity, or else not chaining
    /// to a trusted CA.
    static func tls(leaf: Certificate, now: Date) -> Self {
        if now > leaf.notValidAfter { return .expired }
        if now < leaf.notValidBefore { return .notYetValid }
        return .unknownIssuer
    }
}
