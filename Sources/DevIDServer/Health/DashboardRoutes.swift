import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /dashboard` on the operations listener: the identity-health page an operator opens in a browser.
///
/// - Login: `POST /dashboard/login` with the admin token in the form field `token` (never in a URL). The token is
///   checked as the admin API checks it (``AdminTokenCache``; admin, operator and auditor roles), audited as
///   `admin.auth` (an unknown token in aggregate, like ``AdminAuthMiddleware``), and rate-limited per source
///   address like the admin API. A refusal is the login page with one line, `401` (`403` for a role that may not
///   read). Success sets `devid_session` (HttpOnly, SameSite=Strict, Path=/dashboard) and redirects.
/// - `POST /dashboard/logout` ends the session and clears the cookie.
/// - A POST whose `Origin` is present and is not this listener is refused (`403`): with SameSite=Strict that is the
///   whole cross-site request forgery defence.
/// - `GET /dashboard?tenant=acme` shows one tenant, `tenant=all` (the default) every tenant the token may see.
///   `GET /dashboard/devices/{id}` shows one device (where an anomaly links).
/// - Every answer has a Content-Security-Policy allowing nothing but the style sheet from this origin (no script
///   at all), `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`.
///
/// The operations listener speaks plain HTTP (put it behind a TLS proxy, or keep it on loopback), so the cookie
/// has no `Secure` attribute: a browser would not send it back over `http://`.
enum DashboardRoutes {
    static let cookie = "devid_session"
    /// The longest login form accepted.
    static let maximumForm = 4_096
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
        + "base-uri 'none'"

