public import DevIDCore
public import Foundation
public import Hummingbird
public import NIOCore
import NIOSSL
import SwiftASN1
public import X509

/// Request context on the EST / mTLS listener: carries the connection so handlers can read the verified peer.
public struct DeviceRequestContext: ChannelRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    public var responseEncoder: JSONEncoder { DevIDJSON.encoder }
    public var requestDecoder: JSONDecoder { DevIDJSON.decoder }

    /// The client-certificate chain that DevID's verifier accepted (leaf first, anchor last), or nil when the client
    /// presented none or it no longer verifies: the chain verified during the handshake, or, on a resumed TLS
    /// session (where no handshake verification runs), the session's client certificate verified again now.
    public func verifiedPeerChain() async -> [X509.Certificate]? {
        guard let chain = await channel.devidVerifiedPeerChain() else { return nil }
        // The leaf as the verifier parsed it in this connection's handshake (else parsed now); its issuers come
        // parsed from the cache.
        var certificates: [X509.Certificate] = []
        certificates.reserveCapacity(chain.count)
        for (index, certificate) in chain.enumerated() {
            guard let der = try? certificate.toDERBytes() else { continue }
            let parsed =
                index == 0
                ? VerifiedLeafHandoff.shared.take(der: der) ?? (try? X509.Certificate(derEncoded: der))
                : IssuerCertificateCache.shared.certificate(der: der)
            if let parsed { certificates.append(parsed) }
        }
        return certificates.isEmpty ? nil : certificates
    }
}

/// Request context on the operations listener; the admin middleware records which token authenticated.
public struct OpsRequestContext: ChannelRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    /// Set by `AdminAuthMiddleware` (and by `AuthzAuthMiddleware` for an admin token): the admin token that
    /// authenticated this request, with its role and tenant limit (see `require(tenant:)`).
    public var adminToken: AdminToken?
    /// The id of the admin token that authenticated this request.
    public var adminTokenID: String? { adminToken?.id }
    /// The peer's IP address (no port), for aggregated audit of anonymous failures and per-source limits.
    public let remoteAddress: String?
    /// The most a route's `request.decode` reads (Hummingbird's default, 2 MiB); the device import raises it for its
    /// own request, after authentication.
    public var maxUploadSize = 2 * 1024 * 1024

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
        self.remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    public var responseEncoder: JSONEncoder { DevIDJSON.encoder }
    public var requestDecoder: JSONDecoder { DevIDJSON.decoder }
    public var actor: String { adminTokenID.map { "admin:\($0)" } ?? "anonymous" }
}

/// The one JSON style of every DevID API: ISO 8601 dates, sorted keys, `/` as itself (a topic, a path or a PEM
/// line reads as written; `\/` is only an optional escape in JSON).
public enum DevIDJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
