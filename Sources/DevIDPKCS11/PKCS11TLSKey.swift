public import NIOCore
public import NIOSSL
import Crypto

/// A key in a token as NIOSSL's custom private key: the TLS handshake's signature (CertificateVerify, or the server's
/// ServerKeyExchange) is made by the token, so mTLS works with a key that never leaves it. NIOSSL hands over the
/// unhashed data; it is hashed here for the chosen algorithm and signed with CKM_ECDSA.
public struct PKCS11TLSKey: NIOSSLCustomPrivateKey, Hashable {
    public let key: PKCS11PrivateKey

    public init(_ key: PKCS11PrivateKey) { self.key = key }

    public var signatureAlgorithms: [SignatureAlgorithm] {
        key.curve == .p256 ? [.ecdsaSecp256R1Sha256] : [.ecdsaSecp384R1Sha384]
    }

    public func sign(channel: any Channel, algorithm: SignatureAlgorithm, data: ByteBuffer) -> EventLoopFuture<ByteBuffer> {
        let bytes = Array(data.readableBytesView)
        let digest: [UInt8]
        switch algorithm {
        case .ecdsaSecp256R1Sha256: digest = Array(SHA256.hash(data: bytes))
        case .ecdsaSecp384R1Sha384: digest = Array(SHA384.hash(data: bytes))
        default:
            return channel.eventLoop.makeFailedFuture(
                PKCS11Error(.mechanismUnsupported, "key \(key.label) cannot sign with TLS algorithm \(algorithm)"))
        }
        do {
            let signature = try key.signDigest(digest)
            return channel.eventLoop.makeSucceededFuture(ByteBuffer(bytes: signature))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    public func decrypt(channel: any Channel, data: ByteBuffer) -> EventLoopFuture<ByteBuffer> {
        channel.eventLoop.makeFailedFuture(PKCS11Error(.mechanismUnsupported, "EC keys do not decrypt"))
    }

    /// The key as NIOSSL takes it.
    public var sslKey: NIOSSLPrivateKey { NIOSSLPrivateKey(customPrivateKey: self) }
}
