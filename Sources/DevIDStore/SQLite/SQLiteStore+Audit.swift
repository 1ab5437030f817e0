public import DevIDCore
import GRDB

extension SQLiteStore {
    // MARK: Audit

    @discardableResult
    public func appendAudit(_ event: AuditEvent) async throws(StoreError) -> AuditEvent {
        try await write("append audit event") { db in
            try Self.append(event, db)
        }
    }

    public func auditEntries(_ filter: AuditFilter) async throws(StoreError) -> [AuditEntry] {
        try await read("list audit events") { db in
            var request = AuditEventRecord.all()
            if let action = filter.action { request = request.filter { $0.action == action } }
            if let device = filter.device { request = request.filter { $0.deviceID == device.rawValue } }
            if let outcome = filter.outcome { request = request.filter { $0.outcome == outcome.rawValue } }
            if let after = filter.afterSequence { request = request.filter { $0.sequence > after } }
            if let actor = filter.actor { request = request.filter(Column("actor") == actor) }
            if let tenants = filter.tenants {
                request = request.filter(tenants.map(\.rawValue).contains(Column("tenant_id")))
            }
            request = filter.oldestFirst ? request.order { $0.sequence } : request.order { $0.sequence.desc }
            return try request.limit(max(0, filter.limit)).asRequest(of: Row.self).fetchAll(db)
                .map(AuditEventRecord.entry)
        }
    }

    public func auditChainReport(anchor: AuditAnchor?) async throws(StoreError) -> AuditChainReport {
        let key = auditKey
        return try await read("verify audit chain") { db in
            var verifier = AuditChain.Verifier(key: key, anchor: anchor)
            let rows = try AuditEventRecord.all().order { $0.sequence }.asRequest(of: Row.self).fetchCursor(db)
            while let row = try rows.next() {
                guard verifier.accept(AuditEventRecord.entry(row)) else { break }
            }
            return verifier.finish()
        }
    }
}

extension AuditChain {
    /// `devid_audit_mac(input)`: the keyed chain hash of `input` (hex), or NULL for a store without a key.
    static func macFunction(_ key: AuditKey?) -> DatabaseFunction {
        DatabaseFunction("devid_audit_mac", argumentCount: 1, pure: true) { arguments in
            guard let key, let input = String.fromDatabaseValue(arguments[0]) else { return nil }
            return key.mac(input)
        }
    }
}
