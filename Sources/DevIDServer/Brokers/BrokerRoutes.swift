import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import X509

/// What `devid export mosquitto` sends.
struct MosquittoExportRequest: Decodable, Sendable {
    /// Where the files will live on the broker's machine (written into the configuration).
    var directory: String
    var port: Int?
    var bindAddress: String?
    /// A PKCS#10 request (base64 DER) for the broker's TLS certificate, made with a key that stays on the broker's
    /// machine; omitted when the broker already has a valid certificate.
    var csr: String?
    /// DNS names or IP addresses for the broker certificate (default `localhost`, `127.0.0.1`).
    var brokerNames: [String]?
}

struct MosquittoExportResponse: Codable, Sendable {
    /// File name → content (text) for the export directory.
    var files: [String: String]
    /// The broker's certificate chain (PEM), when a CSR was sent.
    var brokerCertificate: String?
    var devices: Int
}

/// `POST /v1/admin/exports/mosquitto`: the Mosquitto files of this moment, and optionally a broker certificate.
enum BrokerRoutes {
    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.post("/exports/mosquitto") { request, context -> JSONBody<MosquittoExportResponse> in
            try context.requireAllTenants("a broker export of every tenant")
            let body = try await request.decode(as: MosquittoExportRequest.self, context: context)
            guard body.directory.hasPrefix("/"), !body.directory.contains(" "),
                ControlCharacters.first(in: body.directory) == nil
            else {
                throw HTTPError(.badRequest, message: "directory must be an absolute path without spaces")
            }
            let port = body.port ?? 8883
            guard (1...65_535).contains(port) else { throw HTTPError(.badRequest, message: "port must be 1-65535") }
            let bind = body.bindAddress ?? "0.0.0.0"
            guard !bind.isEmpty, bind.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                throw HTTPError(.badRequest, message: "invalid bind address")
            }
            let names = body.brokerNames ?? ["localhost", "127.0.0.1"]
            guard !names.isEmpty, names.allSatisfy(Self.isValidHostName) else {
                throw HTTPError(.badRequest, message: "broker names must be DNS names or IP addresses")
            }
            // Before anything is issued: without the issuing CAs' CRLs the files would lock every device out.
            let snapshot = try await BrokerSnapshot.take(state: state)
            guard !snapshot.crls.isEmpty else {
                let reason = "CRLs are not published yet; retry in a second"
                await state.auditor.record(
                    actor: context.actor, action: "export.mosquitto", outcome: .denied, reason: reason)
                throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "1"], message: reason)
            }
            var brokerCertificate: String?
            if let csr = body.csr {
                brokerCertificate = try await issueBrokerCertificate(
                    csr: csr, names: names, state: state, actor: context.actor)
            }
            let export = MosquittoExport(
                port: port, bindAddress: bind, certificateFile: "\(body.directory)/\(BrokerCertificate.certificateFile)",
                keyFile: "\(body.directory)/\(BrokerCertificate.keyFile)")
            let files: [String: [UInt8]]
            do throws(DevIDPKIError) {
                // Refuses a value that would not stay on its line (a device id or filter that slipped past validation).
                files = try export.files(
                    directory: body.directory, trust: state.issuers.snapshot.caCertificates(),
                    crls: snapshot.crls, grants: snapshot.grants)
            } catch {
                await state.auditor.record(
                    actor: context.actor, action: "export.mosquitto", outcome: .denied, reason: error.reason)
                throw HTTPError(.internalServerError, message: error.reason)
            }
            await state.auditor.record(
                actor: context.actor, action: "export.mosquitto", outcome: .success,
                reason: "\(snapshot.grants.count) devices in the ACL")
            return JSONBody(
                MosquittoExportResponse(
                    files: files.mapValues { String(decoding: $0, as: UTF8.self) }, brokerCertificate: brokerCertificate,
                    devices: snapshot.grants.count))
        }
    }

    /// A broker certificate for the CSR's key from the services CA, recorded in the registry (with its audit event)
    /// before the PEM chain is returned. Without a services CA, 409 naming `devid ca init-services`.
    static func issueBrokerCertificate(csr: String, names: [String], state: ServerState, actor: String) async throws
        -> String
    {
        guard let der = Data(base64Encoded: csr) else {
            throw HTTPError(.badRequest, message: "csr is not base64")
        }
        let request: EnrollmentRequest
        do {
            request = try EnrollmentRequest(der: Array(der))
        } catch {
            await state.auditor.record(
                actor: actor, action: "broker.certificate", outcome: .denied, reason: error.reason)
            throw HTTPError(.badRequest, message: error.reason)
        }
        let services: CertificateAuthority
        do {
            services = try state.hierarchy.requireServices()
        } catch {
            await state.auditor.record(
                actor: actor, action: "broker.certificate", outcome: .denied, reason: error.reason)
            throw HTTPError(.conflict, message: error.reason)
        }
        let certificate: Certificate
        do {
            certificate = try BrokerCertificate.issue(
                names: names, publicKey: request.publicKey, services: services, now: state.clock.now(),
                revocation: await state.revocation.endpoints(caName: "services"))
        } catch {
            await state.auditor.record(
                actor: actor, action: "broker.certificate", outcome: .denied, reason: error.reason)
            throw HTTPError(.badRequest, message: error.reason)
        }
        // Nothing leaves unrecorded: a failed write means no certificate.
        try await ServiceCertificateRecorder(store: state.store, auditor: state.auditor, clock: state.clock).record(
            certificate, service: "mosquitto", names: names, actor: actor)
        return PEM.bundle([certificate, services.certificate])
    }

    /// A DNS name (letters, digits, `-`, `.`, optionally a leading `*.`) or an IPv4/IPv6 address.
    static func isValidHostName(_ name: String) -> Bool {
        if IPAddress.bytes(name) != nil { return true }
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let body = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
        return body.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { byte in
                    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                        || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                        || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
                }
        }
    }
}

/// The CRLs and grants that the broker files are made from, read together.
enum BrokerSnapshot {
    static func take(state: ServerState) async throws -> (crls: [[UInt8]], grants: [BrokerGrant]) {
        let grants = try await BrokerGrants.all(store: state.store)
        let crls = await state.brokerCRLs()
        return (crls, grants)
    }
}
