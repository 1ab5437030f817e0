import Hummingbird

/// Caps the request body of every route behind it: a body over `maxBytes` (by its Content-Length, or as it streams)
/// is answered 413 before any handler runs.
///
/// `exempt` routes (method and path) are passed on with their body unread: each reads it itself, after the admin
/// token was checked, with its own larger cap (`POST /v1/admin/devices/import`: a fleet's lot manifest). A stranger's
/// body on them is never buffered; it is answered 401 first.
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxBytes: Int
    var exempt: Set<String> = []

    static func route(_ method: HTTPRequest.Method, _ path: String) -> String { "\(method.rawValue) \(path)" }

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if !exempt.isEmpty, exempt.contains(Self.route(request.method, request.uri.path)) {
            return try await next(request, context)
        }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBytes {
            throw HTTPError(.contentTooLarge, message: "request body is larger than \(maxBytes) bytes")
        }
        var request = request
        _ = try await request.collectBody(upTo: maxBytes)
        return try await next(request, context)
    }
}
