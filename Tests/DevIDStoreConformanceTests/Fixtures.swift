import Crypto
import DevIDCore
import DevIDStore
import Foundation

/// Values for the conformance tests. Times are whole seconds so they survive the stores' millisecond precision.
enum Fixture {
    static let epoch = Date(timeIntervalSince1970: 1_790_000_000)

    static func time(_ offset: TimeInterval) -> Date { epoch.addingTimeInterval(offset) }

    static func tenantID(_ name: String = "acme") -> TenantID { TenantID(rawValue: name)! }
    static func lotID(_ name: String) -> LotID { LotID(rawValue: name)! }
    static func deviceID(_ name: String) -> DeviceID { DeviceID(rawValue: name)! }

    static func tenant(_ name: String = "acme") -> Tenant {
        Tenant(id: tenantID(name), displayName: "Tenant \(name)", createdAt: epoch)
    }

    static func lot(_ name: String, tenant: String = "acme") -> Lot {
        Lot(id: lotID(name), tenant: tenantID(tenant), createdAt: time(1))
    }

    static func device(
        _ name: String, tenant: String = "acme", hardwareSerial: String? = nil, lot: String? = nil,
        state: DeviceState = .manufactured
    ) -> Device {
        Device(
            id: deviceID(name), tenant: tenantID(tenant), hardwareSerial: hardwareSerial ?? "HW-\(name)",
            lot: lot.map(lotID), state: state, createdAt: time(2))
    }

    /// A serial number that differs for every `index`.
    static func serial(_ index: Int) -> SerialNumber {
        SerialNumber(rawValue: "7e57" + String(index, radix: 16))!
    }

    /// Certificate-like bytes that differ for every `index` and `variant`.
    static func der(_ index: Int, variant: Int = 0) -> [UInt8] {
        [0x30, 0x82] + Array(SHA256.hash(data: Data("certificate \(index) \(variant)".utf8)))
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String { Hex.encode(SHA256.hash(data: bytes)) }

    static func credential(_ index: Int, device: String, variant: Int = 0, createdAt: Date? = nil) -> Credential {
        let der = der(index, variant: variant)
        return Credential(
            serial: serial(index), deviceID: deviceID(device), kind: .ldevid, issuer: "CN=DevID Issuing CA,O=acme",
            notBefore: time(-300), notAfter: time(30 * 86_400),
            publicKeySHA256: sha256Hex(Array("key \(index)".utf8)), certificateSHA256: sha256Hex(der), der: der,
            createdAt: createdAt ?? time(10))
    }

    static func claimToken(
        _ id: String, secret: String? = nil, tenant: String = "acme", device: String? = nil, uses: Int = 1,
        expiresAt: Date = time(3600), revoked: Bool = false
    ) -> ClaimToken {
        ClaimToken(
            id: id, secretHash: sha256Hex(Array((secret ?? "secret-\(id)").utf8)), tenant: tenantID(tenant),
            device: device.map(deviceID), expiresAt: expiresAt, usesRemaining: uses, revoked: revoked,
            createdAt: epoch)
    }

    static func event(
        _ action: String, outcome: AuditEvent.Outcome = .success, device: String? = nil, serial: SerialNumber? = nil,
        at offset: TimeInterval = 20, reason: String = ""
    ) -> AuditEvent {
        AuditEvent(
            time: time(offset), actor: "system", action: action, outcome: outcome, reason: reason,
            tenant: tenantID(), device: device.map(deviceID), serial: serial)
    }

    /// A store with tenant `acme` (and `other`), lots `lot-a` and `lot-b` of acme, and device `dev-1`.
    static func seed(_ store: any Store) async throws {
        try await store.createTenant(tenant("acme"), audit: nil)
        try await store.createTenant(tenant("other"), audit: nil)
        try await store.createLot(lot("lot-a"))
        try await store.createLot(lot("lot-b"))
        try await store.insertDevice(device("dev-1", lot: "lot-a"), audit: nil)
    }

    static func auditCount(_ store: any Store) async throws -> Int {
        try await store.auditEvents(AuditFilter(limit: 100_000)).count
    }

    static func allDevices(_ store: any Store) async throws -> [Device] {
        try await store.devices(DeviceFilter(limit: 1_000_000))
    }
}

/// Everything a store holds that the tests can read back, to show that a refused write changed nothing.
struct RegistrySnapshot: Equatable {
    var tenants: [Tenant]
    var lots: [LotID: Lot?]
    var devices: [Device]
    var credentials: [Credential]
    var credentialCount: Int
    var claimTokens: [ClaimToken]
    var adminTokens: [AdminToken]
    var audit: [AuditEvent]

    /// `lots` names the lots to look up (the protocol has no way to list them).
    init(_ store: any Store, lots: [String] = []) async throws {
        tenants = try await store.tenants()
        var lotRows: [LotID: Lot?] = [:]
        for name in lots { lotRows[Fixture.lotID(name)] = try await store.lot(Fixture.lotID(name)) }
        self.lots = lotRows
        devices = try await Fixture.allDevices(store)
        var credentials: [Credential] = []
        for device in devices { credentials += try await store.credentials(device: device.id) }
        self.credentials = credentials
        credentialCount = try await store.credentialCount()
        claimTokens = try await store.claimTokens(tenant: nil)
        adminTokens = try await store.adminTokens()
        audit = try await store.auditEvents(AuditFilter(limit: 1_000_000))
    }
}
