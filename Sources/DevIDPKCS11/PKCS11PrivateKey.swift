public import CPKCS11
public import Crypto
public import Foundation
public import SwiftASN1
import Synchronization
public import X509

/// An ECDSA key (P-256 or P-384) that lives in a PKCS#11 token and never leaves it: created there
/// (CKA_SENSITIVE, not CKA_EXTRACTABLE), found by label and id, used through C_Sign with CKM_ECDSA over a digest
/// DevID computes, its raw r‖s signature DER-encoded (X.509 and TLS want the ECDSA-Sig-Value).
///
/// It is a swift-certificates `CustomPrivateKey`, so `Certificate.PrivateKey(key)` signs certificates, CRLs, OCSP
/// responses and CSRs with it.
public struct PKCS11PrivateKey: CustomPrivateKey, @unchecked Sendable {
    public let token: PKCS11Token
    /// The key's own URI: the token's, with `object=` its label.
    public let uri: PKCS11URI
    public let label: String
    /// CKA_ID, with the label what finds the key again after a reconnect (two keys may share a label).
    public let id: [UInt8]?
    public let curve: PKCS11Curve
    public let publicKey: Certificate.PublicKey

    /// The handle of the private key object, found again after the token came back.
    private let handle: Handle
    /// The handle and the token generation it was found in (a handle of an earlier generation is void).
    final class Handle: Sendable {
        let value = Mutex<(generation: Int, handle: CK_OBJECT_HANDLE)?>(nil)
    }

    init(
        token: PKCS11Token, label: String, id: [UInt8]?, curve: PKCS11Curve, publicKey: Certificate.PublicKey,
        handle: CK_OBJECT_HANDLE?
    ) {
        self.token = token
        var uri = token.uri.naming(object: label)
        uri.id = id.flatMap { $0 == Array(label.utf8) || $0.isEmpty ? nil : $0 }
        self.uri = uri
        self.label = label
        self.id = id.flatMap { $0.isEmpty ? nil : $0 }
        self.curve = curve
        self.publicKey = publicKey
        self.handle = Handle()
        let generation = token.generation
        self.handle.value.withLock { $0 = handle.map { (generation, $0) } }
        Self.registry.withLock { $0[publicKey] = self }
    }

    /// Every token key this process opened or generated, by public key: `Certificate.PrivateKey` does not hand its
    /// custom key back, and the TLS stack needs it (``PKCS11TLSKey``).
    private static let registry = Mutex<[Certificate.PublicKey: PKCS11PrivateKey]>([:])

    /// The token key with this public key, if this process opened or generated one.
    public static func opened(publicKey: Certificate.PublicKey) -> PKCS11PrivateKey? {
        registry.withLock { $0[publicKey] }
    }

    // MARK: Opening and creating

    /// The key `uri` names (its `object=` label, or `id=`). `.keyNotFound` when the token holds no such private key.
    public static func open(_ uri: PKCS11URI) throws(PKCS11Error) -> PKCS11PrivateKey {
        guard uri.object != nil || uri.id != nil else {
            throw PKCS11Error(.invalidURI, "the pkcs11: URI names a token but no key (object= or id=)")
        }
        if let type = uri.type, type != "private" {
            throw PKCS11Error(.invalidURI, "the pkcs11: URI names a \(type) object, not a private key")
        }
        let token = try PKCS11Token.open(uri)
        return try token.withSession { session throws(PKCS11Error) in
            let privates = try token.find(session, objectClass: UInt(CKO_PRIVATE_KEY), label: uri.object, id: uri.id)
            guard let handle = privates.first else {
                let hint = token.hasPIN ? "" : " (the URI has no pin-source: private keys are visible only after login)"
                throw PKCS11Error(.keyNotFound, "token \(token.label) holds no private key \(uri.object ?? "with that id")\(hint)")
            }
            guard privates.count == 1 else {
                throw PKCS11Error(.keyNotFound, "token \(token.label) holds \(privates.count) private keys \(uri.object ?? "with that id"): name one by id")
            }
            let label = String(decoding: try token.attribute(session, handle, UInt(CKA_LABEL)), as: UTF8.self)
            let id = try? token.attribute(session, handle, UInt(CKA_ID))
            let publics = try token.find(session, objectClass: UInt(CKO_PUBLIC_KEY), label: label, id: id.flatMap { $0.isEmpty ? nil : $0 })
            guard let publicHandle = publics.first else {
                throw PKCS11Error(.keyNotFound, "token \(token.label) holds no public key beside private key \(label)")
            }
            let (curve, publicKey) = try readPublicKey(token: token, session: session, object: publicHandle)
            return PKCS11PrivateKey(token: token, label: label, id: id, curve: curve, publicKey: publicKey, handle: handle)
        }
    }

