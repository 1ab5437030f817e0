public import DevIDCore
public import Foundation

/// Which credentials (and, for the device-bearing cases, which devices) a bulk operation covers: revocation,
/// its blast-radius preview, and rotation campaigns.
///
/// A scope names its credentials before any status filter; each operation then applies its own:
/// - ``device(_:)``, ``lot(_:)``, ``tenant(_:)``: every credential, of every kind, of the devices of that device
///   id, lot or tenant (a device belongs to one tenant and at most one lot, so neighbours are never included);
/// - ``serial(_:)``: that one credential;
/// - ``expiringBefore(_:)``: every LDevID whose `notAfter` is before the date, of any device;
/// - ``issuer(_:)``: every LDevID one issuing CA signed (its subject as credentials record their issuer).
///
/// Encoded as a one-key object: `{"device": "dev-1"}`, `{"lot": "lot-7"}`, `{"tenant": "acme"}`,
/// `{"serial": "7e57"}`, `{"expiringBefore": <date as the coder encodes dates>}`.
public enum CredentialScope: Sendable, Hashable, Codable {
    case device(DeviceID)
    case lot(LotID)
    case tenant(TenantID)
    /// Every device that first enrolled with this claim token (its public id), and their credentials: what a
    /// leaked bulk token let in.
    case token(String)
    case serial(SerialNumber)
    case expiringBefore(Date)
    case issuer(String)

    /// Whether revoking the scope also moves its devices to `revoked` (true for device, lot, tenant and token).
    public var coversDevices: Bool {
        switch self {
        case .device, .lot, .tenant, .token: true
        case .serial, .expiringBefore, .issuer: false
        }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case device, lot, tenant, token, serial, expiringBefore, issuer
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard container.allKeys.count == 1, let key = container.allKeys.first else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription:
                        "a credential scope has exactly one of: device, lot, tenant, token, serial, expiringBefore, issuer"
                ))
        }
        switch key {
        case .device: self = .device(try container.decode(DeviceID.self, forKey: key))
        case .lot: self = .lot(try container.decode(LotID.self, forKey: key))
        case .tenant: self = .tenant(try container.decode(TenantID.self, forKey: key))
        case .token: self = .token(try container.decode(String.self, forKey: key))
        case .serial: self = .serial(try container.decode(SerialNumber.self, forKey: key))
        case .expiringBefore: self = .expiringBefore(try container.decode(Date.self, forKey: key))
        case .issuer: self = .issuer(try container.decode(String.self, forKey: key))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .device(let id): try container.encode(id, forKey: .device)
        case .lot(let id): try container.encode(id, forKey: .lot)
        case .tenant(let id): try container.encode(id, forKey: .tenant)
        case .token(let id): try container.encode(id, forKey: .token)
        case .serial(let serial): try container.encode(serial, forKey: .serial)
        case .expiringBefore(let date): try container.encode(date, forKey: .expiringBefore)
        case .issuer(let subject): try container.encode(subject, forKey: .issuer)
        }
    }
}

extension CredentialScope: CustomStringConvertible {
    /// One line naming the scope, e.g. `lot lot-7`; identifiers only, safe to log.
    public var description: String {
        switch self {
        case .device(let id): "device \(id)"
        case .lot(let id): "lot \(id)"
        case .tenant(let id): "tenant \(id)"
        case .token(let id): "devices enrolled with claim token \(id)"
        case .serial(let serial): "serial \(serial)"
        case .expiringBefore(let date): "LDevIDs expiring before \(date.ISO8601Format())"
        case .issuer(let subject): "LDevIDs issued by \(subject)"
        }
    }
}
