import DevIDCore
import GRDB

/// A row of `audit_events`: one link of the hash chain.
struct AuditEventRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "audit_events"

    var sequence: Int64
    var occurredAt: Int64
    var actor: String
    var action: String
    var outcome: String
    var reason: String
    var tenantID: String?
    var deviceID: String?
    var serial: String?
    var previousHash: String
    var hash: String

    enum CodingKeys: String, CodingKey {
        case sequence
        case occurredAt = "occurred_at"
        case actor
        case action
        case outcome
        case reason
        case tenantID = "tenant_id"
        case deviceID = "device_id"
        case serial
        case previousHash = "previous_hash"
        case hash
    }

    enum Columns {
        static let sequence = Column(CodingKeys.sequence)
        static let action = Column(CodingKeys.action)
        static let outcome = Column(CodingKeys.outcome)
        static let deviceID = Column(CodingKeys.deviceID)
    }
}

extension AuditEventRecord {
    init(_ event: AuditEvent) {
        self.init(
            sequence: event.sequence, occurredAt: StoreTime.milliseconds(event.time), actor: event.actor,
            action: event.action, outcome: event.outcome.rawValue, reason: event.reason,
            tenantID: event.tenant?.rawValue, deviceID: event.device?.rawValue, serial: event.serial?.rawValue,
            previousHash: event.previousHash, hash: event.hash)
    }

    func model() throws(StoreError) -> AuditEvent {
        var event = AuditEvent(
            time: StoreTime.date(milliseconds: occurredAt), actor: actor, action: action,
            outcome: try SQLiteColumn.decode(AuditEvent.Outcome.init(rawValue:), outcome, "audit_events.outcome"),
            reason: reason,
            tenant: try tenantID.map { value throws(StoreError) in
                try SQLiteColumn.decode(TenantID.init(rawValue:), value, "audit_events.tenant_id")
            },
            device: try deviceID.map { value throws(StoreError) in
                try SQLiteColumn.decode(DeviceID.init(rawValue:), value, "audit_events.device_id")
            },
            serial: try serial.map { value throws(StoreError) in
                try SQLiteColumn.decode(SerialNumber.init(rawValue:), value, "audit_events.serial")
            })
        event.sequence = sequence
        event.previousHash = previousHash
        event.hash = hash
        return event
    }
}
