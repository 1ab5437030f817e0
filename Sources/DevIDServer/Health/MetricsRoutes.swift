import Hummingbird
import NIOCore

/// `GET /metrics` on the operations listener: the Prometheus text format, for a bearer token of role `admin` or
/// `auditor` that is not limited to tenants (the numbers cover every tenant). Authenticated, rate-limited and
/// audited like the admin API (``AdminAuthMiddleware``, ``AdminAccessTable``): no token or an unknown one is `401`,
/// another role or a tenant-limited token `403`.
enum MetricsRoutes {
    static func register(_ router: Router<OpsRequestContext>, state: ServerState) {
        router.group()
            .add(middleware: AdminRateLimitMiddleware(state: state))
            .add(middleware: AdminAuthMiddleware(state: state))
            .get("/metrics") { _, context -> Response in
                try context.requireAllTenants("the metrics of every tenant")
                let body = try await MetricsExposition(state: state).render()
                return Response(
                    status: .ok, headers: [.contentType: MetricsExposition.contentType],
                    body: .init(byteBuffer: ByteBuffer(bytes: body)))
            }
    }
}
