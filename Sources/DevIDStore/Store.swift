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
    /// Replaces a tenant's policy (enrollment flags and topic policy); `.notFound` if the tenant does not exist.
    func updateTenantPolicy(_ id: TenantID, policy: TenantPolicy, audit: AuditEvent?) async throws(StoreError)
    func createLot(_ lot: Lot) async throws(StoreError)
    func lot(_ id: LotID) async throws(StoreError) -> Lot?

    // MARK: Devices
    /// Inserts a device. Fails with `.duplicate` if the id, the (tenant-independent) hardware serial or the
    /// IDevID serial exists, with `.notFound` if its tenant or lot does not exist.
    func insertDevice(_ device: Device, audit: AuditEvent?) async throws(StoreError)
    /// Imports a factory manifest (the allowlist) and its audit event in one transaction.
    ///
    /// Devices are checked in order, and the first refusal wins; a refused import stores nothing, not even
    /// `audit`. For each device:
    /// - its tenant must exist, else `.notFound`;
    /// - its lot is created (under the device's tenant, at `audit.time`) if missing; a lot that belongs to
    ///   another tenant, or that two devices of the import place under different tenants, is `.conflict`;
    /// - an id, hardware serial or IDevID serial that appears twice in `devices` is `.duplicate`, even on
    ///   identical rows;
    /// - a device already registered with the same id, tenant, hardware serial and lot, and no other IDevID
    ///   serial (a device registered without one keeps none), is counted `unchanged` and left as it is (state,
    ///   times); any other clash with a registered id, hardware serial or IDevID serial is `.duplicate`.
    ///
    /// Error reasons name the offending device's id and nothing else from the manifest.
    func importDevices(_ devices: [Device], audit: AuditEvent) async throws(StoreError) -> DeviceImportResult
    func device(_ id: DeviceID) async throws(StoreError) -> Device?
    func device(hardwareSerial: String) async throws(StoreError) -> Device?
    /// The device with this hardware serial and every credential it was issued (in ``credentials(device:)``'s
    /// order), read together: what an IDevID enrollment looks up first. Nil if no device has the serial.
    func deviceWithCredentials(hardwareSerial: String) async throws(StoreError) -> (Device, [Credential])?
    /// The device whose IDevID (see ``Device/idevidSerial``) has this serial.
    func device(idevidSerial: SerialNumber) async throws(StoreError) -> Device?
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
    /// How many credentials are in each status at `now`, every status present (zero if none). A credential
    /// that is not revoked and whose `notAfter` is not after `now` counts as `expired`, whatever its stored
    /// status.
    func credentialCounts(now: Date) async throws(StoreError) -> [CredentialStatus: Int]
    /// Devices by tenant and state, and per tenant the seconds left to `notAfter` of every `active` LDevID whose
    /// `notAfter` is after `now`, counted into the ascending `upperBounds` (see ``FleetHealth``). A few aggregate
    /// reads, never one per device.
    func fleetHealth(now: Date, upperBounds: [TimeInterval]) async throws(StoreError) -> FleetHealth
    /// Devices by tenant and state, non-zero counts only, sorted by tenant then state (the first half of
    /// ``fleetHealth(now:upperBounds:)``, without the expiry histogram).
    func deviceStateCounts() async throws(StoreError) -> [FleetHealth.DeviceCount]

    // MARK: Health history
    /// Adds `counts` to the hourly counts (a row that exists grows by the count) and deletes every count of an
    /// hour before `pruneBefore`, in one transaction.
    func addHealthCounts(_ counts: [HealthCount], pruneBefore: Date) async throws(StoreError)
    /// The hourly counts of `metric` from the hour holding `from` up to `to` (exclusive), every tenant and label,
    /// ordered by hour.
    func healthCounts(metric: String, from: Date, to: Date) async throws(StoreError) -> [HealthCount]
    /// The devices (of `tenant`, or of every tenant) whose first LDevID was issued in `from ..< to`, with their
    /// registration time: the newest `limit`, in the order of issuance.
    func onboardingTimes(
        from: Date, to: Date, tenant: TenantID?, limit: Int
    ) async throws(StoreError) -> [OnboardingTime]
    /// Per tenant, the current LDevIDs (`active`, `notAfter` after `now`) by whole days left: `[0]` expire
    /// within a day of `now`, `[days - 1]` in the last day of the horizon; later ones are not counted.
    func expiryByDay(now: Date, days: Int) async throws(StoreError) -> [TenantID: [Int]]
    /// Active devices with a current LDevID that were last seen (or, never seen, registered) before `seenBefore`.
    func staleDevices(seenBefore: Date, now: Date, limit: Int) async throws(StoreError) -> StaleDevices

    // MARK: Staged rotation
    /// Records the first time the server sees `serial` authenticate: sets `confirmedAt` to `at` if it is nil and
    /// the credential is `active`, and appends `audit` in the same transaction. Returns true only for the call
    /// that set it (of concurrent callers, exactly one); otherwise nothing changes and no audit is written.
    /// `.notFound` for an unknown serial.
    func confirmCredential(serial: SerialNumber, at: Date, audit: AuditEvent?) async throws(StoreError) -> Bool
    /// `superseded` credentials that may now be revoked: their successor (`replacedBy`) has been confirmed at
    /// least `confidence` seconds before `now`, or their `overlapDeadline` is not after `now`. Ascending serial
    /// order (byte order of the lowercase hex), at most `limit`. A superseded credential with neither a
    /// deadline nor a confirmed successor never becomes due.
    func supersededDue(now: Date, confidence: TimeInterval, limit: Int) async throws(StoreError) -> [Credential]
    /// Revokes, in one transaction, those of `serials` that are not revoked yet (status `revoked`, `revokedAt`
    /// and `reason`); already revoked ones are left as they are, and a serial listed twice counts once. Returns
    /// how many changed; `audit` is appended in the same transaction when that is more than zero. `.notFound`
    /// if any serial is unknown, and then nothing changes.
    func revokeCredentials(
        _ serials: [SerialNumber], reason: RevocationReason, at: Date, audit: AuditEvent?
    ) async throws(StoreError) -> Int

    // MARK: Bulk revocation and rotation campaigns
    /// What ``revoke(_:reason:at:audit:)`` would change at `now`; see ``BlastRadius``. `.notFound` if the scope's
    /// device, lot, tenant or serial does not exist.
    func blastRadius(_ scope: CredentialScope, now: Date) async throws(StoreError) -> BlastRadius
    /// Revokes a scope in one transaction: every credential ``BlastRadius`` counts at `at` gets status `revoked`,
    /// `revokedAt` and `reason`; for device, lot and tenant scopes every device of the scope that is neither
    /// `revoked` nor `decommissioned` moves to `revoked`, and every device of the scope with an IDevID serial
    /// that is not revoked yet gets `idevidRevokedAt` and `idevidRevocationReason` (whatever its state). `audit` is appended (also when nothing changed). Returns
    /// what changed. `.notFound` as for ``blastRadius(_:now:)``, and then nothing changes.
    func revoke(
        _ scope: CredentialScope, reason: RevocationReason, at: Date, audit: AuditEvent
    ) async throws(StoreError) -> BlastRadius
    /// Flags the `active`, unexpired (`notAfter` after `at`) LDevIDs of a scope `rotationDue`, and appends `audit`
    /// in the same transaction. Returns how many were newly flagged. `.notFound` as for ``blastRadius(_:now:)``.
    func markRotationDue(_ scope: CredentialScope, at: Date, audit: AuditEvent) async throws(StoreError) -> Int
    /// How many LDevIDs ``markRotationDue(_:at:audit:)`` would flag at `now` (a campaign's dry run), in one query
    /// however large the scope. `.notFound` as for ``blastRadius(_:now:)``.
    func rotationCandidates(_ scope: CredentialScope, now: Date) async throws(StoreError) -> Int
    /// Counts the `rotationDue` credentials of a scope (of every device if nil); a device counts as reachable
    /// when its `lastSeen` is not before `now - unreachableAfter`. See ``RotationProgress``. `.notFound` as for
    /// ``blastRadius(_:now:)``.
    func rotationProgress(
        _ scope: CredentialScope?, now: Date, unreachableAfter: TimeInterval
    ) async throws(StoreError) -> RotationProgress

    // MARK: Issuing CAs
    /// Every issuing CA the registry knows, in ascending id order.
    func issuingCAs() async throws(StoreError) -> [IssuingCA]
    /// Records an issuing CA and `audit` in one transaction. `.duplicate` if its id, subject or fingerprint is
    /// taken; then nothing is stored.
    func insertIssuingCA(_ ca: IssuingCA, audit: AuditEvent?) async throws(StoreError)
    /// Applies `changes` and appends `audit` in one transaction, only if every CA named is in its `from` state:
    /// otherwise `.conflict` (another change came first) and nothing changes; `.notFound` for an unknown id. Each
    /// changed CA gets `stateChangedAt = at`; one that moves to `revoked` also gets `revocationReason`.
    func changeIssuingCAStates(
        _ changes: [IssuingCATransitions.Change], at: Date, revocationReason: String?, audit: AuditEvent
    ) async throws(StoreError)
    /// Per issuer (as credentials record it): the current LDevIDs (`active` or `superseded`, `notAfter` after
    /// `now`), and how many `active` ones belong to devices last seen at or after `seenSince` (a superseded one
    /// has a successor: its device no longer depends on it).
    func ldevidCountsByIssuer(now: Date, seenSince: Date) async throws(StoreError) -> [String: IssuerLDevIDCounts]

    // MARK: CRL
    /// Revoked credentials whose `notAfter` is after `notExpiredAt`, of `issuer` (exact match) if given, in
    /// ascending serial order (byte order of the lowercase hex), after `afterSerial` if given, at most `limit`.
    /// Pass the last serial of a page as `afterSerial` to get the next one.
    func revokedCredentials(
        issuer: String?, notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) async throws(StoreError) -> [Credential]
    /// Devices whose IDevID is revoked (`idevidRevokedAt` set), in ascending IDevID serial order (byte order of
    /// the lowercase hex), after `afterSerial` if given, at most `limit`: the entries of the manufacturer CRL.
    func revokedIDevIDs(afterSerial: SerialNumber?, limit: Int) async throws(StoreError) -> [Device]

    // MARK: Service certificates
    /// Records a certificate of the services CA (a broker's TLS certificate) and its audit event in one transaction,
    /// before its bytes leave the server. `.duplicate` if its serial is taken (by a service certificate or a
    /// credential) or its fingerprint is; then nothing is stored.
    func insertServiceCertificate(_ certificate: ServiceCertificate, audit: AuditEvent) async throws(StoreError)
    func serviceCertificate(serial: SerialNumber) async throws(StoreError) -> ServiceCertificate?
    /// Every service certificate, newest `createdAt` first (ties: descending serial).
    func serviceCertificates() async throws(StoreError) -> [ServiceCertificate]
    /// Revokes one service certificate (status `revoked`, `revokedAt`, `reason`) and appends `audit` in the same
    /// transaction. Returns false, changing nothing and appending nothing, if it is revoked already. `.notFound` for
    /// an unknown serial.
    func revokeServiceCertificate(
        serial: SerialNumber, reason: RevocationReason, at: Date, audit: AuditEvent?
    ) async throws(StoreError) -> Bool
    /// Revoked service certificates whose `notAfter` is after `notExpiredAt`, in ascending serial order (byte order of
    /// the lowercase hex), after `afterSerial` if given, at most `limit`: the entries of the services CA's CRL.
    func revokedServiceCertificates(
        notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) async throws(StoreError) -> [ServiceCertificate]

    // MARK: Claim tokens
    func insertClaimToken(_ token: ClaimToken, audit: AuditEvent?) async throws(StoreError)
    func claimToken(id: String) async throws(StoreError) -> ClaimToken?
    func claimToken(secretHash: String) async throws(StoreError) -> ClaimToken?
    /// One page of claim tokens: newest `createdAt` first (ties: descending id, byte order), at most `limit`,
    /// those after `filter.after`. `.notFound` if `after` names no token.
    func claimTokens(_ filter: ClaimTokenFilter) async throws(StoreError) -> [ClaimToken]
    /// Decrements a token's remaining uses if it is still usable at `now`; returns the token as it was before.
    /// `.conflict` if it is used up, revoked or expired (so two concurrent enrollments cannot share one use).
    func consumeClaimToken(id: String, now: Date) async throws(StoreError) -> ClaimToken
    func revokeClaimToken(id: String, audit: AuditEvent?) async throws(StoreError)

    // MARK: Admin tokens
    /// Inserts an admin token and its audit event in one transaction. `.duplicate` if the id or the secret hash
    /// exists, or if a token that is not revoked has the same name.
    func insertAdminToken(_ token: AdminToken, audit: AuditEvent?) async throws(StoreError)
    /// Every admin token, revoked and expired ones included, in ascending id order.
    func adminTokens() async throws(StoreError) -> [AdminToken]
    /// Revokes an admin token and appends `audit` in the same transaction; returns the token as stored after.
    /// `.notFound` for an unknown id; `.conflict` if it is already revoked, or if it is an `admin` token and no
    /// other `admin` token that is neither revoked nor expired at `now` would be left (and then nothing changes).
    func revokeAdminToken(id: String, now: Date, audit: AuditEvent?) async throws(StoreError) -> AdminToken
    /// Writes back when tokens were last used, in one transaction: each token's `lastUsedAt` becomes the later of
    /// the stored one and the given one. Unknown ids are ignored.
    func recordAdminTokenUse(_ lastUsed: [String: Date]) async throws(StoreError)

    // MARK: Audit
    /// Appends an event at the end of the hash chain; returns it with sequence and hashes filled in.
    @discardableResult
    func appendAudit(_ event: AuditEvent) async throws(StoreError) -> AuditEvent
    /// Matching events, newest first, at most `filter.limit` of them. With `filter.afterSequence`, only events
    /// after that sequence number; if more than `limit` of them match, the newest are returned (the oldest with
    /// `filter.oldestFirst`, which also sorts ascending). A row whose fields no longer parse is left out; see
    /// ``auditEntries(_:)``.
    func auditEvents(_ filter: AuditFilter) async throws(StoreError) -> [AuditEvent]
    /// Like ``auditEvents(_:)`` but the rows exactly as stored, so an odd row never fails the listing.
    func auditEntries(_ filter: AuditFilter) async throws(StoreError) -> [AuditEntry]
    /// Re-computes the whole chain from the stored strings, against `anchor` (a signed checkpoint) if given, and
    /// reports the first entry that does not fit (see ``AuditChainReport``).
    func auditChainReport(anchor: AuditAnchor?) async throws(StoreError) -> AuditChainReport

    // MARK: CRL numbers
    /// Allocates the next CRL number, in a transaction of its own: one counter for every CRL of the registry, so that
    /// servers sharing a registry never give two CRLs the same number, and a CRL built later carries a greater one.
    /// Returns the greater of the counter and `minimum` (the number a server last used, before the registry kept it),
    /// plus one, and stores it.
    func nextCRLNumber(atLeast minimum: UInt64) async throws(StoreError) -> UInt64

    /// Replaces the stored CRLs with `crls` (what the job-lease holder built and signed), unless a stored one already
    /// carries a greater number (a holder that lost the lease finishing late), and records one change of kind `crl`.
    /// Returns whether they were stored.
    @discardableResult
    func storeCRLs(_ crls: [StoredCRL]) async throws(StoreError) -> Bool
    /// The stored CRLs (empty before any was stored).
    func storedCRLs() async throws(StoreError) -> [StoredCRL]

    // MARK: Jobs
    /// Whether this process runs the once-only jobs (see ``JobLease``).
    var jobLease: JobLease { get }

    // MARK: Settings
    /// The server settings kept in the registry (configuration keys such as `ldevid.lifetime.days`, with their
    /// values as text), which every server applies over its own configuration.
    func settings() async throws(StoreError) -> [String: String]
    /// Sets each key to its value, removes each key whose value is nil, and appends `audit`, in one transaction.
    func updateSettings(_ changes: [String: String?], audit: AuditEvent?) async throws(StoreError)

    // MARK: Change stream

    /// This store's change stream (``ChangeFeed``), starting after the changes committed before it was opened.
    var changeFeed: ChangeFeed { get }
    /// The recorded changes after `sequence`, oldest first, at most `limit`.
    func changes(after sequence: Int64, limit: Int) async throws(StoreError) -> [RegistryChange]
    /// Drops recorded changes older than the newest `keepingLatest`; returns how many it dropped. A reader whose
    /// cursor falls behind what is kept has missed changes and must reload everything it caches.
    func pruneChanges(keepingLatest: Int) async throws(StoreError) -> Int
}

