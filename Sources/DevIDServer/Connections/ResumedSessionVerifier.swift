public import NIOCore
public import NIOSSL

/// Holds the mTLS listener's client-certificate check for one connection, so a request on a *resumed* TLS session
/// can recover the device identity.
///
/// On resumption (TLS 1.2 session id or ticket, TLS 1.3 PSK) the server does not run the verification callback, so
/// NIOSSL has no validated chain for the connection; the session still carries the client's leaf certificate
/// (`NIOSSLHandler.peerCertificate`). `DeviceRequestContext.verifiedPeerChain()` runs this check on that leaf again,
/// at the current time, and handlers then check the registry exactly as after a full handshake.
final class ResumedSessionVerifier: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    let verify: MTLSVerify

    init(verify: @escaping MTLSVerify) {
        self.verify = verify
    }
}

/// Verifies the certificates the peer presented (leaf first). Runs off the event loop; must not block it.
public typealias MTLSVerify = @Sendable ([NIOSSLCertificate]) async -> NIOSSLVerificationResultWithMetadata

@available(*, unavailable)
extension ResumedSessionVerifier: Sendable {}

extension Channel {
    /// The certificate chain DevID's verifier accepts for this connection's peer (leaf first), or nil: the chain
    /// verified in the handshake, or, on a resumed session, the session's leaf verified again now.
    func devidVerifiedPeerChain() async -> [NIOSSLCertificate]? {
        if let chain = try? await nioSSL_peerValidatedCertificateChain().get() {
            return Array(chain)
        }
        let channel = self
        let resumed: (leaf: NIOSSLCertificate, verify: MTLSVerify)? = try? await eventLoop.submit {
            let pipeline = channel.pipeline.syncOperations
            guard let leaf = try pipeline.handler(type: NIOSSLHandler.self).peerCertificate else { return nil }
            return (leaf, try pipeline.handler(type: ResumedSessionVerifier.self).verify)
        }.get()
        guard let resumed else { return nil }
        guard case .certificateVerified(let metadata) = await resumed.verify([resumed.leaf]),
            let chain = metadata.validatedCertificateChain
        else { return nil }
        return Array(chain)
    }
}
