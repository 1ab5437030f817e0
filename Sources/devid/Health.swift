import ArgumentParser
import DevIDServer
import Foundation

/// `devid health`: every anomaly check against a running server, for cron and monitoring systems (in the manner
/// of `bao pki health-check`). Exit status: 0 all good, 1 warnings, 2 critical, 3 could not check.
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the identity-health checks; exit 0 ok, 1 warning, 2 critical, 3 could not check.",
        discussion: """
            Checks: \(AnomalyChecks.names.joined(separator: ", ")). Every threshold flag overrides the server's \
            configured value for this run only. See docs/monitoring.md.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Run only this check (repeatable).") var check: [String] = []
    @Option(help: "expiry_wave: percentage of a tenant's credentials expiring in the same 7 days.")
    var expiryWavePercent: Double?
    @Option(help: "expiry_wave: the smallest tenant (current credentials) the check looks at.")
    var expiryWaveMinCredentials: Double?
    @Option(help: "ca_expiring: days left for a warning.") var caWarningDays: Double?
    @Option(help: "ca_expiring: days left for critical.") var caCriticalDays: Double?
    @Option(help: "crl_stale: fraction of the CRL's validity left for a warning.") var crlWarningFraction: Double?
    @Option(help: "ocsp_signer_expiring: hours left for a warning.") var ocspSignerWarningHours: Double?
    @Option(help: "stale_device: days unseen (0: the LDevID renewal window).") var staleAfterDays: Double?
    @Option(help: "enrollment_refusal_spike: refusals in the last hour.") var refusalSpikeMin: Double?
    @Option(help: "enrollment_refusal_spike: times the hourly average of the day before.")
    var refusalSpikeFactor: Double?
    @Option(help: "How long an event stays an open finding, in hours.") var eventWindowHours: Double?

    /// Exit statuses.
    enum Status: Int32 {
        case ok = 0, warning = 1, critical = 2, unknown = 3
    }

    func run() async throws {
        let report: HealthReport
        do {
            for name in check where !AnomalyChecks.names.contains(name) {
                throw CLIError("unknown check \(name); known: \(AnomalyChecks.names.joined(separator: ", "))")
            }
            report = try await AdminClient(options: global).get("/v1/health/anomalies" + query(), as: HealthReport.self)
        } catch {
            FileHandle.standardError.write(Data("devid health: could not check: \(error)\n".utf8))
            throw ExitCode(Status.unknown.rawValue)
        }
        if global.json {
            try Output.json(report)
        } else {
            Output.table(
                ["CHECK", "STATUS", "FINDINGS"], report.checks.map { [$0.name, $0.status, String($0.findings)] })
            if !report.anomalies.isEmpty { print("") }
            for anomaly in report.anomalies {
                print("\(anomaly.severity.rawValue.uppercased())  \(anomaly.check)  \(anomaly.summary)")
                print("    action: \(anomaly.action)")
            }
            let critical = report.anomalies.filter { $0.severity == .critical }.count
            let warnings = report.anomalies.count - critical
            print("")
            print("status: \(report.status) (\(critical) critical, \(warnings) warning\(warnings == 1 ? "" : "s"))")
        }
        let status: Status =
            switch report.status {
            case "ok": .ok
            case "warning": .warning
            case "critical": .critical
            default: .unknown
            }
        if status != .ok { throw ExitCode(status.rawValue) }
    }

    private func query() -> String {
        var items = check.map { "check=\($0)" }
        let thresholds: [(String, Double?)] = [
            ("expiry_wave_percent", expiryWavePercent), ("expiry_wave_min_credentials", expiryWaveMinCredentials),
            ("ca_warning_days", caWarningDays), ("ca_critical_days", caCriticalDays),
            ("crl_warning_fraction", crlWarningFraction), ("ocsp_signer_warning_hours", ocspSignerWarningHours),
            ("stale_after_days", staleAfterDays), ("refusal_spike_min", refusalSpikeMin),
            ("refusal_spike_factor", refusalSpikeFactor), ("event_window_hours", eventWindowHours),
        ]
        for (name, value) in thresholds {
            if let value { items.append("\(name)=\(value)") }
        }
        return items.isEmpty ? "" : "?" + items.joined(separator: "&")
    }
}
