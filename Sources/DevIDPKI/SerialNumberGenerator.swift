public import X509

/// Certificate serial numbers: 16 random bytes, positive, so their DER INTEGER is exactly 16 bytes.
///
/// RFC 5280 §4.1.2.2 asks for positive serials of at most 20 octets; CA/B practice asks for at least 64 bits of
/// randomness. The first byte is kept in 0x01...0x7f: non-zero (no leading-zero stripping) and top bit clear
/// (no sign octet), leaving 127 bits of entropy. Uniqueness is also enforced by the registry's constraint.
public enum SerialNumberGenerator {
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
