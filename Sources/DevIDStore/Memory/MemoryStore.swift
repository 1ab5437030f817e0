public import DevIDCore
public import Foundation

/// The registry in memory: an actor with the same semantics as the SQL backends (unique and foreign-key
/// checks, optimistic updates, audit events written atomically with their change, the same hash chain).
///
/// For unit tests of logic above the store and for `devid simulate`; nothing survives the process.
public actor MemoryStore: Store {
    private var tenantRows: [TenantID: Tenant] = [:]
    private var lotRows: [LotID: Lot] = [:]
    private var deviceRows: [DeviceID: Device] = [:]
    private var deviceByHardwareSerial: [String: DeviceID] = [:]
    private var deviceByIDevIDSerial: [SerialNumber: DeviceID] = [:]
    private var credentialRows: [SerialNumber: Credential] = [:]
    private var credentialByFingerprint: [String: SerialNumber] = [:]
    /// Each device's credential serials, so a device's lookups do not scan every credential (`devid simulate` keeps
    /// hundreds of thousands).
    private var credentialsByDevice: [DeviceID: [SerialNumber]] = [:]
    /// The `superseded` credentials, which the rotation sweeper reads every minute.
    private var supersededSerials: Set<SerialNumber> = []
    /// Service certificates by serial (``MemoryStore+ServiceCertificates.swift``).
    var serviceCertificateRows: [SerialNumber: ServiceCertificate] = [:]
    private var claimTokenRows: [String: ClaimToken] = [:]
    private var claimTokenBySecretHash: [String: String] = [:]
    private var adminTokenRows: [String: AdminToken] = [:]
    private var adminTokenSecretHashes: Set<String> = []
    private var auditTrail: [AuditEntry] = []
    /// Hourly health counts, keyed by the count with `count` zero (``MemoryStore+HealthHistory.swift``).
    var healthCountRows: [HealthCount: Int] = [:]
    var issuingCARows: [Int: IssuingCA] = [:]
    /// The change stream (``MemoryStore+Changes.swift``), oldest first.
    var changeRows: [RegistryChange] = []
    var changeSequence: Int64 = 0
    var settingRows: [String: String] = [:]
    var lastCRLNumber: UInt64 = 0
    var crlRows: [StoredCRL] = []
    public nonisolated let changeFeed = ChangeFeed()
    private let auditKey: AuditKey?

    /// With `auditKey`, audit entries are keyed as in ``SQLiteStore/init(path:auditKey:)``.
    public init(auditKey: AuditKey? = nil) {
        self.auditKey = auditKey
    }

    func allCredentials() -> Dictionary<SerialNumber, Credential>.Values { credentialRows.values }
    func allDevices() -> Dictionary<DeviceID, Device>.Values { deviceRows.values }
    func deviceRow(_ id: DeviceID) -> Device? { deviceRows[id] }

    // MARK: Tenants and lots

    public func createTenant(_ tenant: Tenant, audit: AuditEvent?) throws(StoreError) {
        guard tenantRows[tenant.id] == nil else {
            throw StoreError(.duplicate, "create tenant: tenants.id already exists")
        }
        var tenant = tenant
        tenant.createdAt = StoreTime.normalized(tenant.createdAt)
        tenantRows[tenant.id] = tenant
        note(.tenant, tenant.id.rawValue, tenant: tenant.id, "created")
        append(audit)
    }

    public func tenant(_ id: TenantID) -> Tenant? { tenantRows[id] }

    public func tenants() -> [Tenant] { tenantRows.values.sorted { $0.id < $1.id } }

    public func updateTenantPolicy(_ id: TenantID, policy: TenantPolicy, audit: AuditEvent?) throws(StoreError) {
        guard tenantRows[id] != nil else { throw StoreError(.notFound, "update tenant policy: no such tenant") }
        tenantRows[id]?.policy = policy
        note(.tenant, id.rawValue, tenant: id, "updated")
        append(audit)
    }

    public func createLot(_ lot: Lot) throws(StoreError) {
        guard lotRows[lot.id] == nil else { throw StoreError(.duplicate, "create lot: lots.id already exists") }
        try requireTenant(lot.tenant, "create lot")
        var lot = lot
        lot.createdAt = StoreTime.normalized(lot.createdAt)
        lotRows[lot.id] = lot
        note(.lot, lot.id.rawValue, tenant: lot.tenant, "created")
    }

    public func lot(_ id: LotID) -> Lot? { lotRows[id] }

    // MARK: Devices

    public func insertDevice(_ device: Device, audit: AuditEvent?) throws(StoreError) {
        try checkInsertable(device, "insert device")
        store(device)
        append(audit)
    }

    public func importDevices(_ devices: [Device], audit: AuditEvent) throws(StoreError) -> DeviceImportResult {
        var plan = DeviceImportPlan(time: audit.time)
        for device in devices {
            let registered = deviceRows[device.id]
            try plan.add(
                device,
                DeviceImportPlan.Stored(
                    tenantExists: tenantRows[device.tenant] != nil,
                    lotTenant: device.lot.flatMap { lotRows[$0]?.tenant },
                    registered: registered.map(DeviceImportPlan.Registered.init),
                    hardwareSerialTaken: deviceByHardwareSerial[device.hardwareSerial] != nil,
                    idevidSerialTaken: device.idevidSerial.map { deviceByIDevIDSerial[$0] != nil } ?? false))
        }
        for lot in plan.lots {
            lotRows[lot.id] = lot
            note(.lot, lot.id.rawValue, tenant: lot.tenant, "created")
        }
        for device in plan.devices { store(device) }
        for imported in devices where imported.idevidIssuerSHA256 != nil {
            guard var device = deviceRows[imported.id], device.hardwareSerial == imported.hardwareSerial,
                device.idevidIssuerSHA256 == nil
            else { continue }
            device.idevidIssuerSHA256 = imported.idevidIssuerSHA256
            device.idevidSHA256 = imported.idevidSHA256
            store(device)
        }
        for entry in plan.idevidBackfills {
            guard var device = deviceRows[entry.device], device.idevidSerial == nil else { continue }
            device.idevidSerial = entry.serial
            if device.state == .revoked {
                // The same choice as the SQL backend: the device's newest revoked credential, else the import.
                let newest = credentialRows.values
                    .filter { $0.deviceID == entry.device && $0.status == .revoked && $0.revocationReason != .superseded }
                    .max { ($0.revokedAt ?? .distantPast, $0.serial) < ($1.revokedAt ?? .distantPast, $1.serial) }
                device.idevidRevokedAt = newest?.revokedAt ?? audit.time
                device.idevidRevocationReason = newest?.revocationReason
            }
            store(device)
        }
        append(audit)
        return plan.result
    }

    public func device(_ id: DeviceID) -> Device? { deviceRows[id] }

    public func device(hardwareSerial: String) -> Device? {
        deviceByHardwareSerial[hardwareSerial].flatMap { deviceRows[$0] }
    }

    public func device(idevidSerial: SerialNumber) -> Device? {
        deviceByIDevIDSerial[idevidSerial].flatMap { deviceRows[$0] }
    }

    public func devices(_ filter: DeviceFilter) -> [Device] {
        let matching = deviceRows.values.filter { device in
            (filter.tenant.map { device.tenant == $0 } ?? true)
                && (filter.lot.map { device.lot == $0 } ?? true)
                && (filter.state.map { device.state == $0 } ?? true)
                && (filter.enrolledWithToken.map { device.enrolledWithToken == $0 } ?? true)
                && (filter.after.map { device.id > $0 } ?? true)
        }
        return Array(matching.sorted { $0.id < $1.id }.prefix(max(0, filter.limit)))
    }

    public func updateDeviceState(
        _ id: DeviceID, from expected: DeviceState, to next: DeviceState, audit: AuditEvent?
    ) throws(StoreError) {
        guard var device = deviceRows[id] else { throw StoreError(.notFound, "update device state: no such device") }
        guard device.state == expected else {
            throw StoreError(.conflict, "update device state: device is no longer \(expected.rawValue)")
        }
        device.state = next
        store(device)
        append(audit)
    }

    public func recordSeen(_ id: DeviceID, at time: Date) throws(StoreError) {
        guard deviceRows[id] != nil else { throw StoreError(.notFound, "record device seen: no such device") }
        deviceRows[id]?.lastSeen = StoreTime.normalized(time)
    }

    // MARK: Credentials

    public func insertCredential(_ credential: Credential, audit: AuditEvent) throws(StoreError) {
        try checkUnique(credential, "insert credential")
        guard deviceRows[credential.deviceID] != nil else {
            throw StoreError(.notFound, "insert credential: a referenced row does not exist")
        }
        store(credential)
        append(audit)
    }

    /// Checks every step of ``Issuance`` in its order against the rows as they would be after the steps
    /// before it, and only then applies them all, in the same actor turn.
    public func recordIssuance(_ issuance: Issuance) throws(StoreError) {
        let operation = "record issuance"
        let credential = issuance.credential

        if let device = issuance.registerDevice {
            guard device.id == credential.deviceID else {
                throw StoreError(.conflict, "\(operation): the device to register is not the credential's device")
            }
            try checkInsertable(device, operation)
        }

        try checkUnique(credential, operation)
        guard var device = issuance.registerDevice ?? deviceRows[credential.deviceID] else {
            throw StoreError(.notFound, "\(operation): a referenced row does not exist")
        }

        if let transition = issuance.transition {
            guard device.state == transition.expected else {
                throw StoreError(.conflict, "\(operation): device is no longer \(transition.expected.rawValue)")
            }
            device.state = transition.next
        }

        var token: ClaimToken?
        if let tokenID = issuance.consumeToken {
            guard var found = claimTokenRows[tokenID] else {
                throw StoreError(.notFound, "\(operation): no such claim token")
            }
            if let mismatch = ClaimTokenRules.mismatch(found, device: device, operation) { throw mismatch }
            guard ClaimTokenRules.isUsable(found, now: issuance.now) else {
                throw ClaimTokenRules.unusable(found, now: issuance.now, operation)
            }
            found.usesRemaining -= 1
            token = found
        }

        var superseded: [SerialNumber: Credential] = [:]
        let deadline = StoreTime.normalized(issuance.overlapDeadline)
        for serial in issuance.supersede {
            guard serial != credential.serial else {
                throw StoreError(.conflict, "\(operation): cannot supersede the credential being issued")
            }
            guard superseded[serial] == nil else {
                throw StoreError(.conflict, "\(operation): a credential to supersede is listed twice")
            }
            guard var existing = credentialRows[serial] else {
                throw StoreError(.notFound, "\(operation): no such credential to supersede")
            }
            guard existing.deviceID == device.id else {
                throw StoreError(.conflict, "\(operation): a credential to supersede belongs to another device")
            }
            switch existing.status {
            case .active:
                existing.overlapDeadline = deadline
            case .superseded:
                if let refusal = Issuance.successorLeftOut(existing.replacedBy, of: serial, in: issuance, operation) {
                    throw refusal
                }
                existing.overlapDeadline = RotationRules.earlierDeadline(existing.overlapDeadline, deadline)
            case .revoked, .expired:
                throw StoreError(.conflict, "\(operation): a credential to supersede is no longer active")
            }
            existing.status = .superseded
            existing.replacedBy = credential.serial
            superseded[serial] = existing
        }

        device.lastSeen = issuance.now
        store(device)
        store(credential)
        if let token { claimTokenRows[token.id] = token }
        for (_, existing) in superseded { store(existing) }
        append(issuance.audit)
    }

    public func credential(serial: SerialNumber) -> Credential? { credentialRows[serial] }

    public func credential(certificateSHA256: String) -> Credential? {
        credentialByFingerprint[certificateSHA256.lowercased()].flatMap { credentialRows[$0] }
    }

    public func credentials(device: DeviceID) -> [Credential] {
        deviceCredentials(device).sorted {
            ($0.createdAt, $0.serial.rawValue) < ($1.createdAt, $1.serial.rawValue)
        }
    }

    public func activeCredentials(device: DeviceID) -> [Credential] {
        deviceCredentials(device)
            .filter { $0.status == .active || $0.status == .superseded }
            .sorted {
                ($1.notBefore, $1.createdAt, $1.serial.rawValue) < ($0.notBefore, $0.createdAt, $0.serial.rawValue)
            }
    }

    public func updateCredentialStatus(
        serial: SerialNumber, status: CredentialStatus, revokedAt: Date?, reason: RevocationReason?,
        audit: AuditEvent?
    ) throws(StoreError) {
        guard var credential = credentialRows[serial] else {
            throw StoreError(.notFound, "update credential status: no such credential")
        }
        credential.status = status
        credential.revokedAt = StoreTime.normalized(revokedAt)
        credential.revocationReason = reason
        store(credential)
        append(audit)
    }

    public func credentialCount() -> Int { credentialRows.count }

    public func credentialCounts(now: Date) -> [CredentialStatus: Int] {
        var counts = Dictionary(uniqueKeysWithValues: CredentialStatus.allCases.map { ($0, 0) })
        for credential in credentialRows.values {
            counts[RotationRules.effectiveStatus(credential, now: now), default: 0] += 1
        }
        return counts
    }

    public func deviceStateCounts() -> [FleetHealth.DeviceCount] {
        var devices: [FleetHealth.DeviceCount] = []
        let grouped = Dictionary(grouping: deviceRows.values) { "\($0.tenant.rawValue)\u{0}\($0.state.rawValue)" }
        for (_, rows) in grouped {
            devices.append(.init(tenant: rows[0].tenant, state: rows[0].state, count: rows.count))
        }
        devices.sort { ($0.tenant.rawValue, $0.state.rawValue) < ($1.tenant.rawValue, $1.state.rawValue) }
        return devices
    }

    public func fleetHealth(now: Date, upperBounds: [TimeInterval]) -> FleetHealth {
        let devices = deviceStateCounts()
        let nowMilliseconds = StoreTime.milliseconds(now)
        var expiry: [TenantID: FleetHealth.ExpiryHistogram] = [:]
        for credential in credentialRows.values where credential.kind == .ldevid && credential.status == .active {
            let left = StoreTime.milliseconds(credential.notAfter) - nowMilliseconds
            guard left > 0, let tenant = deviceRows[credential.deviceID]?.tenant else { continue }
            var histogram = expiry[tenant] ?? .init(cumulative: upperBounds.map { _ in 0 }, count: 0, sum: 0)
            for (index, bound) in upperBounds.enumerated() where left <= Int64((bound * 1000).rounded()) {
                histogram.cumulative[index] += 1
            }
            histogram.count += 1
            histogram.sum += Double(left) / 1000
            expiry[tenant] = histogram
        }
        return FleetHealth(devices: devices, upperBounds: upperBounds, expiry: expiry)
    }

    // MARK: Staged rotation

    public func confirmCredential(serial: SerialNumber, at: Date, audit: AuditEvent?) throws(StoreError) -> Bool {
        guard let credential = credentialRows[serial] else {
            throw StoreError(.notFound, "confirm credential: no such credential")
        }
        guard credential.status == .active, credential.confirmedAt == nil else { return false }
        var confirmed = credential
        confirmed.confirmedAt = at
        store(confirmed)
        append(audit)
        return true
    }

    public func supersededDue(now: Date, confidence: TimeInterval, limit: Int) -> [Credential] {
        let deadlineBy = StoreTime.milliseconds(now)
        let confirmedBy = RotationRules.milliseconds(now, minus: confidence)
        let due = supersededSerials.compactMap { credentialRows[$0] }.filter { credential in
            guard credential.status == .superseded else { return false }
            if let deadline = credential.overlapDeadline, StoreTime.milliseconds(deadline) <= deadlineBy {
                return true
            }
            guard let successor = credential.replacedBy, let confirmed = credentialRows[successor]?.confirmedAt else {
                return false
            }
            return StoreTime.milliseconds(confirmed) <= confirmedBy
        }
        return Array(due.sorted { Self.bytewiseLess($0.serial.rawValue, $1.serial.rawValue) }.prefix(max(0, limit)))
    }

    public func revokeCredentials(
        _ serials: [SerialNumber], reason: RevocationReason, at: Date, audit: AuditEvent?
    ) throws(StoreError) -> Int {
        let unique = Set(serials)
        guard unique.allSatisfy({ credentialRows[$0] != nil }) else {
            throw StoreError(.notFound, "revoke credentials: no such credential")
        }
        var changed = 0
        for serial in unique where credentialRows[serial]?.status != .revoked {
            revoke(serial, reason: reason, at: at)
            changed += 1
        }
        if changed > 0 { append(audit) }
        return changed
    }

    // MARK: Bulk revocation and rotation campaigns

    public func blastRadius(_ scope: CredentialScope, now: Date) throws(StoreError) -> BlastRadius {
        try requireExists(scope, "preview revocation")
        return changes(revoking: scope, at: now)
    }

    public func revoke(
        _ scope: CredentialScope, reason: RevocationReason, at: Date, audit: AuditEvent
    ) throws(StoreError) -> BlastRadius {
        try requireExists(scope, "revoke scope")
        let radius = changes(revoking: scope, at: at)
        for credential in credentials(in: scope) where RotationRules.isRevocable(credential, in: scope, now: at) {
            revoke(credential.serial, reason: reason, at: at)
        }
        for device in devices(in: scope) ?? [] {
            var revoked = device
            if !RotationRules.finalDeviceStates.contains(device.state) {
                revoked.state = .revoked
            }
            if device.idevidSerial != nil, device.idevidRevokedAt == nil {
                revoked.idevidRevokedAt = at
                revoked.idevidRevocationReason = reason
            }
            if revoked != device { store(revoked) }
        }
        append(audit)
        return radius
    }

    public func markRotationDue(_ scope: CredentialScope, at: Date, audit: AuditEvent) throws(StoreError) -> Int {
        try requireExists(scope, "mark rotation due")
        var changed = 0
        for credential in credentials(in: scope) where RotationRules.isFlaggable(credential, now: at) {
            var flagged = credential
            flagged.rotationDue = true
            store(flagged)
            changed += 1
        }
        append(audit)
        return changed
    }

    public func rotationCandidates(_ scope: CredentialScope, now: Date) throws(StoreError) -> Int {
        try requireExists(scope, "preview rotation")
        return credentials(in: scope).filter { RotationRules.isFlaggable($0, now: now) }.count
    }

    public func rotationProgress(
        _ scope: CredentialScope?, now: Date, unreachableAfter: TimeInterval
    ) throws(StoreError) -> RotationProgress {
        if let scope { try requireExists(scope, "rotation progress") }
        let seenSince = RotationRules.milliseconds(now, minus: unreachableAfter)
        var progress = RotationProgress()
        for credential in scope.map(credentials(in:)) ?? Array(credentialRows.values) where credential.rotationDue {
            progress.due += 1
            switch credential.status {
            case .superseded, .revoked:
                if credential.replacedBy != nil { progress.rotated += 1 }
            case .active:
                let lastSeen = deviceRows[credential.deviceID]?.lastSeen.map(StoreTime.milliseconds)
                if let lastSeen, lastSeen >= seenSince {
                    progress.pending += 1
                } else {
                    progress.unreachable += 1
                }
            case .expired:
                break
            }
        }
        return progress
    }

    // MARK: CRL

    public func revokedCredentials(
        issuer: String?, notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) -> [Credential] {
        let notExpired = StoreTime.milliseconds(notExpiredAt)
        let matching = credentialRows.values.filter { credential in
            credential.status == .revoked && StoreTime.milliseconds(credential.notAfter) > notExpired
                // Byte equality and order, as SQL's BINARY collation compares; String's `==` normalizes Unicode.
                && (issuer.map { credential.issuer.utf8.elementsEqual($0.utf8) } ?? true)
                && (afterSerial.map { Self.bytewiseLess($0.rawValue, credential.serial.rawValue) } ?? true)
        }
        return Array(
            matching.sorted { Self.bytewiseLess($0.serial.rawValue, $1.serial.rawValue) }.prefix(max(0, limit)))
    }

    public func revokedIDevIDs(afterSerial: SerialNumber?, limit: Int) -> [Device] {
        let matching = deviceRows.values.filter { device in
            guard let serial = device.idevidSerial, device.idevidRevokedAt != nil else { return false }
            return afterSerial.map { Self.bytewiseLess($0.rawValue, serial.rawValue) } ?? true
        }
        return Array(
            matching.sorted { Self.bytewiseLess($0.idevidSerial!.rawValue, $1.idevidSerial!.rawValue) }
                .prefix(max(0, limit)))
    }

    // MARK: Claim tokens

    public func insertClaimToken(_ token: ClaimToken, audit: AuditEvent?) throws(StoreError) {
        guard claimTokenRows[token.id] == nil else {
            throw StoreError(.duplicate, "insert claim token: claim_tokens.id already exists")
        }
        guard claimTokenBySecretHash[token.secretHash] == nil else {
            throw StoreError(.duplicate, "insert claim token: claim_tokens.secret_hash already exists")
        }
        guard token.usesRemaining >= 0 else {
            throw StoreError(.unavailable, "insert claim token: claim_tokens.uses_remaining constraint failed")
        }
        try requireTenant(token.tenant, "insert claim token")
        var token = token
        token.expiresAt = StoreTime.normalized(token.expiresAt)
        token.createdAt = StoreTime.normalized(token.createdAt)
        claimTokenRows[token.id] = token
        note(.claimToken, token.id, device: token.device, tenant: token.tenant, "created")
        claimTokenBySecretHash[token.secretHash] = token.id
        append(audit)
    }

    public func claimToken(id: String) -> ClaimToken? { claimTokenRows[id] }

    public func claimToken(secretHash: String) -> ClaimToken? {
        claimTokenBySecretHash[secretHash].flatMap { claimTokenRows[$0] }
    }

    public func claimTokens(_ filter: ClaimTokenFilter) throws(StoreError) -> [ClaimToken] {
        let precedes = ClaimTokenFilter.precedes
        var tokens = claimTokenRows.values.filter { token in filter.tenant.map { token.tenant == $0 } ?? true }
        if let after = filter.after {
            guard let cursor = claimTokenRows[after] else {
                throw StoreError(.notFound, "list claim tokens: no claim token \(after) to continue after")
            }
            tokens = tokens.filter { precedes(cursor, $0) }
        }
        return Array(tokens.sorted(by: precedes).prefix(filter.limit))
    }

    public func consumeClaimToken(id: String, now: Date) throws(StoreError) -> ClaimToken {
        guard let token = claimTokenRows[id] else { throw StoreError(.notFound, "consume claim token: no such token") }
        guard ClaimTokenRules.isUsable(token, now: now) else { throw ClaimTokenRules.unusable(token, now: now) }
        claimTokenRows[id]?.usesRemaining -= 1
        return token
    }

    public func revokeClaimToken(id: String, audit: AuditEvent?) throws(StoreError) {
        guard claimTokenRows[id] != nil else { throw StoreError(.notFound, "revoke claim token: no such token") }
        if claimTokenRows[id]?.revoked == false, let token = claimTokenRows[id] {
            note(.claimToken, id, device: token.device, tenant: token.tenant, "revoked")
        }
        claimTokenRows[id]?.revoked = true
        append(audit)
    }

    // MARK: Admin tokens

    public func insertAdminToken(_ token: AdminToken, audit: AuditEvent?) throws(StoreError) {
        guard adminTokenRows[token.id] == nil else {
            throw StoreError(.duplicate, "insert admin token: admin_tokens.id already exists")
        }
        guard !adminTokenSecretHashes.contains(token.secretHash) else {
            throw StoreError(.duplicate, "insert admin token: admin_tokens.secret_hash already exists")
        }
        guard token.revoked || !adminTokenRows.values.contains(where: { !$0.revoked && $0.name == token.name }) else {
            throw StoreError(.duplicate, "insert admin token: admin_tokens.name already exists")
        }
        var token = token
        token.createdAt = StoreTime.normalized(token.createdAt)
        token.expiresAt = StoreTime.normalized(token.expiresAt)
        token.lastUsedAt = StoreTime.normalized(token.lastUsedAt)
        adminTokenRows[token.id] = token
        note(.adminToken, token.id, "created")
        adminTokenSecretHashes.insert(token.secretHash)
        append(audit)
    }

    public func adminTokens() -> [AdminToken] { adminTokenRows.values.sorted { $0.id < $1.id } }

    public func revokeAdminToken(id: String, now: Date, audit: AuditEvent?) throws(StoreError) -> AdminToken {
        guard let token = adminTokenRows[id] else { throw StoreError(.notFound, "revoke admin token: no such token") }
        guard !token.revoked else { throw StoreError(.conflict, "admin token \(token.id) is already revoked") }
        if token.role == .admin,
            !adminTokenRows.values.contains(where: { $0.id != id && $0.role == .admin && $0.isUsable(at: now) })
        {
            throw StoreError(
                .conflict, "admin token \(token.id) (\(token.name)) is the last usable admin token; create another first")
        }
        if adminTokenRows[id]?.revoked == false { note(.adminToken, id, "revoked") }
        adminTokenRows[id]?.revoked = true
        append(audit)
        return adminTokenRows[id] ?? token
    }

    public func recordAdminTokenUse(_ lastUsed: [String: Date]) {
        for (id, time) in lastUsed where adminTokenRows[id] != nil {
            let time = StoreTime.normalized(time)
            if adminTokenRows[id]?.lastUsedAt.map({ $0 < time }) ?? true { adminTokenRows[id]?.lastUsedAt = time }
        }
    }

    // MARK: Audit

    @discardableResult
    public func appendAudit(_ event: AuditEvent) -> AuditEvent {
        let last = auditTrail.last
        let key = auditKey
        let chained = AuditChain.chained(
            event, afterSequence: last?.sequence, hash: last?.hash, mac: { input in key?.mac(input) })
        auditTrail.append(AuditEntry(chained))
        return chained
    }

    public func auditEntries(_ filter: AuditFilter) -> [AuditEntry] {
        let ordered: [AuditEntry] = filter.oldestFirst ? auditTrail : auditTrail.reversed()
        let matching = ordered.lazy.filter { entry in
            (filter.action.map { entry.action == $0 } ?? true)
                && (filter.device.map { entry.device == $0.rawValue } ?? true)
                && (filter.outcome.map { entry.outcome == $0.rawValue } ?? true)
                && (filter.afterSequence.map { entry.sequence > $0 } ?? true)
                && (filter.tenants.map { tenants in tenants.contains { $0.rawValue == entry.tenant } } ?? true)
                && (filter.actor.map { entry.actor == $0 } ?? true)
        }
        return Array(matching.prefix(max(0, filter.limit)))
    }

    public func auditChainReport(anchor: AuditAnchor?) -> AuditChainReport {
        var verifier = AuditChain.Verifier(key: auditKey, anchor: anchor)
        for entry in auditTrail where !verifier.accept(entry) { break }
        return verifier.finish()
    }

    // MARK: Helpers

    private static func bytewiseLess(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
    }

    private func revoke(_ serial: SerialNumber, reason: RevocationReason, at: Date) {
        guard var credential = credentialRows[serial] else { return }
        credential.status = .revoked
        credential.revokedAt = at
        credential.revocationReason = reason
        store(credential)
    }

    private func requireExists(_ scope: CredentialScope, _ operation: String) throws(StoreError) {
        let exists =
            switch scope {
            case .device(let id): deviceRows[id] != nil
            case .lot(let id): lotRows[id] != nil
            case .tenant(let id): tenantRows[id] != nil
            case .token(let id): claimTokenRows[id] != nil
            case .serial(let serial): credentialRows[serial] != nil
            case .expiringBefore, .issuer: true
            }
        guard exists else { throw RotationRules.missing(scope, operation) }
    }

    /// The scope's credentials before any status filter (see ``CredentialScope``).
    private func credentials(in scope: CredentialScope) -> [Credential] {
        switch scope {
        case .device(let id):
            return deviceCredentials(id)
        case .lot(let id):
            return credentialRows.values.filter { deviceRows[$0.deviceID]?.lot == id }
        case .tenant(let id):
            return credentialRows.values.filter { deviceRows[$0.deviceID]?.tenant == id }
        case .token(let id):
            return credentialRows.values.filter { deviceRows[$0.deviceID]?.enrolledWithToken == id }
        case .serial(let serial):
            return credentialRows[serial].map { [$0] } ?? []
        case .expiringBefore(let date):
            let before = StoreTime.milliseconds(date)
            return credentialRows.values.filter { $0.kind == .ldevid && StoreTime.milliseconds($0.notAfter) < before }
        case .issuer(let subject):
            return credentialRows.values.filter { $0.kind == .ldevid && $0.issuer == subject }
        }
    }

    /// The scope's devices for device, lot and tenant scopes; nil for credential scopes.
    private func devices(in scope: CredentialScope) -> [Device]? {
        switch scope {
        case .device(let id): deviceRows[id].map { [$0] } ?? []
        case .lot(let id): deviceRows.values.filter { $0.lot == id }
        case .tenant(let id): deviceRows.values.filter { $0.tenant == id }
        case .token(let id): deviceRows.values.filter { $0.enrolledWithToken == id }
        case .serial, .expiringBefore, .issuer: nil
        }
    }

    /// What revoking `scope` at `now` changes; see ``BlastRadius``.
    private func changes(revoking scope: CredentialScope, at now: Date) -> BlastRadius {
        var touched: [DeviceID: (moves: Bool, credentials: Int)] = [:]
        for device in devices(in: scope) ?? [] {
            touched[device.id] = (!RotationRules.finalDeviceStates.contains(device.state), 0)
        }
        for credential in credentials(in: scope) where RotationRules.isRevocable(credential, in: scope, now: now) {
            touched[credential.deviceID, default: (false, 0)].credentials += 1
        }
        var radius = BlastRadius()
        for (id, change) in touched {
            guard let device = deviceRows[id] else { continue }
            radius.add(
                tenant: device.tenant, lot: device.lot, devices: change.moves || change.credentials > 0 ? 1 : 0,
                credentials: change.credentials)
        }
        return radius
    }

    /// Every check of a write runs before its first mutation, so a refused write changes nothing; the audit
    /// event is appended last, in the same actor turn, so the change and its event are stored together.
    private func append(_ event: AuditEvent?) {
        if let event { appendAudit(event) }
    }

    /// The checks of inserting `device`, in the order the SQL backends report them: unique keys, then
    /// references.
    private func checkInsertable(_ device: Device, _ operation: String) throws(StoreError) {
        guard deviceRows[device.id] == nil else {
            throw StoreError(.duplicate, "\(operation): devices.id already exists")
        }
        guard deviceByHardwareSerial[device.hardwareSerial] == nil else {
            throw StoreError(.duplicate, "\(operation): devices.hardware_serial already exists")
        }
        if let serial = device.idevidSerial, deviceByIDevIDSerial[serial] != nil {
            throw StoreError(.duplicate, "\(operation): devices.idevid_serial already exists")
        }
        try requireTenant(device.tenant, operation)
        if let lot = device.lot, lotRows[lot] == nil {
            throw StoreError(.notFound, "\(operation): a referenced row does not exist")
        }
    }

    private func checkUnique(_ credential: Credential, _ operation: String) throws(StoreError) {
        guard credentialRows[credential.serial] == nil else {
            throw StoreError(.duplicate, "\(operation): credentials.serial already exists")
        }
        guard credentialByFingerprint[credential.certificateSHA256] == nil else {
            throw StoreError(.duplicate, "\(operation): credentials.certificate_sha256 already exists")
        }
    }

    /// Stores (or replaces) a checked device, rounding its times as the SQL backends do.
    private func store(_ device: Device) {
        var device = device
        device.createdAt = StoreTime.normalized(device.createdAt)
        device.lastSeen = StoreTime.normalized(device.lastSeen)
        device.idevidRevokedAt = StoreTime.normalized(device.idevidRevokedAt)
        note(device: deviceRows[device.id], device)
        deviceRows[device.id] = device
        deviceByHardwareSerial[device.hardwareSerial] = device.id
        if let serial = device.idevidSerial { deviceByIDevIDSerial[serial] = device.id }
    }

    /// Stores (or replaces) a checked credential, rounding its times as the SQL backends do.
    private func store(_ credential: Credential) {
        var credential = credential
        credential.notBefore = StoreTime.normalized(credential.notBefore)
        credential.notAfter = StoreTime.normalized(credential.notAfter)
        credential.revokedAt = StoreTime.normalized(credential.revokedAt)
        credential.createdAt = StoreTime.normalized(credential.createdAt)
        credential.overlapDeadline = StoreTime.normalized(credential.overlapDeadline)
        credential.confirmedAt = StoreTime.normalized(credential.confirmedAt)
        let previous = credentialRows[credential.serial]
        note(credential: previous, credential)
        credentialRows[credential.serial] = credential
        credentialByFingerprint[credential.certificateSHA256] = credential.serial
        if previous == nil { credentialsByDevice[credential.deviceID, default: []].append(credential.serial) }
        if credential.status == .superseded {
            supersededSerials.insert(credential.serial)
        } else if previous?.status == .superseded {
            supersededSerials.remove(credential.serial)
        }
    }

    func deviceCredentials(_ device: DeviceID) -> [Credential] {
        (credentialsByDevice[device] ?? []).compactMap { credentialRows[$0] }
    }

    private func requireTenant(_ tenant: TenantID, _ operation: String) throws(StoreError) {
        guard tenantRows[tenant] != nil else {
            throw StoreError(.notFound, "\(operation): a referenced row does not exist")
        }
    }
}