extension Store {
    /// Two reads; a backend that can answer in one (SQLite: one read transaction) overrides it.
    public func deviceWithCredentials(hardwareSerial: String) async throws(StoreError) -> (Device, [Credential])? {
        guard let device = try await device(hardwareSerial: hardwareSerial) else { return nil }
        return (device, try await credentials(device: device.id))
    }

    /// One server per registry (SQLite, in memory): it runs every job.
    public var jobLease: JobLease { .alwaysHeld }

    /// Re-computes the chain; returns the sequence of the first entry that does not match, or nil if intact.
    public func verifyAuditChain() async throws(StoreError) -> Int64? {
        try await auditChainReport(anchor: nil).brokenSequence
    }

    /// Every claim token of `tenant` (of every tenant if nil), newest first.
    public func claimTokens(tenant: TenantID?) async throws(StoreError) -> [ClaimToken] {
        try await claimTokens(ClaimTokenFilter(tenant: tenant, limit: Int.max))
    }

    public func auditEvents(_ filter: AuditFilter) async throws(StoreError) -> [AuditEvent] {
        try await auditEntries(filter).compactMap(\.event)
    }
}

/// Which claim tokens to list, a page at a time, in ``Store/claimTokens(_:)``'s order (newest first).
public struct ClaimTokenFilter: Sendable, Hashable {
    public var tenant: TenantID?
    public var limit: Int
    /// Continue after this token (its id): the tokens created before it, or at the same moment with a smaller id.
    public var after: String?

