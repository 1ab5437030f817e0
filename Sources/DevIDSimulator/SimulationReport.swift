import DevIDServer
public import Foundation

/// The simulation's results and the files `--out DIR` receives: `summary.json`, `daily.csv`, four charts as SVG and
/// PNG, and `index.html` tying them together. Every file is a pure function of the scenario: one seed, one set of
/// bytes.
public struct SimulationReport: Sendable {
    public let scenario: Scenario
    public let summary: SimulationSummary
    /// The daily series, one row per day (see ``csv``).
    let daily: [String: [Double]]
    /// DevID's dashboard at chosen moments (`day-120`, ...), when the run kept it: written to `dashboard/`.
    public internal(set) var dashboards: [(name: String, html: String)] = []

    init(scenario: Scenario, fleet: Fleet, before: WorldResult, devid: WorldResult) {
        self.scenario = scenario
        summary = SimulationSummary(
            seed: scenario.seed, devices: fleet.devices.count, days: scenario.days, lots: fleet.lots.count,
            scenarios: ["before": WorldSummary(before), "devid": WorldSummary(devid)])
        var daily: [String: [Double]] = [:]
        for (name, world) in [("before", before), ("devid", devid)] {
            let zero = Array(repeating: 0.0, count: scenario.days)
            daily["\(name)_enrollments"] = world.enrollments
            daily["\(name)_renewals"] = world.renewals
            daily["\(name)_bootstraps"] = world.bootstraps
            daily["\(name)_reprovisions"] = world.reprovisions
            daily["\(name)_expiring"] = world.expiring
            daily["\(name)_expiry_auth_failures"] = (world.authFailures["expired"] ?? zero).map { $0.rounded() }
            let all = world.authFailures.values.reduce(zero) { sum, series in zip(sum, series).map { $0 + $1 } }
            daily["\(name)_auth_failures"] = all.map { $0.rounded() }
        }
        self.daily = daily
    }

    /// The CSV columns after `day` and `date`, in order.
    static let columns = [
        "enrollments", "renewals", "bootstraps", "reprovisions", "expiring", "expiry_auth_failures", "auth_failures",
    ].flatMap { ["before_\($0)", "devid_\($0)"] }

