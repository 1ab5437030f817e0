public import DevIDCore
public import Foundation

extension MemoryStore {
    public func issuingCAs() -> [IssuingCA] {
        issuingCARows.values.sorted { $0.id < $1.id }
    }

    public func insertIssuingCA(_ ca: IssuingCA, audit: AuditEvent?) throws(StoreError) {
        guard issuingCARows[ca.id] == nil,
            !issuingCARows.values.contains(where: { $0.subject == ca.subject || $0.sha256 == ca.sha256 })
        else { throw StoreError(.duplicate, "record issuing CA: id, subject or sha256 already exists") }
        var stored = ca
        stored.notBefore = StoreTime.normalized(ca.notBefore)
        stored.notAfter = StoreTime.normalized(ca.notAfter)
        stored.createdAt = StoreTime.normalized(ca.createdAt)
        stored.stateChangedAt = StoreTime.normalized(ca.stateChangedAt)
        issuingCARows[ca.id] = stored
        note(.issuingCA, String(ca.id), stored.state.rawValue)
        if let audit { _ = appendAudit(audit) }
    }

    public func changeIssuingCAStates(
        _ changes: [IssuingCATransitions.Change], at: Date, revocationReason: String?, audit: AuditEvent
    ) throws(StoreError) {
        let operation = "change issuing CA states"
        for change in changes {
            guard let current = issuingCARows[change.id] else {
                throw StoreError(.notFound, "\(operation): no issuing CA \(change.id)")
            }
            guard current.state == change.from else {
                throw StoreError(
                    .conflict,
                    "\(operation): issuing CA \(change.id) is \(current.state.rawValue), not \(change.from.rawValue)")
            }
        }
        for change in changes {
            if issuingCARows[change.id]?.state != change.to { note(.issuingCA, String(change.id), change.to.rawValue) }
            issuingCARows[change.id]?.state = change.to
            issuingCARows[change.id]?.stateChangedAt = StoreTime.normalized(at)
            if change.to == .revoked { issuingCARows[change.id]?.revocationReason = revocationReason }
        }
        _ = appendAudit(audit)
    }

    public func ldevidCountsByIssuer(now: Date, seenSince: Date) -> [String: IssuerLDevIDCounts] {
        let nowMS = StoreTime.milliseconds(now)
        let seenMS = StoreTime.milliseconds(seenSince)
        var counts: [String: IssuerLDevIDCounts] = [:]
        for credential in allCredentials()
        where credential.kind == .ldevid && (credential.status == .active || credential.status == .superseded)
            && StoreTime.milliseconds(credential.notAfter) > nowMS
        {
            counts[credential.issuer, default: IssuerLDevIDCounts()].current += 1
            if credential.status == .active, let seen = deviceRow(credential.deviceID)?.lastSeen, StoreTime.milliseconds(seen) >= seenMS {
                counts[credential.issuer, default: IssuerLDevIDCounts()].online += 1
            }
        }
        return counts
    }
}
