public import DevIDCore
public import SwiftASN1
public import X509

/// How DevID names identities (DESIGN.md "Names").
///
/// - LDevID: subject CN = device id, O = tenant; one URI SAN `spiffe://<trust-domain>/tenant/<tenant>/device/<id>`.
/// - IDevID: subject serialNumber (2.5.4.5) = hardware serial, plus O = manufacturer.
public enum DeviceNames {
    /// X.520 serialNumber attribute type.
    public static let serialNumberAttribute: ASN1ObjectIdentifier = [2, 5, 4, 5]

    public static func spiffeID(trustDomain: String, tenant: TenantID, device: DeviceID) -> String {
        "spiffe://\(trustDomain)/tenant/\(tenant.rawValue)/device/\(device.rawValue)"
    }

    public static func ldevidSubject(device: DeviceID, tenant: TenantID) throws(DevIDPKIError) -> DistinguishedName {
        do {
            return try DistinguishedName {
                OrganizationName(tenant.rawValue)
                CommonName(device.rawValue)
            }
        } catch {
            throw DevIDPKIError(.malformed, "device name could not be encoded")
        }
    }

    public static func ldevidAlternativeNames(trustDomain: String, tenant: TenantID, device: DeviceID) -> [GeneralName] {
        [.uniformResourceIdentifier(spiffeID(trustDomain: trustDomain, tenant: tenant, device: device))]
    }

    /// A hardware serial is printable: 1-64 characters of A-Z a-z 0-9 and ` '()+,-./:=?` (PrintableString).
    public static func isValidHardwareSerial(_ serial: String) -> Bool {
        guard !serial.isEmpty, serial.utf8.count <= 64 else { return false }
        return serial.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return Array(" '()+,-./:=?".utf8).contains(byte)
            }
        }
    }

    public static func idevidSubject(hardwareSerial: String, manufacturer: String) throws(DevIDPKIError)
        -> DistinguishedName
    {
        guard isValidHardwareSerial(hardwareSerial) else {
            throw DevIDPKIError(.policyViolation, "hardware serial must be 1-64 printable characters")
        }
        do {
            return DistinguishedName([
                RelativeDistinguishedName(
                    RelativeDistinguishedName.Attribute(
                        type: .RDNAttributeType.organizationName, value: .init(utf8String: manufacturer))),
                RelativeDistinguishedName(
                    RelativeDistinguishedName.Attribute(
                        type: serialNumberAttribute, value: try .init(printableString: hardwareSerial))),
            ])
        } catch {
            throw DevIDPKIError(.malformed, "hardware serial could not be encoded")
        }
    }

    /// The first value of `attribute` in `name`, as a string.
    public static func firstValue(_ attribute: ASN1ObjectIdentifier, in name: DistinguishedName) -> String? {
        for rdn in name {
            for attr in rdn where attr.type == attribute {
                return String(attr.value)
            }
        }
        return nil
    }

    /// The hardware serial of an IDevID (its subject serialNumber), if present.
    public static func hardwareSerial(of certificate: Certificate) -> String? {
        firstValue(serialNumberAttribute, in: certificate.subject)
    }

    /// Device id and tenant as an LDevID names them; nil if the certificate is not shaped like one.
    public static func ldevidIdentity(of certificate: Certificate, trustDomain: String) -> (
        device: DeviceID, tenant: TenantID
    )? {
        guard let cn = firstValue(.RDNAttributeType.commonName, in: certificate.subject),
            let org = firstValue(.RDNAttributeType.organizationName, in: certificate.subject),
            let device = DeviceID(rawValue: cn), let tenant = TenantID(rawValue: org)
        else { return nil }
        let expected = spiffeID(trustDomain: trustDomain, tenant: tenant, device: device)
        guard let names = try? certificate.extensions.subjectAlternativeNames,
            names.contains(where: { if case .uniformResourceIdentifier(expected) = $0 { true } else { false } })
        else { return nil }
        return (device, tenant)
    }
}
