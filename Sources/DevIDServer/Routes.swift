import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import X509

/// The body of `GET /healthz` and `GET /readyz`: `{"status":"ok","time":"2026-11-25T15:05:21Z"}` (`ready` for
/// `/readyz`), written without a JSON encoder; the time string is rebuilt once a second of the injected clock.
final class HealthStamp: Sendable {
    let clock: any WallClock
    private let cached = Mutex<(second: Int, text: String)?>(nil)

    init(clock: any WallClock) {
        self.clock = clock
    }

    func response(status: String) -> Response {
        let now = clock.now()
        let second = Int(now.timeIntervalSince1970.rounded(.down))
        let time = cached.withLock { cached in
            if let cached, cached.second == second { return cached.text }
            let text = Date(timeIntervalSince1970: TimeInterval(second)).formatted(Date.ISO8601FormatStyle())
            cached = (second, text)
            return text
        }
        return Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"status":""# + status + #"","time":""# + time + #""}"#)))
    }
}

/// `GET /v1/tls/peer` on the mTLS listener: what the server made of the client certificate.
struct PeerResponse: ResponseCodable {
    var authenticated: Bool
    var kind: String?
    var device: String?
    var tenant: String?
    var hardwareSerial: String?
    var serial: String?
    var subject: String?
    var issuer: String?
}

struct TenantRequest: Decodable {
    var id: String
    var displayName: String?
}

struct ListResponse<Item: Encodable & Sendable>: ResponseEncodable {
    var items: [Item]
    /// Where the next page starts (`?after=` it), when this page is full; absent on the last page.
    var next: String? = nil
}

extension Request {
    /// A list's `limit` query parameter, if given: 1-10000, else `400`.
    func listLimit() throws -> Int? {
        guard let text = uri.queryParameters["limit"] else { return nil }
        guard let value = Int(text), (1...10_000).contains(value) else {
            throw HTTPError(.badRequest, message: "limit must be 1-10000")
        }
        return value
    }
}

/// Encodes any value as the response body with the context's JSON encoder.
struct JSONBody<Value: Encodable & Sendable>: ResponseGenerator {
    let value: Value
    init(_ value: Value) { self.value = value }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        try context.responseEncoder.encode(value, from: request, context: context)
    }
}

/// `GET /v1/admin/audit/verify`. `intact` and `firstBrokenSequence` as before; `code` is `intact`, `edited`,
/// `missing`, `truncated`, `recomputed`, `relinked` or `checkpoint-invalid`, and `message` the one line to show.
struct AuditVerifyResponse: ResponseCodable {
    var intact: Bool
    var firstBrokenSequence: Int64?
    var code: String
    var message: String
    var entries: Int64
    var headSequence: Int64?
    var headHash: String?
    var keyedFrom: Int64?
    var checkpointSequence: Int64?
    var checkpointTime: String?
    /// Lines of the checkpoint file that do not parse or whose signature does not verify.
    var invalidCheckpoints: Int

    init(report: AuditChainReport, checkpoints: AuditCheckpointFile.Contents, file: AuditCheckpointFile) {
        intact = report.isIntact
        firstBrokenSequence = report.brokenSequence
        code = report.code
        message = report.summary
        entries = report.checked
        headSequence = report.headSequence
        headHash = report.headHash
        keyedFrom = report.keyedFrom
        checkpointSequence = checkpoints.newest?.sequence
        checkpointTime = checkpoints.newest?.time
        invalidCheckpoints = checkpoints.invalidLines
        if report.isIntact, checkpoints.invalidLines > 0 {
            intact = false
            code = "checkpoint-invalid"
            message =
                "audit checkpoints tampered: \(checkpoints.invalidLines) line(s) of \(file.path) fail their signature check"
        }
    }
}


