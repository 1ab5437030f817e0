public import DevIDCore
public import Foundation

/// The registry: devices, credentials, tenants, lots, claim tokens, admin tokens and the audit trail.
///
/// Every backend (SQLite now, PostgreSQL next, an in-memory actor for unit tests) implements this protocol
/// and passes the one conformance suite in `Tests/DevIDStoreConformanceTests`. The protocol carries no
/// backend types. Methods that change state and record an audit event do both in one transaction:
/// either both are stored or neither is.
public protocol Store: Sendable {
    // MARK: Tenants and lots
    func createTenant(_ tenant: Tenant, audit: AuditEvent?) async throws(StoreError)
    func tenant(_ id: TenantID) async throws(StoreError) -> Tenant?
    func tenants() async throws(StoreError) -> [Tenant]
    /// Replaces a tenant's enrollment policy; `.notFound` if the tenant does not exist.
    func updateTenantPolicy(_ id: TenantID, policy: TenantPolicy, audit: AuditEvent?) async throws(StoreError)
    func createLot(_ lot: Lot) async throws(StoreError)
    func lot(_ id: LotID) async throws(StoreError) -> Lot?

    // MARK: Devices
    /// Inserts a device. Fails with `.duplicate` if the id or the (tenant-independent) hardware serial exists,
    /// with `.notFound` if its tenant or lot does not exist.
    func insertDevice(_ device: Device, audit: AuditEvent?) async throws(StoreError)
    /// Imports a factory manifest (the allowlist) and its audit event in one transaction.
    ///
    /// Devices are checked in order, and the first refusal wins; a refused import stores nothing, not even
    /// `audit`. For each device:
    /// - its tenant must exist, else `.notFound`;
    /// - its lot is created (under the device's tenant, at `audit.time`) if missing; a lot that belongs to
    ///   another tenant, or that two devices of the import place under different tenants, is `.conflict`;
    /// - an id or hardware serial that appears twice in `devices` is `.duplicate`, even on identical rows;
    /// - a device already registered with the same id, tenant, hardware serial and lot is counted
    ///   `unchanged` and left as it is (state, times); any other clash with a registered id or hardware
    ///   serial is `.duplicate`.
    ///
    /// Error reasons name the offending device's id and nothing else from the manifest.
    func importDevices(_ devices: [Device], audit: AuditEvent) async throws(StoreError) -> DeviceImportResult
    func device(_ id: DeviceID) async throws(StoreError) -> Device?
    func device(hardwareSerial: String) async throws(StoreError) -> Device?
    func devices(_ filter: DeviceFilter) async throws(StoreError) -> [Device]
    /// Moves a device from `expected` to `next` atomically; `.conflict` if its state is no longer `expected`.
    func updateDeviceState(
        _ id: DeviceID, from expected: DeviceState, to next: DeviceState, audit: AuditEvent?
    ) async throws(StoreError)
    func recordSeen(_ id: DeviceID, at time: Date) async throws(StoreError)

    // MARK: Credentials
    /// Records an issued certificate and its audit event in one transaction. Serial numbers are unique by a
    /// database constraint: a second insert of the same serial fails with `.duplicate` and stores nothing.
    func insertCredential(_ credential: Credential, audit: AuditEvent) async throws(StoreError)
    func credential(serial: SerialNumber) async throws(StoreError) -> Credential?
    func credential(certificateSHA256: String) async throws(StoreError) -> Credential?
    func credentials(device: DeviceID) async throws(StoreError) -> [Credential]
    /// A device's credentials that are still valid as far as the registry knows (`active` or `superseded`),
    /// newest `notBefore` first (ties: newest `createdAt`, then descending serial).
    func activeCredentials(device: DeviceID) async throws(StoreError) -> [Credential]
    /// Stores everything an issued certificate changes, in one transaction; see ``Issuance`` for the steps and
    /// their refusals. Any refusal stores nothing: no credential, no device, no token use, no audit event.
    func recordIssuance(_ issuance: Issuance) async throws(StoreError)
    /// Sets a credential's status (and revocation time and reason when revoking).
    func updateCredentialStatus(
        serial: SerialNumber, status: CredentialStatus, revokedAt: Date?, reason: RevocationReason?,
        audit: AuditEvent?
    ) async throws(StoreError)
    func credentialCount() async throws(StoreError) -> Int

