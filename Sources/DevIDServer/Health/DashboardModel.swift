import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import X509

/// Everything one dashboard page shows, read at one moment for one tenant or for every tenant the session may
/// see. ``load(state:token:tenant:)`` reads it; ``DashboardPage`` draws it (pure, so it is tested without I/O).
struct DashboardModel: Sendable {
    var now: Date
    /// The admin token's name and role, shown in the header.
    var tokenName: String
    var role: String
    /// The tenants the session may see, for the switch.
    var tenants: [TenantID]
    /// The tenant shown; nil for every visible tenant.
    var selected: TenantID?

    /// Current LDevIDs by whole weeks until expiry: `[0]` expire within 7 days.
    var expiryWeeks: [Int] = []
    /// The week of the expiry wave (the busiest week, when it holds more than `expiryWavePercent` of them).
    var waveWeek: Int?
    var expiryWavePercent: Double = 25

    /// Starts of the auth-failure steps, and failures per reason per step (every stage summed).
    var failureSteps: [Date] = []
    var failures: [(reason: String, counts: [Int])] = []
    /// Starts of the days, and issued enrollments per kind per day.
    var enrollmentDays: [Date] = []
    var enrollments: [(kind: String, counts: [Int])] = []
    /// Refused enrollments over the same days, every kind.
    var refusedEnrollments = 0
    /// First LDevIDs of the last ``onboardingDays`` days, oldest first.
    var onboarding: [OnboardingTime] = []

    var devicesByState: [(state: DeviceState, count: Int)] = []
    var rotations: [(tenant: TenantID, progress: RotationProgress)] = []
    var cas: [(name: String, notAfter: Date)] = []
    var crls: [(name: String, thisUpdate: Date, nextUpdate: Date)] = []
    var anomalies: [Anomaly] = []

    /// The auth-failure chart's span and step.
    static let failureDays = 7
    static let failureStep = 6 * 3_600
    static let enrollmentDays = 14
    static let onboardingDays = 30
    /// At most this many devices in the onboarding chart (the newest).
    static let onboardingBars = 60
    /// The kinds of the enrollment chart, in stacking order.
    static let enrollmentKinds = ["enroll", "reenroll", "bootstrap", "late_renewal"]

