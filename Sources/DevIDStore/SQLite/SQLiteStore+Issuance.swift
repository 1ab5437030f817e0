import DevIDCore
import GRDB

extension SQLiteStore {
    /// The steps of ``Issuance``, in its order, inside one write transaction: a refusal throws, and the
    /// transaction rolls back everything before it.
    public func recordIssuance(_ issuance: Issuance) async throws(StoreError) {
        let operation = "record issuance"
        try await write(operation) { db in
            let credential = issuance.credential
            let deviceID = credential.deviceID.rawValue

            if let device = issuance.registerDevice {
                guard device.id == credential.deviceID else {
                    throw StoreError(.conflict, "\(operation): the device to register is not the credential's device")
                }
                try DeviceRecord(device).insert(db)
            }

            try CredentialRecord(credential).insert(db)
            guard let device = try DeviceRecord.fetchOne(db, key: deviceID)?.model() else {
                throw StoreError(.notFound, "\(operation): no such device")
            }

            if let transition = issuance.transition {
                let changed = try DeviceRecord.all()
                    .filter { $0.id == deviceID && $0.state == transition.expected.rawValue }
                    .updateAll(db, DeviceRecord.Columns.state.set(to: transition.next.rawValue))
                guard changed > 0 else {
                    throw StoreError(
                        .conflict, "\(operation): device is no longer \(transition.expected.rawValue)")
                }
            }

            if let tokenID = issuance.consumeToken {
                guard let token = try ClaimTokenRecord.fetchOne(db, key: tokenID)?.model() else {
                    throw StoreError(.notFound, "\(operation): no such claim token")
                }
                if let mismatch = ClaimTokenRules.mismatch(token, device: device, operation) { throw mismatch }
                let now = StoreTime.milliseconds(issuance.now)
                let changed = try ClaimTokenRecord.all()
                    .filter { $0.id == tokenID }
                    .filter { $0.usesRemaining > 0 }
                    .filter { $0.revoked == false }
                    .filter { $0.expiresAt > now }
                    .updateAll(
                        db, ClaimTokenRecord.Columns.usesRemaining.set(to: ClaimTokenRecord.Columns.usesRemaining - 1))
                guard changed > 0 else { throw ClaimTokenRules.unusable(token, now: issuance.now, operation) }
            }

            for serial in issuance.supersede {
                guard serial != credential.serial else {
                    throw StoreError(.conflict, "\(operation): cannot supersede the credential being issued")
                }
                let changed = try CredentialRecord.all()
                    .filter { $0.serial == serial.rawValue }
                    .filter { $0.deviceID == deviceID }
                    .filter { $0.status == CredentialStatus.active.rawValue }
                    .updateAll(db, CredentialRecord.Columns.status.set(to: CredentialStatus.superseded.rawValue))
                guard changed > 0 else {
                    guard let existing = try CredentialRecord.fetchOne(db, key: serial.rawValue) else {
                        throw StoreError(.notFound, "\(operation): no such credential to supersede")
                    }
                    throw StoreError(
                        .conflict,
                        existing.deviceID == deviceID
                            ? "\(operation): a credential to supersede is no longer active"
                            : "\(operation): a credential to supersede belongs to another device")
                }
            }

            try DeviceRecord.all()
                .filter { $0.id == deviceID }
                .updateAll(db, DeviceRecord.Columns.lastSeen.set(to: StoreTime.milliseconds(issuance.now)))
            _ = try Self.append(issuance.audit, db)
        }
    }
}
