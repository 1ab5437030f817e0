public import DevIDCore
import DevIDPKI
import DevIDStore
public import Foundation
import X509

/// `GET /v1/health/anomalies` (and `devid health`): every check's status and its open findings.
public struct HealthReport: Codable, Sendable {
    public struct Check: Codable, Sendable {
        public var name: String
        /// `ok`, `warning` or `critical`.
        public var status: String
        public var findings: Int
    }

    public var checkedAt: Date
    /// The worst status of any check.
    public var status: String
    public var checks: [Check]
    public var anomalies: [Anomaly]
    public var thresholds: HealthThresholds
}

/// `GET /v1/health/series`: hourly counts summed into steps, one series per label pair.
struct HealthSeries: Codable, Sendable {
    struct Point: Codable, Sendable, Hashable {
        var start: Date
        var count: Int
    }

    struct Series: Codable, Sendable {
        var labels: [String: String]
        var total: Int
        var points: [Point]
    }

    var metric: String
    /// The tenant asked for, or `all` (every tenant the token may see).
    var tenant: String
    var from: Date
    var to: Date
    var step: Int
    var series: [Series]
}

/// Reads the registry, the CA state and the recent events into ``HealthInputs`` and the history into series.
struct HealthService {
    /// The expiry days looked at for `expiry_wave`: every LDevID of up to 10 years.
    static let expiryHorizonDays = 3_660
    /// At most this many points in one series answer.
    static let maximumPoints = 10_000

    let state: ServerState

    /// The stale threshold in seconds: the configured days, else the LDevID renewal window.
    func staleAfter(_ thresholds: HealthThresholds) -> TimeInterval {
        if thresholds.staleAfterDays > 0 { return thresholds.staleAfterDays * 86_400 }
        let policy = state.configuration.ldevidPolicy
        return (policy.lifetime ?? 30 * 86_400) * (1 - policy.rotation.renewalFraction)
    }

    func inputs(_ thresholds: HealthThresholds) async throws -> HealthInputs {
        let now = state.clock.now()
        var inputs = HealthInputs(now: now, thresholds: thresholds)
        inputs.cas = MetricsExposition.caCertificates(state).map { (name: $0.0, notAfter: $0.1.notValidAfter) }
        inputs.crls = await state.revocation.publishedCRLs().map {
            (name: $0.name, thisUpdate: $0.thisUpdate, nextUpdate: $0.nextUpdate)
        }
        let rootCRLs = state.rootCRLs.crls
        if let root = rootCRLs.current(at: now) {
            inputs.crls.append((name: "root", thisUpdate: root.thisUpdate, nextUpdate: root.nextUpdate ?? root.thisUpdate))
        }
        inputs.rootCRLsSignedUntil = rootCRLs.signedUntil
        inputs.ocspSigners = await state.revocation.ocspSignerExpiries()
        inputs.expiryByDay = try await state.store.expiryByDay(now: now, days: Self.expiryHorizonDays)
        inputs.currentCredentials = inputs.expiryByDay.mapValues { $0.reduce(0, +) }
        inputs.staleAfter = staleAfter(thresholds)
        inputs.ldevidLifetime = state.configuration.ldevidPolicy.lifetime
        inputs.stale = try await state.store.staleDevices(
            seenBefore: now.addingTimeInterval(-inputs.staleAfter), now: now, limit: AnomalyChecks.maximumFindings)
        inputs.events = state.watch.snapshot(since: now.addingTimeInterval(-thresholds.eventWindowHours * 3_600))
        let lastStart = HealthCount.hour(of: now).addingTimeInterval(-3_600)
        let refusals = try await state.metrics.history?.counts(
            .enrollments, from: lastStart.addingTimeInterval(-86_400), to: now.addingTimeInterval(3_600)) ?? []
        for row in refusals where row.second == ServerMetrics.EnrollmentResult.refused.rawValue {
            if row.hour >= lastStart {
                inputs.refusalsLastHour += row.count
            } else {
                inputs.refusalsDayBefore += row.count
            }
        }
        inputs.weakManufacturers = state.hierarchy.trustedManufacturers.compactMap { certificate in
            KeyStrength.weakness(of: certificate).map {
                (name: "manufacturer-" + String(certificate.sha256Fingerprint.prefix(16)), weakness: $0)
            }
        }
        return inputs
    }

    /// Runs `checks` (every check when empty), keeping the findings `visible` allows (a tenant-limited token sees
    /// its tenants' findings and those of no tenant).
    func report(
        checks: [String], thresholds: HealthThresholds, visible: (TenantID) -> Bool
    ) async throws -> HealthReport {
        let inputs = try await inputs(thresholds)
        var results: [HealthReport.Check] = []
        var anomalies: [Anomaly] = []
        for name in checks.isEmpty ? AnomalyChecks.names : checks {
            let findings = AnomalyChecks.run(name, inputs).filter { finding in
                finding.tenant.flatMap(TenantID.init(rawValue:)).map(visible) ?? true
            }
            let worst = findings.map(\.severity).max()
            results.append(.init(name: name, status: worst?.rawValue ?? "ok", findings: findings.count))
            anomalies += findings
        }
        let worst = anomalies.map(\.severity).max()
        return HealthReport(
            checkedAt: inputs.now, status: worst?.rawValue ?? "ok", checks: results, anomalies: anomalies,
            thresholds: thresholds)
    }

    /// The history of `metric` in `from ..< to` in steps of `step` seconds (a multiple of an hour), one series per
    /// label pair, summed over the tenants `tenant` names (every visible one when nil). `labels` filters on the
    /// metric's label names (`stage`, `reason`, ...).
    func series(
        _ metric: HealthHistory.Metric, tenant: TenantID?, labels: [String: String], from: Date, to: Date, step: Int,
        visible: (TenantID) -> Bool, allTenants: Bool
    ) async throws -> HealthSeries {
        let start = HealthCount.hour(of: from)
        let rows = try await state.metrics.history?.counts(metric, from: start, to: to) ?? []
        let (firstName, secondName) = metric.labels
        var grouped: [String: (first: String, second: String, counts: [Int: Int])] = [:]
        for row in rows {
            if let tenant {
                guard row.tenant == tenant.rawValue else { continue }
            } else if let id = TenantID(rawValue: row.tenant), row.tenant != ServerMetrics.unknownTenant {
                guard visible(id) else { continue }
            } else {
                guard allTenants else { continue }
            }
            if let wanted = labels[firstName], wanted != row.first { continue }
            if let wanted = labels[secondName], wanted != row.second { continue }
            let bucket = Int(row.hour.timeIntervalSince(start)) / step
            let key = row.first + "\u{0}" + row.second
            grouped[key, default: (row.first, row.second, [:])].counts[bucket, default: 0] += row.count
        }
        let buckets = Int((to.timeIntervalSince(start) / Double(step)).rounded(.up))
        let series = grouped.values.sorted { ($0.first, $0.second) < ($1.first, $1.second) }.map { group in
            HealthSeries.Series(
                labels: [firstName: group.first, secondName: group.second], total: group.counts.values.reduce(0, +),
                points: (0..<max(buckets, 0)).map { index in
                    .init(start: start.addingTimeInterval(Double(index * step)), count: group.counts[index] ?? 0)
                })
        }
        return HealthSeries(
            metric: metric.rawValue, tenant: tenant?.rawValue ?? "all", from: start, to: to, step: step,
            series: series)
    }
}
