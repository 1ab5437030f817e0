import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// What the client saw on its connections, to prove that no enrollment reused a connection or a TLS session.
///
/// Every enrollment opens its own TCP connection with its own `NIOSSLContext` (one per device, holding that
/// device's IDevID), so a TLS session could not be resumed even if NIOSSL cached client sessions; the counters
/// show that each of those connections completed a handshake and that the server closed it after the response.
final class ConnectionCounters: Sendable {
    let opened = Atomic<Int>(0)
    let handshakes = Atomic<Int>(0)
    let closedByServer = Atomic<Int>(0)
    let tls13 = Atomic<Int>(0)
    let tls12 = Atomic<Int>(0)
    /// Connections the client closed because nothing arrived for the read timeout; must stay 0.
    let idleTimeouts = Atomic<Int>(0)
}

/// Counts completed handshakes and closes a connection that has been silent for too long.
final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let counters: ConnectionCounters

    init(counters: ConnectionCounters) {
        self.counters = counters
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            counters.handshakes.add(1, ordering: .relaxed)
            // Read now: once the server closes the connection, the TLS handler has left the pipeline.
            switch try? context.pipeline.syncOperations.nioSSL_tlsVersion() {
            case .tlsv13: counters.tls13.add(1, ordering: .relaxed)
            case .tlsv12: counters.tls12.add(1, ordering: .relaxed)
            default: break
            }
        }
        if event is IdleStateHandler.IdleStateEvent {
            counters.idleTimeouts.add(1, ordering: .relaxed)
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension HandshakeObserver: Sendable {}

/// One EST `simpleenroll` on a brand-new TLS connection: connect, full handshake with the device's IDevID,
/// POST the CSR with `Connection: close`, read the whole response, then wait for the server to close.
struct OneShotEnrollment: Sendable {
    struct Outcome: Sendable {
        var status: Int
        var body: ByteBuffer
        /// From starting the TCP connect to the last byte of the response.
        var latency: Duration
    }

    let host: String
    let port: Int
    let group: any EventLoopGroup
    let counters: ConnectionCounters
    /// Bounds each step, so a stuck connection cannot hang the benchmark.
    var connectTimeout: TimeAmount = .seconds(10)
    var readTimeout: TimeAmount = .seconds(30)

    /// `body` is sent as a base64 PKCS#10 (`application/pkcs10`); a request without a body (`GET`) sends none.
    func run(
        tlsContext: NIOSSLContext, method: HTTPMethod = .POST, path: String, body: ByteBuffer?
    ) async throws -> Outcome {
        let clock = ContinuousClock()
        let start = clock.now
        let counters = self.counters
        let readTimeout = self.readTimeout
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    // No server name: NIOSSL then checks the server certificate against the IP address.
                    try pipeline.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: nil))
                    try pipeline.addHandler(IdleStateHandler(readTimeout: readTimeout))
                    try pipeline.addHandler(HandshakeObserver(counters: counters))
                    try pipeline.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        counters.opened.add(1, ordering: .relaxed)
        let hostHeader = "\(host):\(port)"
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: hostHeader)
            if let body {
                head.headers.add(name: "Content-Type", value: "application/pkcs10")
                head.headers.add(name: "Content-Transfer-Encoding", value: "base64")
                head.headers.add(name: "Content-Length", value: String(body.readableBytes))
            }
            head.headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(head))
            if let body { try await outbound.write(.body(.byteBuffer(body))) }
            try await outbound.write(.end(nil))

            var status = 0
            var collected = ByteBuffer()
            var iterator = inbound.makeAsyncIterator()
            responseLoop: while let part = try await iterator.next() {
                switch part {
                case .head(let responseHead):
                    status = Int(responseHead.status.code)
                case .body(var bytes):
                    collected.writeBuffer(&bytes)
                case .end:
                    break responseLoop
                }
            }
            guard status != 0 else { throw BenchError("the connection closed before a response") }
            let latency = clock.now - start
            // `Connection: close` was sent: the server must end the connection now. An unclean TLS shutdown
            // counts too; what matters is that the connection is not kept for another request.
            do {
                while try await iterator.next() != nil {}
            } catch {}
            counters.closedByServer.add(1, ordering: .relaxed)
            return Outcome(status: status, body: collected, latency: latency)
        }
    }
}
