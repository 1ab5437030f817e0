import DevIDCore
import DevIDStore
import HTTPTypes
import Hummingbird
import Logging

/// The route edge for a full registry disk: a ``StoreError`` with code `.storageFull` thrown by any handler becomes
/// `503 Service Unavailable` with `Retry-After`, `DevID-Refusal: storage_full` and a one-line reason (instead of a
/// bare 500), and raises the ``StorageAlarm`` (one log line for the whole episode); `.unavailable` (a PostgreSQL
/// registry that cannot be reached) becomes `503` with `Retry-After: 10` and `DevID-Refusal: registry_unavailable`.
/// Other errors pass through.
struct StorageFullMiddleware<Context: RequestContext>: RouterMiddleware {
    let state: ServerState

    func handle(
        _ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as StoreError where error.code == .storageFull {
            state.auditor.storage.raise(error, logger: state.logger)
            return StorageAlarm.response()
        } catch let error as StoreError where error.code == .unavailable {
            // A PostgreSQL registry that cannot be reached (down, failing over, refusing connections).
            state.logger.warning("request refused: the registry is unavailable", metadata: ["error": "\(error.reason)"])
            var response = ESTRoutes.refusal(.serviceUnavailable, .registryUnavailable, Self.registryUnavailable)
            response.headers[.retryAfter] = "10"
            return response
        }
    }

    static var registryUnavailable: String { "the registry is unavailable: nothing was changed; retry later" }
}

extension StorageAlarm {
    /// The one line a client reads when a write was refused for lack of space.
    static let reason = "registry storage is full: nothing was changed; retry later"

    /// `503`, `Retry-After`, `DevID-Refusal: storage_full`, the one-line reason.
    static func response() -> Response {
        var response = ESTRoutes.refusal(.serviceUnavailable, .storageFull, reason)
        response.headers[.retryAfter] = String(retryAfterSeconds)
        return response
    }
}
