import NIOCore
import NIOHTTP1

/// What NIO's HTTP/1 decoder knows of a request and the HTTP-types head that Hummingbird's request loop and
/// ``AuthzFastPathHandler`` read does not carry (it has no version): whether the connection persists after the
/// answer, and whether the client waits for `100 Continue` before it sends its body. Placed right after the decoder.
///
/// - **`Connection: close`.** A request that does not keep its connection, HTTP/1.0 without `keep-alive` or a
///   `Connection` header that holds `close` in any letter case (`isKeepAlive`), gets `Connection: close` written
///   into it, so both paths (which close only on that exact value) close after the answer, and into that answer
///   (RFC 9112, section 9.6). An HTTP/1.0 client that reads its answer to the end of the connection (as
///   `openssl s_time -www` and small device stacks do) waited for the idle timeout.
/// - **`Expect: 100-continue`.** An HTTP/1.1 request that asks for it gets `100 Continue` when it is the oldest
///   unanswered request on the connection (a pipelined one waits for the answers before it). Nothing else sent it,
///   so curl waited a second before every such body (RFC 9110, section 10.1.1).
final class HTTP1ExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    struct Exchange {
        var closes: Bool
        var waitsForContinue: Bool
    }

    /// The requests whose answers have not ended, oldest first.
    private var exchanges = CircularBuffer<Exchange>(initialCapacity: 2)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        let expectation = head.headers[canonicalForm: "expect"]
        let exchange = Exchange(
            closes: !head.isKeepAlive,
            waitsForContinue: head.version == .http1_1 && expectation.contains { $0.lowercased() == "100-continue" })
        exchanges.append(exchange)
        if exchanges.count == 1, exchange.waitsForContinue { sendContinue(context) }
        guard exchange.closes else { return context.fireChannelRead(data) }
        head.headers.replaceOrAdd(name: "Connection", value: "close")
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200 && exchanges.first?.closes == true:
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            context.write(data, promise: promise)
            guard !exchanges.isEmpty else { return }
            exchanges.removeFirst()
            if exchanges.first?.waitsForContinue == true { sendContinue(context) }
        default:
            context.write(data, promise: promise)
        }
    }

    private func sendContinue(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
    }

    /// Places the handler right after the channel's HTTP/1 request decoder (which the HTTP/1 channel's setup added).
    static func install(in channel: any Channel) throws {
        let operations = channel.pipeline.syncOperations
        let decoder = try operations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        try operations.addHandler(HTTP1ExchangeHandler(), position: .after(decoder))
    }
}
