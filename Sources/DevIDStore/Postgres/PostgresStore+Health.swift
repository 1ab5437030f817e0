public import DevIDCore
public import Foundation
import PostgresNIO

// Fleet health and health history, as ``SQLiteStore`` computes them. Differences from the SQLite SQL: no
// `INDEXED BY` (PostgreSQL's planner picks its own index); `SUM(boolean)` buckets become `COUNT(*) FILTER`; `SUM`
// of BIGINT is NUMERIC, cast back; text orderings use `COLLATE "C"` (SQLite's byte order, whatever the database's
// collation); a parameter only tested with `IS NULL` is cast, as PostgreSQL cannot infer the type of a NULL bind.
// Methods with several statements run in a snapshot, as GRDB's pool reads do.
extension PostgresStore {
    public func fleetHealth(now: Date, upperBounds: [TimeInterval]) async throws(StoreError) -> FleetHealth {
        try await snapshot("read fleet health") { session in
            let devices = try await Self.deviceStateCounts(session)
            let nowMilliseconds = StoreTime.milliseconds(now)
            let buckets = upperBounds.map { _ in ", COUNT(*) FILTER (WHERE c.not_after <= ?)" }
            let sql = """
                SELECT d.tenant_id, COUNT(*), SUM(c.not_after - ?)::BIGINT\(buckets.joined())
                FROM credentials c JOIN devices d ON d.id = c.device_id
                WHERE c.status = ? AND c.kind = ? AND c.not_after > ?
                GROUP BY d.tenant_id
                """
            var arguments: [PostgresValue] = [.integer(nowMilliseconds)]
            arguments += upperBounds.map { .integer(nowMilliseconds + Int64(($0 * 1000).rounded())) }
            arguments += [
                .text(CredentialStatus.active.rawValue), .text(CredentialKind.ldevid.rawValue),
                .integer(nowMilliseconds),
            ]
            var expiry: [TenantID: FleetHealth.ExpiryHistogram] = [:]
            for row in try await session.rows(sql, arguments) {
                let cells = row.makeRandomAccess()
                let tenant = try SQLiteColumn.decode(
                    TenantID.init(rawValue:), try cells[0].decode(String.self), "devices.tenant_id")
                let milliseconds = try cells[2].decode(Int64.self)
                expiry[tenant] = .init(
                    cumulative: try upperBounds.indices.map { try cells[3 + $0].decode(Int.self) },
                    count: try cells[1].decode(Int.self), sum: Double(milliseconds) / 1000)
            }
            return FleetHealth(devices: devices, upperBounds: upperBounds, expiry: expiry)
        }
    }

    public func deviceStateCounts() async throws(StoreError) -> [FleetHealth.DeviceCount] {
        try await read("read device counts") { session in try await Self.deviceStateCounts(session) }
    }

