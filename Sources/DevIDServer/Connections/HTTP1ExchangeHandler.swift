public import Hummingbird
public import NIOCore
import NIOHTTP1

/// What NIO's HTTP/1 decoder knows of a request and the HTTP-types head that Hummingbird's request loop and
/// ``AuthzFastPathHandler`` read does not carry (it has no version): whether the connection persists after the
/// answer, and whether the client waits for `100 Continue` before it sends its body. Placed right after the decoder.
///
/// - **`Connection: close`.** A request that does not keep its connection, HTTP/1.0 without `keep-alive` or a
///   `Connection` header that holds `close` in any letter case (`isKeepAlive`), gets `Connection: close` written
///   into it, so both paths (which close only on that exact value) close after the answer, and into that answer
///   (RFC 9112, section 9.6). An HTTP/1.0 client that reads its answer to the end of the connection (as
///   `openssl s_time -www` and small device stacks do) waited for the idle timeout. An HTTP/1.0 request that asks
///   to keep the connection gets `Connection: keep-alive` in its answer, without which such a client waits too.
/// - **`Expect: 100-continue`.** ``ContinueOnReadMiddleware`` asks for `100 Continue` (``SendContinue``) when a
///   handler first reads the body of an HTTP/1.1 request that waits for it, as Go's net/http and nginx send it: a
///   request refused before its body is read (`401`, `413` by its length, `429`) is answered without it, and the
///   client never uploads the body. Before, nothing sent it, and curl waited a second before every such body.
final class HTTP1ExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// The user outbound event that asks for `100 Continue` for the request being answered.
    public struct SendContinue: Sendable {
        public init() {}
    }

    struct Exchange {
        /// The connection closes after this answer.
        var closes: Bool
        /// HTTP/1.0 that keeps the connection: its answer says so.
        var keepsHTTP10: Bool
        /// HTTP/1.1 with `Expect: 100-continue`, and no `100 Continue` or final answer sent yet.
        var waitsForContinue: Bool
    }

    /// The requests whose answers have not ended, oldest first: the first is the one being answered.
    private var exchanges = CircularBuffer<Exchange>(initialCapacity: 2)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        let closes = !head.isKeepAlive
        exchanges.append(
            Exchange(
                closes: closes, keepsHTTP10: !closes && head.version == .http1_0,
                waitsForContinue: head.version == .http1_1 && head.headers.contains(name: "expect")
                    && head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }))
        guard closes else { return context.fireChannelRead(data) }
        head.headers.replaceOrAdd(name: "Connection", value: "close")
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200 && !exchanges.isEmpty:
            exchanges[exchanges.startIndex].waitsForContinue = false
            let exchange = exchanges[exchanges.startIndex]
            guard exchange.closes || exchange.keepsHTTP10 else { return context.write(data, promise: promise) }
            head.headers.replaceOrAdd(name: "Connection", value: exchange.closes ? "close" : "keep-alive")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            if !exchanges.isEmpty { exchanges.removeFirst() }
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is SendContinue else { return context.triggerUserOutboundEvent(event, promise: promise) }
        if exchanges.first?.waitsForContinue == true {
            exchanges[exchanges.startIndex].waitsForContinue = false
            context.writeAndFlush(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: promise)
        } else {
            promise?.succeed()
        }
    }

    /// Places the handler right after the channel's HTTP/1 request decoder (which the HTTP/1 channel's setup added).
    static func install(in channel: any Channel) throws {
        let operations = channel.pipeline.syncOperations
        let decoder = try operations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        try operations.addHandler(HTTP1ExchangeHandler(), position: .after(decoder))
    }
}

/// A request context that knows its connection (to ask ``HTTP1ExchangeHandler`` for `100 Continue`).
public protocol ChannelRequestContext: RequestContext {
    var channel: any Channel { get }
}

/// For a request with `Expect: 100-continue`, wraps its body so that the first read asks the connection's
/// ``HTTP1ExchangeHandler`` for `100 Continue`. Other requests pass untouched.
struct ContinueOnReadMiddleware<Context: ChannelRequestContext>: RouterMiddleware {
    func handle(
        _ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let expect = request.headers[.expect], expect.lowercased().contains("100-continue") else {
            return try await next(request, context)
        }
        var request = request
        request.body = RequestBody(asyncSequence: ContinueOnRead(base: request.body, channel: context.channel))
        return try await next(request, context)
    }

    /// The body, asking for `100 Continue` before its first read.
    struct ContinueOnRead: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let base: RequestBody
        let channel: any Channel

        struct AsyncIterator: AsyncIteratorProtocol {
            var base: RequestBody.AsyncIterator
            let channel: any Channel
            var asked = false

            mutating func next(isolation actor: isolated (any Actor)? = #isolation) async throws -> ByteBuffer? {
                if !asked {
                    asked = true
                    channel.triggerUserOutboundEvent(HTTP1ExchangeHandler.SendContinue(), promise: nil)
                }
                return try await base.next(isolation: actor)
            }

            mutating func next() async throws -> ByteBuffer? { try await next(isolation: nil) }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), channel: channel) }
    }
}
