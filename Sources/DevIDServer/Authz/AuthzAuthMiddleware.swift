import Crypto
import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird

/// The credential brokers and relying parties use for `/v1/authz/*`: a token that can ask for decisions and
/// nothing else, kept in `DATA/secrets/authz-token` (created on first start, mode 0600).
///
/// An admin token is accepted too (it can do everything). The token is never logged; only its SHA-256 is kept in
/// memory.
struct AuthzToken: Sendable {
    let hash: String
    /// The same digest as four words, compared on every request.
    let digest: TokenDigest

    init(hash: String) {
        self.hash = hash
        // `hash` is always AdminTokens.hash output (64 hex digits).
        self.digest = TokenDigest(hex: hash) ?? TokenDigest(secret: hash)
    }

    static func path(_ configuration: ServerConfiguration) -> String {
        configuration.secretsDirectory + "/authz-token"
    }

    /// Reads the token file, creating it with a fresh token if missing.
    static func loadOrCreate(_ configuration: ServerConfiguration) throws -> AuthzToken {
        let path = path(configuration)
        if FileManager.default.fileExists(atPath: path) {
            let secret = String(decoding: try SecureFile.read(path), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return AuthzToken(hash: AdminTokens.hash(secret))
        }
        let secret = "devid_authz_" + AdminTokens.randomBase32(40)
        try SecureFile.write(Array(secret.utf8), to: path, mode: 0o600)
        return AuthzToken(hash: AdminTokens.hash(secret))
    }
}

/// Guards `/v1/authz/*`: `Authorization: Bearer <authz or admin token>`, or HTTP Basic with the token as password
/// (any user name). RabbitMQ's HTTP backend cannot send headers, so under `/v1/authz/rabbitmq/<token>/...` the
/// path segment after `rabbitmq` is accepted as the token instead. Refusals are audited (a missing or unknown token
/// in aggregate, through ``AnonymousFailures``).
///
/// An admin token is accepted when its role allows the route in ``AdminAccessTable`` (`admin` and `broker`, and
/// `auditor` for the statistics) and it is not limited to tenants; it comes from the in-memory ``AdminTokenCache``,
/// and a valid token whose role or tenant limit does not allow the route is `403`.
struct AuthzAuthMiddleware: RouterMiddleware {
    typealias Context = OpsRequestContext
    let adminTokens: AdminTokenCache<ContinuousClock>
    let clock: any WallClock
    let auditor: Auditor
    let failures: AnonymousFailures
    let token: AuthzToken?

    init(state: ServerState, token: AuthzToken?) {
        self.adminTokens = state.adminTokens
        self.clock = state.clock
        self.auditor = state.auditor
        self.failures = state.anonymousFailures
        self.token = token
    }

    func handle(
        _ request: Request, context: OpsRequestContext,
        next: @concurrent (Request, OpsRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let presented = Self.presentedToken(request) else {
            await failures.record(
                action: "authz.auth", reason: "missing authz token: \(Self.describe(request))",
                source: context.remoteAddress)
            throw HTTPError(
                .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"devid-authz\""],
                message: "missing authz token")
        }
        var matched = false
        var context = context
        if let token, token.digest.matches(TokenDigest(secret: presented)) {
            matched = true
        } else {
            switch try await adminTokens.authenticate(presented, now: clock.now()) {
            case .valid(let admin):
                try await authorize(admin, request: request, context: &context)
                matched = true
            case .revoked(let revoked):
                throw await refuse(revoked, "revoked", "admin token is revoked", request)
            case .expired(let expired):
                throw await refuse(expired, "expired", "admin token has expired", request)
            case .unknown:
                break
            }
        }
        guard matched else {
            await failures.record(
                action: "authz.auth", reason: "invalid authz token: \(Self.describe(request))",
                source: context.remoteAddress)
            throw HTTPError(
                .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"devid-authz\", error=\"invalid_token\""],
                message: "invalid authz token")
        }
        return try await next(request, context)
    }

