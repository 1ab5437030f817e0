import Crypto
import DevIDCore
import SwiftASN1
public import X509

#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// Answers OCSP requests for the certificates one CA issued (RFC 6960), signing with a delegated responder
/// certificate (profile ``CertificateProfile/ocspSigning``) or with the CA's own key.
///
/// Pure: no I/O, no clock. The caller supplies the time fields and a status lookup, and owns caching — a response
/// without a nonce depends only on the CertIDs, the statuses and the time fields, so it can be cached until
/// `nextUpdate` and must be dropped when a certificate it covers is revoked; a response with a nonce cannot be
/// reused.
///
/// CertIDs naming another issuer, or hashed with an algorithm DevID does not know, are answered `unknown` without
/// a lookup. The response names the responder by key hash, echoes a nonce of 1 to 32 octets (RFC 8954), and carries
/// the responder's certificate so a relying party can check it chains to the CA and has id-kp-OCSPSigning.
public struct OCSPResponder: Sendable {
    /// The CA whose certificates this responder answers for.
    public let issuer: Certificate
    /// The certificate whose key signs the responses (the CA's own, or a delegated OCSP signing certificate).
    public let responderCertificate: Certificate

    private let signer: CASigner
    private let responderKeyHash: [UInt8]
    private let issuerHashes: [OCSPHashAlgorithm: (name: [UInt8], key: [UInt8])]
    private let certificatesField: [UInt8]

    /// A delegated responder: `responderCertificate` must be issued by `issuer`, carry id-kp-OCSPSigning and match
    /// `responderKey` (RFC 6960 §4.2.2.2). Validity is the caller's concern: rotate before `notValidAfter`.
    public init(issuer: Certificate, responderCertificate: Certificate, responderKey: Certificate.PrivateKey)
        throws(DevIDPKIError)
    {
        guard responderKey.publicKey == responderCertificate.publicKey else {
            throw DevIDPKIError(.policyViolation, "the OCSP signing key does not match the responder certificate")
        }
        if responderCertificate != issuer {
            guard responderCertificate.issuer == issuer.subject,
                issuer.publicKey.isValidSignature(responderCertificate.signature, for: responderCertificate)
            else {
                throw DevIDPKIError(
                    .untrusted, "the OCSP responder certificate was not issued by the CA it answers for")
            }
            let usages = (try? responderCertificate.extensions.extendedKeyUsage) ?? nil
            guard let usages, usages.contains(.ocspSigning) else {
                throw DevIDPKIError(.policyViolation, "the OCSP responder certificate lacks id-kp-OCSPSigning")
            }
        }
        self.issuer = issuer
        self.responderCertificate = responderCertificate
        self.signer = try CASigner(responderKey)
        self.responderKeyHash = OCSPHashAlgorithm.sha1.hash(
            try CertificateFields.subjectPublicKeyBits(of: responderCertificate.publicKey))
        let name = try CertificateFields.subjectDER(of: issuer)
        let key = try CertificateFields.subjectPublicKeyBits(of: issuer.publicKey)
        var hashes: [OCSPHashAlgorithm: (name: [UInt8], key: [UInt8])] = [:]
        for algorithm in OCSPHashAlgorithm.allCases {
            hashes[algorithm] = (algorithm.hash(name), algorithm.hash(key))
        }
        self.issuerHashes = hashes
        // certs [0] EXPLICIT SEQUENCE OF Certificate: the responder's certificate; a CA-signed response needs none.
        if responderCertificate == issuer {
            self.certificatesField = []
        } else {
            self.certificatesField = DERWriter.encode(
                DERWriter.contextConstructed(0), DERWriter.encode(DERWriter.sequence, responderCertificate.derBytes))
        }
    }

    /// A responder that signs with the CA's own key (RFC 6960 §2.2, first option).
    public init(authority: CertificateAuthority) throws(DevIDPKIError) {
        try self.init(
            issuer: authority.certificate, responderCertificate: authority.certificate,
            responderKey: authority.signingKey)
    }

    /// Whether `id` names a certificate of this responder's CA.
    public func isAuthoritative(for id: OCSPCertificateID) -> Bool {
        guard let algorithm = id.hashAlgorithm, let hashes = issuerHashes[algorithm] else { return false }
        return hashes.name == id.issuerNameHash && hashes.key == id.issuerKeyHash
    }

    /// Answers `request`. `status` is called once for each CertID of this CA; a thrown error makes the answer
    /// ``OCSPResponse/internalError``, as does a signing failure.
    ///
    /// - Parameters:
    ///   - producedAt: When the response is signed.
    ///   - thisUpdate: When the statuses were known to be correct (at most `producedAt`).
    ///   - nextUpdate: When newer statuses will be available; relying parties cache until then.
    public func respond(
        to request: OCSPRequest,
        producedAt: Date,
        thisUpdate: Date,
        nextUpdate: Date?,
        status: (Certificate.SerialNumber) throws -> OCSPCertificateStatus
    ) -> OCSPResponse {
        var statuses: [OCSPCertificateStatus] = []
        statuses.reserveCapacity(request.certificateIDs.count)
        do {
            for id in request.certificateIDs {
                statuses.append(isAuthoritative(for: id) ? try status(id.serial) : .unknown)
            }
        } catch {
            return .internalError
        }
        return sign(request, statuses: statuses, producedAt: producedAt, thisUpdate: thisUpdate, nextUpdate: nextUpdate)
    }