    // MARK: Claim tokens
    func insertClaimToken(_ token: ClaimToken, audit: AuditEvent?) async throws(StoreError)
    func claimToken(id: String) async throws(StoreError) -> ClaimToken?
    func claimToken(secretHash: String) async throws(StoreError) -> ClaimToken?
    /// Claim tokens of `tenant` (of every tenant if nil), newest `createdAt` first (ties: descending id).
    func claimTokens(tenant: TenantID?) async throws(StoreError) -> [ClaimToken]
    /// Decrements a token's remaining uses if it is still usable at `now`; returns the token as it was before.
    /// `.conflict` if it is used up, revoked or expired (so two concurrent enrollments cannot share one use).
    func consumeClaimToken(id: String, now: Date) async throws(StoreError) -> ClaimToken
    func revokeClaimToken(id: String, audit: AuditEvent?) async throws(StoreError)

    // MARK: Admin tokens
    func insertAdminToken(_ token: AdminToken, audit: AuditEvent?) async throws(StoreError)
    func adminTokens() async throws(StoreError) -> [AdminToken]

    // MARK: Audit
    /// Appends an event at the end of the hash chain; returns it with sequence and hashes filled in.
    @discardableResult
    func appendAudit(_ event: AuditEvent) async throws(StoreError) -> AuditEvent
    /// Matching events, newest first, at most `filter.limit` of them. With `filter.afterSequence`, only events
    /// after that sequence number; if more than `limit` of them match, the newest are returned.
    func auditEvents(_ filter: AuditFilter) async throws(StoreError) -> [AuditEvent]
    /// Re-computes the chain; returns the sequence of the first entry that does not match, or nil if intact.
    func verifyAuditChain() async throws(StoreError) -> Int64?
}

/// Which devices to list.
public struct DeviceFilter: Sendable, Hashable {
    public var tenant: TenantID?
    public var lot: LotID?
    public var state: DeviceState?
    public var limit: Int
    /// Continue after this id (ids sort ascending).
    public var after: DeviceID?

    public init(
        tenant: TenantID? = nil, lot: LotID? = nil, state: DeviceState? = nil, limit: Int = 1000,
        after: DeviceID? = nil
    ) {
        self.tenant = tenant
        self.lot = lot
        self.state = state
        self.limit = limit
        self.after = after
    }
}

/// Which audit events to list.
public struct AuditFilter: Sendable, Hashable {
    public var action: String?
    public var device: DeviceID?
    public var outcome: AuditEvent.Outcome?
    public var limit: Int
    /// Only events with a greater sequence number (to fetch what was appended since a known entry).
    public var afterSequence: Int64?

    public init(
        action: String? = nil, device: DeviceID? = nil, outcome: AuditEvent.Outcome? = nil, limit: Int = 100,
        afterSequence: Int64? = nil
    ) {
        self.action = action
        self.device = device
        self.outcome = outcome
        self.limit = limit
        self.afterSequence = afterSequence
    }
}

/// Errors of the registry. Descriptions never include SQL arguments, token hashes or certificate bytes.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case duplicate, notFound, conflict, unavailable, corrupt
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// A unique constraint refused the write (serial, device id, hardware serial, ...).
        public static let duplicate = Code(.duplicate)
        /// A referenced row does not exist.
        public static let notFound = Code(.notFound)
        /// The row is not in the state the caller expected (optimistic check failed).
        public static let conflict = Code(.conflict)
        /// The database could not be reached or opened.
        public static let unavailable = Code(.unavailable)
        /// The database holds something DevID cannot read.
        public static let corrupt = Code(.corrupt)

        public var description: String { String(describing: backing) }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: UInt

    public init(_ code: Code, _ reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "store \(code): \(reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
