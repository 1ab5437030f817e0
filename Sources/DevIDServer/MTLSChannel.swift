public import HummingbirdCore
public import Logging
public import NIOCore
public import NIOSSL

/// A TLS child channel whose client-certificate check is DevID's own, returning the validated chain.
///
/// Hummingbird's `TLSChannel` takes NIOSSL's plain custom verification callback, which cannot hand the validated
/// chain to the handler. This is the same shape with `customVerificationCallbackWithMetadata`, so request
/// handlers read the chain that was actually verified (`NIOSSLHandler.peerValidatedCertificateChain`) rather
/// than re-parsing what the peer sent.
public struct MTLSChannel<BaseChannel: ServerChildChannel>: ServerChildChannel {
    public typealias Value = BaseChannel.Value
    public typealias Verify = MTLSVerify

    let sslContext: NIOSSLContext
    let verify: Verify
    let handshakeTimeout: TimeAmount
    var baseChannel: BaseChannel

    /// - Parameters:
    ///   - handshakeTimeout: time from accept to a completed TLS handshake; the connection is closed after.
    ///   - leafCache: when given, a client certificate `verify` accepted before is accepted again without running it
    ///     (in the handshake and on a resumed session), while its chain is inside its validity (``VerifiedLeafCache``).
    public init(
        _ baseChannel: BaseChannel, tlsConfiguration: TLSConfiguration, handshakeTimeout: TimeAmount = .seconds(10),
        leafCache: VerifiedLeafCache? = nil, verify: @escaping Verify
    ) throws {
        self.sslContext = try NIOSSLContext(configuration: tlsConfiguration)
        self.verify = leafCache.map { $0.caching(verify) } ?? verify
        self.handshakeTimeout = handshakeTimeout
        self.baseChannel = baseChannel
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let verify = self.verify
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                NIOSSLServerHandler(
                    context: self.sslContext,
                    configuration: .init(),
                    customVerificationCallbackWithMetadata: { certificates, promise in
                        let address = channel.remoteAddress?.ipAddress
                        promise.completeWithTask {
                            await TLSPeerAddress.$current.withValue(address) { await verify(certificates) }
                        }
                    }
                )
            )
            try channel.pipeline.syncOperations.addHandler(HandshakeTimeoutHandler(timeout: self.handshakeTimeout))
            // A resumed session skips the callback above; this keeps the check for `devidVerifiedPeerChain()`.
            try channel.pipeline.syncOperations.addHandler(ResumedSessionVerifier(verify: verify))
        }.flatMap {
            self.baseChannel.setup(channel: channel, logger: logger)
        }.flatMapThrowing { value in
            try HTTP1ExchangeHandler.install(in: channel)
            return value
        }
    }

    public func handle(value: BaseChannel.Value, logger: Logger) async {
        await self.baseChannel.handle(value: value, logger: logger)
    }
}

extension MTLSChannel: HTTPChannelHandler where BaseChannel: HTTPChannelHandler {
    public var responder: HTTPChannelHandler.Responder {
        self.baseChannel.responder
    }
}
