import SwiftASN1
import X509

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reads untrusted OCSP requests: DER from a POST body, or the base64 path component of a GET (RFC 6960 §A.1).
///
/// Never traps on its input: sizes are checked before parsing, SwiftASN1 bounds the nesting depth, and every
/// failure comes back as an ``OCSPRequestError`` — answer it with ``OCSPResponse/malformedRequest``.
public struct OCSPRequestParser: Sendable, Hashable {
    /// Requests larger than this are refused unread. An `openssl ocsp` request for one certificate is about 120
    /// bytes; a signed one with its certificate chain a few kilobytes.
    public var maximumBytes: Int
    /// CertIDs per request; each costs a status lookup and a SingleResponse.
    public var maximumCertificateIDs: Int

    public init(maximumBytes: Int = 16_384, maximumCertificateIDs: Int = 32) {
        self.maximumBytes = maximumBytes
        self.maximumCertificateIDs = maximumCertificateIDs
    }

    /// Parses a DER OCSPRequest.
    public func parse(_ bytes: [UInt8]) throws(OCSPRequestError) -> OCSPRequest {
        guard !bytes.isEmpty else { throw OCSPRequestError(.empty, "the request is empty") }
        guard bytes.count <= maximumBytes else {
            throw OCSPRequestError(.tooLarge, "the request is \(bytes.count) bytes, over \(maximumBytes)")
        }
        do {
            return try parseDER(bytes)
        } catch let error as OCSPRequestError {
            throw error
        } catch {
            throw OCSPRequestError(.malformed, "the request is not a DER OCSPRequest")
        }
    }

    /// Parses the last path component of `GET /ocsp/{url-encoding of base-64 encoding of the DER OCSPRequest}`.
    /// Accepts percent-encoding, the URL-safe alphabet and missing padding, which clients produce in the wild.
    public func parse(getPathComponent component: String) throws(OCSPRequestError) -> OCSPRequest {
        // base64 grows by 4/3 and percent-encoding by up to 3x; refuse anything that cannot decode within the limit.
        guard component.utf8.count / 4 <= maximumBytes else {
            throw OCSPRequestError(.tooLarge, "the GET path is too long for a \(maximumBytes)-byte request")
        }
        guard let der = Self.decodeBase64PathComponent(component) else {
            throw OCSPRequestError(.malformed, "the GET path is not base64")
        }
        return try parse(der)
    }

    // MARK: - DER

    private func parseDER(_ bytes: [UInt8]) throws -> OCSPRequest {
        let root = try DER.parse(bytes)
        return try DER.sequence(root, identifier: .sequence) { nodes in
            guard let tbs = nodes.next() else { throw OCSPRequestError(.malformed, "no TBSRequest") }
            let request = try parseTBSRequest(tbs)
            if let signature = nodes.next() {
                // optionalSignature [0]: DevID answers unsigned requests and does not check signed ones.
                guard signature.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) else {
                    throw OCSPRequestError(.malformed, "unexpected field after TBSRequest")
                }
            }
            guard nodes.next() == nil else { throw OCSPRequestError(.malformed, "trailing fields in OCSPRequest") }
            return request
        }
    }

    private func parseTBSRequest(_ node: ASN1Node) throws -> OCSPRequest {
        try DER.sequence(node, identifier: .sequence) { fields in
            var next = fields.next()
            if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                let version = try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) {
                    try Int(derEncoded: $0)
                }
                guard version == 0 else { throw OCSPRequestError(.unsupportedVersion, "version \(version)") }
                next = fields.next()
            }
            if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific) {
                next = fields.next()  // requestorName
            }
            guard let requestList = next, requestList.identifier == .sequence,
                case .constructed(let requests) = requestList.content
            else {
                throw OCSPRequestError(.malformed, "no requestList")
            }
            var ids: [OCSPCertificateID] = []
            for request in requests {
                guard ids.count < maximumCertificateIDs else {
                    throw OCSPRequestError(.tooManyCertificateIDs, "over \(maximumCertificateIDs) CertIDs")
                }
                ids.append(try parseRequest(request))
            }
            guard !ids.isEmpty else { throw OCSPRequestError(.noCertificateIDs, "the requestList is empty") }

            var nonce: [UInt8]?
            var nonceValue: [UInt8]?
            next = fields.next()
            if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific) {
                let extensions = try Self.extensions(node)
                for ext in extensions {
                    if ext.oid == OCSPRequest.nonceOID {
                        guard nonceValue == nil else { throw OCSPRequestError(.malformed, "two nonce extensions") }
                        nonceValue = Array(ext.value)
                        // Nonce ::= OCTET STRING inside extnValue (RFC 8954 §2.1); early clients put the octets
                        // in extnValue directly, so fall back to those.
                        if let inner = try? ASN1OctetString(derEncoded: ext.value) {
                            nonce = Array(inner.bytes)
                        } else {
                            nonce = Array(ext.value)
                        }
                    } else if ext.critical {
                        throw OCSPRequestError(.unsupportedCriticalExtension, "critical request extension \(ext.oid)")
                    }
                }
                next = fields.next()
            }
            guard next == nil else { throw OCSPRequestError(.malformed, "trailing fields in TBSRequest") }
            return OCSPRequest(certificateIDs: ids, nonce: nonce, nonceExtensionValue: nonceValue)
        }
    }

    private func parseRequest(_ node: ASN1Node) throws -> OCSPCertificateID {
        try DER.sequence(node, identifier: .sequence) { fields in
            guard let certID = fields.next() else { throw OCSPRequestError(.malformed, "Request has no CertID") }
            let id = try OCSPCertificateID(derEncoded: certID)
            if let node = fields.next() {
                guard node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) else {
                    throw OCSPRequestError(.malformed, "unexpected field in Request")
                }
                for ext in try Self.extensions(node) where ext.critical {
                    throw OCSPRequestError(
                        .unsupportedCriticalExtension, "critical single-request extension \(ext.oid)")
                }
            }
            guard fields.next() == nil else { throw OCSPRequestError(.malformed, "trailing fields in Request") }
            return id
        }
    }

    /// `[n] EXPLICIT Extensions`.
    private static func extensions(_ node: ASN1Node) throws -> [Certificate.Extension] {
        guard case .constructed(let inner) = node.content else {
            throw OCSPRequestError(.malformed, "extensions are not constructed")
        }
        var iterator = inner.makeIterator()
        guard let sequence = iterator.next(), iterator.next() == nil else {
            throw OCSPRequestError(.malformed, "extensions hold more than one node")
        }
        return try DER.sequence(of: Certificate.Extension.self, identifier: .sequence, rootNode: sequence)
    }

    // MARK: - GET

    /// Percent-decodes, then base64-decodes (standard or URL-safe alphabet, padding optional).
    static func decodeBase64PathComponent(_ component: String) -> [UInt8]? {
        var text: [UInt8] = []
        text.reserveCapacity(component.utf8.count)
        var iterator = component.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                text.append(high << 4 | low)
            } else {
                text.append(byte)
            }
        }
        for index in text.indices {
            if text[index] == UInt8(ascii: "-") { text[index] = UInt8(ascii: "+") }
            if text[index] == UInt8(ascii: "_") { text[index] = UInt8(ascii: "/") }
        }
        while text.count % 4 != 0 { text.append(UInt8(ascii: "=")) }
        guard let data = Data(base64Encoded: Data(text)) else { return nil }
        return Array(data)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