enum Routes {
    /// `GET /healthz` (liveness: answered from memory, never touching the registry) and `GET /readyz` (readiness:
    /// the registry answers a trivial query, checked at most once a second; `503` with `Retry-After` and a one-line
    /// reason when it does not). On both listeners.
    static func health<Context: RequestContext>(_ router: Router<Context>, state: ServerState) {
        let stamp = HealthStamp(clock: state.clock)
        router.get("/healthz") { _, _ -> Response in
            stamp.response(status: "ok")
        }
        let readiness = Readiness(store: state.store, clock: state.clock)
        router.get("/readyz") { _, _ -> Response in
            switch await readiness.check() {
            case .ready:
                return stamp.response(status: "ready")
            case .notReady(let reason):
                throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "1"], message: reason)
            }
        }
    }

    /// The mTLS listener's routes for this stage: health and peer introspection.
    static func device(_ router: Router<DeviceRequestContext>, state: ServerState) {
        router.add(middleware: HTTPMetricsMiddleware(metrics: state.metrics.http, listener: .est))
        router.add(middleware: ContinueOnReadMiddleware())
        router.add(middleware: ServerTimeMiddleware(clock: state.clock))
        router.add(middleware: StorageFullMiddleware(state: state))
        health(router, state: state)
        ESTRoutes.register(router, state: state)
        DeviceStatusRoutes.register(router, state: state)
        router.get("/v1/tls/peer") { _, context -> PeerResponse in
            guard let chain = await context.verifiedPeerChain(), let leaf = chain.first else {
                throw HTTPError(
                    .unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"devid\""],
                    message: "no client certificate")
            }
            // The handshake lets an LDevID expired within the grace window through, for late renewal only.
            guard leaf.notValidAfter > state.clock.now() else {
                throw HTTPError(.forbidden, message: "certificate has expired (it may only re-enroll)")
            }
            var response = PeerResponse(
                authenticated: true, serial: leaf.devidSerial.rawValue, subject: String(describing: leaf.subject),
                issuer: String(describing: leaf.issuer))
            switch PeerIdentity.classify(chain: chain, hierarchy: state.hierarchy, issuers: state.issuers.snapshot) {
            case .ldevid(let device, let tenant, _):
                response.kind = "ldevid"
                response.device = device.rawValue
                response.tenant = tenant.rawValue
            case .idevid(let hardwareSerial, _, _, _, _):
                response.kind = "idevid"
                response.hardwareSerial = hardwareSerial
            case .unrecognized, nil:
                response.kind = "unrecognized"
            }
            return response
        }
    }

    /// The operations listener: health, and the admin API behind the bearer token.
    /// Returns the authz token of `/v1/authz/*` (nil when it could not be read or created).
    @discardableResult
    static func ops(_ router: Router<OpsRequestContext>, state: ServerState) -> AuthzToken? {
        router.add(middleware: HTTPMetricsMiddleware(metrics: state.metrics.http, listener: .ops))
        router.add(middleware: StorageFullMiddleware(state: state))
        health(router, state: state)
        MetricsRoutes.register(router, state: state)
        HealthRoutes.register(router, state: state)
        DashboardRoutes.register(router, state: state)
        PublicationRoutes.register(router, state: state)
        let authzToken = AuthzRoutes.register(router, state: state)
        let admin = router.group("/v1/admin")
            .add(middleware: AdminRateLimitMiddleware(state: state))
            .add(middleware: AdminAuthMiddleware(state: state))

        admin.get("/ca") { _, _ -> JSONBody<HierarchySummary> in
            JSONBody(HierarchySummary(hierarchy: state.hierarchy))
        }
        admin.get("/tenants") { _, context -> ListResponse<Tenant> in
            ListResponse(items: try await state.store.tenants().filter { context.allows(tenant: $0.id) })
        }
        admin.post("/tenants") { request, context -> EditedResponse<JSONBody<Tenant>> in
            let body = try await request.decode(as: TenantRequest.self, context: context)
            // A new tenant id may not have a dot (RabbitMQ reads it as a level separator); stored ones still load.
            let id: TenantID
            do throws(DevIDCoreError) {
                id = try TenantID(newID: body.id)
            } catch {
                await state.auditor.record(
                    actor: context.actor, action: "tenant.create", outcome: .denied, reason: error.reason)
                throw HTTPError(.badRequest, message: error.reason)
            }
            try context.require(tenant: id)
            let tenant = Tenant(id: id, displayName: body.displayName ?? body.id, createdAt: state.clock.now())
            do {
                try await state.store.createTenant(
                    tenant,
                    audit: state.auditor.event(
                        actor: context.actor, action: "tenant.create", outcome: .success,
                        reason: "created tenant \(id)", tenant: id))
            } catch let error as StoreError where error.code == .duplicate {
                await state.auditor.record(
                    actor: context.actor, action: "tenant.create", outcome: .denied,
                    reason: "tenant \(id) already exists", tenant: id)
                throw HTTPError(.conflict, message: "tenant \(id) already exists")
            }
            return EditedResponse(status: .created, response: JSONBody(tenant))
        }
        admin.get("/devices") { request, context -> ListResponse<Device> in
            var filter = DeviceFilter()
            let query = request.uri.queryParameters
            if let tenant = query["tenant"] {
                guard let id = TenantID(rawValue: String(tenant)) else {
                    throw HTTPError(.badRequest, message: "invalid tenant")
                }
                filter.tenant = id
            }
            if let lot = query["lot"] {
                guard let id = LotID(rawValue: String(lot)) else { throw HTTPError(.badRequest, message: "invalid lot") }
                filter.lot = id
            }
            if let stateName = query["state"] {
                guard let value = DeviceState(rawValue: String(stateName)) else {
                    throw HTTPError(.badRequest, message: "invalid state")
                }
                filter.state = value
            }
            if let limit = try request.listLimit() { filter.limit = limit }
            // A fleet is listed page by page: ids sort ascending, and a full page says where the next one starts.
            if let after = query["after"] {
                guard let id = DeviceID(rawValue: String(after)) else {
                    throw HTTPError(.badRequest, message: "invalid after (a device id)")
                }
                filter.after = id
            }
            let devices = try await context.devices(filter, store: state.store)
            return ListResponse(items: devices, next: devices.count == filter.limit ? devices.last?.id.rawValue : nil)
        }
        // Rows exactly as stored (AuditEntry), so an odd row is listed rather than failing the request. `after` and
        // `order=asc` page through the whole trail for `devid audit export`.
        admin.get("/audit") { request, context -> ListResponse<AuditEntry> in
            var filter = AuditFilter()
            filter.tenants = context.tenantLimit
            let query = request.uri.queryParameters
            if let action = query["action"] { filter.action = String(action) }
            if let actor = query["actor"] { filter.actor = String(actor) }
            if let after = query["after"] {
                guard let value = Int64(after), value >= 0 else {
                    throw HTTPError(.badRequest, message: "after must be a sequence number (0 or more)")
                }
                filter.afterSequence = value
            }
            if let order = query["order"] {
                guard order == "asc" || order == "desc" else {
                    throw HTTPError(.badRequest, message: "order must be asc or desc")
                }
                filter.oldestFirst = order == "asc"
            }
            if let outcome = query["outcome"] {
                guard let value = AuditEvent.Outcome(rawValue: String(outcome)) else {
                    throw HTTPError(.badRequest, message: "outcome must be success, denied or failure")
                }
                filter.outcome = value
            }
            if let limit = try request.listLimit() { filter.limit = limit }
            return ListResponse(items: try await state.store.auditEntries(filter))
        }
        AdminRoutes.register(admin, state: state)
        RotationRoutes.register(admin, state: state)
        SettingsRoutes.register(admin, state: state)
        IssuingCARoutes.register(admin, state: state)
        RootCARoutes.register(admin, state: state)
        RevocationRoutes.register(admin, state: state)
        BrokerRoutes.register(admin, state: state)
        ServiceCertificateRoutes.register(admin, state: state)
        PolicyRoutes.register(admin, state: state)
        AdminTokenRoutes.register(admin, state: state)
        // Walks the chain against the newest validly signed checkpoint (DATA/audit/checkpoints.jsonl).
        admin.get("/audit/verify") { _, _ -> AuditVerifyResponse in
            let file = AuditCheckpointFile(dataDirectory: state.configuration.dataDirectory)
            let checkpoints: AuditCheckpointFile.Contents
            do {
                checkpoints = try file.read(publicKey: try AuditSecret.load(state.configuration).0.publicKey)
            } catch {
                state.logger.error("audit checkpoints unreadable", metadata: ["error": "\(error)"])
                throw HTTPError(.internalServerError, message: "audit key or checkpoint file unreadable")
            }
            let report = try await state.store.auditChainReport(anchor: checkpoints.newest?.anchor)
            return AuditVerifyResponse(report: report, checkpoints: checkpoints, file: file)
        }
        return authzToken
    }
}

