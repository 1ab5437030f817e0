public import DevIDCore
import DevIDStore
import Foundation
public import Prometheus
import Synchronization

/// The event-fed metrics of one server (counters and histograms that events increment), in its own Prometheus
/// registry so that two servers in one process (the tests) never share a count. What is read from the registry
/// at scrape time (devices, expiry, CA and CRL freshness) is not kept here: ``MetricsExposition`` computes it.
///
/// Label values come from fixed sets (``AuthStage``, ``AuthFailureReason``, ``EnrollmentKind``, revocation
/// reasons) or from the registry (tenant ids, bounded by the tenant count); never a device id, serial, token or
/// address.
public final class ServerMetrics: Sendable {
    /// `kind` of `devid_enrollments_total`.
    public enum EnrollmentKind: String, Sendable, CaseIterable {
        /// A device's first LDevID.
        case enroll
        /// A renewal with the current LDevID (`simplereenroll`).
        case reenroll
        /// A known device that had an LDevID before enrolls again with its IDevID or a claim token.
        case bootstrap
        /// A renewal with an LDevID that expired within the grace window.
        case lateRenewal = "late_renewal"
    }

    /// `result` of `devid_enrollments_total`.
    public enum EnrollmentResult: String, Sendable, CaseIterable {
        case issued, refused, pending
    }

    /// The tenant label when the requester proved no tenant (an unknown claim token, no credential at all).
    public static let unknownTenant = "unknown"

    /// Upper bounds of `devid_onboarding_seconds`: 1 min, 5 min, 15 min, 1 h, 6 h, 1 d, 7 d, 30 d.
    public static let onboardingBuckets: [Double] = [60, 300, 900, 3600, 21600, 86400, 604_800, 2_592_000]

    public let registry: PrometheusCollectorRegistry
    /// Requests by route and status on both listeners.
    public let http: HTTPRequestMetrics
    /// `devid_auth_failures_total` of the stages counted here (`tls`, `est`, `device_status`), indexed by
    /// stage and reason; `authz` is read from the decision counters at scrape time.
    private let authFailures: Mutex<[Int]>
    /// The hourly history the same events feed (``HealthHistory``); nil in unit tests of the counters alone.
    public let history: HealthHistory?

    public init(history: HealthHistory? = nil) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.history = history
        self.http = HTTPRequestMetrics(registry: registry)
        self.authFailures = Mutex(
            Array(repeating: 0, count: AuthStage.allCases.count * AuthFailureReason.allCases.count))
    }

    // MARK: Authentication failures

    /// An identity refused at `stage`; `tenant` when the requester proved one (a device's own certificate).
    public func authFailure(_ stage: AuthStage, _ reason: AuthFailureReason, tenant: TenantID? = nil) {
        let index = Self.index(stage, reason)
        authFailures.withLock { $0[index] += 1 }
        history?.record(.authFailures, tenant: tenant, stage.rawValue, reason.rawValue)
    }

    /// A policy decision's denial: counted by the decision counters for `GET /metrics`, kept here in the history.
    public func authzDenied(_ reason: AuthFailureReason, tenant: TenantID?) {
        history?.record(.authFailures, tenant: tenant, AuthStage.authz.rawValue, reason.rawValue)
    }

    /// The counts recorded by ``authFailure(_:_:)``.
    public func authFailureCount(_ stage: AuthStage, _ reason: AuthFailureReason) -> Int {
        let index = Self.index(stage, reason)
        return authFailures.withLock { $0[index] }
    }

    private static func index(_ stage: AuthStage, _ reason: AuthFailureReason) -> Int {
        AuthStage.allCases.firstIndex(of: stage)! * AuthFailureReason.allCases.count
            + AuthFailureReason.allCases.firstIndex(of: reason)!
    }

    // MARK: Enrollment

    public func enrollment(tenant: TenantID?, kind: EnrollmentKind, result: EnrollmentResult) {
        registry.makeCounter(
            descriptor: Self.enrollments,
            labels: [
                ("tenant", tenant?.rawValue ?? Self.unknownTenant), ("kind", kind.rawValue),
                ("result", result.rawValue),
            ]
        ).increment()
        history?.record(.enrollments, tenant: tenant, kind.rawValue, result.rawValue)
    }

    /// A device got its first LDevID `seconds` after it was registered.
    public func onboarded(tenant: TenantID, seconds: Double) {
        registry.makeValueHistogram(
            descriptor: Self.onboarding, labels: [("tenant", tenant.rawValue)], buckets: Self.onboardingBuckets
        ).record(max(0, seconds))
    }

    // MARK: Revocation

    /// `scope` of `devid_revocations_total`.
    public enum RevocationScope: String, Sendable, CaseIterable {
        case device, lot, tenant, token, serial
        /// `expiringBefore`: every credential expiring before a date.
        case expiring
        /// A broker's TLS certificate (services CA).
        case service
        /// Every LDevID of a revoked issuing CA (`devid ca issuing revoke`).
        case issuingCA = "issuing_ca"
        /// `devid device reprovision` revokes every credential of the device.
        case reprovision
        /// Staged rotation revokes a superseded credential (``RotationSweeper``).
        case rotation

        init(_ scope: CredentialScope) {
            switch scope {
            case .device: self = .device
            case .lot: self = .lot
            case .tenant: self = .tenant
            case .token: self = .token
            case .serial: self = .serial
            case .expiringBefore: self = .expiring
            case .issuer: self = .issuingCA
            }
        }
    }

    /// `credentials` certificates were revoked by one revocation of `scope` (a single revocation of a lot counts
    /// every credential it revoked).
    public func revoked(
        scope: RevocationScope, reason: RevocationReason, credentials: Int, tenant: TenantID? = nil
    ) {
        guard credentials > 0 else { return }
        history?.record(.revocations, tenant: tenant, scope.rawValue, reason.rawValue, count: credentials)
        registry.makeCounter(
            descriptor: Self.revocations, labels: [("scope", scope.rawValue), ("reason", reason.rawValue)]
        ).increment(by: Int64(credentials))
    }

    static var enrollments: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "devid", metricName: "enrollments", unitName: "total",
            helpText:
                "EST enrollments by tenant, kind (enroll, reenroll, bootstrap, late_renewal) and result (issued, refused, pending)."
        )
    }
    static var onboarding: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "devid", metricName: "onboarding", unitName: "seconds",
            helpText: "Time from a device's registration to its first LDevID.")
    }
    static var revocations: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "devid", metricName: "revocations", unitName: "total",
            helpText: "Certificates revoked, by the scope of the revocation and its RFC 5280 reason.")
    }
}
