public import DevIDCore
public import Foundation
import GRDB

extension SQLiteStore {
    public func issuingCAs() async throws(StoreError) -> [IssuingCA] {
        try await read("list issuing CAs") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM issuing_cas ORDER BY id").map(Self.issuingCA)
        }
    }

    public func insertIssuingCA(_ ca: IssuingCA, audit: AuditEvent?) async throws(StoreError) {
        try await write("record issuing CA") { db in
            try db.execute(
                sql: """
                    INSERT INTO issuing_cas (id, subject, sha256, serial, not_before, not_after, state, created_at,
                        state_changed_at, revocation_reason)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    ca.id, ca.subject, ca.sha256, ca.serial, StoreTime.milliseconds(ca.notBefore),
                    StoreTime.milliseconds(ca.notAfter), ca.state.rawValue, StoreTime.milliseconds(ca.createdAt),
                    StoreTime.milliseconds(ca.stateChangedAt), ca.revocationReason,
                ])
            try Self.append(audit, db)
        }
    }

    public func changeIssuingCAStates(
        _ changes: [IssuingCATransitions.Change], at: Date, revocationReason: String?, audit: AuditEvent
    ) async throws(StoreError) {
        let operation = "change issuing CA states"
        try await write(operation) { db in
            for change in changes {
                guard let current = try String.fetchOne(db, sql: "SELECT state FROM issuing_cas WHERE id = ?", arguments: [change.id])
                else { throw StoreError(.notFound, "\(operation): no issuing CA \(change.id)") }
                guard current == change.from.rawValue else {
                    throw StoreError(
                        .conflict, "\(operation): issuing CA \(change.id) is \(current), not \(change.from.rawValue)")
                }
                try db.execute(
                    sql: """
                        UPDATE issuing_cas SET state = ?, state_changed_at = ?,
                            revocation_reason = CASE WHEN ? = 'revoked' THEN ? ELSE revocation_reason END
                        WHERE id = ?
                        """,
                    arguments: [
                        change.to.rawValue, StoreTime.milliseconds(at), change.to.rawValue, revocationReason, change.id,
                    ])
            }
            _ = try Self.append(audit, db)
        }
    }

    public func ldevidCountsByIssuer(now: Date, seenSince: Date) async throws(StoreError) -> [String: IssuerLDevIDCounts] {
        try await read("count LDevIDs by issuer") { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT c.issuer, COUNT(*), COUNT(CASE WHEN c.status = ? AND d.last_seen >= ? THEN 1 END)
                    FROM credentials c JOIN devices d ON d.id = c.device_id
                    WHERE c.kind = ? AND c.status IN (?, ?) AND c.not_after > ?
                    GROUP BY c.issuer
                    """,
                arguments: [
                    CredentialStatus.active.rawValue, StoreTime.milliseconds(seenSince), CredentialKind.ldevid.rawValue, CredentialStatus.active.rawValue,
                    CredentialStatus.superseded.rawValue, StoreTime.milliseconds(now),
                ])
            var counts: [String: IssuerLDevIDCounts] = [:]
            for row in rows {
                counts[row[0]] = IssuerLDevIDCounts(current: row[1], online: row[2])
            }
            return counts
        }
    }

    private static func issuingCA(_ row: Row) throws -> IssuingCA {
        guard let state = IssuingCAState(rawValue: row["state"]) else {
            throw StoreError(.corrupt, "issuing CA with an unknown state")
        }
        return IssuingCA(
            id: row["id"], subject: row["subject"], sha256: row["sha256"], serial: row["serial"],
            notBefore: StoreTime.date(milliseconds: row["not_before"]), notAfter: StoreTime.date(milliseconds: row["not_after"]), state: state,
            createdAt: StoreTime.date(milliseconds: row["created_at"]), stateChangedAt: StoreTime.date(milliseconds: row["state_changed_at"]),
            revocationReason: row["revocation_reason"])
    }
}