    static func load(state: ServerState, token: AdminToken, tenant selected: TenantID?) async throws -> DashboardModel {
        let now = state.clock.now()
        let visible: @Sendable (TenantID) -> Bool = { tenant in token.allows(tenant: tenant) }
        let tenants = try await state.store.tenants().map(\.id).filter(visible)
        let shown = { (tenant: TenantID) in selected.map { $0 == tenant } ?? visible(tenant) }
        var model = DashboardModel(
            now: now, tokenName: token.name, role: token.role.rawValue, tenants: tenants, selected: selected)
        let service = HealthService(state: state)
        let thresholds = state.configuration.healthThresholds

        // The registry reads that do not depend on each other run at once (SQLite in WAL mode serves readers in
        // parallel): the page costs about its slowest read, the anomaly checks, not the sum
        // (Benchmarks/metrics/run: 724 ms before, at 100,000 devices).
        let lifetime = state.configuration.ldevidPolicy.lifetime ?? 30 * 86_400
        let weeks = min(max(Int((lifetime / (7 * 86_400)).rounded(.up)) + 1, 8), 53)
        let store = state.store
        let onboardingFrom = now.addingTimeInterval(-Double(Self.onboardingDays) * 86_400)
        // One tenant, or every tenant when the token sees them all; a tenant-limited token reads its tenants.
        let onboardingTenants: [TenantID?] = selected.map { [$0] } ?? (token.tenants == nil ? [nil] : tenants.map { $0 })
        async let expiryRead = store.expiryByDay(now: now, days: weeks * 7)
        async let statesRead = store.deviceStateCounts()
        async let reportRead = service.report(checks: [], thresholds: thresholds, visible: visible)
        async let onboardingRead = Self.onboarding(
            store, from: onboardingFrom, to: now.addingTimeInterval(1), tenants: onboardingTenants)

        // Expiry: enough weeks for the longest LDevID lifetime, at least 8.
        var byDay = [Int](repeating: 0, count: weeks * 7)
        for (tenant, days) in try await expiryRead where shown(tenant) {
            for (index, count) in days.enumerated() where index < byDay.count { byDay[index] += count }
        }
        model.expiryWeeks = stride(from: 0, to: byDay.count, by: 7).map { byDay[$0..<$0 + 7].reduce(0, +) }
        model.expiryWavePercent = thresholds.expiryWavePercent(lifetime: lifetime)
        let total = model.expiryWeeks.reduce(0, +)
        if total > 0,
            let busiest = model.expiryWeeks.indices.max(by: { model.expiryWeeks[$0] < model.expiryWeeks[$1] }),
            Double(model.expiryWeeks[busiest]) * 100 / Double(total) > model.expiryWavePercent
        {
            model.waveWeek = busiest
        }

        // Auth failures: 7 days in 6-hour steps, aligned to 00, 06, 12, 18 UTC.
        let step = Double(Self.failureStep)
        let failureFrom = Date(
            timeIntervalSince1970: (now.timeIntervalSince1970 / step).rounded(.down) * step
                - step * Double(Self.failureDays * 86_400 / Self.failureStep - 1))
        let failureSeries = try await service.series(
            .authFailures, tenant: selected, labels: [:], from: failureFrom, to: now, step: Self.failureStep,
            visible: visible, allTenants: token.tenants == nil)
        model.failureSteps = stepStarts(from: failureSeries.from, to: now, step: Self.failureStep)
        var byReason: [String: [Int]] = [:]
        for series in failureSeries.series {
            let reason = series.labels["reason"] ?? "other"
            var counts = byReason[reason] ?? [Int](repeating: 0, count: model.failureSteps.count)
            for (index, point) in series.points.enumerated() where index < counts.count { counts[index] += point.count }
            byReason[reason] = counts
        }
        // Expiry-caused failures first (at the bottom of the stack, in the emphasis colour), then by name.
        model.failures = byReason.sorted {
            ($0.key == "expired" ? 0 : 1, $0.key) < ($1.key == "expired" ? 0 : 1, $1.key)
        }
        .map { (reason: $0.key, counts: $0.value) }

        // Enrollments per UTC day, 14 days.
        let today = (now.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400
        let enrollmentFrom = Date(timeIntervalSince1970: today - Double((Self.enrollmentDays - 1) * 86_400))
        let enrollmentSeries = try await service.series(
            .enrollments, tenant: selected, labels: [:], from: enrollmentFrom, to: now, step: 86_400,
            visible: visible, allTenants: token.tenants == nil)
        model.enrollmentDays = stepStarts(from: enrollmentSeries.from, to: now, step: 86_400)
        var byKind: [String: [Int]] = [:]
        for series in enrollmentSeries.series {
            guard series.labels["result"] == ServerMetrics.EnrollmentResult.issued.rawValue else {
                if series.labels["result"] == ServerMetrics.EnrollmentResult.refused.rawValue {
                    model.refusedEnrollments += series.total
                }
                continue
            }
            let kind = series.labels["kind"] ?? "enroll"
            var counts = byKind[kind] ?? [Int](repeating: 0, count: model.enrollmentDays.count)
            for (index, point) in series.points.enumerated() where index < counts.count { counts[index] += point.count }
            byKind[kind] = counts
        }
        let kinds = Self.enrollmentKinds + byKind.keys.filter { !Self.enrollmentKinds.contains($0) }.sorted()
        model.enrollments = kinds.map {
            (kind: $0, counts: byKind[$0] ?? [Int](repeating: 0, count: model.enrollmentDays.count))
        }

        model.onboarding = Array(
            try await onboardingRead
                .filter { shown($0.tenant) }
                .sorted { ($0.firstIssuedAt, $0.device.rawValue) < ($1.firstIssuedAt, $1.device.rawValue) }
                .suffix(Self.onboardingBars))

        var states: [DeviceState: Int] = [:]
        for row in try await statesRead where shown(row.tenant) {
            states[row.state, default: 0] += row.count
        }
        model.devicesByState = DeviceState.allCases.map { (state: $0, count: states[$0] ?? 0) }

        for tenant in tenants where shown(tenant) {
            let progress = try await state.store.rotationProgress(
                .tenant(tenant), now: now, unreachableAfter: state.configuration.unreachableAfter)
            if progress.due > 0 { model.rotations.append((tenant, progress)) }
        }

        model.cas = MetricsExposition.caCertificates(state).map { (name: $0.0, notAfter: $0.1.notValidAfter) }
        model.crls = await state.revocation.publishedCRLs().map {
            (name: $0.name, thisUpdate: $0.thisUpdate, nextUpdate: $0.nextUpdate)
        }
        if let root = state.rootCRLs.crls.current(at: now) {
            model.crls.append((name: "root", thisUpdate: root.thisUpdate, nextUpdate: root.nextUpdate ?? root.thisUpdate))
        }
        model.anomalies = try await reportRead.anomalies
            .filter { anomaly in
                guard let selected, let tenant = anomaly.tenant else { return true }
                return tenant == selected.rawValue
            }
        return model
    }

    /// The newest first LDevIDs of `tenants` (nil: every tenant), merged.
    static func onboarding(
        _ store: any Store, from: Date, to: Date, tenants: [TenantID?]
    ) async throws -> [OnboardingTime] {
        var times: [OnboardingTime] = []
        for tenant in tenants {
            times += try await store.onboardingTimes(from: from, to: to, tenant: tenant, limit: onboardingBars)
        }
        return times
    }

    /// The starts of the steps from `from` up to (not including) `to`.
    static func stepStarts(from: Date, to: Date, step: Int) -> [Date] {
        let count = max(Int((to.timeIntervalSince(from) / Double(step)).rounded(.up)), 1)
        return (0..<count).map { from.addingTimeInterval(Double($0 * step)) }
    }
}
