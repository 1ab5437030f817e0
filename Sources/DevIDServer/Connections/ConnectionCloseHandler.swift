import NIOCore
import NIOHTTP1

/// Closes the connection after the answer to a request that does not keep it: HTTP/1.0 without `keep-alive`, or
/// HTTP/1.1 whose `Connection` header holds `close` in any letter case.
///
/// NIO's HTTP/1 decoder knows which requests those are (`isKeepAlive`), but the HTTP-types head that Hummingbird's
/// request loop and ``AuthzFastPathHandler`` read has no version, and both close only on the exact value `close`.
/// An HTTP/1.0 client that reads its answer to the end of the connection (as `openssl s_time -www` and small device
/// stacks do) waited for the idle timeout. Placed right after the decoder, this handler writes `Connection: close`
/// into such a request, so both close after the answer, and into that answer (RFC 9112, section 9.6).
final class ConnectionCloseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// For each request whose answer has not started yet, in order: whether it closes the connection.
    private var closes = CircularBuffer<Bool>(initialCapacity: 2)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        let close = !head.isKeepAlive
        closes.append(close)
        if close {
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            return context.fireChannelRead(wrapInboundOut(.head(head)))
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // An informational answer (100 Continue) is not the answer.
        guard case .head(var head) = unwrapOutboundIn(data), head.status.code >= 200, let close = closes.popFirst()
        else { return context.write(data, promise: promise) }
        if close {
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            return context.write(wrapOutboundOut(.head(head)), promise: promise)
        }
        context.write(data, promise: promise)
    }

    /// Places the handler right after the channel's HTTP/1 request decoder (which the HTTP/1 channel's setup added).
    static func install(in channel: any Channel) throws {
        let operations = channel.pipeline.syncOperations
        let decoder = try operations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        try operations.addHandler(ConnectionCloseHandler(), position: .after(decoder))
    }
}
