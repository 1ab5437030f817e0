public import HTTPTypes
import Prometheus
import Synchronization

/// `devid_http_requests_total{listener,route,method,status}` and
/// `devid_http_request_duration_seconds{listener,route,method}`, for both listeners.
///
/// The handles are cached by (listener, route, method, status): a request costs one dictionary lookup under a
/// lock, one counter increment and one histogram record, never a registry lookup.
/// ``record(listener:route:method:status:seconds:)`` is the one entry point, for ``HTTPMetricsMiddleware`` and for
/// code that answers before the router.
public final class HTTPRequestMetrics: Sendable {
    /// Which listener answered.
    public enum Listener: String, Sendable, CaseIterable {
        /// The EST / mTLS listener.
        case est
        /// The operations listener (admin API, authz, CRL, OCSP, metrics).
        case ops
    }

    /// The route label of a request no route matched.
    public static let unmatchedRoute = "unmatched"
    /// Latency buckets in seconds, 0.5 ms to 10 s.
    public static let durationBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
    /// Methods counted under their own name; any other is `other`, so a client cannot invent label values.
    static let knownMethods: Set<HTTPRequest.Method> = [.get, .head, .post, .put, .delete, .patch, .options]

    struct Key: Hashable {
        var listener: Listener
        var route: String
        var method: String
        var status: Int
    }

    struct Handles: Sendable {
        let requests: Prometheus.Counter
        let duration: ValueHistogram

        /// Counts one answered request that took `seconds`.
        func record(seconds: Double) {
            requests.increment()
            duration.record(seconds)
        }
    }

    private let registry: PrometheusCollectorRegistry
    private let cache = Mutex<[Key: Handles]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    /// Counts one answered request. `route` is the route pattern (`/v1/admin/devices/{id}`), never the raw path;
    /// `seconds` the time from the request's head to its response.
    public func record(listener: Listener, route: String, method: HTTPRequest.Method, status: Int, seconds: Double) {
        recorder(listener: listener, route: route, method: method, status: status).record(seconds: seconds)
    }

    /// The handles of one (listener, route, method, status), for a hot path that answers one kind of request over
    /// and over (``AuthzFastPathHandler``): recording then skips the lookup and its lock.
    func recorder(listener: Listener, route: String, method: HTTPRequest.Method, status: Int) -> Handles {
        let key = Key(
            listener: listener, route: route,
            method: Self.knownMethods.contains(method) ? method.rawValue : "other", status: status)
        return cache.withLock { cache in
            if let handles = cache[key] { return handles }
            let handles = makeHandles(key)
            cache[key] = handles
            return handles
        }
    }

    private func makeHandles(_ key: Key) -> Handles {
        Handles(
            requests: registry.makeCounter(
                descriptor: Self.requests,
                labels: [
                    ("listener", key.listener.rawValue), ("route", key.route), ("method", key.method),
                    ("status", String(key.status)),
                ]),
            duration: registry.makeValueHistogram(
                descriptor: Self.duration,
                labels: [("listener", key.listener.rawValue), ("route", key.route), ("method", key.method)],
                buckets: Self.durationBuckets))
    }

    static var requests: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "devid", subsystem: "http", metricName: "requests", unitName: "total",
            helpText: "HTTP requests answered, by listener, route pattern, method and status code.")
    }
    static var duration: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "devid", subsystem: "http", metricName: "request_duration", unitName: "seconds",
            helpText: "Time from a request's head to its response, by listener, route pattern and method.")
    }
}
