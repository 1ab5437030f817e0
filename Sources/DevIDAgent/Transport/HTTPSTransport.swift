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
/// corrected time. A connection per request keeps it simple (the agent sends a handful of requests a day), except the
/// pair an enrollment sends, which costs the server one handshake instead of two.
///
/// The connection is closed after the response (`Connection: close`), unless the caller keeps it open for one more
/// request (``send(_:mode:keepOpen:)``, then ``send(_:on:keepOpen:)``: HTTP/1.1 keep-alive, one request after the
/// other): an enrollment sends `GET /cacerts` and `POST /simpleenroll` over one handshake. Timeouts:
/// `connectTimeout` covers TCP and the TLS handshake, `requestTimeout` each exchange. The body is read up to a limit.
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

    /// A connection left open after a response for the next request. Whoever holds it closes it.
    struct Connection: Sendable {
        let channel: any Channel

        func close() {
            channel.close(promise: nil)
        }
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
        /// A kept connection had closed (the server's idle timeout) before this request was written: nothing was
        /// sent, so it can go on a new connection.
        case closedBeforeRequest
        case bodyTooLarge(status: Int)
    }

    let host: String
    let port: Int
    let sslContext: NIOSSLContext
    let trust: ServerTrust
    let connectTimeout: TimeAmount
    let requestTimeout: TimeAmount
    let maximumBodyBytes: Int

    /// Sends `request` on a new connection and returns the response, whatever its status.
    ///
    /// - Throws: ``Failure``, or `CancellationError` when the calling task is cancelled.
    func send(_ request: Request, mode: ServerTrust.Mode) async throws -> Response {
        try await send(request, mode: mode, keepOpen: false).response
    }

    /// Sends `request` on a new connection; with `keepOpen`, the connection is returned open for the next request
    /// unless the server closes it (`Connection: close`, or not HTTP/1.1).
    func send(
        _ request: Request, mode: ServerTrust.Mode, keepOpen: Bool
    ) async throws -> (response: Response, connection: Connection?) {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let handshake = eventLoop.makePromise(of: Void.self)
        let response = eventLoop.makePromise(of: ExchangeHandler.Answer.self)
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
                            keepOpen: keepOpen, handshake: handshake, response: response))
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
                let answer = try await response.futureResult.get()
                return (answer.response, answer.keptOpen ? Connection(channel: channel) : nil)
            } catch {
                channel.close(promise: nil)
                if Task.isCancelled { throw CancellationError() }
                if case .untrusted(let reason) = verdict.get() { throw Failure.untrustedServer(reason: reason) }
                throw Self.failure(error)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// Sends `request` on a connection an earlier request kept open (its server was checked in that handshake).
    ///
    /// - Throws: ``Failure/closedBeforeRequest`` when the connection had closed before anything was written (send it
    ///   on a new connection), another ``Failure``, or `CancellationError`. The connection is closed on any failure.
    func send(
        _ request: Request, on connection: Connection, keepOpen: Bool
    ) async throws -> (response: Response, connection: Connection?) {
        let channel = connection.channel
        let eventLoop = channel.eventLoop
        let response = eventLoop.makePromise(of: ExchangeHandler.Answer.self)
        let hostHeader = (host.contains(":") ? "[\(host)]" : host) + (port == 443 ? "" : ":\(port)")
        let maximumBodyBytes = self.maximumBodyBytes
        let requestDeadline = eventLoop.scheduleTask(in: requestTimeout) {
            response.fail(Failure.requestTimedOut)
            channel.close(promise: nil)
        }
        defer { requestDeadline.cancel() }
        return try await withTaskCancellationHandler {
            do {
                try await eventLoop.submit {
                    guard channel.isActive else { throw Failure.closedBeforeRequest }
                    try channel.pipeline.syncOperations.addHandler(
                        ExchangeHandler(
                            request: request, hostHeader: hostHeader, maximumBodyBytes: maximumBodyBytes,
                            keepOpen: keepOpen, handshake: nil, response: response))
                }.get()
                let answer = try await response.futureResult.get()
                return (answer.response, answer.keptOpen ? connection : nil)
            } catch {
                channel.close(promise: nil)
                response.fail(error)
                if Task.isCancelled { throw CancellationError() }
                throw Self.failure(error)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// What went wrong below HTTP, from an error of the channel.
    private static func failure(_ error: any Error) -> Failure {
        if let failure = error as? Failure { return failure }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return .tls(error)
        }
        return .closed(error)
    }
}

/// The verdict of the certificate check, read when the handshake fails to say why.
private final class VerdictBox: Sendable {
    private let value = Mutex<ServerTrust.Outcome?>(nil)

    func set(_ outcome: ServerTrust.Outcome) { value.withLock { $0 = outcome } }
    func get() -> ServerTrust.Outcome? { value.withLock { $0 } }
}

/// Writes the request when the channel becomes active (NIOSSL holds it until the handshake is done), or at once when
/// added to a kept connection, and collects the response. Then it closes the connection, or, kept open, leaves the
/// pipeline for the next exchange's handler. Lives on the channel's event loop only.
private final class ExchangeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Answer: Sendable {
        var response: HTTPSTransport.Response
        /// The connection stays open for another request.
        var keptOpen: Bool
    }

    /// The connection ended before a whole response.
    struct ClosedEarly: Error, CustomStringConvertible {
        var description: String { "the connection closed before a whole response arrived" }
    }

    private let request: HTTPSTransport.Request
    private let hostHeader: String
    private let maximumBodyBytes: Int
    private let keepOpen: Bool
    /// Nil on a kept connection, whose handshake is long done.
    private let handshake: EventLoopPromise<Void>?
    private let response: EventLoopPromise<Answer>
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var written = false

    init(
        request: HTTPSTransport.Request, hostHeader: String, maximumBodyBytes: Int, keepOpen: Bool,
        handshake: EventLoopPromise<Void>?, response: EventLoopPromise<Answer>
    ) {
        self.request = request
        self.hostHeader = hostHeader
        self.maximumBodyBytes = maximumBodyBytes
        self.keepOpen = keepOpen
        self.handshake = handshake
        self.response = response
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // On a kept connection the channel is active already: no channelActive comes.
        if handshake == nil, context.channel.isActive { write(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        write(context: context)
        context.fireChannelActive()
    }

    private func write(context: ChannelHandlerContext) {
        guard !written else { return }
        written = true
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: hostHeader)
        headers.add(name: "User-Agent", value: "devid-agent")
        if !keepOpen { headers.add(name: "Connection", value: "close") }
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
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshake?.succeed()
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
            let answer = HTTPSTransport.Response(
                status: Int(head.status.code), headers: head.headers, body: Array(buffer: body))
            let serverCloses =
                head.version != .http1_1
                || head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            if keepOpen, !serverCloses {
                // Out of the way of the next exchange's handler; the connection stays open.
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                response.succeed(Answer(response: answer, keptOpen: true))
            } else {
                response.succeed(Answer(response: answer, keptOpen: false))
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        handshake?.fail(error)
        response.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshake?.fail(ClosedEarly())
        response.fail(ClosedEarly())
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension ExchangeHandler: Sendable {}
