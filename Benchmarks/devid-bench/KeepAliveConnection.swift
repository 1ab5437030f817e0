import NIOCore
import NIOHTTP1
import NIOPosix

/// One plain HTTP/1.1 connection that sends requests one after another and keeps the connection open between
/// them (keep-alive), for the operations listener (`/ocsp`). Not shared between tasks: one per worker.
struct KeepAliveConnection {
    struct Reply: Sendable {
        var status: Int
        var contentType: String?
        var body: ByteBuffer
        var latency: Duration
    }

    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let hostHeader: String
    /// Requests answered on this connection.
    private(set) var requests = 0

    /// Opens a connection, runs `body` with it, and closes it.
    static func with<T>(
        host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (inout KeepAliveConnection) async throws -> T
    ) async throws -> T {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var connection = KeepAliveConnection(
                inbound: inbound.makeAsyncIterator(), outbound: outbound, hostHeader: "\(host):\(port)")
            return try await body(&connection)
        }
    }

    /// Sends one request and reads the whole response. Throws if the server closes the connection.
    mutating func send(
        method: HTTPMethod, path: String, headers: [(String, String)] = [], contentType: String? = nil,
        body: ByteBuffer? = nil
    ) async throws -> Reply {
        let clock = ContinuousClock()
        let start = clock.now
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: hostHeader)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let contentType { head.headers.add(name: "Content-Type", value: contentType) }
        if let body { head.headers.add(name: "Content-Length", value: String(body.readableBytes)) }
        try await outbound.write(.head(head))
        if let body { try await outbound.write(.body(.byteBuffer(body))) }
        try await outbound.write(.end(nil))

        var status = 0
        var type: String?
        var collected = ByteBuffer()
        while let part = try await inbound.next(isolation: #isolation) {
            switch part {
            case .head(let responseHead):
                status = Int(responseHead.status.code)
                type = responseHead.headers.first(name: "Content-Type")
            case .body(var bytes):
                collected.writeBuffer(&bytes)
            case .end:
                requests += 1
                return Reply(status: status, contentType: type, body: collected, latency: clock.now - start)
            }
        }
        throw BenchError("the server closed the connection after \(requests) requests")
    }
}
