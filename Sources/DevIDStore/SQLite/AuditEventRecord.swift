import DevIDCore
import Foundation
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
        let entry = AuditEntry(event)
        self.init(
            sequence: entry.sequence, occurredAt: entry.timeMillis, actor: entry.actor, action: entry.action,
            outcome: entry.outcome, reason: entry.reason, tenantID: entry.tenant, deviceID: entry.device,
            serial: entry.serial, previousHash: entry.previousHash, hash: entry.hash)
    }

    /// A row as stored, whatever it holds: SQLite keeps any type in any column, so a value of another type (put
    /// there by hand) is shown as text, and the chain, which hashed text, then no longer matches it.
    static func entry(_ row: Row) -> AuditEntry {
        func text(_ column: CodingKeys) -> String? {
            switch row[column.rawValue] as DatabaseValue? {
            case nil: return nil
            case let value?:
                switch value.storage {
                case .null: return nil
                case .string(let string): return string
                case .int64(let integer): return String(integer)
                case .double(let double): return String(double)
                case .blob(let data): return String(decoding: data, as: UTF8.self)
                }
            }
        }
        func integer(_ column: CodingKeys) -> Int64 {
            let value: DatabaseValue? = row[column.rawValue]
            switch value?.storage {
            case .int64(let integer)?: return integer
            case .double(let double)?: return Int64(exactly: double) ?? 0
            default: return 0
            }
        }
        return AuditEntry(
            sequence: integer(.sequence), timeMillis: integer(.occurredAt), actor: text(.actor) ?? "",
            action: text(.action) ?? "", outcome: text(.outcome) ?? "", reason: text(.reason) ?? "",
            tenant: text(.tenantID), device: text(.deviceID), serial: text(.serial),
            previousHash: text(.previousHash) ?? "", hash: text(.hash) ?? "")
    }
}

// Explicit row coding instead of the synthesized `Codable` path (see `DeviceRecord`): every audited grant and
// denial inserts one.
extension AuditEventRecord {
    func encode(to container: inout PersistenceContainer) {
        container[CodingKeys.sequence.rawValue] = sequence
        container[CodingKeys.occurredAt.rawValue] = occurredAt
        container[CodingKeys.actor.rawValue] = actor
        container[CodingKeys.action.rawValue] = action
        container[CodingKeys.outcome.rawValue] = outcome
        container[CodingKeys.reason.rawValue] = reason
        container[CodingKeys.tenantID.rawValue] = tenantID
        container[CodingKeys.deviceID.rawValue] = deviceID
        container[CodingKeys.serial.rawValue] = serial
        container[CodingKeys.previousHash.rawValue] = previousHash
        container[CodingKeys.hash.rawValue] = hash
    }
}
