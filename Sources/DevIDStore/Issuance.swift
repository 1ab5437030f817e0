public import DevIDCore
public import Foundation

/// Everything that changes when a certificate is issued, stored by ``Store/recordIssuance(_:)`` in one
/// transaction.
///
/// The store applies the steps in this order and stops at the first refusal, storing nothing:
/// 1. `registerDevice`: inserted as by ``Store/insertDevice(_:audit:)`` (`.duplicate` on a taken id or hardware
///    serial, `.notFound` for a missing tenant or lot); `.conflict` if its id is not `credential.deviceID`.
/// 2. `credential`: inserted (`.duplicate` on a taken serial or certificate fingerprint, `.notFound` if its
///    device does not exist).
/// 3. `transition`: the device moves from `expected` to `next` (`.conflict` if it is no longer `expected`).
/// 4. `consumeToken`: one use is taken (`.notFound` for an unknown token; `.conflict` if it is used up,
///    revoked or expired at `now`, belongs to another tenant than the device, or is bound to another device).
/// 5. `supersede`: each credential is marked `superseded`, with `replacedBy` set to the issued credential's serial
///    and `overlapDeadline` to ``overlapDeadline`` (`.notFound` for an unknown serial; `.conflict` if it is
///    neither `active` nor `superseded`, belongs to another device, is the credential being issued, or is listed
///    twice). A credential that is already `superseded` (a device re-enrolling with its old certificate during the
///    overlap) keeps the earlier of its deadline and the new one (nil counts as no deadline) and gets the new
///    `replacedBy`.
/// 6. The device's `lastSeen` becomes `now`, and `audit` is appended to the trail.
public struct Issuance: Sendable {
    public var credential: Credential
    /// Insert this device first (auto-registration of an unknown IDevID); nil if it exists.
    public var registerDevice: Device?
    /// Move the device from `expected` to `next` (optimistic; `.conflict` if its state changed meanwhile).
    public var transition: (expected: DeviceState, next: DeviceState)?
    /// Consume one use of this claim token, checked at `now` (`.conflict` if used up, revoked or expired).
    public var consumeToken: String?
    /// Mark these credentials of the same device `superseded` (they must currently be `active`, or `superseded`
    /// together with their successor, else `.conflict`: see ``successorLeftOut(_:of:in:_:)``).
    public var supersede: [SerialNumber]
    /// The overlap deadline of the credentials in ``supersede``: when they are revoked at the latest.
    public var overlapDeadline: Date?
    public var now: Date
    public var audit: AuditEvent

    public init(
        credential: Credential, registerDevice: Device? = nil,
        transition: (expected: DeviceState, next: DeviceState)? = nil, consumeToken: String? = nil,
        supersede: [SerialNumber] = [], overlapDeadline: Date? = nil, now: Date, audit: AuditEvent
    ) {
        self.credential = credential
        self.registerDevice = registerDevice
        self.transition = transition
        self.consumeToken = consumeToken
        self.supersede = supersede
        self.overlapDeadline = overlapDeadline
        self.now = now
        self.audit = audit
    }
}

extension Issuance {
    /// The refusal for superseding, again, a credential that is already `superseded` by `successor` when the
    /// successor is not superseded in the same issuance. The one issuance that supersedes a superseded credential
    /// on purpose, a retry during the overlap while the successor was never seen, gives up the successor with it.
    /// Any other is a decision taken on a registry read before a concurrent renewal committed: two
    /// `simplereenroll`s with the same certificate at once both read it `active`, and without this the second left
    /// the first one's LDevID `active` and orphaned (never superseded, so never revoked) beside its own.
    static func successorLeftOut(
        _ successor: SerialNumber?, of serial: SerialNumber, in issuance: Issuance, _ operation: String
    ) -> StoreError? {
        guard let successor, !issuance.supersede.contains(successor) else { return nil }
        return StoreError(
            .conflict, "\(operation): credential \(serial) was renewed meanwhile (by \(successor)); retry")
    }
}
