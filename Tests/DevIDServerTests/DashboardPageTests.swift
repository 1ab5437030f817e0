import DevIDCore
import DevIDStore
import Foundation
import Testing

@testable import DevIDServer

/// The dashboard's pure parts: SVG charts, the page, the login form parsing and the session store.
@Suite("Dashboard rendering")
struct DashboardPageTests {
    @Test("a bar chart: a bar per value, the highlighted one marked, a title, a description and a table")
    func bars() {
        let html = DashboardCharts.bars(
            id: "expiry", title: "Devices by weeks", summary: "3 current LDevIDs",
            columns: ("weeks", "LDevIDs"),
            bars: [.init(label: "< 1 week", value: 0), .init(label: "1-2 weeks", value: 3, highlighted: true)],
            markers: [.init(label: "median", value: 2, text: "2 s")])
        #expect(html.components(separatedBy: "<rect class=\"bar").count - 1 == 2)
        #expect(html.components(separatedBy: "<rect class=\"bar highlight\"").count - 1 == 1)
        #expect(html.contains(#"role="img""#) && html.contains(#"aria-labelledby="expiry-title expiry-desc""#))
        #expect(html.contains(#"<title id="expiry-title">Devices by weeks</title>"#))
        #expect(html.contains(#"<desc id="expiry-desc">3 current LDevIDs</desc>"#))
        #expect(html.contains(#"<tr class="highlight"><th scope="row">1-2 weeks</th><td>3</td></tr>"#))
        #expect(html.contains(#"<tr class="marker"><th scope="row">median</th><td>2 s</td></tr>"#))
        #expect(html.contains(#"<line class="marker""#))
        #expect(!html.contains("style="), "no inline style: the CSP forbids it")
    }

    @Test("a stacked area chart: an area per layer, the emphasized one marked, totals in the table")
    func stackedArea() {
        let html = DashboardCharts.stacked(
            id: "failures", title: "Failures", summary: "4", stacking: .area, columnHeader: "from",
            columns: ["a", "b", "c"],
            layers: [
                .init(name: "expired", values: [0, 2, 0], emphasized: true), .init(name: "revoked", values: [1, 0, 1]),
            ])
        #expect(html.components(separatedBy: "<polygon class=\"layer").count - 1 == 2)
        #expect(html.contains(#"<polygon class="layer layer-0 emphasized""#))
        #expect(html.contains(#"<tfoot><tr><th scope="row">total</th><td>2</td><td>2</td><td>4</td></tr></tfoot>"#))
        #expect(html.contains(#"<tr><th scope="row">b</th><td class="emphasized">2</td><td>0</td><td>2</td></tr>"#))
    }

    @Test("stacked bars draw a rectangle only where a layer has a count")
    func stackedBars() {
        let html = DashboardCharts.stacked(
            id: "enrollments", title: "E", summary: "", stacking: .bars, columnHeader: "day", columns: ["d1", "d2"],
            layers: [.init(name: "enroll", values: [0, 3]), .init(name: "reenroll", values: [1, 1])])
        let drawn = html.components(separatedBy: "<rect x=").count - 1
        #expect(drawn == 3)
    }

    @Test("text from the registry is escaped everywhere it appears")
    func escaping() {
        let hostile = #"<script>alert("x")</script>&'"#
        #expect(DashboardCharts.escape(hostile) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;")
        var model = DashboardModel(
            now: Date(timeIntervalSince1970: 1_800_000_000), tokenName: hostile, role: "admin", tenants: [],
            selected: nil)
        model.anomalies = [
            Anomaly(
                check: "stale_device", severity: .warning, summary: hostile, explanation: hostile, action: hostile,
                tenant: nil, device: "dev\"><b>", serial: nil)
        ]
        model.onboarding = [
            OnboardingTime(
                device: DeviceID(rawValue: "dev-1")!, tenant: TenantID(rawValue: "acme")!,
                registeredAt: model.now, firstIssuedAt: model.now.addingTimeInterval(90))
        ]
        let page = DashboardPage.dashboard(model)
        #expect(!page.contains("<script"))
        #expect(!page.contains("<b>"))
        #expect(page.contains(#"href="/dashboard/devices/dev%22%3E%3Cb%3E""#))
        #expect(page.contains(#"<th scope="row">median</th><td>90 s</td>"#))
    }

    @Test("the login page posts the token in the form body, and shows one line of error")
    func login() {
        let page = DashboardPage.login(error: "That token is not valid.")
        #expect(page.contains(#"<form method="post" action="/dashboard/login">"#))
        #expect(page.contains(#"type="password""#))
        #expect(page.contains(#"<p class="error" role="alert">That token is not valid.</p>"#))
        #expect(!page.contains("<script"))
    }

    @Test(
        "form values are percent-decoded, + is a space",
        arguments: [
            ("token=devid_admin_abc%2Bdef", "devid_admin_abc+def"), ("x=1&token=a+b", "a b"), ("token=", ""),
            ("other=1", nil),
        ] as [(String, String?)])
    func formValue(body: String, value: String?) {
        #expect(DashboardRoutes.formValue("token", in: body) == value)
    }

    @Test("percentiles by nearest rank; durations short enough for a chart")
    func numbers() {
        #expect(DashboardCharts.percentile([0, 300, 600, 900], 0.5) == 300)
        #expect(DashboardCharts.percentile([0, 300, 600, 900], 0.9) == 900)
        #expect(DashboardCharts.percentile([], 0.5) == nil)
        #expect(DashboardCharts.duration(42) == "42 s")
        #expect(DashboardCharts.duration(600) == "10 min")
        #expect(DashboardCharts.duration(3 * 3_600) == "3.0 h")
        #expect(DashboardCharts.duration(3 * 86_400) == "3.0 d")
    }

    @Test("a session lasts 8 hours of the injected time, ends at logout, and with its token")
    func sessions() async {
        let sessions = DashboardSessions()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let first = await sessions.create(tokenID: "t1", now: now)
        let second = await sessions.create(tokenID: "t1", now: now)
        let other = await sessions.create(tokenID: "t2", now: now)
        #expect(first != second)
        #expect(first.count == 43, "32 bytes, base64url")
        #expect(await sessions.tokenID(session: first, now: now.addingTimeInterval(8 * 3_600 - 1)) == "t1")
        #expect(await sessions.tokenID(session: first, now: now.addingTimeInterval(8 * 3_600)) == nil)
        await sessions.end(session: second)
        #expect(await sessions.tokenID(session: second, now: now) == nil)
        #expect(await sessions.tokenID(session: other, now: now) == "t2")
        await sessions.end(tokenID: "t2")
        #expect(await sessions.tokenID(session: other, now: now) == nil)
        #expect(await sessions.tokenID(session: "guess", now: now) == nil)
    }
}

extension DashboardPageTests {
    @Test(
        "the y axis tops out at a round number whose quarters are whole",
        arguments: [(0.0, 4.0), (3, 4), (4, 4), (5, 8), (9, 10), (11, 20), (33, 40), (900, 1_000), (1_200, 2_000)])
    func yScale(maximum: Double, top: Double) {
        #expect(DashboardCharts.YScale(maximum: maximum).top == top)
    }
}
