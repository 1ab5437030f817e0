#!/usr/bin/env python3
"""Drives the DevID dashboard in a real headless Chromium (DashboardBrowserTests runs it).

Environment (never argv, so the token is not in the process list):
  DASHBOARD_URL         the operations listener, e.g. http://127.0.0.1:8080
  DASHBOARD_TOKEN       an admin token
  DASHBOARD_EXPECT      JSON: per view ("all" and tenant ids) the numbers the charts must show
  DASHBOARD_SCREENSHOT  where to save a full-page screenshot of the "all" view
  CHROMIUM              the browser (default /usr/bin/chromium)

Prints one line per check and "dashboard: ok" at the end; exits 1 with "FAIL: ..." on the first mismatch.
"""
import json
import os
import sys

from playwright.sync_api import sync_playwright

URL = os.environ["DASHBOARD_URL"].rstrip("/")
TOKEN = os.environ["DASHBOARD_TOKEN"]
EXPECT = json.loads(os.environ["DASHBOARD_EXPECT"])
SCREENSHOT = os.environ["DASHBOARD_SCREENSHOT"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


PAGE = None


def fail(message):
    print("FAIL: " + message, flush=True)
    if PAGE is not None:
        # What the browser shows, to tell a wrong number from a wrong page (the token is never on a page).
        print("page " + PAGE.url + ":\n" + PAGE.locator("body").inner_text()[:2000], flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print("ok: " + message, flush=True)


def table(page, chart):
    """A chart's table as {row header: [cells]}, read from the DOM (the <details> may be closed)."""
    return page.evaluate(
        """id => {
            const rows = {};
            for (const tr of document.querySelectorAll('#' + id + '-table tbody tr, #' + id + '-table tfoot tr')) {
                const th = tr.querySelector('th');
                if (!th) continue;
                rows[th.textContent.trim()] = [...tr.querySelectorAll('td')].map(td => td.textContent.trim());
            }
            return rows;
        }""",
        chart,
    )


def headers(page, chart):
    return page.evaluate(
        "id => [...document.querySelectorAll('#' + id + '-table thead th')].map(th => th.textContent.trim())", chart
    )


def accessible(page, chart):
    """The SVG is an image with a title and a description that says its numbers."""
    svg = page.locator("#" + chart + "-chart")
    check(svg.count() == 1, chart + ": one SVG")
    check(svg.get_attribute("role") == "img", chart + ": role=img")
    title = page.locator("#" + chart + "-title").text_content()
    desc = page.locator("#" + chart + "-desc").text_content()
    check(bool(title) and bool(desc), chart + ": <title> and <desc>")
    return desc


def login_form(page):
    return page.locator("form[action='/dashboard/login'] input[name=token]").count() == 1


def verify_view(page, name, expect):
    print("-- view " + name, flush=True)
    # Expiry distribution: a bar per week, the wave highlighted.
    desc = accessible(page, "expiry")
    check(f"{expect['expiry_total']} current LDevIDs" in desc, f"expiry: {expect['expiry_total']} LDevIDs in the description")
    rows = table(page, "expiry")
    total = sum(int(cells[0]) for label, cells in rows.items())
    check(total == expect["expiry_total"], f"expiry table sums to {expect['expiry_total']} (got {total})")
    check(page.locator("#expiry-chart rect.bar").count() == len(rows), "expiry: a bar per week")
    highlighted = page.locator("#expiry-chart rect.bar.highlight")
    if expect.get("wave"):
        check(highlighted.count() == 1, "expiry: one week highlighted as the wave")
        check(highlighted.get_attribute("data-value") == str(expect["wave"]), f"expiry: the wave holds {expect['wave']}")
        check("expiry wave" in desc, "expiry: the description names the wave")
    else:
        check(highlighted.count() == 0, "expiry: no wave")

    # Auth failures by reason, stacked areas; expiry-caused ones emphasized.
    accessible(page, "failures")
    rows = table(page, "failures")
    names = headers(page, "failures")[1:-1]
    totals = dict(zip(names, [int(v) for v in rows.get("total", [])]))
    check(totals == expect["failures"], f"failures by reason {expect['failures']} (got {totals})")
    check(page.locator("#failures-chart polygon.layer").count() == len(expect["failures"]), "failures: an area per reason")
    emphasized = page.locator("#failures-chart polygon.layer.emphasized").count()
    check(emphasized == (1 if "expired" in expect["failures"] else 0), "failures: expiry-caused failures emphasized")

    # Enrollments per day, stacked bars by kind.
    accessible(page, "enrollments")
    rows = table(page, "enrollments")
    names = headers(page, "enrollments")[1:-1]
    totals = {k: int(v) for k, v in zip(names, rows.get("total", [])) if int(v) > 0}
    check(totals == expect["enrollments"], f"enrollments by kind {expect['enrollments']} (got {totals})")
    drawn = page.locator("#enrollments-chart g.layer rect").count()
    check(drawn >= 1, f"enrollments: bars drawn ({drawn})")

    # Onboarding time per device, with median and p90.
    desc = accessible(page, "onboarding")
    rows = table(page, "onboarding")
    devices = {k: v[0] for k, v in rows.items() if k not in ("median", "p90")}
    check(len(devices) == expect["onboarding"]["devices"], f"onboarding: {expect['onboarding']['devices']} devices (got {devices})")
    check(page.locator("#onboarding-chart rect.bar").count() == len(devices), "onboarding: a bar per device")
    check(page.locator("#onboarding-chart line.marker").count() == 2, "onboarding: median and p90 lines")
    check(rows.get("median") == [expect["onboarding"]["median"]], f"onboarding median {expect['onboarding']['median']} (got {rows.get('median')})")
    check(rows.get("p90") == [expect["onboarding"]["p90"]], f"onboarding p90 {expect['onboarding']['p90']} (got {rows.get('p90')})")

    # Devices by state.
    accessible(page, "states")
    rows = table(page, "states")
    states = {k: int(v[0]) for k, v in rows.items() if int(v[0]) > 0}
    check(states == expect["states"], f"devices by state {expect['states']} (got {states})")

    # Rotation campaigns as progress bars.
    bars = page.locator("#rotations-list progress")
    labels = [bars.nth(i).get_attribute("aria-label") for i in range(bars.count())]
    check(labels == expect["rotations"], f"rotation progress {expect['rotations']} (got {labels})")

    # CA and CRL freshness; anomalies.
    cas = table(page, "cas")
    check("root" in cas and "issuing" in cas, "CA table lists root and issuing")
    check(page.locator("#crls-table").count() == 1, "CRL table present")
    check(page.locator("#anomalies-list, #anomalies-none").count() == 1, "anomalies section present")
    links = page.locator("#anomalies-list a")
    linked = [links.nth(i).text_content() for i in range(links.count())]
    wanted = ["device " + device for device in expect["anomaly_devices"]]
    check(linked == wanted, f"anomalies link to {wanted} (got {linked})")
    if wanted:
        with page.expect_navigation():
            links.first.click()
        device = expect["anomaly_devices"][0]
        check(page.locator("h1").text_content() == "Device " + device, "the anomaly's link opens device " + device)
        check(page.locator("#credentials-table tbody tr").count() >= 1, "the device page lists its credentials")
        with page.expect_navigation():
            page.go_back()


def main():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        global PAGE
        PAGE = page
        requested = []
        page.on("request", lambda request: requested.append(request.url))

        response = page.goto(URL + "/dashboard")
        check(response.status == 401 and login_form(page), "logged out: /dashboard is the login page (401)")
        headers_ = response.headers
        check("default-src 'none'" in headers_.get("content-security-policy", ""), "Content-Security-Policy set")
        check(headers_.get("cache-control") == "no-store", "Cache-Control: no-store")

        page.fill("input[name=token]", "devid_admin_not-a-real-token")
        with page.expect_navigation():
            page.click("button[type=submit]")
        check(login_form(page), "bad token: the login page again")
        check("not valid" in page.locator(".error").text_content(), "bad token: a one-line error")

        page.fill("input[name=token]", TOKEN)
        with page.expect_navigation():
            page.click("button[type=submit]")
        check(not login_form(page) and page.locator("h1").text_content() == "Identity health: all tenants",
              "admin token: the dashboard for all tenants")
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies.get("devid_session")
        check(session is not None and session["httpOnly"] and session["sameSite"] == "Strict",
              "session cookie is HttpOnly and SameSite=Strict")
        check(all(TOKEN not in url for url in requested), "the token is in no URL")
        check(TOKEN not in page.content(), "the token is not in the page")
        check(page.locator("link[rel=stylesheet]").count() == 1 and
              page.evaluate("getComputedStyle(document.querySelector('section')).borderTopStyle") == "solid",
              "the style sheet from the binary is applied")
        check(all(url.startswith(URL) for url in requested), "no request leaves the server")

        verify_view(page, "all", EXPECT["all"])
        page.screenshot(path=SCREENSHOT, full_page=True)
        print("screenshot: " + SCREENSHOT, flush=True)

        for tenant in [name for name in EXPECT if name != "all"]:
            with page.expect_navigation():
                page.click(f"nav[aria-label=Tenant] a:text-is('{tenant}')")
            check(page.locator("h1").text_content() == "Identity health: tenant " + tenant, "switched to " + tenant)
            check(page.locator("nav a[aria-current=page]").text_content() == tenant, "the switch marks " + tenant)
            verify_view(page, tenant, EXPECT[tenant])

        with page.expect_navigation():
            page.click("form[action='/dashboard/logout'] button")
        check(login_form(page), "log out: the login page")
        response = page.goto(URL + "/dashboard")
        check(response.status == 401 and login_form(page), "after logout /dashboard is the login page")

        page.fill("input[name=token]", TOKEN)
        with page.expect_navigation():
            page.click("button[type=submit]")
        check(not login_form(page), "logged in again")
        context.clear_cookies()
        response = page.goto(URL + "/dashboard")
        check(response.status == 401 and login_form(page), "a browser without the cookie gets the login page")
        browser.close()
    print("dashboard: ok", flush=True)


if __name__ == "__main__":
    main()
