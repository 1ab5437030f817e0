import DevIDCore
import GRDB

/// A row of `devices`.
struct DeviceRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "devices"

    var id: String
    var tenantID: String
    var hardwareSerial: String
    var lotID: String?
    var state: String
    var createdAt: Int64
    var lastSeen: Int64?
    var idevidSerial: String?
    var idevidRevokedAt: Int64?
    var idevidRevocationReason: String?
    var idevidIssuerSHA256: String?
    var idevidSHA256: String?
    var enrolledWithToken: String?

    enum CodingKeys: String, CodingKey {
        case id
        case tenantID = "tenant_id"
        case hardwareSerial = "hardware_serial"
        case lotID = "lot_id"
        case state
        case createdAt = "created_at"
        case lastSeen = "last_seen"
        case idevidSerial = "idevid_serial"
        case idevidRevokedAt = "idevid_revoked_at"
        case idevidRevocationReason = "idevid_revocation_reason"
        case idevidIssuerSHA256 = "idevid_issuer_sha256"
        case idevidSHA256 = "idevid_sha256"
        case enrolledWithToken = "enrolled_with_token"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let tenantID = Column(CodingKeys.tenantID)
        static let hardwareSerial = Column(CodingKeys.hardwareSerial)
        static let lotID = Column(CodingKeys.lotID)
        static let state = Column(CodingKeys.state)
        static let lastSeen = Column(CodingKeys.lastSeen)
        static let idevidSerial = Column(CodingKeys.idevidSerial)
        static let idevidRevokedAt = Column(CodingKeys.idevidRevokedAt)
        static let idevidIssuerSHA256 = Column(CodingKeys.idevidIssuerSHA256)
        static let idevidSHA256 = Column(CodingKeys.idevidSHA256)
        static let enrolledWithToken = Column(CodingKeys.enrolledWithToken)
    }
}

extension DeviceRecord {
    init(_ device: Device) {
        self.init(
            id: device.id.rawValue, tenantID: device.tenant.rawValue, hardwareSerial: device.hardwareSerial,
            lotID: device.lot?.rawValue, state: device.state.rawValue,
            createdAt: StoreTime.milliseconds(device.createdAt), lastSeen: device.lastSeen.map(StoreTime.milliseconds),
            idevidSerial: device.idevidSerial?.rawValue,
            idevidRevokedAt: device.idevidRevokedAt.map(StoreTime.milliseconds),
            idevidRevocationReason: device.idevidRevocationReason?.rawValue,
            idevidIssuerSHA256: device.idevidIssuerSHA256, idevidSHA256: device.idevidSHA256,
            enrolledWithToken: device.enrolledWithToken)
    }

    func model() throws(StoreError) -> Device {
        Device(
            id: try SQLiteColumn.decode(DeviceID.init(rawValue:), id, "devices.id"),
            tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), tenantID, "devices.tenant_id"),
            hardwareSerial: hardwareSerial,
            lot: try lotID.map { value throws(StoreError) in
                try SQLiteColumn.decode(LotID.init(rawValue:), value, "devices.lot_id")
            },
            state: try SQLiteColumn.decode(DeviceState.init(rawValue:), state, "devices.state"),
            createdAt: StoreTime.date(milliseconds: createdAt),
            lastSeen: lastSeen.map { StoreTime.date(milliseconds: $0) },
            idevidSerial: try idevidSerial.map { value throws(StoreError) in
                try SQLiteColumn.decode(SerialNumber.init(rawValue:), value, "devices.idevid_serial")
            },
            idevidRevokedAt: idevidRevokedAt.map { StoreTime.date(milliseconds: $0) },
            idevidRevocationReason: try idevidRevocationReason.map { value throws(StoreError) in
                try SQLiteColumn.decode(RevocationReason.init(rawValue:), value, "devices.idevid_revocation_reason")
            },
            idevidIssuerSHA256: idevidIssuerSHA256, idevidSHA256: idevidSHA256, enrolledWithToken: enrolledWithToken)
    }
}

// Explicit row coding: the synthesized `Codable` path (a keyed container per row, generic metadata at run time) was
// a visible share of an enrollment's CPU (BENCHMARKS.md, "Enrollment CPU and TLS resumption"). The columns are the
// `CodingKeys`, as before; a NULL in a NOT NULL field still throws instead of trapping.
extension DeviceRecord {
    init(row: Row) throws {
        id = try row.decode(forColumn: CodingKeys.id.rawValue)
        tenantID = try row.decode(forColumn: CodingKeys.tenantID.rawValue)
        hardwareSerial = try row.decode(forColumn: CodingKeys.hardwareSerial.rawValue)
        lotID = try row.decode(forColumn: CodingKeys.lotID.rawValue)
        state = try row.decode(forColumn: CodingKeys.state.rawValue)
        createdAt = try row.decode(forColumn: CodingKeys.createdAt.rawValue)
        lastSeen = try row.decode(forColumn: CodingKeys.lastSeen.rawValue)
        idevidSerial = try row.decode(forColumn: CodingKeys.idevidSerial.rawValue)
        idevidRevokedAt = try row.decode(forColumn: CodingKeys.idevidRevokedAt.rawValue)
        idevidRevocationReason = try row.decode(forColumn: CodingKeys.idevidRevocationReason.rawValue)
        idevidIssuerSHA256 = try row.decode(forColumn: CodingKeys.idevidIssuerSHA256.rawValue)
        idevidSHA256 = try row.decode(forColumn: CodingKeys.idevidSHA256.rawValue)
        enrolledWithToken = try row.decode(forColumn: CodingKeys.enrolledWithToken.rawValue)
    }

    func encode(to container: inout PersistenceContainer) {
        container[CodingKeys.id.rawValue] = id
        container[CodingKeys.tenantID.rawValue] = tenantID
        container[CodingKeys.hardwareSerial.rawValue] = hardwareSerial
        container[CodingKeys.lotID.rawValue] = lotID
        container[CodingKeys.state.rawValue] = state
        container[CodingKeys.createdAt.rawValue] = createdAt
        container[CodingKeys.lastSeen.rawValue] = lastSeen
        container[CodingKeys.idevidSerial.rawValue] = idevidSerial
        container[CodingKeys.idevidRevokedAt.rawValue] = idevidRevokedAt
        container[CodingKeys.idevidRevocationReason.rawValue] = idevidRevocationReason
        container[CodingKeys.idevidIssuerSHA256.rawValue] = idevidIssuerSHA256
        container[CodingKeys.idevidSHA256.rawValue] = idevidSHA256
        container[CodingKeys.enrolledWithToken.rawValue] = enrolledWithToken
    }
}
