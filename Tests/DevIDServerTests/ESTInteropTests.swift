import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// Enrollment with nothing but `openssl` and `curl` on the client side (RFC 7030 as third parties speak it).
@Suite("EST interop: openssl + curl", .serialized)
struct ESTInteropTests {
    struct Shell {
        let dir: TemporaryDirectory
        let root: String
        let issuing: String
        let est: String

        /// Runs a shell pipeline in the work directory; fails the test on a non-zero exit.
        @discardableResult
        func run(_ script: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
            let result = try await ExternalTool.runAsync(["bash", "-c", "set -euo pipefail; cd '\(dir.path)'; \(script)"])
            #expect(result.succeeded, "\(script)\n\(result.stderr)", sourceLocation: sourceLocation)
            return result.stdout
        }

        /// openssl makes a P-256 key and a DER CSR, base64 for the EST body.
        func csr(_ name: String, subject: String) async throws {
            try await run(
                """
                openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \(name).key \
                  -subj '\(subject)' -outform DER -out \(name).csr.der 2>/dev/null
                openssl base64 -in \(name).csr.der -out \(name).csr.b64
                """)
        }

        /// Turns an EST certs-only response into PEM and verifies it against the DevID root.
        func verifyIssued(_ name: String) async throws -> String {
            try await run(
                """
                openssl base64 -d -in \(name).resp.b64 -out \(name).resp.der
                openssl pkcs7 -inform DER -in \(name).resp.der -print_certs -out \(name).crt
                openssl verify -CAfile \(root) -untrusted \(issuing) \(name).crt
                openssl x509 -in \(name).crt -noout -subject -ext subjectAltName
                """)
        }
    }

    func setUp() async throws -> (ESTFixture, Shell) {
        let f = try await ESTFixture()
        let layout = CALayout(dataDirectory: f.server.configuration.dataDirectory)
        let shell = Shell(
            dir: try TemporaryDirectory(prefix: "devid-interop"), root: layout.rootCertificate,
            issuing: layout.issuingCertificate, est: f.server.estURL + "/.well-known/est")
        return (f, shell)
    }

    @Test("cacerts parses with openssl pkcs7 -print_certs")
    func cacerts() async throws {
        let (f, sh) = try await setUp()
        let out = try await sh.run(
            """
            curl -sS --fail --cacert \(sh.root) \(sh.est)/cacerts -o cacerts.b64
            openssl base64 -d -in cacerts.b64 | openssl pkcs7 -inform DER -print_certs | grep '^subject='
            """)
        #expect(out.contains("CN = DevID Issuing CA"))
        #expect(out.contains("CN = DevID Root CA"))
        sh.dir.remove()
        try await f.server.stop()
    }

    @Test("claim token as Bearer, and as Basic after curl's --anyauth challenge round trip")
    func claimToken() async throws {
        let (f, sh) = try await setUp()
        let bearer = try await f.token()
        try await sh.csr("dev-b", subject: "/CN=dev-b")
        try await sh.run(
            """
            curl -sS --fail --cacert \(sh.root) -H 'Content-Type: application/pkcs10' \
              -H 'Authorization: Bearer \(bearer.secret)' --data-binary @dev-b.csr.b64 \
              \(sh.est)/simpleenroll -o dev-b.resp.b64
            """)
        let issued = try await sh.verifyIssued("dev-b")
        #expect(issued.contains("CN = dev-b"))
        #expect(issued.contains("URI:spiffe://devid.local/tenant/acme/device/dev-b"))

        let basic = try await f.token(device: "dev-c")
        try await sh.csr("dev-c", subject: "/CN=dev-c")
        try await sh.run(
            """
            curl -sS --fail --anyauth -u 'dev-c:\(basic.secret)' --cacert \(sh.root) \
              -H 'Content-Type: application/pkcs10' --data-binary @dev-c.csr.b64 \
              \(sh.est)/simpleenroll -o dev-c.resp.b64
            """)
        #expect(try await sh.verifyIssued("dev-c").contains("CN = dev-c"))
        sh.dir.remove()
        try await f.server.stop()
    }

    @Test("IDevID client certificate over TLS 1.2, then re-enrollment with curl --cert and the issued LDevID")
    func idevidThenReenroll() async throws {
        let (f, sh) = try await setUp()
        let (idKey, idCert) = try await f.idevid("HW-CURL")
        _ = try sh.dir.write("idevid.crt", idCert.pemString)
        _ = try sh.dir.write("idevid.key", try idKey.serializeAsPEM().pemString)
        try await sh.csr("first", subject: "/CN=HW-CURL")
        try await sh.run(
            """
            curl -sS --fail --tlsv1.2 --tls-max 1.2 --cacert \(sh.root) --cert idevid.crt --key idevid.key \
              -H 'Content-Type: application/pkcs10' --data-binary @first.csr.b64 \
              \(sh.est)/simpleenroll -o first.resp.b64
            """)
        #expect(try await sh.verifyIssued("first").contains("CN = HW-CURL"))

        try await sh.csr("second", subject: "/CN=HW-CURL")
        try await sh.run(
            """
            curl -sS --fail --cacert \(sh.root) --cert first.crt --key first.key \
              -H 'Content-Type: application/pkcs10' --data-binary @second.csr.b64 \
              \(sh.est)/simplereenroll -o second.resp.b64
            """)
        #expect(try await sh.verifyIssued("second").contains("CN = HW-CURL"))
        let keysDiffer = try await sh.run(
            """
            a=$(openssl x509 -in first.crt -noout -pubkey | sha256sum); b=$(openssl x509 -in second.crt -noout -pubkey | sha256sum)
            [ "$a" != "$b" ] && echo rotated
            """)
        #expect(keysDiffer.contains("rotated"))
        let device = try #require(try await f.store.device(hardwareSerial: "HW-CURL"))
        let statuses = try await f.store.credentials(device: device.id).map(\.status)
        #expect(statuses.sorted(by: { $0.rawValue < $1.rawValue }) == [.active, .superseded])
        sh.dir.remove()
        try await f.server.stop()
    }
}
