public import DevIDCore
public import Foundation

extension MemoryStore {
    public func addHealthCounts(_ counts: [HealthCount], pruneBefore: Date) {
        for count in counts where count.count != 0 {
            var key = count
            key.count = 0
            key.hour = StoreTime.normalized(count.hour)
            healthCountRows[key, default: 0] += count.count
        }
        healthCountRows = healthCountRows.filter { $0.key.hour >= pruneBefore }
    }

    public func healthCounts(metric: String, from: Date, to: Date) -> [HealthCount] {
        let start = HealthCount.hour(of: from)
        return healthCountRows.compactMap { key, count -> HealthCount? in
            guard key.metric == metric, key.hour >= start, key.hour < to else { return nil }
            var row = key
            row.count = count
            return row
        }.sorted { ($0.hour, $0.tenant, $0.first, $0.second) < ($1.hour, $1.tenant, $1.first, $1.second) }
    }

    public func onboardingTimes(from: Date, to: Date, tenant: TenantID?, limit: Int) -> [OnboardingTime] {
        var first: [DeviceID: Date] = [:]
        for credential in allCredentials() where credential.kind == .ldevid {
            if let known = first[credential.deviceID], known <= credential.createdAt { continue }
            first[credential.deviceID] = credential.createdAt
        }
        return first.compactMap { id, issued -> OnboardingTime? in
            guard issued >= from, issued < to, let device = deviceRow(id), tenant.map({ $0 == device.tenant }) ?? true
            else { return nil }
            return OnboardingTime(device: id, tenant: device.tenant, registeredAt: device.createdAt, firstIssuedAt: issued)
        }.sorted { ($0.firstIssuedAt, $0.device) < ($1.firstIssuedAt, $1.device) }.suffix(max(0, limit)).map { $0 }
    }

    public func expiryByDay(now: Date, days: Int) -> [TenantID: [Int]] {
        let nowMilliseconds = StoreTime.milliseconds(now)
        var result: [TenantID: [Int]] = [:]
        for credential in allCredentials() where credential.kind == .ldevid && credential.status == .active {
            let left = StoreTime.milliseconds(credential.notAfter) - nowMilliseconds
            guard left > 0, left <= Int64(days) * 86_400_000, let tenant = deviceRow(credential.deviceID)?.tenant
            else { continue }
            let day = Int(left / 86_400_000)
            guard day < days else { continue }
            result[tenant, default: Array(repeating: 0, count: days)][day] += 1
        }
        return result
    }

    public func staleDevices(seenBefore: Date, now: Date, limit: Int) -> StaleDevices {
        let stale = allDevices().filter { device in
            device.state == .active && (device.lastSeen ?? device.createdAt) < seenBefore
                && deviceCredentials(device.id).contains { $0.kind == .ldevid && $0.status == .active && $0.notAfter > now }
        }.sorted { (($0.lastSeen ?? $0.createdAt), $0.id) < (($1.lastSeen ?? $1.createdAt), $1.id) }
        return StaleDevices(
            count: stale.count,
            oldest: stale.prefix(max(0, limit)).map { .init(device: $0.id, tenant: $0.tenant, lastSeen: $0.lastSeen) })
    }
}