    static func register(_ router: Router<OpsRequestContext>, state: ServerState) {
        let sessions = DashboardSessions()
        router.get("/dashboard/style.css") { _, _ -> Response in
            var response = Response(
                status: .ok, headers: [.contentType: "text/css; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: DashboardPage.styleSheet)))
            response.headers[.cacheControl] = "no-cache"
            response.headers[.xContentTypeOptions] = "nosniff"
            return response
        }
        let group = router.group().add(middleware: AdminRateLimitMiddleware(state: state))

        group.get("/dashboard") { request, context -> Response in
            guard let token = try await session(request, sessions: sessions, state: state) else {
                return page(.unauthorized, DashboardPage.login())
            }
            var selected: TenantID?
            if let text = request.uri.queryParameters["tenant"].map(String.init), text != "all" {
                guard let tenant = TenantID(rawValue: text) else {
                    return page(.badRequest, DashboardPage.message("invalid tenant"))
                }
                guard token.allows(tenant: tenant) else {
                    await state.auditor.record(
                        actor: "admin:\(token.id)", action: "admin.auth", outcome: .denied,
                        reason: "admin token \(token.name) may not act on tenant \(tenant): GET /dashboard",
                        tenant: tenant)
                    return page(.forbidden, DashboardPage.message("this token may not see tenant \(tenant)"))
                }
                selected = tenant
            }
            let model = try await DashboardModel.load(state: state, token: token, tenant: selected)
            return page(.ok, DashboardPage.dashboard(model))
        }

        group.get("/dashboard/devices/{id}") { request, context -> Response in
            guard let token = try await session(request, sessions: sessions, state: state) else {
                return page(.unauthorized, DashboardPage.login())
            }
            guard let id = context.parameters.get("id").flatMap(DeviceID.init(rawValue:)),
                let device = try await state.store.device(id), token.allows(tenant: device.tenant)
            else {
                return page(.notFound, DashboardPage.message("no such device"))
            }
            let tenants = try await state.store.tenants().map(\.id).filter { token.allows(tenant: $0) }
            let model = DashboardModel(
                now: state.clock.now(), tokenName: token.name, role: token.role.rawValue, tenants: tenants,
                selected: device.tenant)
            return page(
                .ok,
                DashboardPage.device(
                    device, credentials: try await state.store.credentials(device: id), now: model.now, model: model))
        }

        group.post("/dashboard/login") { request, context -> Response in
            if let refusal = crossOrigin(request) { return refusal }
            let what = AdminAuthMiddleware.describe(request)
            let form = try await request.body.collect(upTo: maximumForm)
            guard let presented = formValue("token", in: String(buffer: form)), !presented.isEmpty else {
                await state.anonymousFailures.record(
                    action: "admin.auth", reason: "missing admin token: \(what)", source: context.remoteAddress)
                return page(.unauthorized, DashboardPage.login(error: "Enter an admin token."))
            }
            let now = state.clock.now()
            let token: AdminToken
            switch try await state.adminTokens.authenticate(presented, now: now) {
            case .valid(let valid):
                token = valid
            case .unknown:
                await state.anonymousFailures.record(
                    action: "admin.auth", reason: "invalid admin token: \(what)", source: context.remoteAddress)
                return page(.unauthorized, DashboardPage.login(error: "That token is not valid."))
            case .revoked(let revoked):
                await state.auditor.record(
                    actor: "admin:\(revoked.id)", action: "admin.auth", outcome: .denied,
                    reason: "revoked admin token \(revoked.name): \(what)")
                return page(.unauthorized, DashboardPage.login(error: "That token is revoked."))
            case .expired(let expired):
                await state.auditor.record(
                    actor: "admin:\(expired.id)", action: "admin.auth", outcome: .denied,
                    reason: "expired admin token \(expired.name): \(what)")
                return page(.unauthorized, DashboardPage.login(error: "That token has expired."))
            }
            guard AdminAccessTable.readers.contains(token.role) else {
                await state.auditor.record(
                    actor: "admin:\(token.id)", action: "admin.auth", outcome: .denied,
                    reason: "role \(token.role) may not \(what)")
                return page(.forbidden, DashboardPage.login(error: "A \(token.role) token may not open the dashboard."))
            }
            await state.adminTokens.recordUse(id: token.id, at: now)
            await state.auditor.record(
                actor: "admin:\(token.id)", action: "admin.auth", outcome: .success, reason: what)
            let id = await sessions.create(tokenID: token.id, now: now)
            return redirect(
                setCookie: "\(cookie)=\(id); Path=/dashboard; HttpOnly; SameSite=Strict; "
                    + "Max-Age=\(Int(DashboardSessions.lifetime))")
        }

        group.post("/dashboard/logout") { request, _ -> Response in
            if let refusal = crossOrigin(request) { return refusal }
            if let id = request.cookies[cookie]?.value { await sessions.end(session: id) }
            return redirect(setCookie: "\(cookie)=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0")
        }
    }

    /// The admin token of the request's session, if it has a live one and the token is still usable and may read.
    static func session(_ request: Request, sessions: DashboardSessions, state: ServerState) async throws
        -> AdminToken?
    {
        guard let id = request.cookies[cookie]?.value, !id.isEmpty else { return nil }
        let now = state.clock.now()
        guard let tokenID = await sessions.tokenID(session: id, now: now) else { return nil }
        guard let token = try await state.adminTokens.token(id: tokenID), token.isUsable(at: now),
            AdminAccessTable.readers.contains(token.role)
        else {
            await sessions.end(tokenID: tokenID)
            return nil
        }
        await state.adminTokens.recordUse(id: token.id, at: now)
        return token
    }

    /// `403` for a POST from another origin; nil when `Origin` is absent or names this listener.
    static func crossOrigin(_ request: Request) -> Response? {
        guard let origin = request.headers[.origin] else { return nil }
        // HTTP/1.1 keeps the `Host` header as a field; HTTP/2 has the authority.
        let authority = request.head.authority ?? request.headers[HTTPField.Name("Host")!] ?? ""
        for scheme in ["http://", "https://"] where origin == scheme + authority && !authority.isEmpty {
            return nil
        }
        return page(.forbidden, DashboardPage.message("refused: the form was sent from another site"))
    }

    /// The value of `name` in an `application/x-www-form-urlencoded` body (`+` is a space).
    static func formValue(_ name: String, in body: String) -> String? {
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0].replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            guard key == name else { continue }
            let value = parts.count > 1 ? String(parts[1]) : ""
            return value.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }

    static func page(_ status: HTTPResponse.Status, _ html: String) -> Response {
        var response = Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
        secure(&response.headers)
        return response
    }

    /// `303 See Other` to `/dashboard`, setting (or clearing) the session cookie.
    static func redirect(setCookie: String) -> Response {
        var response = Response(status: .seeOther, headers: [.location: "/dashboard", .setCookie: setCookie])
        secure(&response.headers)
        return response
    }

    static func secure(_ headers: inout HTTPFields) {
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        headers[.cacheControl] = "no-store"
        headers[.xContentTypeOptions] = "nosniff"
        // Not `no-referrer`: with it Chromium sends `Origin: null` on the login form, which the Origin check refuses.
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
    }
}