    /// A revoked or expired admin token (`state`): it names its holder, so it is audited under its id, as on the
    /// admin API, and answered 401.
    private func refuse(
        _ token: AdminToken, _ state: String, _ message: String, _ request: Request
    ) async -> HTTPError {
        await auditor.record(
            actor: "admin:\(token.id)", action: "authz.auth", outcome: .denied,
            reason: AdminAuthMiddleware.printable(
                "\(state) admin token \(token.name): \(Self.describe(request))",
                limit: AdminAuthMiddleware.maximumPathInReason))
        return AdminAuthMiddleware.invalidToken(message)
    }

    /// A valid admin token on a decision route: its role must allow the route, and it may not be limited to tenants.
    private func authorize(_ admin: AdminToken, request: Request, context: inout OpsRequestContext) async throws {
        context.adminToken = admin
        guard AdminAccessTable.allows(admin.role, method: request.method, endpoint: context.endpointPath) else {
            let reason = AdminAuthMiddleware.printable(
                "role \(admin.role) may not \(Self.describe(request))", limit: AdminAuthMiddleware.maximumPathInReason)
            await auditor.record(actor: context.actor, action: "authz.auth", outcome: .denied, reason: reason)
            throw HTTPError(.forbidden, message: reason)
        }
        // Decisions and their statistics cover every tenant: a token limited to tenants gets none.
        guard admin.tenants == nil else {
            await auditor.record(
                actor: context.actor, action: "authz.auth", outcome: .denied,
                reason: "admin token \(admin.name) is limited to tenants; policy decisions cover every tenant")
            throw HTTPError(
                .forbidden, message: "an admin token limited to tenants may not ask for policy decisions")
        }
        await adminTokens.recordUse(id: admin.id, at: clock.now())
    }

    /// `METHOD /path` for a refusal, the token of a RabbitMQ path redacted.
    static func describe(_ request: Request) -> String {
        "\(request.method.rawValue) \(redactedPath(request.uri.path))"
    }

    static func presentedToken(_ request: Request) -> String? {
        if let header = request.headers[.authorization] {
            if let bearer = plainBearerToken(header) ?? AdminAuthMiddleware.bearerToken(header) { return bearer }
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "basic",
                let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
                let decoded = String(data: data, encoding: .utf8), let colon = decoded.firstIndex(of: ":")
            {
                let password = String(decoded[decoded.index(after: colon)...])
                if !password.isEmpty { return password }
            }
        }
        let segments = request.uri.path.split(separator: "/")
        if segments.count >= 5, segments[0] == "v1", segments[1] == "authz", segments[2] == "rabbitmq" {
            return String(segments[3])
        }
        return nil
    }

    /// The common case of `Authorization: Bearer <token>` without Foundation: `Bearer` (any case), one space, and a
    /// token of visible ASCII characters. Nil for anything else, which ``AdminAuthMiddleware/bearerToken(_:)``
    /// then reads (so both agree on every header).
    static func plainBearerToken(_ header: String) -> String? {
        let utf8 = header.utf8
        guard utf8.count > 7 else { return nil }
        var index = utf8.startIndex
        for expected in "bearer ".utf8 {
            let byte = utf8[index]
            guard byte == expected || (expected != 0x20 && byte | 0x20 == expected) else { return nil }
            index = utf8.index(after: index)
        }
        // Visible ASCII only: no space, tab or other whitespace to trim, no non-ASCII byte.
        guard utf8[index...].allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        return String(header[index...])
    }

    /// The path as it may be logged: the token segment of a RabbitMQ path replaced. Its segments are read as
    /// ``presentedToken(_:)`` and the router read them, empty ones skipped, so `//v1/authz/rabbitmq/<token>/user`
    /// and `/v1/authz/rabbitmq//<token>/user` are redacted too.
    static func redactedPath(_ path: String) -> String {
        var segments = path.split(separator: "/").map(String.init)
        // From four segments on: a token sent without the route's last segment is no route, but still a token.
        guard segments.count >= 4, segments[0] == "v1", segments[1] == "authz", segments[2] == "rabbitmq" else {
            return path
        }
        segments[3] = "<token>"
        return "/" + segments.joined(separator: "/") + (path.hasSuffix("/") ? "/" : "")
    }
}
