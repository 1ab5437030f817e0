import Crypto
import DevIDCore

/// The SHA-256 of a bearer token (authz or admin), held as four words: comparing two is four XORs, in constant time,
/// with no allocation. The registry and the token files keep the same digest as lowercase hex
/// (``AdminTokens/hash(_:)``); ``init(hex:)`` reads that form.
///
/// A profile of `POST /v1/authz/mqtt` spent 12% of the server's CPU in the generic `constantTimeEquals` over the two
/// hex strings (64 bytes through `zip`, unspecialized across the module boundary); this is the same comparison
/// without that cost.
struct TokenDigest: Sendable, Hashable {
    let a: UInt64
    let b: UInt64
    let c: UInt64
    let d: UInt64

    /// The digest of a token as presented.
    init(secret: String) {
        var secret = secret
        let digest = secret.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        (a, b, c, d) = digest.withUnsafeBytes { bytes in
            (
                bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
            )
        }
    }

    /// A stored digest: 64 hex digits (either case). Nil for anything else.
    init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        (a, b, c, d) = bytes.withUnsafeBytes { bytes in
            (
                bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
            )
        }
    }

    /// Equality whose time does not depend on where the digests differ.
    func matches(_ other: TokenDigest) -> Bool {
        ((a ^ other.a) | (b ^ other.b) | (c ^ other.c) | (d ^ other.d)) == 0
    }
}
