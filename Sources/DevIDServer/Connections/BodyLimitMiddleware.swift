import Hummingbird

/// Caps the request body of every route behind it: a body over `maxBytes` (by its Content-Length, or as it streams)
/// is answered 413 before any handler runs.
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxBytes: Int

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBytes {
            throw HTTPError(.contentTooLarge, message: "request body is larger than \(maxBytes) bytes")
        }
        var request = request
        _ = try await request.collectBody(upTo: maxBytes)
        return try await next(request, context)
    }
}
