import DevIDCore
import Foundation
import HTTPTypes
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTPTypes
import Synchronization

/// Answers a broker's commonest question, "may this device publish (or subscribe to) this topic?", when the answer is
/// a grant the index already holds, on the connection's event loop, before Hummingbird's router.
///
/// A profile of `POST /v1/authz/mqtt` grants (BENCHMARKS.md) spent 15-19% of the server's CPU handing each request
/// from the event loop to a task and back, and 11% in the router and its request and response types: more than the
/// decision itself. A grant of `publish` or `subscribe` is counted but not audited and writes nothing, so it needs no
/// task: here it is decided with the same ``DecisionEngine`` call, counted in the same ``DecisionCounters`` and
/// written as the same bytes (``DecisionJSON/body(_:)``) with the same headers.
///
/// Everything else goes on to the router untouched, and gets exactly the answer it got before: a request this handler
/// does not fully understand (another route, a missing or admin token, `Expect`, a body over 4 KiB, trailers, a
/// certificate in PEM, any body the fast JSON reader steps aside for, a malformed field), and every decision that is
/// not a grant the index holds (a denial or a `connect`, which are audited; an index miss, which reads the registry;
/// the first use of a new credential, which confirms it). Such a request is decided a second time by the router, at
/// the cost of one index lookup.
///
/// `Connection: close` closes the connection after the answer, as Hummingbird's request loop does. HTTP/1.1 answers
/// go out in request order: while a request handed to the router has not been answered, the next
/// ones are handed on too, so a pipelined grant cannot overtake it.
final class AuthzFastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What the handler needs from the server, shared by every connection of the listener.
    struct Shared: Sendable {
        let token: AuthzToken
        let engine: DecisionEngine
        let clock: any WallClock
        /// Grants answered here (tests read it).
        let answered: FastPathCount
        /// `devid_http_requests_total` and the latency histogram of `POST /v1/authz/mqtt` answered `200`, as the
        /// router's ``HTTPMetricsMiddleware`` counts them.
        let metrics: HTTPRequestMetrics.Handles
    }

    /// Bodies are about 110 bytes; a larger one goes to the router and its limits.
    static let maximumBody = 4096

    private enum Mode {
        /// Between requests.
        case idle
        /// A candidate request: head and body held until its end, and when its head arrived.
        case holding(HTTPRequest, ByteBuffer, NIODeadline)
        /// The rest of a request handed to the router.
        case passing
    }

    private let shared: Shared
    private var mode = Mode.idle
    /// Requests handed to the router whose answer has not been fully written yet.
    private var routerRequests = 0
    /// The `Date` header for the current second.
    private var date: (second: Int, text: String) = (0, "")

    init(_ shared: Shared) {
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if routerRequests == 0, isCandidate(head) {
                mode = .holding(head, context.channel.allocator.buffer(capacity: 128), .now())
            } else {
                hand(context, data)
            }
        case .body(var part):
            switch mode {
            case .holding(let head, var body, let start):
                if body.readableBytes + part.readableBytes > Self.maximumBody {
                    handHeld(context, head, body)
                    context.fireChannelRead(data)
                } else {
                    mode = .idle
                    body.writeBuffer(&part)
                    mode = .holding(head, body, start)
                }
            case .idle, .passing:
                context.fireChannelRead(data)
            }
        case .end(let trailers):
            switch mode {
            case .holding(let head, let body, let start):
                mode = .idle
                if trailers == nil, let answer = answer(body) {
                    write(context, answer)
                    shared.metrics.record(seconds: Double((NIODeadline.now() - start).nanoseconds) / 1e9)
                    // As Hummingbird's request loop does after an answer.
                    if head.headerFields[.connection] == "close" { context.close(promise: nil) }
                } else {
                    handHeld(context, head, body)
                    context.fireChannelRead(data)
                }
            case .idle, .passing:
                mode = .idle
                context.fireChannelRead(data)
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), routerRequests > 0 { routerRequests -= 1 }
        context.write(data, promise: promise)
    }

    /// Hands a request head (and the rest of its request) to the router.
    private func hand(_ context: ChannelHandlerContext, _ head: NIOAny) {
        routerRequests += 1
        mode = .passing
        context.fireChannelRead(head)
    }

    private func handHeld(_ context: ChannelHandlerContext, _ head: HTTPRequest, _ body: ByteBuffer) {
        hand(context, wrapInboundOut(.head(head)))
        if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
    }

    /// `POST /v1/authz/mqtt` with the authz token as a plain bearer token, and no `Expect`.
    private func isCandidate(_ head: HTTPRequest) -> Bool {
        guard head.method == .post, head.path == "/v1/authz/mqtt", head.headerFields[.expect] == nil,
            let header = head.headerFields[.authorization],
            let presented = AuthzAuthMiddleware.plainBearerToken(header)
        else { return false }
        return shared.token.digest.matches(TokenDigest(secret: presented))
    }

    /// The decision, when it is a publish or subscribe grant the index holds; nil for anything the router decides.
    private func answer(_ body: ByteBuffer) -> AuthzDecision? {
        guard let fields = DecisionJSON.flatObject(body), let request = MQTTDecisionRequest(fields: fields),
            let topic = request.topic, request.certificate == nil
        else { return nil }
        let action: AuthzAction
        switch request.action {
        case "publish": action = .publish(topic: topic)
        case "subscribe": action = .subscribe(topic: topic)
        default: return nil
        }
        let subject: DecisionEngine.Subject
        switch (request.fingerprint, request.device) {
        case (let text?, nil):
            guard let fingerprint = try? AuthzService.fingerprint(text) else { return nil }
            subject = .fingerprint(fingerprint)
        case (nil, let name?):
            guard let id = DeviceID(rawValue: name) else { return nil }
            subject = .device(id)
        default:
            return nil
        }
        var tenant: TenantID?
        if let name = request.tenant {
            guard let id = TenantID(rawValue: name) else { return nil }
            tenant = id
        }
        let query = DecisionEngine.Query(subject: subject, action: action, claimedTenant: tenant, encoding: .mqtt)
        guard case .decided(let decision, confirm: nil) = shared.engine.decide(query, now: shared.clock.now()),
            decision.allowed
        else { return nil }
        shared.engine.counters.record(decision, action: action.name)
        shared.answered.add()
        return decision
    }

    private func write(_ context: ChannelHandlerContext, _ decision: AuthzDecision) {
        let body = DecisionJSON.body(DecisionResponse(decision))
        var head = HTTPResponse(status: .ok)
        head.headerFields[.contentType] = "application/json; charset=utf-8"
        head.headerFields[.contentLength] = String(body.readableBytes)
        head.headerFields[.date] = currentDate()
        head.headerFields[.server] = "DevID"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func currentDate() -> String {
        let now = shared.clock.now()
        let second = Int(now.timeIntervalSince1970.rounded(.down))
        if second != date.second { date = (second, IMFFixdate.string(from: now)) }
        return date.text
    }
}

@available(*, unavailable)
extension AuthzFastPathHandler: Sendable {}

/// How many grants ``AuthzFastPathHandler`` answered.
final class FastPathCount: Sendable {
    private let count = Atomic<Int>(0)

    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// The operations listener's HTTP/1.1 channel with ``AuthzFastPathHandler`` placed right after Hummingbird's
/// connection-state handler: that handler still sees every request and answer (idle timeout, `Connection: close`),
/// and the router sees every request the fast path does not answer.
public struct AuthzFastPathChannel: ServerChildChannel, HTTPChannelHandler {
    public typealias Value = HTTP1Channel.Value

    let base: HTTP1Channel
    let shared: AuthzFastPathHandler.Shared?

    init(_ base: HTTP1Channel, shared: AuthzFastPathHandler.Shared?) {
        self.base = base
        self.shared = shared
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let shared = self.shared
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            try HTTP1ExchangeHandler.install(in: channel)
            guard let shared else { return value }
            let operations = channel.pipeline.syncOperations
            let state = try operations.handler(type: HTTPConnectionStateHandler.self)
            try operations.addHandler(AuthzFastPathHandler(shared), position: .after(state))
            return value
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }

    public var responder: HTTPChannelHandler.Responder { base.responder }
}