    public var summaryJSON: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return (try? encoder.encode(summary)) ?? Data()
    }

    public var csv: String {
        var lines = ["day,date," + Self.columns.joined(separator: ",")]
        for day in 0..<scenario.days {
            let date = scenario.start.addingTimeInterval(Double(day) * 86_400)
            let fields = Self.columns.map { Self.number(daily[$0]?[day] ?? 0) }
            lines.append("\(day),\(Self.isoDay(date)),\(fields.joined(separator: ","))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.2f", value)
    }

    static func isoDay(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day())
    }

    // MARK: Charts

    /// The four charts, by file name (without extension).
    public var charts: [(name: String, chart: Chart)] {
        let before = summary.scenarios["before"]!
        let devid = summary.scenarios["devid"]!
        let days = (0..<scenario.days).map { Self.isoDay(scenario.start.addingTimeInterval(Double($0) * 86_400)) }
        let hours = { (seconds: Double) in (seconds / 36).rounded() / 100 }
        let events = ["device_compromise", "idevid_lot_leak", "bulk_token_leak", "ca_compromise"].filter {
            before.blastRadiusDevices[$0] != nil || devid.blastRadiusDevices[$0] != nil
        }
        return [
            (
                "onboarding",
                Chart(
                    title: "Onboarding time per device (manual vs automated)", xLabel: "percentile",
                    yLabel: "hours from installation to identity", categories: ["p50", "p90"],
                    series: [
                        ChartSeries(
                            name: "before", color: .orange,
                            values: [hours(before.onboardingSecondsP50), hours(before.onboardingSecondsP90)]),
                        ChartSeries(
                            name: "devid", color: .blue,
                            values: [hours(devid.onboardingSecondsP50), hours(devid.onboardingSecondsP90)]),
                    ], kind: .bar)
            ),
            (
                "expiry-auth-failures",
                Chart(
                    title: "Auth failures caused by expiry, per day", xLabel: "day",
                    yLabel: "failed authentications", categories: days,
                    series: [
                        ChartSeries(name: "before", color: .orange, values: daily["before_expiry_auth_failures"] ?? []),
                        ChartSeries(name: "devid", color: .blue, values: daily["devid_expiry_auth_failures"] ?? []),
                    ], kind: .line)
            ),
            (
                "blast-radius",
                Chart(
                    title: "Blast radius: devices that lost service", xLabel: "event",
                    yLabel: "devices", categories: events,
                    series: [
                        ChartSeries(
                            name: "before", color: .orange,
                            values: events.map { Double(before.blastRadiusDevices[$0] ?? 0) }),
                        ChartSeries(
                            name: "devid", color: .blue, values: events.map { Double(devid.blastRadiusDevices[$0] ?? 0) }),
                    ], kind: .bar)
            ),
            (
                "expiry-distribution",
                Chart(
                    title: "Certificates reaching notAfter, per day", xLabel: "day", yLabel: "certificates",
                    categories: days,
                    series: [
                        ChartSeries(name: "before", color: .orange, values: daily["before_expiring"] ?? []),
                        ChartSeries(name: "devid", color: .blue, values: daily["devid_expiring"] ?? []),
                    ], kind: .line)
            ),
        ]
    }

    // MARK: Files

    /// Writes every file into `directory` (created if needed) and returns their names.
    @discardableResult
    public func write(to directory: URL) throws -> [String] {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var written: [String] = []
        func put(_ name: String, _ data: Data) throws {
            try data.write(to: directory.appendingPathComponent(name), options: .atomic)
            written.append(name)
        }
        try put("summary.json", summaryJSON)
        try put("daily.csv", Data(csv.utf8))
        for (name, chart) in charts {
            try put("\(name).svg", Data(chart.svg().utf8))
            try put("\(name).png", Data(chart.png()))
        }
        if !dashboards.isEmpty {
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent("dashboard"), withIntermediateDirectories: true)
            try put("dashboard/style.css", Data(DashboardSnapshot.styleSheet.utf8))
            for (name, page) in dashboards { try put("dashboard/\(name).html", Data(page.utf8)) }
        }
        try put("index.html", Data(html.utf8))
        return written
    }

    var html: String {
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;")
        }
        let before = summary.scenarios["before"]!
        let devid = summary.scenarios["devid"]!
        let rows: [(String, String, String)] = [
            ("Authentication failures caused by expiry", "\(before.expiryAuthFailures)", "\(devid.expiryAuthFailures)"),
            ("All authentication failures", "\(before.authFailuresByReason.values.reduce(0, +))",
             "\(devid.authFailuresByReason.values.reduce(0, +))"),
            ("Onboarding time, median", Self.duration(before.onboardingSecondsP50), Self.duration(devid.onboardingSecondsP50)),
            ("Onboarding time, 90th percentile", Self.duration(before.onboardingSecondsP90), Self.duration(devid.onboardingSecondsP90)),
            ("Devices back after their certificate lapsed", "\(before.devicesOfflineBeyondGrace)", "\(devid.devicesOfflineBeyondGrace)"),
            ("Recovered on their own (IDevID bootstrap)", "\(before.bootstrapRecoveries)", "\(devid.bootstrapRecoveries)"),
            ("Renewals", "\(before.renewals)", "\(devid.renewals)"),
            ("Provisioned again by hand (or by an operator)", "\(before.reprovisions)", "\(devid.reprovisions)"),
            ("Busiest second, enrollments", "\(before.peakEnrollmentsPerSecond)", "\(devid.peakEnrollmentsPerSecond)"),
        ] + before.blastRadiusDevices.keys.sorted().map {
            ("Blast radius: \($0.replacingOccurrences(of: "_", with: " "))", "\(before.blastRadiusDevices[$0] ?? 0)",
             "\(devid.blastRadiusDevices[$0] ?? 0)")
        }
        let table = rows.map { "<tr><th>\(escape($0.0))</th><td>\($0.1)</td><td>\($0.2)</td></tr>" }.joined(separator: "\n")
        let snapshots = dashboards.isEmpty ? "" : "<h2>DevID's dashboard during the year</h2><p>As an auditor would have seen it at the end of these days: "
            + dashboards.map { "<a href=\"dashboard/\($0.name).html\">\($0.name)</a>" }.joined(separator: ", ") + ".</p>"
        let figures = charts.map { name, chart in
            "<figure><img src=\"\(name).svg\" alt=\"\(escape(chart.title))\" width=\"800\" height=\"450\"><figcaption>\(escape(chart.title)) (<a href=\"\(name).png\">PNG</a>)</figcaption></figure>"
        }.joined(separator: "\n")
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>DevID simulation: \(summary.devices) devices, \(summary.days) days</title>
            <style>body{font-family:sans-serif;max-width:860px;margin:2em auto;color:#222}table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}th{text-align:left;font-weight:normal}figure{margin:2em 0}</style>
            </head><body>
            <h1>A year of the fleet, before and under DevID</h1>
            <p>\(summary.devices) devices in \(summary.lots) lots, \(summary.days) days from \(Self.isoDay(scenario.start)), seed \(summary.seed). Both columns run on the same fleet. Files: <a href="summary.json">summary.json</a>, <a href="daily.csv">daily.csv</a>.</p>
            <table><tr><th></th><th>before</th><th>devid</th></tr>
            \(table)
            </table>
            \(figures)
            \(snapshots)
            </body></html>

            """
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 120 { return String(format: "%.0f s", seconds) }
        if seconds < 7_200 { return String(format: "%.0f min", seconds / 60) }
        if seconds < 172_800 { return String(format: "%.1f h", seconds / 3_600) }
        return String(format: "%.1f days", seconds / 86_400)
    }
}
