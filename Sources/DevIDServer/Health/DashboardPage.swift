import DevIDCore
import DevIDStore
import Foundation

/// The dashboard's HTML: the login page, the dashboard itself and a device page, as pure functions of their
/// inputs, plus the one style sheet (served at `/dashboard/style.css`, inside the binary: no CDN, no network).
///
/// No script and no inline style: the Content-Security-Policy of ``DashboardRoutes`` forbids both.
enum DashboardPage {
    typealias E = DashboardCharts

    // MARK: Pages

    /// The login form; `error` is one line shown above it.
    static func login(error: String? = nil) -> String {
        var body = "<main class=\"login\"><h1>DevID dashboard</h1>"
        if let error { body += "<p class=\"error\" role=\"alert\">\(E.escape(error))</p>" }
        body += """
            <form method="post" action="/dashboard/login">\
            <label for="token">Admin token</label>\
            <input id="token" name="token" type="password" autocomplete="off" required>\
            <button type="submit">Log in</button>\
            </form>\
            <p class="hint">An admin, operator or auditor token (devid admin-token create). It is sent in the form \
            body only; the browser keeps a session cookie for 8 hours.</p></main>
            """
        return document(title: "DevID dashboard: log in", body: body)
    }

    /// A one-line refusal with a way back (a tenant the session may not see, an unknown device).
    static func message(_ text: String) -> String {
        document(
            title: "DevID dashboard",
            body:
                "<main><p class=\"error\" role=\"alert\">\(E.escape(text))</p>"
                + "<p><a href=\"/dashboard\">Back to the dashboard</a></p></main>"
        )
    }

    static func dashboard(_ model: DashboardModel) -> String {
        let scope = model.selected.map { "tenant \($0.rawValue)" } ?? "all tenants"
        var body = header(model)
        body += "<main><h1>Identity health: \(E.escape(scope))</h1>"
        body += "<p class=\"as-of\">As of <time datetime=\"\(iso(model.now))\">\(minute(model.now)) UTC</time></p>"
        body += section("expiry", "Expiry distribution", expiryChart(model))
        body += section("failures", "Auth failures by reason", failureChart(model))
        body += section("enrollments", "Enrollments per day", enrollmentChart(model))
        body += section("onboarding", "Onboarding time per device", onboardingChart(model))
        body += section("states", "Devices by state", stateChart(model))
        body += section("rotations", "Rotation campaigns", rotations(model))
        body += section("freshness", "CA and CRL freshness", freshness(model))
        body += section("anomalies", "Open anomalies", anomalies(model))
        body += "</main>"
        return document(title: "DevID dashboard: \(scope)", body: body)
    }

    /// One device: its registry entry and credentials (where the anomaly links go).
    static func device(_ device: Device, credentials: [Credential], now: Date, model: DashboardModel) -> String {
        var body = header(model)
        body += "<main><h1>Device \(E.escape(device.id.rawValue))</h1><dl class=\"device\">"
        body += "<dt>Tenant</dt><dd>\(E.escape(device.tenant.rawValue))</dd>"
        body += "<dt>State</dt><dd>\(E.escape(device.state.rawValue))</dd>"
        body += "<dt>Hardware serial</dt><dd>\(E.escape(device.hardwareSerial))</dd>"
        body += "<dt>Registered</dt><dd>\(minute(device.createdAt)) UTC</dd>"
        body += "<dt>Last seen</dt><dd>\(device.lastSeen.map { minute($0) + " UTC" } ?? "never")</dd></dl>"
        body += "<table class=\"data\" id=\"credentials-table\"><caption>Credentials, newest first</caption><thead><tr>"
        body +=
            "<th scope=\"col\">Serial</th><th scope=\"col\">Status</th><th scope=\"col\">Not after</th></tr></thead><tbody>"
        for credential in credentials.sorted(by: { $0.notBefore > $1.notBefore }) {
            let status =
                credential.status != .revoked && credential.notAfter <= now ? "expired" : credential.status.rawValue
            body += "<tr><td><code>\(E.escape(credential.serial.rawValue))</code></td><td>\(E.escape(status))</td>"
            body += "<td>\(minute(credential.notAfter)) UTC</td></tr>"
        }
        body += "</tbody></table><p><a href=\"/dashboard?tenant=\(E.escape(query(device.tenant.rawValue)))\">"
        body += "Back to tenant \(E.escape(device.tenant.rawValue))</a></p></main>"
        return document(title: "DevID dashboard: device \(device.id.rawValue)", body: body)
    }

