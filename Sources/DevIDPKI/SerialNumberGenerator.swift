public import X509
import Synchronization

/// Certificate serial numbers: 16 random bytes, positive, so their DER INTEGER is exactly 16 bytes.
///
/// RFC 5280 §4.1.2.2 asks for positive serials of at most 20 octets; CA/B practice asks for at least 64 bits of
/// randomness. The first byte is kept in 0x01...0x7f: non-zero (no leading-zero stripping) and top bit clear
/// (no sign octet), leaving 127 bits of entropy. Uniqueness is also enforced by the registry's constraint.
public enum SerialNumberGenerator {
    /// Serials a test wants for the next certificates of one public key (by ``KeyMaterial/fingerprint(_:)``): how a
    /// test makes two certificates collide, which 127 random bits never do. Empty in production.
    private static let forced = Mutex<[String: [Certificate.SerialNumber]]>([:])

    /// The next certificates issued for the key with this fingerprint get `serials`, in order.
    public static func forceForTesting(_ serials: [Certificate.SerialNumber], keyFingerprint: String) {
        forced.withLock { $0[keyFingerprint, default: []] += serials }
    }

    /// A forced serial for `publicKey` if a test set one, else a random one.
    public static func next(for publicKey: Certificate.PublicKey) -> Certificate.SerialNumber {
        let fingerprint = KeyMaterial.fingerprint(publicKey)
        let serial = forced.withLock { forced -> Certificate.SerialNumber? in
            guard var queue = forced[fingerprint], !queue.isEmpty else { return nil }
            let first = queue.removeFirst()
            forced[fingerprint] = queue.isEmpty ? nil : queue
            return first
        }
        return serial ?? next()
    }

    public static func next() -> Certificate.SerialNumber {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    public static func next(using generator: inout some RandomNumberGenerator) -> Certificate.SerialNumber {
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        bytes[0] = UInt8.random(in: 0x01...0x7f, using: &generator)
        return Certificate.SerialNumber(bytes: bytes)
    }
}
