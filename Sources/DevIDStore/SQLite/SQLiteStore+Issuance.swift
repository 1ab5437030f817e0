import DevIDCore
import Foundation
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
            // The per-issuance statements are prepared once per connection (cached): building and preparing them on
            // every enrollment was a visible share of its CPU (BENCHMARKS.md, "Enrollment CPU and TLS resumption").
            guard
                let device = try DeviceRecord.fetchOne(
                    db.cachedStatement(sql: "SELECT * FROM devices WHERE id = ?"), arguments: [deviceID])?.model()
            else {
                throw StoreError(.notFound, "\(operation): no such device")
            }

            // The state change and the device's last-seen time in one statement (the row is written once).
            let seen = StoreTime.milliseconds(issuance.now)
            if let transition = issuance.transition {
                try db.cachedStatement(sql: "UPDATE devices SET state = ?, last_seen = ? WHERE id = ? AND state = ?")
                    .execute(arguments: [transition.next.rawValue, seen, deviceID, transition.expected.rawValue])
                guard db.changesCount > 0 else {
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

            var listed: Set<SerialNumber> = []
            for serial in issuance.supersede {
                guard serial != credential.serial else {
                    throw StoreError(.conflict, "\(operation): cannot supersede the credential being issued")
                }
                guard listed.insert(serial).inserted else {
                    throw StoreError(.conflict, "\(operation): a credential to supersede is listed twice")
                }
                guard var existing = try CredentialRecord.fetchOne(db, key: serial.rawValue) else {
                    throw StoreError(.notFound, "\(operation): no such credential to supersede")
                }
                guard existing.deviceID == deviceID else {
                    throw StoreError(.conflict, "\(operation): a credential to supersede belongs to another device")
                }
                let deadline = StoreTime.normalized(issuance.overlapDeadline)
                switch existing.status {
                case CredentialStatus.active.rawValue:
                    existing.overlapDeadline = deadline.map(StoreTime.milliseconds)
                case CredentialStatus.superseded.rawValue:
                    if let refusal = Issuance.successorLeftOut(
                        existing.replacedBy.flatMap(SerialNumber.init(rawValue:)), of: serial, in: issuance, operation)
                    {
                        throw refusal
                    }
                    existing.overlapDeadline = RotationRules.earlierDeadline(
                        existing.overlapDeadline.map { StoreTime.date(milliseconds: $0) }, deadline
                    ).map(StoreTime.milliseconds)
                default:
                    throw StoreError(.conflict, "\(operation): a credential to supersede is no longer active")
                }
                existing.status = CredentialStatus.superseded.rawValue
                existing.replacedBy = credential.serial.rawValue
                try existing.update(db)
            }

            if issuance.transition == nil {
                try db.cachedStatement(sql: "UPDATE devices SET last_seen = ? WHERE id = ?").execute(
                    arguments: [seen, deviceID])
            }
            _ = try Self.append(issuance.audit, db)
        }
    }
}