    // MARK: Sections

    static func expiryChart(_ model: DashboardModel) -> String {
        let total = model.expiryWeeks.reduce(0, +)
        var summary = "\(total) current LDevIDs by weeks until expiry"
        if let wave = model.waveWeek {
            let count = model.expiryWeeks[wave]
            summary +=
                "; expiry wave: \(count) of \(total) (\(Int((Double(count) * 100 / Double(total)).rounded())) %) "
            summary += "expire in \(weekLabel(wave))"
        }
        summary +=
            ". "
            + model.expiryWeeks.enumerated().map { "\(weekLabel($0.offset)): \($0.element)" }
            .joined(separator: ", ")
        let note =
            "<p class=\"note\">Highlighted: the expiry wave, a week holding more than "
            + "\(E.number(model.expiryWavePercent)) % of the current LDevIDs"
            + (model.waveWeek == nil ? " (none now)." : ".") + "</p>"
        return note
            + E.bars(
                id: "expiry", title: "Devices by weeks until expiry", summary: summary,
                columns: ("weeks until expiry", "LDevIDs"),
                bars: model.expiryWeeks.enumerated().map {
                    .init(
                        label: weekLabel($0.offset), value: Double($0.element), highlighted: $0.offset == model.waveWeek
                    )
                })
    }

    static func failureChart(_ model: DashboardModel) -> String {
        let total = model.failures.reduce(0) { $0 + $1.counts.reduce(0, +) }
        let expired = model.failures.first { $0.reason == "expired" }?.counts.reduce(0, +) ?? 0
        var summary = "\(total) auth failures in \(DashboardModel.failureDays) days, in 6-hour steps"
        summary += "; \(expired) caused by expiry"
        if !model.failures.isEmpty {
            summary +=
                ". By reason: "
                + model.failures.map { "\($0.reason) \($0.counts.reduce(0, +))" }
                .joined(separator: ", ")
        }
        return E.stacked(
            id: "failures", title: "Auth failures by reason, last \(DashboardModel.failureDays) days", summary: summary,
            stacking: .area, columnHeader: "from (UTC)", columns: model.failureSteps.map(hourLabel),
            layers: model.failures.map { .init(name: $0.reason, values: $0.counts, emphasized: $0.reason == "expired") }
        )
    }

    static func enrollmentChart(_ model: DashboardModel) -> String {
        let totals = model.enrollments.map { "\($0.kind) \($0.counts.reduce(0, +))" }.joined(separator: ", ")
        let summary =
            "Issued certificates per UTC day, last \(DashboardModel.enrollmentDays) days, by kind: \(totals); "
            + "\(model.refusedEnrollments) refused"
        let refused = model.refusedEnrollments
        return "<p class=\"note\">Issued per day; \(refused) request\(refused == 1 ? "" : "s") refused in the same days.</p>"
            + E.stacked(
                id: "enrollments", title: "Enrollments and re-enrollments per day", summary: summary, stacking: .bars,
                columnHeader: "day (UTC)", columns: model.enrollmentDays.map(dayLabel),
                layers: model.enrollments.map { .init(name: $0.kind, values: $0.counts) })
    }

    static func onboardingChart(_ model: DashboardModel) -> String {
        let seconds = model.onboarding.map(\.seconds)
        var markers: [DashboardCharts.Marker] = []
        var summary =
            "\(seconds.count) devices got their first LDevID in the last \(DashboardModel.onboardingDays) days"
        if let median = E.percentile(seconds, 0.5), let p90 = E.percentile(seconds, 0.9) {
            markers = [
                .init(label: "median", value: median, text: E.duration(median)),
                .init(label: "p90", value: p90, text: E.duration(p90)),
            ]
            summary += "; median \(E.duration(median)), p90 \(E.duration(p90))"
        }
        let note =
            "<p class=\"note\">From the device's registration to its first LDevID. A device enrolled with "
            + "a claim token that names no device is registered as it enrolls: 0 s.</p>"
        return note
            + E.bars(
                id: "onboarding", title: "Onboarding time per device (registration to first LDevID, seconds)",
                summary: summary, columns: ("device", "onboarding time"),
                bars: model.onboarding.map {
                    .init(label: $0.device.rawValue, value: $0.seconds, text: E.duration($0.seconds))
                }, markers: markers)
    }

