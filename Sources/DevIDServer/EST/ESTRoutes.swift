import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import X509

/// RFC 7030 on the mTLS listener: `/.well-known/est/[<label>/]{cacerts,csrattrs,simpleenroll,simplereenroll}`.
///
/// Bodies follow §4: requests `application/pkcs10` in base64; certificates `application/pkcs7-mime;
/// smime-type=certs-only` in base64 with `Content-Transfer-Encoding: base64`; csrattrs `application/csrattrs`.
/// Hummingbird adds `Date` and, for these buffered bodies, `Content-Length`. Refusals are `text/plain`, one line.
enum ESTRoutes {
    static let certsOnly = "application/pkcs7-mime; smime-type=certs-only"

    static func register(_ router: Router<DeviceRequestContext>, state: ServerState) {
        let service = EnrollmentService(state: state)
        for prefix in ["/.well-known/est", "/.well-known/est/:label"] {
            router.get("\(prefix)/cacerts") { _, context in
                if let label = context.parameters.get("label"), !(await knownLabel(label, state)) {
                    return text(.notFound, "unknown EST label")
                }
                return try base64Response(state.issuers.snapshot.caCertsCMS, contentType: certsOnly)
            }
            router.get("\(prefix)/csrattrs") { _, context in
                if let label = context.parameters.get("label"), !(await knownLabel(label, state)) {
                    return text(.notFound, "unknown EST label")
                }
                let profile = CertificateProfile(kind: .ldevid, policy: state.configuration.ldevidPolicy)
                return try base64Response(
                    CSRAttributes.forProfile(profile).derBytes(), contentType: "application/csrattrs")
            }
            router.post("\(prefix)/simpleenroll") { request, context in
                try await enroll(.enroll, request, context, service: service, state: state)
            }
            router.post("\(prefix)/simplereenroll") { request, context in
                try await enroll(.reenroll, request, context, service: service, state: state)
            }
        }
    }

    static func knownLabel(_ label: String, _ state: ServerState) async -> Bool {
        guard let id = TenantID(rawValue: label) else { return false }
        return ((try? await state.store.tenant(id)) ?? nil) != nil
    }

    static func enroll(
        _ kind: EnrollmentService.Kind, _ request: Request, _ context: DeviceRequestContext,
        service: EnrollmentService, state: ServerState
    ) async throws -> Response {
        let contentType = request.headers[.contentType]?.split(separator: ";").first
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let source = context.channel.remoteAddress?.ipAddress
        // Before authentication: nobody is named, so audited in aggregate (``AnonymousFailures``).
        guard contentType == "application/pkcs10" else {
            let reason = "Content-Type must be application/pkcs10"
            await state.anonymousFailures.record(action: kind.action, reason: reason, source: source)
            return text(.unsupportedMediaType, reason)
        }
        // Back-pressure before the body is read, the CSR checked or anything signed.
        let peerChain = await context.verifiedPeerChain()
        // Classified once: the limiter, the renewal priority and the enrollment itself read the same answer.
        let identity = peerChain.flatMap {
            PeerIdentity.classify(chain: $0, hierarchy: state.hierarchy, issuers: state.issuers.snapshot)
        }
        let credential = ESTHTTPCredential(header: request.headers[.authorization])
        if let refused = await Backpressure.admitEST(
            kind, label: context.parameters.get("label"), identity: identity, credential: credential, source: source,
            state: state)
        {
            return refused
        }
        // The body (at most est.max.body.bytes) is read before a slot is taken: a client that trickles its body
        // holds only its own connection (the idle timeout ends it), never one of the slots everybody shares.
        let limit = state.configuration.maxRequestBodyBytes
        guard let body = try? await request.body.collect(upTo: limit) else {
            let reason = "request body over \(limit) bytes"
            await state.anonymousFailures.record(action: kind.action, reason: reason, source: source)
            return text(.contentTooLarge, reason)
        }
        // The reserve is for renewals of LDevIDs about to expire (``RenewalPriority``); handling never throws, so
        // the slot is always given back.
        let priority = Backpressure.isPriorityRenewal(kind, peerChain: peerChain, identity: identity, state: state)
        guard await state.enrollmentGate.enter(priority: priority) else {
            return await Backpressure.overloaded(action: kind.action, source: source, state: state)
        }
        let verdict = await service.handle(
            EnrollmentService.Request(
                kind: kind, label: context.parameters.get("label"), peerChain: peerChain, identity: identity,
                credential: credential, body: Array(buffer: body), source: source))
        await state.enrollmentGate.leave()
        switch verdict {
        case .issued(let der):
            state.auditor.storage.clear(logger: state.logger)  // it was recorded: the registry's disk takes writes
            return try base64Response(CertsOnlyCMS.derBytes(encodedCertificates: [der]), contentType: certsOnly)
        case .parked(let retryAfter, let reason):
            var response = text(.accepted, reason)
            response.headers[.retryAfter] = String(retryAfter)
            return response
        case .refused(let status, let code, let reason, let challenge):
            var response = refusal(status, code, reason)
            if challenge {
                response.headers[values: .wwwAuthenticate] = ["Basic realm=\"devid-est\"", "Bearer realm=\"devid-est\""]
            }
            if code == .storageFull {
                response.headers[.retryAfter] = String(StorageAlarm.retryAfterSeconds)
            }
            if code == .caKeyUnavailable {
                response.headers[.retryAfter] = "30"
            }
            if code == .registryUnavailable {
                response.headers[.retryAfter] = "10"
            }
            return response
        }
    }

    static func base64Response(_ der: [UInt8], contentType: String) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.contentTransferEncoding] = "base64"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: ESTBase64.encode(der))))
    }

    /// A refusal: the one-line reason as the body, and its stable code in the `DevID-Refusal` header, which
    /// clients switch on (the text may change; the code does not).
    static func refusal(_ status: HTTPResponse.Status, _ code: RefusalCode, _ reason: String) -> Response {
        var response = text(status, reason)
        response.headers[.devidRefusal] = code.rawValue
        return response
    }

    static func text(_ status: HTTPResponse.Status, _ reason: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: reason + "\n")))
    }
}

extension HTTPField.Name {
    static let contentTransferEncoding = HTTPField.Name("Content-Transfer-Encoding")!
    /// The stable, machine-readable code of a refusal (``RefusalCode``), next to the human one-line body.
    static let devidRefusal = HTTPField.Name("DevID-Refusal")!
}
