public import Foundation

/// The thresholds of the anomaly checks (``AnomalyChecks``). Set in the configuration file (`health.*`) or the
/// environment (`DEVID_HEALTH_*`), and per request by `devid health --threshold NAME=VALUE` (query parameters of
/// `GET /v1/health/anomalies`).
public struct HealthThresholds: Sendable, Hashable, Codable {
    /// `expiry_wave`: more than this percentage of a tenant's current LDevIDs expire within the same 7 days.
    public var expiryWavePercent: Double = 25
    /// `expiry_wave`: ...and at least this many credentials (a tenant of three devices is no wave).
    public var expiryWaveMinCredentials: Double = 10
    /// `ca_expiring`: a CA certificate expires within this many days (warning)...
    public var caWarningDays: Double = 90
    /// ...or within this many (critical).
    public var caCriticalDays: Double = 30
    /// `crl_stale`: less than this fraction of a CRL's validity is left (warning); past nextUpdate is critical.
    public var crlWarningFraction: Double = 0.25
    /// `ocsp_signer_expiring`: the delegated OCSP signer expires within this many hours.
    public var ocspSignerWarningHours: Double = 12
    /// `stale_device`: not seen for this many days; 0 means the LDevID renewal window (lifetime minus the renewal
    /// point), after which the device cannot renew in time.
    public var staleAfterDays: Double = 0
    /// `enrollment_refusal_spike`: at least this many refused enrollments in the last hour...
    public var refusalSpikeMin: Double = 20
    /// ...and this many times the hourly average of the 24 hours before.
    public var refusalSpikeFactor: Double = 3
    /// How long an event (a revoked credential presented, a shared credential, a conflicting connect, an overused
    /// token, a weak key) stays an open anomaly, in hours.
    public var eventWindowHours: Double = 24

    public init() {}

    /// `expiry_wave`'s threshold for LDevIDs of `lifetime`: ``expiryWavePercent``, but never below twice the share
    /// of 7 days in the lifetime, which is what renewals spread evenly put in any week. With 30-day LDevIDs, 23 % of
    /// them expire in every week: no wave (`devid simulate` found the 25 % default firing every week of a year).
    public func expiryWavePercent(lifetime: TimeInterval?) -> Double {
        guard let lifetime, lifetime > 0 else { return expiryWavePercent }
        return max(expiryWavePercent, min(100, 2 * 7 * 86_400 / lifetime * 100))
    }

    /// Every threshold by its name (the query parameter, and `health.<name with dots>` in the configuration).
    nonisolated(unsafe) public static let names: [(name: String, keyPath: WritableKeyPath<HealthThresholds, Double>)] = [
        ("expiry_wave_percent", \.expiryWavePercent),
        ("expiry_wave_min_credentials", \.expiryWaveMinCredentials),
        ("ca_warning_days", \.caWarningDays),
        ("ca_critical_days", \.caCriticalDays),
        ("crl_warning_fraction", \.crlWarningFraction),
        ("ocsp_signer_warning_hours", \.ocspSignerWarningHours),
        ("stale_after_days", \.staleAfterDays),
        ("refusal_spike_min", \.refusalSpikeMin),
        ("refusal_spike_factor", \.refusalSpikeFactor),
        ("event_window_hours", \.eventWindowHours),
    ]

    /// The largest value of any threshold: days, hours, counts and factors far beyond it mean nothing, and a number
    /// of days near `Double`'s range would put the checks' times outside the registry's.
    public static let maximum: Double = 1_000_000

    /// `name` set to `text`; throws a one-line reason for an unknown name or a value that is not a number from 0
    /// to ``maximum``.
    public mutating func set(_ name: String, _ text: String) throws(ThresholdError) {
        guard let entry = Self.names.first(where: { $0.name == name }) else {
            throw ThresholdError(
                "unknown threshold \(name); known: \(Self.names.map(\.name).joined(separator: ", "))")
        }
        guard let value = Double(text), value.isFinite, value >= 0, value <= Self.maximum else {
            throw ThresholdError("threshold \(name) must be a number from 0 to 1000000")
        }
        self[keyPath: entry.keyPath] = value
    }

    public struct ThresholdError: Error, Sendable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