    static func stateChart(_ model: DashboardModel) -> String {
        let total = model.devicesByState.reduce(0) { $0 + $1.count }
        let summary =
            "\(total) devices: "
            + model.devicesByState.map { "\($0.state.rawValue) \($0.count)" }.joined(separator: ", ")
        return E.bars(
            id: "states", title: "Devices by state", summary: summary, columns: ("state", "devices"),
            bars: model.devicesByState.map { .init(label: $0.state.rawValue, value: Double($0.count)) })
    }

    static func rotations(_ model: DashboardModel) -> String {
        guard !model.rotations.isEmpty else {
            return "<p id=\"rotations-none\">No rotation campaign is open (no credential is marked for rotation).</p>"
        }
        var html = "<div id=\"rotations-list\">"
        for (tenant, progress) in model.rotations {
            html += E.progress(
                label: "tenant \(tenant.rawValue)", done: progress.rotated, total: progress.due,
                detail: "\(progress.pending) pending, \(progress.unreachable) unreachable")
        }
        return html + "</div>"
    }

    static func freshness(_ model: DashboardModel) -> String {
        var html = "<table class=\"data\" id=\"cas-table\"><caption>CA certificates</caption><thead><tr>"
        html += "<th scope=\"col\">CA</th><th scope=\"col\">Not after (UTC)</th><th scope=\"col\">Days left</th></tr>"
        html += "</thead><tbody>"
        for ca in model.cas {
            let days = Int((ca.notAfter.timeIntervalSince(model.now) / 86_400).rounded(.down))
            html += "<tr\(days < 30 ? #" class="warning""# : "")><th scope=\"row\">\(E.escape(ca.name))</th>"
            html += "<td>\(minute(ca.notAfter))</td><td>\(days)</td></tr>"
        }
        html += "</tbody></table>"
        html += "<table class=\"data\" id=\"crls-table\"><caption>Published CRLs</caption><thead><tr>"
        html +=
            "<th scope=\"col\">CRL</th><th scope=\"col\">This update (UTC)</th><th scope=\"col\">Next update (UTC)</th>"
        html += "<th scope=\"col\">Status</th></tr></thead><tbody>"
        if model.crls.isEmpty { html += "<tr><td colspan=\"4\">No CRL published yet.</td></tr>" }
        for crl in model.crls {
            let fresh = crl.nextUpdate > model.now
            html += "<tr\(fresh ? "" : #" class="warning""#)><th scope=\"row\">\(E.escape(crl.name))</th>"
            html += "<td>\(minute(crl.thisUpdate))</td><td>\(minute(crl.nextUpdate))</td>"
            html += "<td>\(fresh ? "fresh" : "overdue")</td></tr>"
        }
        return html + "</tbody></table>"
    }

    static func anomalies(_ model: DashboardModel) -> String {
        guard !model.anomalies.isEmpty else { return "<p id=\"anomalies-none\">No open anomalies.</p>" }
        var html = "<ul id=\"anomalies-list\" class=\"anomalies\">"
        for anomaly in model.anomalies {
            html += "<li class=\"\(anomaly.severity.rawValue)\"><strong>\(anomaly.severity.rawValue)</strong> "
            html += "<code>\(E.escape(anomaly.check))</code>: \(E.escape(anomaly.summary))"
            if let device = anomaly.device {
                html += " <a href=\"/dashboard/devices/\(E.escape(path(device)))\">device \(E.escape(device))</a>"
            }
            html += "<br><span class=\"explanation\">\(E.escape(anomaly.explanation))</span>"
            html += "<br><span class=\"action\">Action: \(E.escape(anomaly.action))</span></li>"
        }
        return html + "</ul>"
    }

    // MARK: Frame

    static func header(_ model: DashboardModel) -> String {
        var html = "<header><nav aria-label=\"Tenant\"><ul class=\"tenants\">"
        html += tenantLink(label: "All tenants", value: "all", current: model.selected == nil)
        for tenant in model.tenants {
            html += tenantLink(label: tenant.rawValue, value: tenant.rawValue, current: model.selected == tenant)
        }
        html += "</ul></nav><div class=\"session\">Logged in as \(E.escape(model.tokenName)) (\(E.escape(model.role)))"
        html +=
            "<form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Log out</button></form></div>"
        return html + "</header>"
    }

    static func tenantLink(label: String, value: String, current: Bool) -> String {
        "<li><a href=\"/dashboard?tenant=\(E.escape(query(value)))\"\(current ? #" aria-current="page""# : "")>"
            + "\(E.escape(label))</a></li>"
    }

