public import DevIDCore
public import X509

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// One revoked certificate as a CRL lists it: serial, revocation time and RFC 5280 reason.
public struct RevokedEntry: Sendable, Hashable {
    /// The serial, as the certificate's INTEGER content (normalised: minimal, positive).
    public var serial: Certificate.SerialNumber
    /// When the certificate was revoked; written truncated to whole seconds.
    public var revokedAt: Date
    /// Written as a reasonCode entry extension unless `unspecified` (RFC 5280 §5.3.1: "SHOULD be absent").
    public var reason: RevocationReason

    public init(serial: Certificate.SerialNumber, revokedAt: Date, reason: RevocationReason) {
        self.serial = serial
        self.revokedAt = revokedAt
        self.reason = reason
    }

    /// A serial given as its unsigned big-endian bytes.
    public init(serial bytes: [UInt8], revokedAt: Date, reason: RevocationReason) {
        self.init(serial: Certificate.SerialNumber(bytes: bytes), revokedAt: revokedAt, reason: reason)
    }

    /// A serial as the registry keeps it (lowercase hex).
    public init(serial: DevIDCore.SerialNumber, revokedAt: Date, reason: RevocationReason) {
        let hex = serial.rawValue.utf8.count % 2 == 0 ? serial.rawValue : "0" + serial.rawValue
        // A SerialNumber holds validated hex, so decoding cannot fail.
        let bytes = Hex.decode(hex) ?? []
        self.init(serial: Certificate.SerialNumber(bytes: bytes), revokedAt: revokedAt, reason: reason)
    }
}
