public import DevIDCore

/// The change stream of the in-memory store: the same changes the SQL triggers record (see
/// `SQLiteSchema.v14RegistryChanges`), noted by the mutations themselves. The actor's methods are synchronous, so
/// nothing is delivered during a write: ``ChangeFeed/catchUp(from:limit:)`` reads them (a server runs it every
/// second; a test or a simulation step calls it directly).
extension MemoryStore {
    public func changes(after sequence: Int64, limit: Int) -> [RegistryChange] {
        // Sorted by sequence; the first one after `sequence` by binary search.
        var low = 0
        var high = changeRows.count
        while low < high {
            let middle = (low + high) / 2
            if changeRows[middle].sequence <= sequence { low = middle + 1 } else { high = middle }
        }
        return Array(changeRows[low...].prefix(max(0, limit)))
    }

    public func pruneChanges(keepingLatest: Int) -> Int {
        let drop = max(0, changeRows.count - max(0, keepingLatest))
        changeRows.removeFirst(drop)
        return drop
    }

    func note(
        _ kind: RegistryChange.Kind, _ subject: String, device: DeviceID? = nil, tenant: TenantID? = nil,
        _ detail: String
    ) {
        changeSequence += 1
        changeRows.append(
            RegistryChange(
                sequence: changeSequence, kind: kind, subject: subject, device: device, tenant: tenant, detail: detail))
    }

    /// As the device triggers: a new row, a change of what caches depend on (its state, tenant, lot, bindings),
    /// a change of its IDevID serial or revocation.
    func note(device old: Device?, _ new: Device) {
        guard let old else {
            note(.device, new.id.rawValue, device: new.id, tenant: new.tenant, "created")
            return
        }
        if old.state != new.state || old.tenant != new.tenant || old.lot != new.lot
            || old.hardwareSerial != new.hardwareSerial || old.idevidIssuerSHA256 != new.idevidIssuerSHA256
            || old.idevidSHA256 != new.idevidSHA256 || old.enrolledWithToken != new.enrolledWithToken
        {
            note(.device, new.id.rawValue, device: new.id, tenant: new.tenant,
                old.state != new.state ? new.state.rawValue : "updated")
        }
        if old.idevidSerial != new.idevidSerial || old.idevidRevokedAt != new.idevidRevokedAt {
            note(.device, new.id.rawValue, device: new.id, tenant: new.tenant, "idevid")
        }
    }

    func note(credential old: Credential?, _ new: Credential) {
        guard let old else {
            note(.credential, new.serial.rawValue, device: new.deviceID, new.status.rawValue)
            return
        }
        if old.status != new.status || old.rotationDue != new.rotationDue || old.overlapDeadline != new.overlapDeadline
            || old.replacedBy != new.replacedBy || old.deviceID != new.deviceID
        {
            let retired = new.status == .revoked && old.status == .superseded
            note(.credential, new.serial.rawValue, device: new.deviceID,
                old.status != new.status ? new.status.rawValue + (retired ? ":superseded" : "") : "updated")
        }
    }
}

extension MemoryStore {
    public func settings() -> [String: String] { settingRows }

    public func updateSettings(_ changes: [String: String?], audit: AuditEvent?) {
        for (key, value) in changes.sorted(by: { $0.key < $1.key }) {
            if let value {
                if settingRows[key] != value { note(.setting, key, "updated") }
                settingRows[key] = value
            } else if settingRows.removeValue(forKey: key) != nil {
                note(.setting, key, "deleted")
            }
        }
        if let audit { _ = appendAudit(audit) }
    }
}

extension MemoryStore {
    public func nextCRLNumber(atLeast minimum: UInt64) -> UInt64 {
        lastCRLNumber = max(lastCRLNumber, minimum) + 1
        return lastCRLNumber
    }
}

extension MemoryStore {
    @discardableResult
    public func storeCRLs(_ crls: [StoredCRL]) -> Bool {
        let number = crls.map(\.number).max() ?? 0
        guard !crlRows.contains(where: { $0.number > number }) else { return false }
        crlRows = crls.sorted { $0.name < $1.name }
        note(.crl, "all", String(number))
        return true
    }

    public func storedCRLs() -> [StoredCRL] { crlRows }
}