    static func section(_ id: String, _ title: String, _ content: String) -> String {
        "<section aria-labelledby=\"\(id)-heading\"><h2 id=\"\(id)-heading\">\(E.escape(title))</h2>\(content)</section>"
    }

    static func document(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">\
        <title>\(E.escape(title))</title><link rel="stylesheet" href="/dashboard/style.css"></head>
        <body>\(body)</body></html>

        """
    }

    static func weekLabel(_ week: Int) -> String { week == 0 ? "< 1 week" : "\(week)-\(week + 1) weeks" }

    static func iso(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle()) }

    /// `2026-12-06 05:54`
    static func minute(_ date: Date) -> String {
        let text = iso(date)
        return String(text.prefix(10)) + " " + String(text.dropFirst(11).prefix(5))
    }

    static func dayLabel(_ date: Date) -> String { String(iso(date).prefix(10)) }

    /// `12-06 06h`
    static func hourLabel(_ date: Date) -> String {
        let text = iso(date)
        return String(text.dropFirst(5).prefix(5)) + " " + String(text.dropFirst(11).prefix(2)) + "h"
    }

    static func query(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", "_", "."])) ?? ""
    }

    static func path(_ text: String) -> String { query(text) }

    // MARK: Style

    /// The one style sheet. Expiry-caused failures and the expiry wave use the one warm colour; everything else
    /// is muted, so they stand out.
    static let styleSheet = """
        :root { color-scheme: light; --ink: #1d2430; --muted: #5b6675; --line: #d5dbe3; --accent: #d9480f; \
        --bar: #4c6ef5; --bg: #f7f8fa; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
        header { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: center; gap: 8px; \
        padding: 8px 16px; background: #fff; border-bottom: 1px solid var(--line); }
        header form { display: inline; margin-left: 8px; }
        ul.tenants { display: flex; flex-wrap: wrap; gap: 6px; list-style: none; margin: 0; padding: 0; }
        ul.tenants a { display: inline-block; padding: 3px 10px; border: 1px solid var(--line); border-radius: 14px; \
        color: var(--ink); text-decoration: none; }
        ul.tenants a[aria-current="page"] { background: var(--ink); color: #fff; }
        main { max-width: 1100px; margin: 0 auto; padding: 12px 16px 40px; }
        main.login { max-width: 420px; padding-top: 60px; }
        main.login form { display: grid; gap: 8px; }
        input, button { font: inherit; padding: 6px 10px; }
        section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px; \
        margin: 14px 0; }
        h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 6px 0; }
        .error { color: #b00020; font-weight: 600; }
        .hint, .note, .as-of { color: var(--muted); font-size: 0.9em; }
        figure { margin: 0; }
        svg.chart { width: 100%; height: auto; max-height: 320px; }
        .axis line { stroke: var(--line); stroke-width: 1; }
        .axis text, .x-label, .legend text, .marker-label { fill: var(--muted); font-size: 10px; }
        rect.bar { fill: var(--bar); }
        rect.bar.highlight, .layer.emphasized, .layer.emphasized rect { fill: var(--accent); }
        .layer { stroke: #fff; stroke-width: 0.5; }
        .layer-0 { fill: #91a7ff; } .layer-1 { fill: #a5d8ff; } .layer-2 { fill: #b2f2bb; } \
        .layer-3 { fill: #d0bfff; } .layer-4 { fill: #ced4da; } .layer-5 { fill: #ffe066; }
        line.marker { stroke: var(--ink); stroke-width: 1.5; stroke-dasharray: 5 3; }
        table.data { border-collapse: collapse; margin: 8px 0; font-size: 0.9em; }
        table.data th, table.data td { border: 1px solid var(--line); padding: 2px 8px; text-align: right; }
        table.data th[scope="row"], table.data caption { text-align: left; }
        tr.highlight, td.emphasized { color: var(--accent); font-weight: 600; }
        tr.warning { color: #b00020; }
        .progress { display: grid; grid-template-columns: 160px 1fr auto; gap: 10px; align-items: center; \
        margin: 4px 0; }
        progress { width: 100%; height: 14px; }
        ul.anomalies { padding-left: 18px; } ul.anomalies li { margin: 6px 0; }
        li.critical strong { color: #b00020; } li.warning strong { color: var(--accent); }
        .explanation, .action { color: var(--muted); font-size: 0.9em; }
        dl.device { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; }
        dl.device dd { margin: 0; }

        """
}