    /// ``respond(to:producedAt:thisUpdate:nextUpdate:status:)`` with an asynchronous lookup (a registry query).
    public func respond(
        to request: OCSPRequest,
        producedAt: Date,
        thisUpdate: Date,
        nextUpdate: Date?,
        status: (Certificate.SerialNumber) async throws -> OCSPCertificateStatus
    ) async -> OCSPResponse {
        var statuses: [OCSPCertificateStatus] = []
        statuses.reserveCapacity(request.certificateIDs.count)
        do {
            for id in request.certificateIDs {
                statuses.append(isAuthoritative(for: id) ? try await status(id.serial) : .unknown)
            }
        } catch {
            return .internalError
        }
        return sign(request, statuses: statuses, producedAt: producedAt, thisUpdate: thisUpdate, nextUpdate: nextUpdate)
    }

    /// Parses `der` with `parser` and answers it; anything that does not parse gets ``OCSPResponse/malformedRequest``.
    public func respond(
        toDER der: [UInt8],
        parser: OCSPRequestParser = OCSPRequestParser(),
        producedAt: Date,
        thisUpdate: Date,
        nextUpdate: Date?,
        status: (Certificate.SerialNumber) throws -> OCSPCertificateStatus
    ) -> OCSPResponse {
        guard let request = try? parser.parse(der) else { return .malformedRequest }
        return respond(
            to: request, producedAt: producedAt, thisUpdate: thisUpdate, nextUpdate: nextUpdate, status: status)
    }

    // MARK: - Encoding

    private static let goodStatus: [UInt8] = [DERWriter.contextPrimitive(0), 0x00]
    private static let unknownStatus: [UInt8] = [DERWriter.contextPrimitive(2), 0x00]

    private func sign(
        _ request: OCSPRequest, statuses: [OCSPCertificateStatus], producedAt: Date, thisUpdate: Date,
        nextUpdate: Date?
    ) -> OCSPResponse {
        let thisUpdateNode = Self.generalizedTime(thisUpdate)
        let nextUpdateField = nextUpdate.map {
            DERWriter.encode(DERWriter.contextConstructed(0), Self.generalizedTime($0))
        }
        var responses: [OCSPSingleResponse] = []
        var responsesContent: [UInt8] = []
        for (id, status) in zip(request.certificateIDs, statuses) {
            var single = id.derBytes
            switch status {
            case .good:
                single += Self.goodStatus
            case .unknown:
                single += Self.unknownStatus
            case .revoked(let at, let reason):
                var info = Self.generalizedTime(at)
                if reason != .unspecified {
                    info += DERWriter.encode(
                        DERWriter.contextConstructed(0), [DERWriter.enumerated, 0x01, UInt8(reason.code)])
                }
                single += DERWriter.encode(DERWriter.contextConstructed(1), info)
            }
            single += thisUpdateNode
            if let nextUpdateField { single += nextUpdateField }
            responsesContent += DERWriter.encode(DERWriter.sequence, single)
            responses.append(
                OCSPSingleResponse(
                    certificateID: id, status: Self.truncated(status), thisUpdate: DERTime.truncated(thisUpdate),
                    nextUpdate: nextUpdate.map(DERTime.truncated)))
        }

        // ResponderID byKey [2] EXPLICIT KeyHash; version v1 is the DEFAULT and so omitted.
        var data = DERWriter.encode(
            DERWriter.contextConstructed(2), DERWriter.encode(DERWriter.octetString, responderKeyHash))
        data += Self.generalizedTime(producedAt)
        data += DERWriter.encode(DERWriter.sequence, responsesContent)
        var echoedNonce: [UInt8]?
        if let value = request.nonceExtensionValue, let nonce = request.nonce, (1...32).contains(nonce.count) {
            let ext = DERWriter.encode(
                DERWriter.sequence,
                DERWriter.objectIdentifier(OCSPRequest.nonceOID) + DERWriter.encode(DERWriter.octetString, value))
            data += DERWriter.encode(DERWriter.contextConstructed(1), DERWriter.encode(DERWriter.sequence, ext))
            echoedNonce = nonce
        }
        let tbs = DERWriter.encode(DERWriter.sequence, data)

        guard let signed = try? signer.signedEnvelope(tbs: tbs, trailer: certificatesField) else {
            return .internalError
        }
        return OCSPResponse(
            successful: OCSPBasicResponse(
                responderKeyHash: responderKeyHash, producedAt: DERTime.truncated(producedAt), responses: responses,
                nonce: echoedNonce, certificates: responderCertificate == issuer ? [] : [responderCertificate],
                derBytes: signed.der, tbsRange: signed.tbsRange, signatureAlgorithm: signer.algorithmOID,
                signature: signed.signature))
    }

    private static func generalizedTime(_ date: Date) -> [UInt8] {
        var writer = DERWriter(capacity: 17)
        writer.generalizedTime(DERTime.components(date))
        return writer.bytes
    }

    private static func truncated(_ status: OCSPCertificateStatus) -> OCSPCertificateStatus {
        if case .revoked(let at, let reason) = status { return .revoked(at: DERTime.truncated(at), reason: reason) }
        return status
    }
}
