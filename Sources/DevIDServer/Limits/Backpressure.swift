import DevIDCore
import DevIDPKI
import Foundation
import HTTPTypes
import Hummingbird
import X509

/// Where the token buckets and the enrollment cap meet the routes: which buckets a request takes from, and the
/// `429` / `503` it gets otherwise. Refusals are counted and audited in aggregate (``AnonymousFailures``), never a
/// row each.
enum Backpressure {
    /// EST (`simpleenroll`, `simplereenroll`): the source address, the device (LDevID or IDevID), the claim token, the
    /// tenant (only of an LDevID: labels are unauthenticated) and all of EST. Nil when the request may go on.
    static func admitEST(
        _ kind: EnrollmentService.Kind, label: String?, identity: PeerIdentity?, credential: ESTHTTPCredential,
        source: String?, state: ServerState
    ) async -> Response? {
        let limits = state.configuration.rateLimits
        var buckets: [(RateLimiter.Key, RateLimits.Rate)] = [
            (.init(.global, area: "est", "all"), limits.global),
            (.init(.source, area: "est", AnonymousFailures.source(source)), limits.perSource),
        ]
        // The tenant bucket is taken only for a tenant the request proved (its LDevID): an EST label is anyone's to
        // write, and counting it would let strangers spend a tenant's budget (or fill the limiter with made-up keys).
        var tenant: String?
        if let identity {
            switch identity {
            case .ldevid(let device, let ldevidTenant, _):
                buckets.append((.init(.device, area: "est", "ldevid:\(device)"), limits.perDevice))
                tenant = ldevidTenant.rawValue
            case .idevid(let hardwareSerial, _, _, let manufacturer, _):
                buckets.append((.init(.device, area: "est", "idevid:\(manufacturer):\(hardwareSerial)"), limits.perDevice))
            case .unrecognized:
                break
            }
        }
        switch credential {
        case .bearer(let token), .basic(_, let token):
            // Keyed by the token's hash: no secret is held in the limiter.
            buckets.append((.init(.claimToken, area: "est", ClaimTokens.hash(token)), limits.perClaimToken))
        case .none, .malformed:
            break
        }
        if let tenant { buckets.append((.init(.tenant, area: "est", tenant), limits.perTenant)) }
        guard let refused = await state.rateLimiter.admit(buckets) else { return nil }
        return await limited(refused, action: kind.action, source: source, state: state)
    }

    /// The device check-in: the source address, the device, its tenant and all check-ins.
    static func admitCheckIn(device: DeviceID?, tenant: TenantID?, source: String?, state: ServerState) async
        -> Response?
    {
        let limits = state.configuration.rateLimits
        var buckets: [(RateLimiter.Key, RateLimits.Rate)] = [
            (.init(.global, area: "checkin", "all"), limits.global),
            (.init(.source, area: "checkin", AnonymousFailures.source(source)), limits.perSource),
        ]
        if let device { buckets.append((.init(.device, area: "checkin", device.rawValue), limits.perDevice)) }
        if let tenant { buckets.append((.init(.tenant, area: "checkin", tenant.rawValue), limits.perTenant)) }
        guard let refused = await state.rateLimiter.admit(buckets) else { return nil }
        return await limited(refused, action: "device.status", source: source, state: state)
    }

    /// `429` with `Retry-After` and `DevID-Refusal: rate_limited`.
    static func limited(
        _ refused: (retryAfter: Int, scope: RateLimiter.Scope), action: String, source: String?, state: ServerState
    ) async -> Response {
        let reason = "rate limited: too many requests for this \(refused.scope.noun)"
        await state.anonymousFailures.record(action: action, reason: reason, source: source)
        var response = ESTRoutes.refusal(.tooManyRequests, .rateLimited, reason)
        response.headers[.retryAfter] = String(refused.retryAfter)
        return response
    }

    /// `503` with `Retry-After` and `DevID-Refusal: overloaded`.
    static func overloaded(action: String, source: String?, state: ServerState) async -> Response {
        let reason = "server busy: too many enrollments in flight"
        await state.anonymousFailures.record(action: action, reason: reason, source: source)
        var response = ESTRoutes.refusal(.serviceUnavailable, .overloaded, reason)
        response.headers[.retryAfter] = String(state.configuration.rateLimits.overloadRetryAfterSeconds)
        return response
    }
}

extension RateLimiter.Scope {
    var noun: String {
        switch self {
        case .source: "source address"
        case .device: "device"
        case .claimToken: "claim token"
        case .tenant: "tenant"
        case .global: "server"
        }
    }
}

/// The admin API's bucket per source address, before the token is looked at, so a flood of guesses is cut off
/// before it costs a hash or an audit row.
struct AdminRateLimitMiddleware: RouterMiddleware {
    typealias Context = OpsRequestContext
    let state: ServerState

    func handle(
        _ request: Request, context: OpsRequestContext,
        next: @concurrent (Request, OpsRequestContext) async throws -> Response
    ) async throws -> Response {
        let source = AnonymousFailures.source(context.remoteAddress)
        if let refused = await state.rateLimiter.admit([
            (.init(.source, area: "admin", source), state.configuration.rateLimits.perSource)
        ]) {
            let reason = "rate limited: too many requests for this \(refused.scope.noun)"
            await state.anonymousFailures.record(action: "admin.api", reason: reason, source: source)
            throw HTTPError(
                .tooManyRequests,
                headers: [.retryAfter: String(refused.retryAfter), .devidRefusal: RefusalCode.rateLimited.rawValue],
                message: reason)
        }
        return try await next(request, context)
    }
}
