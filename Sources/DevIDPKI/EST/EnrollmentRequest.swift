public import DevIDCore
import SwiftASN1
public import X509

/// A PKCS#10 CSR from an EST `/simpleenroll` or `/simplereenroll` (RFC 7030 §4.2.1), parsed and checked.
///
/// Creating one proves possession of the key (the CSR's self-signature verifies). ``check(profile:)`` and
/// ``checkNames(device:tenant:trustDomain:)`` then hold the request to DevID's rules. The names a certificate
/// carries come from the authenticated device, never from the CSR; the names check only refuses a CSR that asks for
/// someone else. Requested extensions other than subjectAltName are ignored: the profile fixes the extensions.
public struct EnrollmentRequest: Sendable {
    public let csr: CertificateSigningRequest
    public let publicKey: Certificate.PublicKey
    public let keyAlgorithm: KeyAlgorithm
    /// The first subject CN the CSR asks for, if any.
    public let requestedCommonName: String?
    /// The URI subject alternative names the CSR asks for (extensionRequest), in order.
    public let requestedURIs: [String]
    /// The DNS subject alternative names the CSR asks for (extensionRequest), in order.
    public let requestedDNSNames: [String]
    /// Any other kinds of subject alternative name asked for, with an article ("an IP address", ...).
    private let otherAlternativeNames: [String]

    /// Parses a DER CSR (already base64-decoded) and verifies its self-signature.
    ///
    /// - Throws: `.malformed` for anything that is not a PKCS#10 v1 request (garbage, truncation, trailing bytes, a
    ///   broken extensionRequest); `.unsupportedAlgorithm` for a key or signature algorithm DevID does not know
    ///   (including RSA under 2048 bits); `.invalidSignature` when the signature does not verify.
    public init(der: [UInt8]) throws(DevIDPKIError) {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(derEncoded: der)
        } catch let error as CertificateError
            where error.code == .unsupportedPublicKeyAlgorithm || error.code == .unsupportedSignatureAlgorithm
        {
            throw DevIDPKIError(.unsupportedAlgorithm, "CSR uses a key or signature algorithm DevID does not support")
        } catch {
            if let reason = Self.unsupportedKeyReason(der) {
                throw DevIDPKIError(.unsupportedAlgorithm, reason)
            }
            throw DevIDPKIError(.malformed, "CSR is not a valid PKCS#10 request")
        }
        guard csr.version == .v1 else {
            throw DevIDPKIError(.malformed, "CSR version is not v1")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw DevIDPKIError(.invalidSignature, "CSR signature does not verify (no proof of possession)")
        }
        guard let keyAlgorithm = KeyAlgorithm(csr.publicKey) else {
            throw DevIDPKIError(
                .unsupportedAlgorithm,
                "CSR key is not ECDSA P-256/P-384, Ed25519 or RSA 2048/3072/4096"
            )
        }

        var uris: [String] = []
        var dnsNames: [String] = []
        var others: [String] = []
        do {
            if let names = try csr.attributes.extensionRequest?.extensions.subjectAlternativeNames {
                for name in names {
                    switch name {
                    case .uniformResourceIdentifier(let uri): uris.append(uri)
                    case .dnsName(let dns): dnsNames.append(dns)
                    case .ipAddress: others.append("an IP address")
                    case .rfc822Name: others.append("an email address")
                    case .directoryName: others.append("a directory name")
                    case .otherName: others.append("an otherName")
                    case .registeredID: others.append("a registered ID")
                    case .x400Address: others.append("an X.400 address")
                    case .ediPartyName: others.append("an EDI party name")
                    }
                }
            }
        } catch {
            throw DevIDPKIError(.malformed, "CSR extensionRequest does not parse")
        }

