import DevIDCore
import Foundation
import Hummingbird

/// `GET /v1/health/series` and `GET /v1/health/anomalies` on the operations listener, for admin, operator and
/// auditor tokens (``AdminAccessTable``). A token limited to tenants sees its tenants' series and findings, and
/// the findings of no tenant (CAs, CRLs, the OCSP signer).
enum HealthRoutes {
    static func register(_ router: Router<OpsRequestContext>, state: ServerState) {
        let group = router.group("/v1/health")
            .add(middleware: AdminRateLimitMiddleware(state: state))
            .add(middleware: AdminAuthMiddleware(state: state))
        let service = HealthService(state: state)

        group.get("/series") { request, context -> JSONBody<HealthSeries> in
            let query = request.uri.queryParameters
            guard let name = query["metric"].map(String.init) else {
                throw HTTPError(.badRequest, message: "metric is required: \(metricNames)")
            }
            guard let metric = HealthHistory.Metric(rawValue: name) else {
                throw HTTPError(.badRequest, message: "unknown metric \(name); known: \(metricNames)")
            }
            var tenant: TenantID?
            if let text = query["tenant"].map(String.init), text != "all" {
                guard let id = TenantID(rawValue: text) else { throw HTTPError(.badRequest, message: "invalid tenant") }
                try context.require(tenant: id)
                tenant = id
            }
            let now = state.clock.now()
            let to = try query["to"].map { try time(String($0), "to") } ?? now
            let from = try query["from"].map { try time(String($0), "from") } ?? to.addingTimeInterval(-7 * 86_400)
            guard from < to else { throw HTTPError(.badRequest, message: "from must be before to") }
            let span = to.timeIntervalSince(from)
            let step = try query["step"].map { try self.step(String($0)) } ?? (span <= 2 * 86_400 ? 3_600 : 86_400)
            guard span / Double(step) <= Double(HealthService.maximumPoints) else {
                throw HTTPError(
                    .badRequest,
                    message: "from..to in steps of \(step) s is over \(HealthService.maximumPoints) points; use a larger step")
            }
            var labels: [String: String] = [:]
            for label in [metric.labels.0, metric.labels.1] {
                if let value = query[Substring(label)] { labels[label] = String(value) }
            }
            return JSONBody(
                try await service.series(
                    metric, tenant: tenant, labels: labels, from: from, to: to, step: step,
                    visible: { context.allows(tenant: $0) }, allTenants: context.tenantLimit == nil))
        }

        group.get("/anomalies") { request, context -> JSONBody<HealthReport> in
            var thresholds = state.configuration.healthThresholds
            var checks: [String] = []
            for (key, value) in request.uri.queryParameters {
                let key = String(key)
                if key == "check" {
                    let name = String(value)
                    guard AnomalyChecks.names.contains(name) else {
                        throw HTTPError(
                            .badRequest,
                            message: "unknown check \(name); known: \(AnomalyChecks.names.joined(separator: ", "))")
                    }
                    checks.append(name)
                    continue
                }
                do throws(HealthThresholds.ThresholdError) {
                    try thresholds.set(key, String(value))
                } catch {
                    throw HTTPError(.badRequest, message: error.description)
                }
            }
            return JSONBody(
                try await service.report(checks: checks, thresholds: thresholds) { context.allows(tenant: $0) })
        }
    }

    static var metricNames: String { HealthHistory.Metric.allCases.map(\.rawValue).joined(separator: ", ") }

    /// The times a query may name: years 1 to 9999. A number beyond them would overflow the registry's
    /// milliseconds.
    static let times = Date(timeIntervalSince1970: -62_135_596_800)...Date(timeIntervalSince1970: 253_402_300_799)

    /// RFC 3339 (`2026-12-01T00:00:00Z`), a date (`2026-12-01`, midnight UTC) or Unix seconds, in years 1-9999.
    static func time(_ text: String, _ name: String) throws -> Date {
        var parsed: Date?
        if let seconds = Double(text), seconds.isFinite {
            parsed = Date(timeIntervalSince1970: seconds)
        } else if let date = try? Date(text, strategy: .iso8601) {
            parsed = date
        } else if let date = try? Date(text + "T00:00:00Z", strategy: .iso8601) {
            parsed = date
        }
        guard let parsed else {
            throw HTTPError(.badRequest, message: "\(name) must be RFC 3339, a date (YYYY-MM-DD) or Unix seconds")
        }
        guard times.contains(parsed) else {
            throw HTTPError(.badRequest, message: "\(name) must be in the years 1-9999")
        }
        return parsed
    }

    /// `1h`, `6h`, `1d`, `7d` or seconds; a whole number of hours.
    static func step(_ text: String) throws -> Int {
        var seconds: Int?
        if let value = Int(text) {
            seconds = value
        } else if text.hasSuffix("h"), let hours = Int(text.dropLast()) {
            seconds = hours.multipliedReportingOverflow(by: 3_600).overflow ? nil : hours * 3_600
        } else if text.hasSuffix("d"), let days = Int(text.dropLast()) {
            seconds = days.multipliedReportingOverflow(by: 86_400).overflow ? nil : days * 86_400
        }
        guard let seconds, seconds > 0, seconds % 3_600 == 0, seconds <= 366 * 86_400 else {
            throw HTTPError(.badRequest, message: "step must be a whole number of hours (1h, 6h, 1d or seconds)")
        }
        return seconds
    }
}
