import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import SwiftASN1
import Synchronization
import X509

/// One HTTP/1.1 request over its own TLS connection, on SwiftNIO, with the server's certificate checked by a
/// ``ServerTrust`` instead of by BoringSSL.
///
/// async-http-client cannot take a verification callback (NIOSSL's `TLSConfiguration` has none), and BoringSSL's own
/// check uses the machine's real clock; ``ESTClient`` needs the server's certificate validated at the agent's
/// corrected time. A connection per request keeps it simple: the agent sends a handful of requests a day.
///
/// The connection is closed after the response (`Connection: close`). Timeouts: `connectTimeout` covers TCP and
/// the TLS handshake, `requestTimeout` the whole exchange. The body is read up to a limit.
struct HTTPSTransport: Sendable {
    struct Request: Sendable {
        var method: HTTPMethod
        /// The request target: path and query.
        var target: String
        var headers: [(String, String)]
        var body: [UInt8]?
    }

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// What went wrong below HTTP.
    enum Failure: Error, Sendable {
        /// TCP could not connect (refused, unreachable, timed out, name not resolved).
        case connect(any Error)
        case handshakeTimedOut
        case requestTimedOut
        /// The server's certificate was refused by the ``ServerTrust`` check.
        case untrustedServer(reason: String)
        /// TLS failed otherwise (e.g. the server refused the client certificate).
        case tls(any Error)
        /// The connection closed (or failed) before a whole response arrived.
        case closed(any Error)
        case bodyTooLarge(status: Int)
    }

    let host: String
    let port: Int
    let sslContext: NIOSSLContext
    let trust: ServerTrust
    let connectTimeout: TimeAmount
    let requestTimeout: TimeAmount
    let maximumBodyBytes: Int

    /// Sends `request` and returns the response, whatever its status.
    ///
    /// - Throws: ``Failure``, or `CancellationError` when the calling task is cancelled.
    func send(_ request: Request, mode: ServerTrust.Mode) async throws -> Response {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let handshake = eventLoop.makePromise(of: Void.self)
        let response = eventLoop.makePromise(of: Response.self)
        let verdict = VerdictBox()
        let trust = self.trust
        let sni = ServerTrust.isIPAddress(host) ? nil : host
        let hostHeader = (host.contains(":") ? "[\(host)]" : host) + (port == 443 ? "" : ":\(port)")
        let context = sslContext
        let maximumBodyBytes = self.maximumBodyBytes

        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(
                        context: context, serverHostname: sni,
                        customVerificationCallback: { presented, promise in
                            // Off the event loop: never block in a NIOSSL callback.
                            promise.completeWithTask {
                                let outcome: ServerTrust.Outcome
                                do {
                                    let chain = try presented.map { try Certificate(derEncoded: $0.toDERBytes()) }
                                    outcome = await trust.evaluate(chain, mode: mode)
                                } catch {
                                    outcome = .untrusted(reason: "the server's certificate does not parse")
                                }
                                verdict.set(outcome)
                                return outcome == .trusted ? .certificateVerified : .failed
                            }
                        })
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(tls)
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(
                        ExchangeHandler(
                            request: request, hostHeader: hostHeader, maximumBodyBytes: maximumBodyBytes,
                            handshake: handshake, response: response))
                }
            }

        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            handshake.fail(error)
            response.fail(error)
            if Task.isCancelled { throw CancellationError() }
            throw Failure.connect(error)
        }
        let handshakeDeadline = eventLoop.scheduleTask(in: connectTimeout) {
            handshake.fail(Failure.handshakeTimedOut)
            channel.close(promise: nil)
        }
        let requestDeadline = eventLoop.scheduleTask(in: requestTimeout) {
            handshake.fail(Failure.requestTimedOut)
            response.fail(Failure.requestTimedOut)
            channel.close(promise: nil)
        }
        defer {
            handshakeDeadline.cancel()
            requestDeadline.cancel()
        }
        return try await withTaskCancellationHandler {
            do {
                try await handshake.futureResult.get()
                handshakeDeadline.cancel()
                return try await response.futureResult.get()
            } catch {
                channel.close(promise: nil)
                if Task.isCancelled { throw CancellationError() }
                if case .untrusted(let reason) = verdict.get() { throw Failure.untrustedServer(reason: reason) }
                if let failure = error as? Failure { throw failure }
                if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
                    throw Failure.tls(error)
                }
                throw Failure.closed(error)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// The verdict of the certificate check, read when the handshake fails to say why.
private final class VerdictBox: Sendable {
    private let value = Mutex<ServerTrust.Outcome?>(nil)

    func set(_ outcome: ServerTrust.Outcome) { value.withLock { $0 = outcome } }
    func get() -> ServerTrust.Outcome? { value.withLock { $0 } }
}

/// Writes the request when the channel becomes active (NIOSSL holds it until the handshake is done) and collects
/// the response. Lives on the channel's event loop only.
private final class ExchangeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    /// The connection ended before a whole response.
    struct ClosedEarly: Error, CustomStringConvertible {
        var description: String { "the connection closed before a whole response arrived" }
    }

    private let request: HTTPSTransport.Request
    private let hostHeader: String
    private let maximumBodyBytes: Int
    private let handshake: EventLoopPromise<Void>
    private let response: EventLoopPromise<HTTPSTransport.Response>
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(
        request: HTTPSTransport.Request, hostHeader: String, maximumBodyBytes: Int,
        handshake: EventLoopPromise<Void>, response: EventLoopPromise<HTTPSTransport.Response>
    ) {
        self.request = request
        self.hostHeader = hostHeader
        self.maximumBodyBytes = maximumBodyBytes
        self.handshake = handshake
        self.response = response
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: hostHeader)
        headers.add(name: "User-Agent", value: "devid-agent")
        headers.add(name: "Connection", value: "close")
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        if let body = request.body {
            headers.add(name: "Content-Length", value: String(body.count))
        } else if request.method == .POST || request.method == .PUT {
            headers.add(name: "Content-Length", value: "0")
        }
        let head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.target, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body = request.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshake.succeed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= maximumBodyBytes else {
                let status = Int(head?.status.code ?? 0)
                response.fail(HTTPSTransport.Failure.bodyTooLarge(status: status))
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let head else {
                response.fail(ClosedEarly())
                context.close(promise: nil)
                return
            }
            response.succeed(
                HTTPSTransport.Response(
                    status: Int(head.status.code), headers: head.headers, body: Array(buffer: body)))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        handshake.fail(error)
        response.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshake.fail(ClosedEarly())
        response.fail(ClosedEarly())
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension ExchangeHandler: Sendable {}
