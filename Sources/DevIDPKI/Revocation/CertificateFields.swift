import DevIDCore
import SwiftASN1
import X509

/// The exact bytes of certificate fields that CRLs and OCSP name or hash.
///
/// They are read from the certificate's own encoding rather than re-serialised, so a foreign manufacturer CA whose
/// Name uses PrintableString still hashes the way `openssl ocsp` hashes it.
enum CertificateFields {
    /// The DER of the certificate's subject Name (the CRL issuer field; what OCSP's issuerNameHash covers).
    static func subjectDER(of certificate: Certificate) throws(DevIDPKIError) -> [UInt8] {
        do {
            let root = try DER.parse(certificate.derBytes)
            return try DER.sequence(root, identifier: .sequence) { nodes in
                guard let tbs = nodes.next() else { throw DevIDPKIError(.malformed, "certificate has no TBS") }
                let subject = try DER.sequence(tbs, identifier: .sequence) { fields in
                    var field = fields.next()
                    // [0] EXPLICIT version, then serialNumber, signature, issuer, validity, subject.
                    if field?.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                        field = fields.next()
                    }
                    for _ in 0..<4 { field = fields.next() }
                    guard let subject = field, subject.identifier == .sequence else {
                        throw DevIDPKIError(.malformed, "certificate has no subject")
                    }
                    while fields.next() != nil {}  // SwiftASN1 insists every child is read
                    return Array(subject.encodedBytes)
                }
                while nodes.next() != nil {}  // signatureAlgorithm, signatureValue
                return subject
            }
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.malformed, "certificate could not be re-read")
        }
    }

    /// The subjectPublicKey BIT STRING's bytes (without tag, length and unused-bits count): what OCSP's
    /// issuerKeyHash and ResponderID byKey hash (RFC 6960 §4.1.1, §4.2.1).
    static func subjectPublicKeyBits(of publicKey: Certificate.PublicKey) throws(DevIDPKIError) -> [UInt8] {
        do {
            var serializer = DER.Serializer()
            try serializer.serialize(publicKey)
            let root = try DER.parse(serializer.serializedBytes)
            return try DER.sequence(root, identifier: .sequence) { nodes in
                guard let algorithm = nodes.next(), algorithm.identifier == .sequence else {
                    throw DevIDPKIError(.malformed, "SubjectPublicKeyInfo has no algorithm")
                }
                let bits = try ASN1BitString(derEncoded: &nodes)
                return Array(bits.bytes)
            }
        } catch let error as DevIDPKIError {
            throw error
        } catch {
            throw DevIDPKIError(.malformed, "public key could not be re-read")
        }
    }
}
