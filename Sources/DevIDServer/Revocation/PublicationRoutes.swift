import DevIDCore
import DevIDPKI
public import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// What relying parties fetch from the operations listener, without authentication:
///
/// - `GET /crl/<name>.crl`: a DER CRL (`application/pkix-crl`) with `Cache-Control`, `ETag`, `Last-Modified` and
///   `Expires` (the CRL's nextUpdate); `If-None-Match` gets a 304.
/// - `POST /ocsp` (`application/ocsp-request`) and `GET /ocsp/<url-encoded base64 request>` (RFC 6960 §A.1):
///   an `application/ocsp-response`. A request that does not parse gets a `malformedRequest` OCSP response
///   (HTTP 200, as RFC 6960 asks); a POST body over the limit gets `413` with a one-line reason.
enum PublicationRoutes {
    /// Largest OCSP POST body read; a one-certificate request from `openssl ocsp` is about 120 bytes.
    static let maximumOCSPRequestBytes = 64 * 1024
    /// Caches (CDNs, relying parties that honour HTTP caching) keep a CRL at most this long, so a revocation
    /// reaches them within a minute even though the CRL itself is valid for hours.
    static let maximumCRLCacheSeconds = 60
    static let crlMediaType = "application/pkix-crl"

    static func register<Context: RequestContext>(_ router: Router<Context>, state: ServerState) {
        let publisher = state.revocation
        router.get("/crl/:file") { request, context -> Response in
            let file = try context.parameters.require("file")
            guard file.hasSuffix(".crl"), file.count > 4 else { return text(.notFound, "unknown CRL \(file)") }
            let name = String(file.dropLast(4))
            let lookup: CRLLookup
            var untilRebuild = maximumCRLCacheSeconds
            let otherRoot = name.hasPrefix("root") ? Int(name.dropFirst(4)) : nil
            if name == "root" || otherRoot != nil {
                // The roots' CRLs are signed ahead at root ceremonies (RootCRLs), never by the server.
                let cache =
                    otherRoot.map { state.otherRootCRLs.cache(id: $0, roots: state.issuers.snapshot.roots) }
                    ?? state.rootCRLs
                if let crl = cache?.crls.current(at: state.clock.now()) {
                    lookup = .found(PublishedCRL(name: name, caName: name, crl: crl, url: ""))
                } else {
                    lookup = .missing(
                        status: 404, reason: "no root CRL: sign them with devid ca root-crl --root-key FILE")
                }
            } else {
                lookup = await publisher.crl(named: name)
                untilRebuild = await publisher.secondsUntilScheduledRebuild()
            }
            switch lookup {
            case .missing(let status, let reason):
                return text(.init(code: status), reason)
            case .found(let crl):
                let now = state.clock.now()
                let untilNextUpdate = max(0, Int(crl.nextUpdate.timeIntervalSince(now)))
                let maxAge = min(untilRebuild, untilNextUpdate, maximumCRLCacheSeconds)
                var headers = HTTPFields()
                headers[.contentType] = crlMediaType
                headers[.cacheControl] = "public, max-age=\(maxAge), no-transform"
                headers[.eTag] = crl.entityTag
                headers[.lastModified] = httpDate(crl.thisUpdate)
                headers[.expires] = httpDate(crl.nextUpdate)
                if let match = request.headers[.ifNoneMatch],
                    match.split(separator: ",").contains(where: {
                        $0.trimmingCharacters(in: .whitespaces) == crl.entityTag
                    })
                {
                    return Response(status: .notModified, headers: headers)
                }
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: crl.der)))
            }
        }

        // The roots' certificates, DER: what the Authority Information Access (caIssuers) of the issuing and
        // services CA certificates names.
        router.get("/ca/:file") { _, context -> Response in
            let file = try context.parameters.require("file")
            let roots = state.issuers.snapshot.roots
            // DevID's own manufacturer CAs too (`manufacturer.crt`, `manufacturer<id>.crt`): their AIA names them.
            let manufacturer = state.hierarchy.ownManufacturers.first {
                ($0.key == 1 ? "manufacturer" : "manufacturer\($0.key)") + ".crt" == file
            }?.value.certificate
            guard file.hasSuffix(".crt"),
                let root = manufacturer
                    ?? roots.ids.first(where: { Roots.crlName(id: $0) + ".crt" == file }).flatMap({ roots.certificates[$0] })
            else { return text(.notFound, "unknown CA certificate \(file)") }
            var headers = HTTPFields()
            headers[.contentType] = "application/pkix-cert"
            headers[.cacheControl] = "public, max-age=3600"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: root.derBytes)))
        }

        router.post("/ocsp") { request, _ -> Response in
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: maximumOCSPRequestBytes)
            } catch {
                return text(.contentTooLarge, "OCSP request over \(maximumOCSPRequestBytes) bytes")
            }
            return await ocsp(Array(buffer: body), get: false, state: state)
        }
        // A GET without a request in the path.
        router.get("/ocsp") { _, _ -> Response in
            await respond(.malformedRequest, cacheUntil: nil, state: state)
        }
        // The base64 alphabet has '/', so the request may span several path components when a client does not
        // percent-encode it: take everything after `/ocsp/` from the raw path.
        // A request seen before is answered from `getAnswers` (by its path, as sent) while its answer is cached.
        let getAnswers = publisher.getAnswers
        router.get("/ocsp/**") { request, _ -> Response in
            let path = request.uri.path
            let component = path.hasPrefix("/ocsp/") ? String(path.dropFirst("/ocsp/".count)) : ""
            let now = state.clock.now()
            if let cached = getAnswers.entry(for: component, now: now) {
                return cachedGET(cached, now: now, getAnswers: getAnswers)
            }
            let epoch = getAnswers.epoch
            let parser = OCSPRequestParser()
            guard let parsed = try? parser.parse(getPathComponent: component) else {
                return await respond(.malformedRequest, cacheUntil: nil, state: state)
            }
            let answer = await state.revocation.answer(parsed, der: parsed.derBytesForCache)
            if let nextUpdate = answer.nextUpdate, let cacheUntil = answer.cacheUntil {
                getAnswers.store(
                    .init(
                        body: ByteBuffer(bytes: answer.response.derBytes), nextUpdate: nextUpdate,
                        expires: httpDate(nextUpdate), cacheUntil: cacheUntil),
                    for: component, epoch: epoch)
            }
            return await respond(answer.response, cacheUntil: answer.nextUpdate, state: state)
        }
    }

    /// A cached GET answer, with the headers ``respond(_:cacheUntil:state:)`` writes for it.
    private static func cachedGET(_ cached: OCSPGetCache.Entry, now: Date, getAnswers: OCSPGetCache) -> Response {
        var headers = HTTPFields()
        headers.reserveCapacity(4)
        headers[.contentType] = OCSPResponse.mediaType
        let maxAge = max(0, Int(cached.nextUpdate.timeIntervalSince(now)))
        headers[.cacheControl] = "max-age=\(maxAge), public, no-transform, must-revalidate"
        headers[.lastModified] = getAnswers.httpDate(now)
        headers[.expires] = cached.expires
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: cached.body))
    }

    private static func ocsp(_ der: [UInt8], get: Bool, state: ServerState) async -> Response {
        guard let request = try? OCSPRequestParser().parse(der) else {
            return await respond(.malformedRequest, cacheUntil: nil, state: state)
        }
        return await answer(request, der: der, get: get, state: state)
    }

    private static func answer(_ request: OCSPRequest, der: [UInt8], get: Bool, state: ServerState) async -> Response {
        let answer = await state.revocation.answer(request, der: der)
        return await respond(answer.response, cacheUntil: get ? answer.nextUpdate : nil, state: state)
    }

    private static func respond(_ response: OCSPResponse, cacheUntil nextUpdate: Date?, state: ServerState) async
        -> Response
    {
        var headers = HTTPFields()
        headers[.contentType] = OCSPResponse.mediaType
        if let nextUpdate {
            // RFC 5019 §6.2: let HTTP caches keep a nonce-less GET answer until its nextUpdate.
            let now = state.clock.now()
            let maxAge = max(0, Int(nextUpdate.timeIntervalSince(now)))
            headers[.cacheControl] = "max-age=\(maxAge), public, no-transform, must-revalidate"
            headers[.lastModified] = httpDate(now)
            headers[.expires] = httpDate(nextUpdate)
        } else {
            headers[.cacheControl] = "no-store"
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: response.derBytes)))
    }

    static func text(_ status: HTTPResponse.Status, _ reason: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: reason + "\n")))
    }

    /// RFC 9110 IMF-fixdate.
    static func httpDate(_ date: Date) -> String { IMFFixdate.string(from: date) }
}

extension OCSPRequest {
    /// The request re-encoded: the cache key of a GET (its path may spell the same bytes several ways).
    fileprivate var derBytesForCache: [UInt8] { derBytes }
}

/// HTTP dates for `Last-Modified` and `Expires`.
public enum IMFFixdate {
    /// IMF-fixdate (RFC 9110 §5.6.7), built by hand: a `DateFormatter` per call cost more than the OCSP signature
    /// (benchmark profile), and a shared one is not thread-safe.
    public static func string(from date: Date) -> String {
        let days = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let day = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - day * 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let dayOfMonth = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let weekday = days[((day % 7) + 7) % 7]
        return "\(weekday), \(two(dayOfMonth)) \(months[month - 1]) \(year) "
            + "\(two(secondOfDay / 3_600)):\(two(secondOfDay % 3_600 / 60)):\(two(secondOfDay % 60)) GMT"
    }
}
