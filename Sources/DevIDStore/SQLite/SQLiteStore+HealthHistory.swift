public import DevIDCore
public import Foundation
import GRDB

extension SQLiteStore {
    public func addHealthCounts(_ counts: [HealthCount], pruneBefore: Date) async throws(StoreError) {
        try await write("add health counts") { db in
            let statement = try db.cachedStatement(
                sql: """
                    INSERT INTO health_counts (metric, hour, tenant_id, first, second, count) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (metric, hour, tenant_id, first, second) DO UPDATE SET count = count + excluded.count
                    """)
            for count in counts where count.count != 0 {
                try statement.execute(arguments: [
                    count.metric, StoreTime.milliseconds(count.hour), count.tenant, count.first, count.second,
                    count.count,
                ])
            }
            try db.execute(
                sql: "DELETE FROM health_counts WHERE hour < ?", arguments: [StoreTime.milliseconds(pruneBefore)])
        }
    }

    public func healthCounts(metric: String, from: Date, to: Date) async throws(StoreError) -> [HealthCount] {
        try await read("read health counts") { db in
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT hour, tenant_id, first, second, count FROM health_counts
                    WHERE metric = ? AND hour >= ? AND hour < ? ORDER BY hour
                    """,
                arguments: [
                    metric, StoreTime.milliseconds(HealthCount.hour(of: from)), StoreTime.milliseconds(to),
                ])
            var counts: [HealthCount] = []
            while let row = try rows.next() {
                counts.append(
                    HealthCount(
                        hour: StoreTime.date(milliseconds: row[0]), metric: metric, tenant: row[1], first: row[2], second: row[3],
                        count: row[4]))
            }
            return counts
        }
    }

    public func onboardingTimes(
        from: Date, to: Date, tenant: TenantID?, limit: Int
    ) async throws(StoreError) -> [OnboardingTime] {
        try await read("read onboarding times") { db in
            // LDevIDs issued in the window, walked newest first along credentials_kind_created so that LIMIT stops
            // the walk, each kept if no earlier LDevID of the same device precedes it (looked up through
            // credentials_device: left to itself the planner took credentials_kind_created for the subquery too,
            // a scan per row, and 100,000 devices never finished). 2 ms for 60 of 100,000 (sqlite3 shell).
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT d.id, d.tenant_id, d.created_at, c.created_at
                    FROM credentials c INDEXED BY credentials_kind_created JOIN devices d ON d.id = c.device_id
                    WHERE c.kind = ? AND c.created_at >= ? AND c.created_at < ? AND (? IS NULL OR d.tenant_id = ?)
                    AND NOT EXISTS (
                        SELECT 1 FROM credentials e INDEXED BY credentials_device
                        WHERE e.device_id = c.device_id AND e.kind = c.kind
                        AND (e.created_at < c.created_at OR (e.created_at = c.created_at AND e.serial < c.serial)))
                    ORDER BY c.created_at DESC LIMIT ?
                    """,
                arguments: [
                    CredentialKind.ldevid.rawValue, StoreTime.milliseconds(from), StoreTime.milliseconds(to),
                    tenant?.rawValue, tenant?.rawValue, max(0, limit),
                ])
            var times: [OnboardingTime] = []
            while let row = try rows.next() {
                times.append(
                    OnboardingTime(
                        device: try SQLiteColumn.decode(DeviceID.init(rawValue:), row[0], "devices.id"),
                        tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), row[1], "devices.tenant_id"),
                        registeredAt: StoreTime.date(milliseconds: row[2]),
                        firstIssuedAt: StoreTime.date(milliseconds: row[3])))
            }
            return times.reversed()
        }
    }

    public func expiryByDay(now: Date, days: Int) async throws(StoreError) -> [TenantID: [Int]] {
        try await read("read expiry by day") { db in
            let nowMilliseconds = StoreTime.milliseconds(now)
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT d.tenant_id, (c.not_after - ?) / 86400000 AS day, COUNT(*)
                    FROM credentials c INDEXED BY credentials_fleet_expiry JOIN devices d ON d.id = c.device_id
                    WHERE c.status = ? AND c.kind = ? AND c.not_after > ? AND c.not_after <= ?
                    GROUP BY d.tenant_id, day
                    """,
                arguments: [
                    nowMilliseconds, CredentialStatus.active.rawValue, CredentialKind.ldevid.rawValue,
                    nowMilliseconds, nowMilliseconds + Int64(days) * 86_400_000,
                ])
            var result: [TenantID: [Int]] = [:]
            while let row = try rows.next() {
                let tenant = try SQLiteColumn.decode(TenantID.init(rawValue:), row[0], "devices.tenant_id")
                let day: Int = row[1]
                guard day >= 0, day < days else { continue }
                result[tenant, default: Array(repeating: 0, count: days)][day] += row[2] as Int
            }
            return result
        }
    }

    public func staleDevices(seenBefore: Date, now: Date, limit: Int) async throws(StoreError) -> StaleDevices {
        try await read("read stale devices") { db in
            let condition = """
                FROM devices d WHERE d.state = ? AND COALESCE(d.last_seen, d.created_at) < ?
                AND EXISTS (SELECT 1 FROM credentials c WHERE c.device_id = d.id AND c.kind = ? AND c.status = ?
                    AND c.not_after > ?)
                """
            let arguments: StatementArguments = [
                DeviceState.active.rawValue, StoreTime.milliseconds(seenBefore), CredentialKind.ldevid.rawValue,
                CredentialStatus.active.rawValue, StoreTime.milliseconds(now),
            ]
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) " + condition, arguments: arguments) ?? 0
            var oldest: [StaleDevices.Entry] = []
            let rows = try Row.fetchCursor(
                db,
                sql: "SELECT d.id, d.tenant_id, d.last_seen " + condition
                    + " ORDER BY COALESCE(d.last_seen, d.created_at), d.id LIMIT \(max(0, limit))",
                arguments: arguments)
            while let row = try rows.next() {
                let lastSeen: Int64? = row[2]
                oldest.append(
                    .init(
                        device: try SQLiteColumn.decode(DeviceID.init(rawValue:), row[0], "devices.id"),
                        tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), row[1], "devices.tenant_id"),
                        lastSeen: lastSeen.map { StoreTime.date(milliseconds: $0) }))
            }
            return StaleDevices(count: count, oldest: oldest)
        }
    }
}
