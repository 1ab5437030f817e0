import DevIDCore
public import SwiftASN1

/// The `application/csrattrs` body of EST's `/csrattrs` (RFC 7030 §4.5.2): what the server wants in a CSR.
///
/// ```
/// CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
/// AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
/// Attribute ::= SEQUENCE { type OBJECT IDENTIFIER, values SET SIZE(1..MAX) OF ANY DEFINED BY type }
/// ```
///
/// ``forProfile(_:)`` follows the RFC 7030 §4.5.2 example, which asks for a key type with an attribute
/// `{ id-ecPublicKey, { secp384r1 } }` and for a signature algorithm with a bare OID (`ecdsa-with-SHA384`).
public struct CSRAttributes: Hashable, Sendable {
    /// One `AttrOrOID`.
    public enum Element: Hashable, Sendable {
        /// A bare OID: an attribute or extension the CSR should carry, or the signature algorithm to sign with.
        case oid(ASN1ObjectIdentifier)
        /// An attribute with values, e.g. `id-ecPublicKey` with the curves the key may use.
        case attribute(type: ASN1ObjectIdentifier, values: [ASN1Any])
    }

    public var elements: [Element]

    public init(elements: [Element] = []) {
        self.elements = elements
    }

    /// The key and signature algorithms `profile` accepts, as CSR attributes, each key type before its signature
    /// algorithm as in the RFC's example:
    /// - ECDSA: one `id-ecPublicKey` attribute whose values are the allowed curves, any of which will do (the
    ///   encoding sorts the SET, so secp384r1 comes out before secp256r1), then the bare OID of the signature
    ///   algorithm (`ecdsa-with-SHA256` when P-256 is allowed, else `ecdsa-with-SHA384`);
    /// - Ed25519: the bare OID `id-Ed25519`, which names both key and signature algorithm;
    /// - RSA: an `rsaEncryption` attribute with the smallest allowed modulus size as an INTEGER, then
    ///   `sha256WithRSAEncryption`.
    public static func forProfile(_ profile: CertificateProfile) -> CSRAttributes {
        let allowed = profile.policy.allowedKeyAlgorithms
        var elements: [Element] = []

        var curves: [ASN1ObjectIdentifier] = []
        if allowed.contains(.p256) { curves.append(OID.secp256r1) }
        if allowed.contains(.p384) { curves.append(OID.secp384r1) }
        if !curves.isEmpty {
            // Erasing an OID or INTEGER only serializes it into memory, which cannot fail.
            let values = curves.compactMap { try? ASN1Any(erasing: $0) }
            elements.append(.attribute(type: OID.ecPublicKey, values: values))
            elements.append(.oid(allowed.contains(.p256) ? OID.ecdsaWithSHA256 : OID.ecdsaWithSHA384))
        }

        if allowed.contains(.ed25519) {
            elements.append(.oid(OID.ed25519))
        }

        let rsaSizes: [(KeyAlgorithm, Int)] = [(.rsa2048, 2048), (.rsa3072, 3072), (.rsa4096, 4096)]
        if let smallest = rsaSizes.first(where: { allowed.contains($0.0) }) {
            let size = [try? ASN1Any(erasing: smallest.1)].compactMap { $0 }
            elements.append(.attribute(type: OID.rsaEncryption, values: size))
            elements.append(.oid(OID.sha256WithRSAEncryption))
        }
        return CSRAttributes(elements: elements)
    }

    /// The DER of the CsrAttrs SEQUENCE (base64-encode it for the response body).
    public func derBytes() throws(DevIDPKIError) -> [UInt8] {
        var serializer = DER.Serializer()
        do {
            try serializer.serialize(self)
        } catch {
            throw DevIDPKIError(.malformed, "CSR attributes could not be encoded")
        }
        return serializer.serializedBytes
    }

    /// Reads a CsrAttrs body (already base64-decoded), as an EST client does; `.malformed` if it does not parse.
    public init(derEncoded bytes: [UInt8]) throws(DevIDPKIError) {
        do {
            self = try CSRAttributes(derEncoded: DER.parse(bytes))
        } catch {
            throw DevIDPKIError(.malformed, "body is not a CsrAttrs SEQUENCE")
        }
    }

    /// The object identifiers ``forProfile(_:)`` uses.
    public enum OID {
        /// ecdsa-with-SHA256 (RFC 5758 §3.2).
        public static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
        /// ecdsa-with-SHA384 (RFC 5758 §3.2).
        public static let ecdsaWithSHA384: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 3]
        /// id-ecPublicKey (RFC 5480 §2.1.1).
        public static let ecPublicKey: ASN1ObjectIdentifier = [1, 2, 840, 10045, 2, 1]
        /// secp256r1, NIST P-256 (RFC 5480 §2.1.1.1).
        public static let secp256r1: ASN1ObjectIdentifier = [1, 2, 840, 10045, 3, 1, 7]
        /// secp384r1, NIST P-384 (RFC 5480 §2.1.1.1).
        public static let secp384r1: ASN1ObjectIdentifier = [1, 3, 132, 0, 34]
        /// id-Ed25519 (RFC 8410 §3).
        public static let ed25519: ASN1ObjectIdentifier = [1, 3, 101, 112]
        /// rsaEncryption (RFC 8017 §A.1).
        public static let rsaEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 1]
        /// sha256WithRSAEncryption (RFC 8017 §A.2.4).
        public static let sha256WithRSAEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 11]
    }
}

extension CSRAttributes: DERSerializable {
    public func serialize(into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            for element in elements {
                try coder.serialize(element)
            }
        }
    }
}

extension CSRAttributes.Element: DERSerializable {
    public func serialize(into coder: inout DER.Serializer) throws {
        switch self {
        case .oid(let oid):
            try coder.serialize(oid)
        case .attribute(let type, let values):
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(type)
                try coder.serializeSetOf(values)  // DER sorts the SET OF by encoding
            }
        }
    }
}

extension CSRAttributes: DERParseable {
    /// Reads a CsrAttrs SEQUENCE, as an EST client does. Attribute values are kept as they were encoded.
    public init(derEncoded rootNode: ASN1Node) throws {
        self = try DER.sequence(rootNode, identifier: .sequence) { nodes in
            var elements: [Element] = []
            while let node = nodes.next() {
                if node.identifier == ASN1ObjectIdentifier.defaultIdentifier {
                    elements.append(.oid(try ASN1ObjectIdentifier(derEncoded: node)))
                } else {
                    elements.append(
                        try DER.sequence(node, identifier: .sequence) { fields in
                            let type = try ASN1ObjectIdentifier(derEncoded: &fields)
                            guard let valuesNode = fields.next(), valuesNode.identifier == .set,
                                case .constructed(let values) = valuesNode.content
                            else {
                                throw DevIDPKIError(.malformed, "CSR attribute has no SET of values")
                            }
                            return .attribute(type: type, values: values.map { ASN1Any(derEncoded: $0) })
                        }
                    )
                }
            }
            return CSRAttributes(elements: elements)
        }
    }
}