    public init(tenant: TenantID? = nil, limit: Int = 1000, after: String? = nil) {
        self.tenant = tenant
        self.limit = limit
        self.after = after
    }

    /// The listing order: `newer` comes first if it was created later, or at the same moment with a larger id in
    /// byte order (as SQL's BINARY collation compares; String's `<` normalizes Unicode first).
    public static func precedes(_ newer: ClaimToken, _ older: ClaimToken) -> Bool {
        if newer.createdAt != older.createdAt { return newer.createdAt > older.createdAt }
        return older.id.utf8.lexicographicallyPrecedes(newer.id.utf8)
    }
}

/// Which devices to list.
public struct DeviceFilter: Sendable, Hashable {
    public var tenant: TenantID?
    public var lot: LotID?
    public var state: DeviceState?
    /// Devices that first enrolled with this claim token (its public id).
    public var enrolledWithToken: String?
    public var limit: Int
    /// Continue after this id (ids sort ascending).
    public var after: DeviceID?

    public init(
        tenant: TenantID? = nil, lot: LotID? = nil, state: DeviceState? = nil, enrolledWithToken: String? = nil,
        limit: Int = 1000, after: DeviceID? = nil
    ) {
        self.tenant = tenant
        self.lot = lot
        self.state = state
        self.enrolledWithToken = enrolledWithToken
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
    /// Ascending order, keeping the oldest matches when more than `limit` match (pages for an export).
    public var oldestFirst: Bool
    /// Only events that name one of these tenants (what an admin token limited to tenants may read); nil: all.
    public var tenants: [TenantID]? = nil
    /// Only events of this actor (`admin:<token id>`: what one admin token did).
    public var actor: String? = nil

    public init(
        action: String? = nil, device: DeviceID? = nil, outcome: AuditEvent.Outcome? = nil, limit: Int = 100,
        afterSequence: Int64? = nil, oldestFirst: Bool = false
    ) {
        self.action = action
        self.device = device
        self.outcome = outcome
        self.limit = limit
        self.afterSequence = afterSequence
        self.oldestFirst = oldestFirst
    }
}

/// Errors of the registry. Descriptions never include SQL arguments, token hashes or certificate bytes.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case duplicate, notFound, conflict, unavailable, corrupt, storageFull
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
        /// The filesystem holding the registry refused a write: it is full (`SQLITE_FULL`, `ENOSPC`), or a write or
        /// sync of the database, its WAL or journal failed (`SQLITE_IOERR`). Nothing of the transaction is stored;
        /// the same call succeeds again once space returns (see ``StorageFull``).
        public static let storageFull = Code(.storageFull)

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
