import Hummingbird

/// Counts every request of a router in ``HTTPRequestMetrics``, by the route pattern the router matched.
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HTTPRequestMetrics
    let listener: HTTPRequestMetrics.Listener

    func handle(
        _ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context, status: response.status.code, since: start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            record(request, context, status: status, since: start)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, status: Int, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        // Hummingbird reports "NotFound" when no route matched; both are one label value.
        let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? HTTPRequestMetrics.unmatchedRoute
        metrics.record(listener: listener, route: route, method: request.method, status: status, seconds: seconds)
    }
}