    /// A new key pair created inside the token named by `uri`, labelled `label` (CKA_LABEL and CKA_ID), private key
    /// sensitive, never extractable, a token object. `.alreadyExists` if the token holds a key with that label.
    public static func generate(in uri: PKCS11URI, label: String, curve: PKCS11Curve) throws(PKCS11Error) -> PKCS11PrivateKey {
        let token = try PKCS11Token.open(uri)
        // Not retried: a key pair the token wrote before an error must not be made twice.
        return try token.withSession(retry: false) { session throws(PKCS11Error) in
            guard try token.find(session, objectClass: UInt(CKO_PRIVATE_KEY), label: label, id: nil).isEmpty else {
                throw PKCS11Error(.alreadyExists, "token \(token.label) already holds a key \(label); DevID never replaces a key")
            }
            let id = Array(label.utf8)
            let publicTemplate: [(CK_ATTRIBUTE_TYPE, [UInt8])] = [
                (CK_ATTRIBUTE_TYPE(CKA_TOKEN), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_VERIFY), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), curve.parameters),
                (CK_ATTRIBUTE_TYPE(CKA_LABEL), Array(label.utf8)),
                (CK_ATTRIBUTE_TYPE(CKA_ID), id),
            ]
            let privateTemplate: [(CK_ATTRIBUTE_TYPE, [UInt8])] = [
                (CK_ATTRIBUTE_TYPE(CKA_TOKEN), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_PRIVATE), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_SENSITIVE), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_EXTRACTABLE), PKCS11Token.no),
                (CK_ATTRIBUTE_TYPE(CKA_SIGN), PKCS11Token.yes),
                // Least privilege: no unwrapping, no key derivation. (CKA_DECRYPT false is refused by tpm2-pkcs11, whose
                // TPM keys always allow it; an EC key has no plain decryption anyway.)
                (CK_ATTRIBUTE_TYPE(CKA_UNWRAP), PKCS11Token.no),
                (CK_ATTRIBUTE_TYPE(CKA_DERIVE), PKCS11Token.no),
                (CK_ATTRIBUTE_TYPE(CKA_LABEL), Array(label.utf8)),
                (CK_ATTRIBUTE_TYPE(CKA_ID), id),
            ]
            var mechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_EC_KEY_PAIR_GEN), pParameter: nil, ulParameterLen: 0)
            var publicHandle = CK_OBJECT_HANDLE(0)
            var privateHandle = CK_OBJECT_HANDLE(0)
            let f = token.functions
            let rv = PKCS11Token.withTemplate(publicTemplate) { pub, pubCount in
                PKCS11Token.withTemplate(privateTemplate) { priv, privCount in
                    f.C_GenerateKeyPair!(session, &mechanism, pub, pubCount, priv, privCount, &publicHandle, &privateHandle)
                }
            }
            guard rv == CKR_OK else { throw PKCS11Module.error(rv, "generating key \(label) in token \(token.label)") }
            let (_, publicKey) = try readPublicKey(token: token, session: session, object: publicHandle)
            return PKCS11PrivateKey(
                token: token, label: label, id: id, curve: curve, publicKey: publicKey, handle: privateHandle)
        }
    }

    /// Deletes the key pair (private and public objects) from the token.
    public func destroy() throws(PKCS11Error) {
        try token.withSession { session throws(PKCS11Error) in
            var handles = try token.find(session, objectClass: UInt(CKO_PRIVATE_KEY), label: label, id: id)
            handles += try token.find(session, objectClass: UInt(CKO_PUBLIC_KEY), label: label, id: id)
            for object in handles {
                let rv = token.functions.C_DestroyObject!(session, object)
                guard rv == CKR_OK else { throw PKCS11Module.error(rv, "deleting key \(label) from token \(token.label)") }
            }
        }
        handle.value.withLock { $0 = nil }
    }

    /// Whether the private key object is sensitive and never extractable (as DevID creates them).
    public func isProtected() throws(PKCS11Error) -> Bool {
        try token.withSession { session throws(PKCS11Error) in
            let object = try privateHandle(session)
            let sensitive = try token.attribute(session, object, UInt(CKA_SENSITIVE))
            let extractable = try token.attribute(session, object, UInt(CKA_EXTRACTABLE))
            return sensitive.first == UInt8(CK_TRUE) && extractable.first == UInt8(CK_FALSE)
        }
    }

    static func readPublicKey(
        token: PKCS11Token, session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE
    ) throws(PKCS11Error) -> (PKCS11Curve, Certificate.PublicKey) {
        let parameters = try token.attribute(session, object, UInt(CKA_EC_PARAMS))
        guard let curve = PKCS11Curve(parameters: parameters) else {
            throw PKCS11Error(.mechanismUnsupported, "the key in token \(token.label) is not on P-256 or P-384")
        }
        var point = try token.attribute(session, object, UInt(CKA_EC_POINT))
        // CKA_EC_POINT is a DER OCTET STRING holding the uncompressed point; some modules return the bare point.
        if point.count == curve.pointLength + 2, point[0] == 0x04, Int(point[1]) == curve.pointLength {
            point = Array(point.dropFirst(2))
        }
        do {
            switch curve {
            case .p256: return (curve, Certificate.PublicKey(try P256.Signing.PublicKey(x963Representation: point)))
            case .p384: return (curve, Certificate.PublicKey(try P384.Signing.PublicKey(x963Representation: point)))
            }
        } catch {
            throw PKCS11Error(.failed, "the public key in token \(token.label) is not a valid EC point")
        }
    }

    private func privateHandle(_ session: CK_SESSION_HANDLE) throws(PKCS11Error) -> CK_OBJECT_HANDLE {
        let generation = token.generation
        if let value = handle.value.withLock({ $0 }), value.generation == generation { return value.handle }
        guard let found = try token.find(session, objectClass: UInt(CKO_PRIVATE_KEY), label: label, id: id).first else {
            throw PKCS11Error(.keyNotFound, "token \(token.label) no longer holds private key \(label)")
        }
        handle.value.withLock { $0 = (generation, found) }
        return found
    }

    // MARK: Signing

    /// An ECDSA signature (DER ECDSA-Sig-Value) over `digest`, made by the token.
    public func signDigest(_ digest: [UInt8]) throws(PKCS11Error) -> [UInt8] {
        let raw = try token.withSession { session throws(PKCS11Error) in
            do throws(PKCS11Error) {
                return try rawSignature(session, digest, try privateHandle(session))
            } catch {
                // A handle from before the token went away: find the key again, once. A key that was there and is
                // not now means the token is not the one it was (removed, replaced): unavailable, not "no such key".
                guard error.code == .keyNotFound else { throw error }
                handle.value.withLock { $0 = nil }
                do throws(PKCS11Error) {
                    return try rawSignature(session, digest, try privateHandle(session))
                } catch {
                    guard error.code == .keyNotFound else { throw error }
                    throw PKCS11Error(.tokenUnavailable, "token \(token.label) no longer holds key \(label): \(error.reason)")
                }
            }
        }
        do {
            switch curve {
            case .p256: return Array(try P256.Signing.ECDSASignature(rawRepresentation: raw).derRepresentation)
            case .p384: return Array(try P384.Signing.ECDSASignature(rawRepresentation: raw).derRepresentation)
            }
        } catch {
            throw PKCS11Error(.failed, "token \(token.label) returned a malformed ECDSA signature (\(raw.count) bytes)")
        }
    }

    private func rawSignature(
        _ session: CK_SESSION_HANDLE, _ digest: [UInt8], _ object: CK_OBJECT_HANDLE
    ) throws(PKCS11Error) -> [UInt8] {
        let f = token.functions
        var mechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA), pParameter: nil, ulParameterLen: 0)
        var rv = f.C_SignInit!(session, &mechanism, object)
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "signing with key \(label) in token \(token.label)") }
        var signature = [UInt8](repeating: 0, count: 2 * 66)
        var length = CK_ULONG(signature.count)
        var input = digest
        rv = input.withUnsafeMutableBufferPointer { data in
            signature.withUnsafeMutableBufferPointer { out in
                f.C_Sign!(session, data.baseAddress, CK_ULONG(data.count), out.baseAddress, &length)
            }
        }
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "signing with key \(label) in token \(token.label)") }
        return Array(signature.prefix(Int(length)))
    }

    /// The digest the key's signature algorithm signs: SHA-256 for P-256, SHA-384 for P-384.
    public func digest(_ bytes: some DataProtocol) -> [UInt8] {
        switch curve {
        case .p256: Array(SHA256.hash(data: bytes))
        case .p384: Array(SHA384.hash(data: bytes))
        }
    }

    // MARK: CustomPrivateKey

    public var defaultSignatureAlgorithm: Certificate.SignatureAlgorithm {
        curve == .p256 ? .ecdsaWithSHA256 : .ecdsaWithSHA384
    }

    public var supportedSignatureAlgorithms: [Certificate.SignatureAlgorithm] { [defaultSignatureAlgorithm] }

    public func signSynchronously(
        bytes: some DataProtocol, signatureAlgorithm: Certificate.SignatureAlgorithm
    ) throws -> Certificate.Signature {
        guard signatureAlgorithm == defaultSignatureAlgorithm else {
            throw PKCS11Error(.mechanismUnsupported, "key \(label) signs with \(defaultSignatureAlgorithm) only")
        }
        let der = try signDigest(digest(bytes))
        return try Certificate.Signature(signatureAlgorithm: signatureAlgorithm, signatureBytes: ASN1BitString(bytes: der[...]))
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.uri.description == rhs.uri.description && lhs.publicKey == rhs.publicKey }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(uri.description)
        hasher.combine(publicKey)
    }

    // A key in a token is never serialised: there are no bytes to write.
    public static var defaultPEMDiscriminator: String { "PRIVATE KEY" }
    public init(derEncoded rootNode: ASN1Node) throws {
        throw PKCS11Error(.invalidURI, "a key in a PKCS#11 token is opened by its URI, never read from DER")
    }
    public func serialize(into coder: inout DER.Serializer) throws {
        throw PKCS11Error(.failed, "key \(label) lives in token \(token.label) and is never exported")
    }
}