        self.csr = csr
        self.publicKey = csr.publicKey
        self.keyAlgorithm = keyAlgorithm
        self.requestedCommonName = DeviceNames.firstValue(.RDNAttributeType.commonName, in: csr.subject)
        self.requestedURIs = uris
        self.requestedDNSNames = dnsNames
        self.otherAlternativeNames = others
    }

    /// Checks the key against `profile`: its algorithm must be one the profile allows, and the CSR must not be
    /// signed with SHA-1. (RSA keys are at least 2048 bits by construction: smaller ones are refused when parsing.)
    ///
    /// - Throws: `.unsupportedAlgorithm`, with a reason that lists the profile's algorithms.
    public func check(profile: CertificateProfile) throws(DevIDPKIError) {
        let allowed = profile.policy.allowedKeyAlgorithms
        guard allowed.contains(keyAlgorithm) else {
            let names = KeyAlgorithm.allCases.filter(allowed.contains).map(\.rawValue).joined(separator: ", ")
            throw DevIDPKIError(
                .unsupportedAlgorithm,
                "CSR key is \(keyAlgorithm.rawValue); profile \(profile.policy.name) allows \(names)"
            )
        }
        guard csr.signatureAlgorithm != .sha1WithRSAEncryption else {
            throw DevIDPKIError(.unsupportedAlgorithm, "CSR is signed with SHA-1; use SHA-256 or stronger")
        }
    }

    /// Checks that the CSR names the authenticated device, or nothing.
    ///
    /// Allowed: an empty subject, or a subject of at most one CN equal to `device` and at most one O equal to
    /// `tenant`; no subject alternative names, or exactly one: the device's SPIFFE ID
    /// (``DeviceNames/spiffeID(trustDomain:tenant:device:)``).
    ///
    /// - Throws: `.policyViolation` with a one-line reason that quotes at most the offending name, made printable
    ///   and cut to 64 characters.
    public func checkNames(device: DeviceID, tenant: TenantID, trustDomain: String) throws(DevIDPKIError) {
        var commonNames = 0
        var organizations = 0
        for rdn in csr.subject {
            for attribute in rdn {
                switch attribute.type {
                case .RDNAttributeType.commonName:
                    commonNames += 1
                    guard commonNames == 1 else {
                        throw DevIDPKIError(.policyViolation, "CSR subject has more than one CN")
                    }
                    guard let value = String(attribute.value) else {
                        throw DevIDPKIError(.policyViolation, "CSR subject CN is not a string")
                    }
                    guard value == device.rawValue else {
                        throw DevIDPKIError(
                            .policyViolation,
                            "CSR names device \(Self.quoted(value)), not \(device.rawValue)"
                        )
                    }
                case .RDNAttributeType.organizationName:
                    organizations += 1
                    guard organizations == 1 else {
                        throw DevIDPKIError(.policyViolation, "CSR subject has more than one O")
                    }
                    guard let value = String(attribute.value) else {
                        throw DevIDPKIError(.policyViolation, "CSR subject O is not a string")
                    }
                    guard value == tenant.rawValue else {
                        throw DevIDPKIError(
                            .policyViolation,
                            "CSR names tenant \(Self.quoted(value)), not \(tenant.rawValue)"
                        )
                    }
                default:
                    throw DevIDPKIError(
                        .policyViolation,
                        "CSR subject may hold only CN and O, not \(Self.quoted(attribute.type.description))"
                    )
                }
            }
        }

        if let kind = otherAlternativeNames.first {
            throw DevIDPKIError(
                .policyViolation,
                "CSR asks for \(kind) alternative name; only the SPIFFE ID is allowed"
            )
        }
        if let dns = requestedDNSNames.first {
            throw DevIDPKIError(
                .policyViolation,
                "CSR asks for DNS name \(Self.quoted(dns)); device certificates have none"
            )
        }
        let spiffeID = DeviceNames.spiffeID(trustDomain: trustDomain, tenant: tenant, device: device)
        for uri in requestedURIs where uri != spiffeID {
            throw DevIDPKIError(.policyViolation, "CSR asks for URI \(Self.quoted(uri)), not the device's SPIFFE ID")
        }
        guard requestedURIs.count <= 1 else {
            throw DevIDPKIError(.policyViolation, "CSR repeats the SPIFFE ID")
        }
    }

    /// A name from the CSR made safe for a one-line reason: printable ASCII only, at most 64 characters.
    private static func quoted(_ name: String) -> String {
        let printable = name.unicodeScalars.map { scalar -> Character in
            (0x20...0x7E).contains(scalar.value) ? Character(scalar) : "?"
        }
        return String(printable.prefix(64))
    }

    /// Why a CSR that X509 could not read is an unsupported-algorithm case rather than garbage, if it is one: an
    /// RSA key under 2048 bits, which swift-crypto refuses to load.
    private static func unsupportedKeyReason(_ der: [UInt8]) -> String? {
        let rsaEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 1]
        guard let root = try? DER.parse(der),
            case .constructed(let request) = root.content,
            let info = request.first(where: { _ in true }),
            case .constructed(let infoFields) = info.content
        else { return nil }
        let fields = Array(infoFields)
        guard fields.count >= 3, case .constructed(let spki) = fields[2].content else { return nil }
        let spkiFields = Array(spki)
        guard spkiFields.count == 2, case .constructed(let algorithm) = spkiFields[0].content,
            let oidNode = algorithm.first(where: { _ in true }),
            let oid = try? ASN1ObjectIdentifier(derEncoded: oidNode), oid == rsaEncryption,
            let bits = try? ASN1BitString(derEncoded: spkiFields[1]),
            let key = try? DER.parse(Array(bits.bytes)),
            case .constructed(let keyFields) = key.content,
            let modulusNode = keyFields.first(where: { _ in true }),
            let modulus = try? ArraySlice<UInt8>(derEncoded: modulusNode)
        else { return nil }
        let magnitude = modulus.drop(while: { $0 == 0 })
        let modulusBits = magnitude.first.map { (magnitude.count - 1) * 8 + (8 - $0.leadingZeroBitCount) } ?? 0
        guard modulusBits < 2048 else { return nil }
        return "CSR key is RSA \(modulusBits); DevID accepts RSA keys of 2048 bits or more"
    }
}
