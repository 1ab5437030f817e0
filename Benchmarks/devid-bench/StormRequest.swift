import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTPS request on a brand-new mTLS connection, as a device's agent sends it: connect (from `source` when
/// given), full handshake with the device's certificate, one request with `Connection: close`, the whole response.
struct StormRequest: Sendable {
    struct Reply: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    let host: String
    let port: Int
    let group: any EventLoopGroup
    /// Bounds each step, so a stuck connection cannot hang a simulated device.
    var connectTimeout: TimeAmount = .seconds(30)
    var readTimeout: TimeAmount = .seconds(60)

    func send(
        tlsContext: NIOSSLContext, source: SocketAddress?, method: HTTPMethod, path: String,
        contentType: String? = nil, body: ByteBuffer? = nil
    ) async throws -> Reply {
        let readTimeout = self.readTimeout
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        if let source { bootstrap = bootstrap.bind(to: source) }
        let channel = try await bootstrap.connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                try pipeline.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: nil))
                try pipeline.addHandler(IdleStateHandler(readTimeout: readTimeout))
                try pipeline.addHandler(ReadTimeoutCloser())
                try pipeline.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                    wrappingChannelSynchronously: channel)
            }
        }
        let hostHeader = "\(host):\(port)"
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: hostHeader)
            if let contentType { head.headers.add(name: "Content-Type", value: contentType) }
            if let body { head.headers.add(name: "Content-Length", value: String(body.readableBytes)) }
            head.headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(head))
            if let body { try await outbound.write(.body(.byteBuffer(body))) }
            try await outbound.write(.end(nil))
            var status = 0
            var headers = HTTPHeaders()
            var collected = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let responseHead):
                    status = Int(responseHead.status.code)
                    headers = responseHead.headers
                case .body(var bytes):
                    collected.writeBuffer(&bytes)
                case .end:
                    return Reply(status: status, headers: headers, body: collected)
                }
            }
            throw BenchError("the connection closed before a whole response")
        }
    }
}

/// Closes a connection on which nothing arrived for the read timeout.
final class ReadTimeoutCloser: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension ReadTimeoutCloser: Sendable {}