extension PKCS11PrivateKey {
    /// Moves an existing key into the token (`devid ca import-key`): the private scalar `value` becomes a sensitive,
    /// non-extractable token object labelled `label`, beside its public key. The caller destroys the old copy.
    public static func importKey(
        in uri: PKCS11URI, label: String, curve: PKCS11Curve, value: [UInt8], publicKey: Certificate.PublicKey,
        x963 point: [UInt8]
    ) throws(PKCS11Error) -> PKCS11PrivateKey {
        let token = try PKCS11Token.open(uri)
        return try token.withSession(retry: false) { session throws(PKCS11Error) in
            guard try token.find(session, objectClass: UInt(CKO_PRIVATE_KEY), label: label, id: nil).isEmpty,
                try token.find(session, objectClass: UInt(CKO_PUBLIC_KEY), label: label, id: nil).isEmpty
            else {
                throw PKCS11Error(.alreadyExists, "token \(token.label) already holds a key \(label); DevID never replaces a key")
            }
            let id = Array(label.utf8)
            let keyType = PKCS11Token.ulong(UInt(CKK_EC))
            let privateTemplate: [(CK_ATTRIBUTE_TYPE, [UInt8])] = [
                (CK_ATTRIBUTE_TYPE(CKA_CLASS), PKCS11Token.ulong(UInt(CKO_PRIVATE_KEY))),
                (CK_ATTRIBUTE_TYPE(CKA_KEY_TYPE), keyType),
                (CK_ATTRIBUTE_TYPE(CKA_TOKEN), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_PRIVATE), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_SENSITIVE), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_EXTRACTABLE), PKCS11Token.no),
                (CK_ATTRIBUTE_TYPE(CKA_SIGN), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), curve.parameters),
                (CK_ATTRIBUTE_TYPE(CKA_VALUE), value),
                (CK_ATTRIBUTE_TYPE(CKA_LABEL), Array(label.utf8)),
                (CK_ATTRIBUTE_TYPE(CKA_ID), id),
            ]
            let publicTemplate: [(CK_ATTRIBUTE_TYPE, [UInt8])] = [
                (CK_ATTRIBUTE_TYPE(CKA_CLASS), PKCS11Token.ulong(UInt(CKO_PUBLIC_KEY))),
                (CK_ATTRIBUTE_TYPE(CKA_KEY_TYPE), keyType),
                (CK_ATTRIBUTE_TYPE(CKA_TOKEN), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_VERIFY), PKCS11Token.yes),
                (CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), curve.parameters),
                // CKA_EC_POINT: DER OCTET STRING of the uncompressed point.
                (CK_ATTRIBUTE_TYPE(CKA_EC_POINT), [0x04, UInt8(point.count)] + point),
                (CK_ATTRIBUTE_TYPE(CKA_LABEL), Array(label.utf8)),
                (CK_ATTRIBUTE_TYPE(CKA_ID), id),
            ]
            let f = token.functions
            var privateHandle = CK_OBJECT_HANDLE(0)
            var publicHandle = CK_OBJECT_HANDLE(0)
            var rv = PKCS11Token.withTemplate(publicTemplate) { f.C_CreateObject!(session, $0, $1, &publicHandle) }
            guard rv == CKR_OK else { throw PKCS11Module.error(rv, "importing public key \(label) into token \(token.label)") }
            rv = PKCS11Token.withTemplate(privateTemplate) { f.C_CreateObject!(session, $0, $1, &privateHandle) }
            guard rv == CKR_OK else {
                _ = f.C_DestroyObject!(session, publicHandle)
                throw PKCS11Module.error(rv, "importing private key \(label) into token \(token.label)")
            }
            return PKCS11PrivateKey(
                token: token, label: label, id: id, curve: curve, publicKey: publicKey, handle: privateHandle)
        }
    }
}