    /// Devices grouped by tenant and state, in byte order of both.
    static func deviceStateCounts(_ session: PostgresSession) async throws -> [FleetHealth.DeviceCount] {
        try await session.rows(
            """
            SELECT tenant_id, state, COUNT(*) FROM devices GROUP BY tenant_id, state
            ORDER BY tenant_id COLLATE "C", state COLLATE "C"
            """
        ).map { row in
            let (tenant, state, count) = try row.decode((String, String, Int).self)
            return .init(
                tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), tenant, "devices.tenant_id"),
                state: try SQLiteColumn.decode(DeviceState.init(rawValue:), state, "devices.state"), count: count)
        }
    }

    // MARK: Health history

    public func addHealthCounts(_ counts: [HealthCount], pruneBefore: Date) async throws(StoreError) {
        // Summed per key first, then upserted in multi-row statements (a round trip each, where SQLite loops
        // in-process): PostgreSQL refuses a statement that upserts one key twice. The end state is SQLite's.
        struct Key: Hashable {
            var metric: String, hour: Int64, tenant: String, first: String, second: String
        }
        var order: [Key] = []
        var sums: [Key: Int64] = [:]
        for count in counts where count.count != 0 {
            let key = Key(
                metric: count.metric, hour: StoreTime.milliseconds(count.hour), tenant: count.tenant,
                first: count.first, second: count.second)
            if sums[key] == nil { order.append(key) }
            sums[key, default: 0] += Int64(count.count)
        }
        try await write("add health counts") { [order, sums] session in
            var start = 0
            while start < order.count {
                let chunk = order[start..<min(start + 500, order.count)]
                start = chunk.endIndex
                let sql = "INSERT INTO health_counts (metric, hour, tenant_id, first, second, count) VALUES "
                    + Array(repeating: "(?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
                    + """
                     ON CONFLICT (metric, hour, tenant_id, first, second)
                    DO UPDATE SET count = health_counts.count + excluded.count
                    """
                let arguments: [PostgresValue] = chunk.flatMap { key -> [PostgresValue] in
                    [
                        .text(key.metric), .integer(key.hour), .text(key.tenant), .text(key.first),
                        .text(key.second), .integer(sums[key] ?? 0),
                    ]
                }
                try await session.execute(sql, arguments)
            }
            try await session.execute(
                "DELETE FROM health_counts WHERE hour < ?", [.integer(StoreTime.milliseconds(pruneBefore))])
        }
    }

    public func healthCounts(metric: String, from: Date, to: Date) async throws(StoreError) -> [HealthCount] {
        try await read("read health counts") { session in
            // Ties in hour ordered as SQLite's primary-key index walk returns them.
            try await session.rows(
                """
                SELECT hour, tenant_id, first, second, count FROM health_counts
                WHERE metric = ? AND hour >= ? AND hour < ?
                ORDER BY hour, tenant_id COLLATE "C", first COLLATE "C", second COLLATE "C"
                """,
                [
                    .text(metric), .integer(StoreTime.milliseconds(HealthCount.hour(of: from))),
                    .integer(StoreTime.milliseconds(to)),
                ]
            ).map { row in
                let (hour, tenant, first, second, count) = try row.decode((Int64, String, String, String, Int).self)
                return HealthCount(
                    hour: StoreTime.date(milliseconds: hour), metric: metric, tenant: tenant, first: first,
                    second: second, count: count)
            }
        }
    }

    public func onboardingTimes(
        from: Date, to: Date, tenant: TenantID?, limit: Int
    ) async throws(StoreError) -> [OnboardingTime] {
        try await read("read onboarding times") { session in
            // LDevIDs issued in the window, newest first, each kept if no earlier LDevID of the same device precedes
            // it. The serial tie-break of the ORDER BY is PostgreSQL's (SQLite returned ties in rowid order).
            let rows = try await session.rows(
                """
                SELECT d.id, d.tenant_id, d.created_at, c.created_at
                FROM credentials c JOIN devices d ON d.id = c.device_id
                WHERE c.kind = ? AND c.created_at >= ? AND c.created_at < ? AND (?::TEXT IS NULL OR d.tenant_id = ?)
                AND NOT EXISTS (
                    SELECT 1 FROM credentials e
                    WHERE e.device_id = c.device_id AND e.kind = c.kind
                    AND (e.created_at < c.created_at
                        OR (e.created_at = c.created_at AND e.serial COLLATE "C" < c.serial COLLATE "C")))
                ORDER BY c.created_at DESC, c.serial COLLATE "C" DESC LIMIT ?
                """,
                [
                    .text(CredentialKind.ldevid.rawValue), .integer(StoreTime.milliseconds(from)),
                    .integer(StoreTime.milliseconds(to)), .optional(tenant?.rawValue), .optional(tenant?.rawValue),
                    .int(max(0, limit)),
                ])
            let times = try rows.map { row in
                let (device, tenant, registered, issued) = try row.decode((String, String, Int64, Int64).self)
                return OnboardingTime(
                    device: try SQLiteColumn.decode(DeviceID.init(rawValue:), device, "devices.id"),
                    tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), tenant, "devices.tenant_id"),
                    registeredAt: StoreTime.date(milliseconds: registered),
                    firstIssuedAt: StoreTime.date(milliseconds: issued))
            }
            return Array(times.reversed())
        }
    }

    public func expiryByDay(now: Date, days: Int) async throws(StoreError) -> [TenantID: [Int]] {
        try await read("read expiry by day") { session in
            let nowMilliseconds = StoreTime.milliseconds(now)
            let rows = try await session.rows(
                """
                SELECT d.tenant_id, (c.not_after - ?) / 86400000 AS day, COUNT(*)
                FROM credentials c JOIN devices d ON d.id = c.device_id
                WHERE c.status = ? AND c.kind = ? AND c.not_after > ? AND c.not_after <= ?
                GROUP BY d.tenant_id, day
                """,
                [
                    .integer(nowMilliseconds), .text(CredentialStatus.active.rawValue),
                    .text(CredentialKind.ldevid.rawValue), .integer(nowMilliseconds),
                    .integer(nowMilliseconds + Int64(days) * 86_400_000),
                ])
            var result: [TenantID: [Int]] = [:]
            for row in rows {
                let (tenantText, day, count) = try row.decode((String, Int, Int).self)
                let tenant = try SQLiteColumn.decode(TenantID.init(rawValue:), tenantText, "devices.tenant_id")
                guard day >= 0, day < days else { continue }
                result[tenant, default: Array(repeating: 0, count: days)][day] += count
            }
            return result
        }
    }

    public func staleDevices(seenBefore: Date, now: Date, limit: Int) async throws(StoreError) -> StaleDevices {
        try await snapshot("read stale devices") { session in
            let condition = """
                FROM devices d WHERE d.state = ? AND COALESCE(d.last_seen, d.created_at) < ?
                AND EXISTS (SELECT 1 FROM credentials c WHERE c.device_id = d.id AND c.kind = ? AND c.status = ?
                    AND c.not_after > ?)
                """
            let arguments: [PostgresValue] = [
                .text(DeviceState.active.rawValue), .integer(StoreTime.milliseconds(seenBefore)),
                .text(CredentialKind.ldevid.rawValue), .text(CredentialStatus.active.rawValue),
                .integer(StoreTime.milliseconds(now)),
            ]
            let count = try await session.scalar(Int.self, "SELECT COUNT(*) " + condition, arguments) ?? 0
            let rows = try await session.rows(
                "SELECT d.id, d.tenant_id, d.last_seen " + condition
                    + " ORDER BY COALESCE(d.last_seen, d.created_at), d.id COLLATE \"C\" LIMIT \(max(0, limit))",
                arguments)
            let oldest = try rows.map { row in
                let (device, tenant, lastSeen) = try row.decode((String, String, Int64?).self)
                return StaleDevices.Entry(
                    device: try SQLiteColumn.decode(DeviceID.init(rawValue:), device, "devices.id"),
                    tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), tenant, "devices.tenant_id"),
                    lastSeen: lastSeen.map { StoreTime.date(milliseconds: $0) })
            }
            return StaleDevices(count: count, oldest: oldest)
        }
    }
}
