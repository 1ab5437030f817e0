import DevIDCore
public import Foundation
import GRDB

extension SQLiteStore {
    /// Two aggregate queries in one read: devices grouped by tenant and state, and the current LDevIDs grouped by
    /// tenant with one `SUM(CASE ...)` per bucket bound. The second reads the covering index
    /// `credentials_fleet_expiry` in device order (migration `v11-fleet-expiry`): the planner would otherwise take
    /// `credentials_status_not_after` and look every device up in random order, four times slower at 100,000.
    public func fleetHealth(now: Date, upperBounds: [TimeInterval]) async throws(StoreError) -> FleetHealth {
        try await read("read fleet health") { db in
            let devices = try Self.deviceStateCounts(db)
            let nowMilliseconds = StoreTime.milliseconds(now)
            let buckets = upperBounds.map { _ in "SUM(CASE WHEN c.not_after <= ? THEN 1 ELSE 0 END)" }
            let sql = """
                SELECT d.tenant_id, COUNT(*), SUM(c.not_after - ?)\(buckets.map { ", " + $0 }.joined())
                FROM credentials c INDEXED BY credentials_fleet_expiry JOIN devices d ON d.id = c.device_id
                WHERE c.status = ? AND c.kind = ? AND c.not_after > ?
                GROUP BY d.tenant_id
                """
            var arguments: [any DatabaseValueConvertible] = [nowMilliseconds]
            arguments += upperBounds.map { nowMilliseconds + Int64(($0 * 1000).rounded()) }
            arguments += [CredentialStatus.active.rawValue, CredentialKind.ldevid.rawValue, nowMilliseconds]
            var expiry: [TenantID: FleetHealth.ExpiryHistogram] = [:]
            let rows = try Row.fetchCursor(db, sql: sql, arguments: StatementArguments(arguments))
            while let row = try rows.next() {
                let tenant = try SQLiteColumn.decode(
                    TenantID.init(rawValue:), try row.decode(atIndex: 0), "devices.tenant_id")
                let milliseconds: Int64 = try row.decode(atIndex: 2)
                expiry[tenant] = .init(
                    cumulative: try upperBounds.indices.map { try row.decode(atIndex: 3 + $0) },
                    count: try row.decode(atIndex: 1), sum: Double(milliseconds) / 1000)
            }
            return FleetHealth(devices: devices, upperBounds: upperBounds, expiry: expiry)
        }
    }

    public func deviceStateCounts() async throws(StoreError) -> [FleetHealth.DeviceCount] {
        try await read("read device counts") { db in try Self.deviceStateCounts(db) }
    }

    /// Devices grouped by tenant and state, from the index `devices_tenant_state` alone.
    static func deviceStateCounts(_ db: Database) throws -> [FleetHealth.DeviceCount] {
        var devices: [FleetHealth.DeviceCount] = []
        let deviceRows = try Row.fetchCursor(
            db,
            sql: "SELECT tenant_id, state, COUNT(*) FROM devices GROUP BY tenant_id, state ORDER BY tenant_id, state")
        while let row = try deviceRows.next() {
            let tenant = try SQLiteColumn.decode(
                TenantID.init(rawValue:), try row.decode(atIndex: 0), "devices.tenant_id")
            let state = try SQLiteColumn.decode(DeviceState.init(rawValue:), try row.decode(atIndex: 1), "devices.state")
            devices.append(.init(tenant: tenant, state: state, count: try row.decode(atIndex: 2)))
        }
        return devices
    }
}
