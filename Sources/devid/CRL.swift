import ArgumentParser
import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import Foundation
import NIOCore
import NIOHTTP1
import X509

/// `devid crl fetch`: downloads a CRL the way a relying party does and checks it.
struct CRLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crl", abstract: "Certificate revocation lists as relying parties fetch them.",
        subcommands: [Fetch.self])

    struct Fetch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch a CRL from the server (GET /crl/NAME.crl), check its signature, optionally save it.",
            discussion: """
                NAME is `issuing` (LDevIDs), `manufacturer` (IDevIDs of DevID's own manufacturer CA), or a \
                partition such as `issuing-4-1` when crl.partitions is above 1. The signature is checked against \
                DATA/ca/issuing.crt or DATA/ca/manufacturer.crt when the data directory has them. No admin token \
                is needed: CRLs are public. See docs/revocation.md.
                """)

        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "CRL name, e.g. issuing.") var name: String = "issuing"
        @Option(name: .long, help: "Write the DER CRL to this file.") var out: String?
        @Option(name: .long, help: "Say whether this serial (hex, colons allowed) is listed.") var serial: String?

        struct Summary: Encodable {
            var name: String; var url: String; var number: UInt64?; var thisUpdate: Date; var nextUpdate: Date?
            var entries: Int; var bytes: Int; var signatureVerified: Bool?; var serial: String?; var listed: Bool?
            var reason: String?; var revokedAt: Date?
        }

        func run() async throws {
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 < 0x80 && (isalnum(Int32($0)) != 0 || $0 == 0x2D) }) else {
                throw CLIError("invalid CRL name \(name)")
            }
            var wanted: Certificate.SerialNumber?
            // Shown as `devid cert status` shows serials: lowercase hex without colons, whatever form was given.
            var shownSerial: String?
            if let serial {
                let hex = serial.replacingOccurrences(of: ":", with: "").lowercased()
                guard let value = DevIDCore.SerialNumber(rawValue: hex),
                    let bytes = Hex.decode(value.rawValue.count % 2 == 0 ? value.rawValue : "0" + value.rawValue)
                else {
                    throw CLIError("invalid serial (hex expected)")
                }
                wanted = Certificate.SerialNumber(bytes: bytes)
                shownSerial = value.rawValue
            }
            let url = try Self.opsURL(global) + "/crl/\(name).crl"
            let response: HTTPClientResponse
            do {
                response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
            } catch {
                throw CLIError("cannot reach \(url): \(NetworkFailure.describe(error))")
            }
            let body = Array(buffer: try await response.body.collect(upTo: 64 * 1024 * 1024))
            guard response.status.code == 200 else {
                throw CLIError(
                    "server answered \(response.status.code): "
                        + String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            }
            let crl: CertificateRevocationList
            do {
                crl = try CertificateRevocationList(derEncoded: body)
            } catch {
                throw CLIError("\(url) did not return a DER CRL: \(error)")
            }
            var verified: Bool?
            let layout = CALayout(dataDirectory: global.dataDir)
            let caFile = name.hasPrefix("manufacturer") ? layout.manufacturerCertificate : layout.issuingCertificate
            if let data = FileManager.default.contents(atPath: caFile),
                let ca = try? PEM.certificates(String(decoding: data, as: UTF8.self)).first
            {
                verified = crl.isSignatureValid(issuer: ca)
            }
            if let out {
                do {
                    try SecureFile.write(body, to: out, mode: 0o644)
                } catch {
                    throw CLIError("cannot write \(out): \(error)")
                }
            }
            let entry = wanted.flatMap { crl.entry(for: $0) }
            let summary = Summary(
                name: name, url: url, number: crl.crlNumber, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate,
                entries: crl.entries.count, bytes: body.count, signatureVerified: verified,
                serial: shownSerial, listed: wanted == nil ? nil : entry != nil, reason: entry?.reason.rawValue,
                revokedAt: entry?.revokedAt)
            if global.json { return try Output.json(summary) }
            print(
                "CRL \(name) #\(crl.crlNumber.map(String.init) ?? "?"): \(crl.entries.count) revoked, "
                    + "this update \(Output.date(crl.thisUpdate)), next update \(crl.nextUpdate.map(Output.date) ?? "none")")
            switch verified {
            case true?: print("signature: valid (\(caFile))")
            case false?: print("signature: INVALID against \(caFile)")
            case nil: print("signature: not checked (no \(caFile))")
            }
            if let serial = shownSerial {
                if let entry {
                    print("serial \(serial): listed (\(entry.reason.rawValue), revoked \(Output.date(entry.revokedAt)))")
                } else {
                    print("serial \(serial): not listed")
                }
            }
            if let out { print("wrote \(out) (\(body.count) bytes, DER)") }
            if verified == false { throw ExitCode(1) }
        }

        /// The operations URL: --server, DEVID_SERVER, or the running server's `server.json`.
        static func opsURL(_ options: GlobalOptions) throws -> String {
            if let server = options.server ?? ProcessInfo.processInfo.environment["DEVID_SERVER"] {
                return server.hasSuffix("/") ? String(server.dropLast()) : server
            }
            let configuration = ServerConfiguration.development(dataDirectory: options.dataDir)
            guard let data = FileManager.default.contents(atPath: configuration.endpointsPath),
                let endpoints = try? JSONDecoder().decode(ServerEndpoints.self, from: data)
            else {
                throw CLIError(
                    "no running server found: start `devid serve --data-dir \(options.dataDir)` or pass --server / DEVID_SERVER")
            }
            return endpoints.opsURL
        }
    }
}
