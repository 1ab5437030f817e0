public import DevIDCore
import DevIDPKI
public import Foundation
import SwiftASN1
public import X509

/// What the agent knows about its current LDevID: the content of `identity.json`, and what enrolling returns.
///
/// Dates are ISO 8601 in JSON. Everything but `serverURL`, `bootstrap`, `enrolledAt` and `serverDate` is read from
/// the certificate itself.
public struct EnrolledIdentity: Codable, Sendable, Hashable {
    /// The subject CN.
    public var deviceID: DeviceID
    /// The subject O.
    public var tenant: TenantID?
    public var serial: SerialNumber
    /// The certificate's SPIFFE URI SAN, if it has one.
    public var spiffeID: String?
    public var issuer: String
    public var notBefore: Date
    public var notAfter: Date
    /// When the agent plans to renew: notBefore + 2/3 of the lifetime (see ``plannedRenewal(notBefore:notAfter:)``).
    public var plannedRenewal: Date
    /// SHA-256 of the certificate DER, lowercase hex.
    public var certificateSHA256: String
    /// The EST base URL enrolled with.
    public var serverURL: String
    /// How the device got it: `idevid` or `claim-token` (first enrollment), `reenroll` (rotation) or
    /// `late-renewal` (re-enrollment within the grace period after expiry).
    public var bootstrap: String
    /// The agent's clock when the certificate was installed.
    public var enrolledAt: Date
    /// The server's time on the enrollment response (`DevID-Time`, else `Date`): with `enrolledAt`, the clock skew
    /// at enrollment.
    public var serverDate: Date?

    public init(
        deviceID: DeviceID, tenant: TenantID?, serial: SerialNumber, spiffeID: String?, issuer: String,
        notBefore: Date, notAfter: Date, plannedRenewal: Date, certificateSHA256: String, serverURL: String,
        bootstrap: String, enrolledAt: Date, serverDate: Date?
    ) {
        self.deviceID = deviceID
        self.tenant = tenant
        self.serial = serial
        self.spiffeID = spiffeID
        self.issuer = issuer
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.plannedRenewal = plannedRenewal
        self.certificateSHA256 = certificateSHA256
        self.serverURL = serverURL
        self.bootstrap = bootstrap
        self.enrolledAt = enrolledAt
        self.serverDate = serverDate
    }

    /// Reads the names and dates of an LDevID; the rest is given.
    ///
    /// - Throws: ``AgentError`` `.untrustedCertificate` if the subject CN is not a valid device id.
    public init(
        certificate: Certificate, serverURL: String, bootstrap: String, enrolledAt: Date, serverDate: Date?
    ) throws(AgentError) {
        guard let cn = DeviceNames.firstValue(.RDNAttributeType.commonName, in: certificate.subject),
            let deviceID = DeviceID(rawValue: cn)
        else {
            throw AgentError(.untrustedCertificate, "the issued certificate's subject CN is not a device id")
        }
        let tenant = DeviceNames.firstValue(.RDNAttributeType.organizationName, in: certificate.subject)
            .flatMap(TenantID.init(rawValue:))
        let names = (try? certificate.extensions.subjectAlternativeNames) ?? nil
        let spiffeID = names?.lazy.compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix("spiffe://") { return uri }
            return nil
        }.first
        self.init(
            deviceID: deviceID, tenant: tenant, serial: certificate.devidSerial, spiffeID: spiffeID,
            issuer: String(describing: certificate.issuer), notBefore: certificate.notValidBefore,
            notAfter: certificate.notValidAfter,
            plannedRenewal: Self.plannedRenewal(
                notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter),
            certificateSHA256: certificate.sha256Fingerprint, serverURL: serverURL, bootstrap: bootstrap,
            enrolledAt: Self.wholeSeconds(enrolledAt), serverDate: serverDate.map(Self.wholeSeconds))
    }

    /// notBefore + 2/3 of (notAfter − notBefore): late enough to use most of the certificate, early enough to
    /// retry for a third of its life if the server is away.
    /// Whole seconds, rounded down, like every other date here.
    public static func plannedRenewal(notBefore: Date, notAfter: Date) -> Date {
        notBefore.addingTimeInterval((notAfter.timeIntervalSince(notBefore) * 2 / 3).rounded(.down))
    }

    /// JSON keeps whole seconds; so does the value, so that what is returned equals what is read back.
    static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
