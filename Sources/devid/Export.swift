import ArgumentParser
import DevIDCore
import DevIDPKI
import DevIDServer
import Foundation
import SwiftASN1
import X509

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the files a broker needs to enforce DevID identities.",
        subcommands: [Mosquitto.self])

    struct Mosquitto: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "CA bundle, CRLs, ACL from the topic policies, broker certificate and a mosquitto.conf listener block.",
            discussion: """
                Writes into --dir: ca.pem, crl.pem, acl, broker.pem, broker.key (0600, made here; only a CSR is \
                sent) and devid-mosquitto.conf. Add `include_dir DIR` to mosquitto.conf. The files are a snapshot: \
                `devid serve --mosquitto-dir DIR --mosquitto-pid-file F` keeps them current and reloads Mosquitto. \
                See docs/integrations/mosquitto.md.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "The export directory (absolute path as the broker sees it).") var dir: String
        @Option(name: .long, help: "The MQTT TLS listener port.") var port: Int = 8883
        @Option(name: .long, help: "The listener's bind address.") var bind: String = "0.0.0.0"
        @Option(name: .customLong("broker-name"), help: "A DNS name or IP address for the broker certificate (repeatable).")
        var brokerNames: [String] = []

        func run() async throws {
            let directory = URL(fileURLWithPath: dir).standardizedFileURL.path
            let names = brokerNames.isEmpty ? ["localhost", "127.0.0.1"] : brokerNames
            try SecureFile.createDirectory(directory, mode: 0o755)
            // Keep a broker certificate that still has a third of its life and the same names; otherwise make a
            // new key here and ask DevID to certify it.
            let keyPath = "\(directory)/\(BrokerCertificate.keyFile)"
            var csr: String?
            var newKeyPEM: String?
            if !BrokerCertificate.isCurrent(directory: directory, names: names, issuer: nil, now: SystemWallClock().now()) {
                let key = try KeyMaterial.generate(.p256)
                let request = try CertificateSigningRequest(
                    version: .v1, subject: try DistinguishedName { CommonName(names[0]) }, privateKey: key,
                    attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
                var serializer = DER.Serializer()
                try serializer.serialize(request)
                csr = Data(serializer.serializedBytes).base64EncodedString()
                newKeyPEM = try key.serializeAsPEM().pemString
            }
            struct Body: Encodable {
                var directory: String; var port: Int; var bindAddress: String; var csr: String?; var brokerNames: [String]
            }
            struct Response: Decodable { var files: [String: String]; var brokerCertificate: String?; var devices: Int }
            let response = try await AdminClient(options: global).post(
                "/v1/admin/exports/mosquitto",
                json: Body(directory: directory, port: port, bindAddress: bind, csr: csr, brokerNames: names),
                as: Response.self)
            // What the server sent is checked like what it would write itself (BrokerFileEntry): only the export's
            // file names, clean lines, an ACL of DevID's own lines. A poisoned answer fails here; nothing is written.
            let files = response.files.mapValues { Array($0.utf8) }
            for (name, bytes) in files { try BrokerFileEntry.check(file: name, bytes) }
            if let certificate = response.brokerCertificate {
                guard (try? PEM.certificates(certificate))?.isEmpty == false,
                    certificate.unicodeScalars.allSatisfy({ $0 == "\n" || !ControlCharacters.isForbidden($0) })
                else { throw CLIError("the server's broker certificate is not a clean PEM chain; nothing written") }
            }
            if let newKeyPEM, let certificate = response.brokerCertificate {
                try SecureFile.write(Array(newKeyPEM.utf8), to: keyPath, mode: 0o600)
                try SecureFile.write(
                    Array(certificate.utf8), to: "\(directory)/\(BrokerCertificate.certificateFile)", mode: 0o644)
            }
            let changed = try MosquittoExport.write(files, to: directory)
            if global.json {
                struct Summary: Encodable { var directory: String; var devices: Int; var changed: [String]; var newBrokerCertificate: Bool }
                return try Output.json(
                    Summary(directory: directory, devices: response.devices, changed: changed, newBrokerCertificate: csr != nil))
            }
            print("wrote \(directory): \(response.devices) devices in the ACL"
                + (csr != nil ? ", a new broker certificate for \(names.joined(separator: ", "))" : ""))
            print("add to mosquitto.conf:  include_dir \(directory)")
        }
    }
}
