public import DevIDCore
public import Foundation

/// The answer to `GET /v1/device/status` (a check-in with the current LDevID over mTLS).
///
/// The first successful check-in with a newly issued credential confirms it on the server, which then revokes the
/// superseded one after its confidence period.
public struct DeviceStatus: Codable, Sendable, Hashable {
    public var device: DeviceID
    public var tenant: TenantID
    public var deviceState: DeviceState
    /// The serial of the credential that authenticated.
    public var serial: SerialNumber
    /// `active` or `superseded` (a refused credential gets a 403 instead).
    public var credentialStatus: CredentialStatus
    public var notBefore: Date
    public var notAfter: Date
    /// For a superseded credential: when it stops working at the latest.
    public var overlapDeadline: Date?
    /// The server wants the device to rotate now (a rotation campaign).
    public var rotateNow: Bool
    public var rotateReason: String?
    /// The server's clock when it answered.
    public var serverTime: Date
    /// The rotation policy of the device's profile.
    public var rotation: RotationPolicy
    /// SHA-256 fingerprints of the roots the device should trust (``TrustUpdate``); nil from a server before root
    /// rollover existed.
    public var trustedRoots: [String]?

    public init(
        device: DeviceID, tenant: TenantID, deviceState: DeviceState, serial: SerialNumber,
        credentialStatus: CredentialStatus, notBefore: Date, notAfter: Date, overlapDeadline: Date? = nil,
        rotateNow: Bool, rotateReason: String? = nil, serverTime: Date, rotation: RotationPolicy,
        trustedRoots: [String]? = nil
    ) {
        self.trustedRoots = trustedRoots
        self.device = device
        self.tenant = tenant
        self.deviceState = deviceState
        self.serial = serial
        self.credentialStatus = credentialStatus
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.overlapDeadline = overlapDeadline
        self.rotateNow = rotateNow
        self.rotateReason = rotateReason
        self.serverTime = serverTime
        self.rotation = rotation
    }

    /// ISO 8601 dates, with or without fractional seconds.
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let parsed = HTTPDate.parseRFC3339(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 date")
            }
            return parsed.date
        }
        return decoder
    }
}
