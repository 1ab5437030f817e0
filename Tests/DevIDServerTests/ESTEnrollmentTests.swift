import AsyncHTTPClient
import Crypto
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

@Suite("EST enrollment (RFC 7030)", .serialized)
struct ESTEnrollmentTests {
    // MARK: Distribution of CA certificates and attributes

    @Test func cacertsAndCsrattrs() async throws {
        let f = try await ESTFixture()
        try await withClient(try f.server.client()) { client in
            let cacerts = try await client.send("GET", f.url("cacerts"))
            #expect(cacerts.status == 200)
            #expect(cacerts.header("Content-Type") == "application/pkcs7-mime; smime-type=certs-only")
            #expect(cacerts.header("Content-Transfer-Encoding") == "base64")
            #expect(cacerts.header("Content-Length") == String(cacerts.body.utf8.count))
            #expect(cacerts.header("Date") != nil)
            let der = try #require(ESTBase64.decode(Array(cacerts.body.utf8)))
            // DER sorts a SET OF by encoding, so compare as a set (CMS gives the order no meaning).
            #expect(
                Set(try CertsOnlyCMS(derEncoded: der).certificates) == [f.hierarchy.issuing.certificate, f.hierarchy.root])

            let attrs = try await client.send("GET", f.url("csrattrs"))
            #expect(attrs.status == 200)
            #expect(attrs.header("Content-Type") == "application/csrattrs")
            #expect(ESTBase64.decode(Array(attrs.body.utf8)) != nil)

            #expect(try await client.send("GET", f.url("cacerts", label: "acme")).status == 200)
            #expect(try await client.send("GET", f.url("cacerts", label: "nobody")).status == 404)
        }
        try await f.server.stop()
    }

    // MARK: Successful enrollments

    @Test("a serial another certificate already has is signed again under a new one; nothing is stored twice")
    func serialCollisionIsSignedAgain() async throws {
        let f = try await ESTFixture()
        var certificates: [Certificate] = []
        for (index, name) in ["sensor-1", "sensor-2"].enumerated() {
            let token = try await f.token()
            let key = try KeyMaterial.generate(.p256)
            if let first = certificates.first {
                // The second device's certificate is first signed under the first one's serial.
                SerialNumberGenerator.forceForTesting(
                    [first.serialNumber], keyFingerprint: KeyMaterial.fingerprint(key.publicKey))
            }
            let reply = try await withClient(try f.server.client()) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(commonName: name, key: key), client: $0,
                    headers: [("Authorization", "Bearer \(token.secret)")])
            }
            certificates.append(try ESTFixture.certificate(reply))
            #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 0, "token \(index + 1) spent once")
        }
        #expect(certificates[0].serialNumber != certificates[1].serialNumber)
        let first = try #require(try await f.store.credential(serial: certificates[0].devidSerial))
        #expect(first.deviceID.rawValue == "sensor-1" && first.der == certificates[0].derBytes)
        let second = try #require(try await f.store.credential(serial: certificates[1].devidSerial))
        #expect(second.deviceID.rawValue == "sensor-2" && second.der == certificates[1].derBytes)
        #expect(try await f.store.credentials(device: DeviceID(rawValue: "sensor-2")!).count == 1)
        try await f.server.stop()
    }

    @Test("a claim token as Bearer enrolls the device named in the CSR; recorded before returned")
    func bearerToken() async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        let key = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(commonName: "sensor-1", key: key), client: $0,
                headers: [("Authorization", "Bearer \(token.secret)")])
        }
        let cert = try ESTFixture.certificate(reply)
        #expect(cert.commonName == "sensor-1")
        #expect(cert.publicKey == key.publicKey)
        #expect(DeviceNames.ldevidIdentity(of: cert, trustDomain: f.hierarchy.trustDomain)?.device.rawValue == "sensor-1")
        let stored = try #require(try await f.store.credential(serial: cert.devidSerial))
        #expect(stored.status == .active)
        #expect(stored.der == cert.derBytes)
        #expect(try await f.store.device(DeviceID(rawValue: "sensor-1")!)?.state == .active)
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 0)
        let audit = try await f.store.auditEvents(AuditFilter(action: "est.enroll", outcome: .success))
        #expect(audit.first?.serial == cert.devidSerial)
        #expect(!audit.contains { $0.reason.contains(token.secret) })
        try await f.server.stop()
    }

    @Test("a lost answer does not strand a claim-token device: the same CSR again gets the same certificate, anything else is still used up")
    func lostAnswerRedelivered() async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        let key = try KeyMaterial.generate(.p256)
        let csr = try ESTFixture.csr(commonName: "sensor-lost", key: key)
        let bearer = [("Authorization", "Bearer \(token.secret)")]
        let first = try ESTFixture.certificate(
            try await withClient(try f.server.client()) { try await f.post("simpleenroll", csr: csr, client: $0, headers: bearer) })
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 0)
        let count = try await f.store.credentialCount()

        // The device never saw that answer (server killed after the commit) and sends its request again.
        let again = try ESTFixture.certificate(
            try await withClient(try f.server.client()) { try await f.post("simpleenroll", csr: csr, client: $0, headers: bearer) })
        #expect(again.derBytes == first.derBytes, "the certificate already issued, not a new one")
        #expect(try await f.store.credentialCount() == count, "nothing new issued")
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 0)
        let audit = try await f.store.auditEvents(AuditFilter(action: "est.redeliver", outcome: .success))
        #expect(audit.count == 1)
        #expect(audit.first?.reason.hasPrefix("re-delivered LDevID \(first.devidSerial)") == true)
        #expect(audit.first?.serial == first.devidSerial)
        #expect(try await f.store.auditEvents(AuditFilter(action: "est.enroll", outcome: .success)).count == 1)

        // A new key (or a CSR whose key the requester does not hold) is a new enrollment: the token is used up.
        let otherKey = try KeyMaterial.generate(.p256)
        let other = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(commonName: "sensor-lost", key: otherKey), client: $0, headers: bearer)
        }
        try await f.expectRefused(other, status: 403, reason: "claim token used up", credentialsBefore: count)
        let elsewhere = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(commonName: "sensor-other", key: key), client: $0, headers: bearer)
        }
        try await f.expectRefused(elsewhere, status: 403, reason: "claim token used up", credentialsBefore: count)

        // Once the device is suspended (or its credential is no longer current), nothing is re-delivered.
        try await f.store.updateDeviceState(DeviceID(rawValue: "sensor-lost")!, from: .active, to: .suspended, audit: nil)
        let suspended = try await withClient(try f.server.client()) {
            try await f.post("simpleenroll", csr: csr, client: $0, headers: bearer)
        }
        try await f.expectRefused(suspended, status: 403, reason: "claim token used up", credentialsBefore: count)
        try await f.server.stop()
    }

    @Test("Basic: user = device id, password = token; an empty CSR subject is filled in by the server")
    func basicToken() async throws {
        let f = try await ESTFixture()
        let token = try await f.token(device: "sensor-2")
        let basic = Data("sensor-2:\(token.secret)".utf8).base64EncodedString()
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0,
                headers: [("Authorization", "Basic \(basic)")])
        }
        #expect(try ESTFixture.certificate(reply).commonName == "sensor-2")
        try await f.server.stop()
    }

    @Test("an allowlisted IDevID enrolls over mTLS, also with an empty Basic credential beside it")
    func idevid() async throws {
        let f = try await ESTFixture()
        for (serial, header) in [("HW-1", nil), ("HW-2", "Basic Og==")] as [(String, String?)] {
            let (idKey, idCert) = try await f.idevid(serial)
            let key = try KeyMaterial.generate(.p256)
            let reply = try await withClient(try f.server.client(certificate: [idCert], key: idKey)) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(key: key), client: $0,
                    headers: header.map { [("Authorization", $0)] } ?? [])
            }
            let cert = try ESTFixture.certificate(reply)
            #expect(cert.commonName == serial)
            #expect(try await f.store.device(hardwareSerial: serial)?.state == .active)
        }
        try await f.server.stop()
    }

    @Test("re-enrollment with the current LDevID and a new key supersedes the old credential")
    func reenroll() async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        let firstKey = try KeyMaterial.generate(.p256)
        let first = try ESTFixture.certificate(
            try await withClient(try f.server.client()) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(commonName: "dev-r", key: firstKey), client: $0,
                    headers: [("Authorization", "Bearer \(token.secret)")])
            })
        let secondKey = try KeyMaterial.generate(.p256)
        let reply = try await withClient(try f.server.client(certificate: [first], key: firstKey)) {
            try await f.post("simplereenroll", csr: try ESTFixture.csr(commonName: "dev-r", key: secondKey), client: $0)
        }
        let second = try ESTFixture.certificate(reply)
        #expect(second.publicKey == secondKey.publicKey)
        #expect(second.commonName == "dev-r")
        #expect(try await f.store.credential(serial: first.devidSerial)?.status == .superseded)
        #expect(try await f.store.credential(serial: second.devidSerial)?.status == .active)

        // The same key again is renewal, not rotation: refused by default.
        let before = try await f.store.credentialCount()
        let again = try await withClient(try f.server.client(certificate: [second], key: secondKey)) {
            try await f.post("simplereenroll", csr: try ESTFixture.csr(key: secondKey), client: $0)
        }
        try await f.expectRefused(
            again, status: 400, reason: "re-enrollment requires a new key (this key was used before)",
            credentialsBefore: before, action: "est.reenroll")
        try await f.server.stop()
    }

    // MARK: Refusals: 401

    @Test("no credentials → 401 with WWW-Authenticate challenges")
    func noCredentials() async throws {
        let f = try await ESTFixture()
        let reply = try await withClient(try f.server.client()) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(commonName: "x", key: try KeyMaterial.generate(.p256)), client: $0)
        }
        try await f.expectRefused(
            reply, status: 401, reason: "authentication required: an IDevID client certificate or a claim token",
            credentialsBefore: 0)
        #expect(reply.headers.filter { $0.0.lowercased() == "www-authenticate" }.map(\.1).contains("Basic realm=\"devid-est\""))
        try await f.server.stop()
    }

    @Test(arguments: ["Bearer devid_ct_notarealtoken", "Basic \(Data("dev:devid_ct_nope".utf8).base64EncodedString())"])
    func unknownToken(header: String) async throws {
        let f = try await ESTFixture()
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(commonName: "dev", key: try KeyMaterial.generate(.p256)),
                client: $0, headers: [("Authorization", header)])
        }
        try await f.expectRefused(reply, status: 401, reason: "invalid claim token", credentialsBefore: 0)
        try await f.server.stop()
    }

    @Test func reenrollWithoutCertificate() async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simplereenroll", csr: try ESTFixture.csr(commonName: "dev", key: try KeyMaterial.generate(.p256)),
                client: $0, headers: [("Authorization", "Bearer \(token.secret)")])
        }
        try await f.expectRefused(
            reply, status: 401, reason: "simplereenroll requires the device's current LDevID as TLS client certificate",
            credentialsBefore: 0, action: "est.reenroll")
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 1, "a token cannot re-enroll")
        try await f.server.stop()
    }

    // MARK: Refusals: 403

    enum TokenProblem: String, CaseIterable, Sendable { case expired, usedUp, revoked, otherDevice, otherTenant }

    @Test(arguments: TokenProblem.allCases)
    func tokenNotAllowed(problem: TokenProblem) async throws {
        let f = try await ESTFixture()
        try await f.store.createTenant(Tenant(id: TenantID(rawValue: "globex")!, displayName: "Globex", createdAt: f.server.clock.now()), audit: nil)
        var device: String? = nil
        var label: String? = nil
        if problem == .otherDevice { device = "bound-1" }
        let token = try await f.token(device: device, uses: problem == .usedUp ? 1 : 2)
        var expected = ""
        switch problem {
        case .expired:
            f.server.clock.advance(by: 3_601)
            expected = "claim token expired"
        case .usedUp:
            _ = try await f.store.consumeClaimToken(id: token.id, now: f.server.clock.now())
            expected = "claim token used up"
        case .revoked:
            try await f.store.revokeClaimToken(id: token.id, audit: nil)
            expected = "claim token revoked"
        case .otherDevice:
            expected = "claim token is for another device"
        case .otherTenant:
            label = "globex"
            expected = "claim token is for another tenant"
        }
        let basic = Data("dev-9:\(token.secret)".utf8).base64EncodedString()
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0,
                headers: [("Authorization", "Basic \(basic)")], label: label)
        }
        try await f.expectRefused(reply, status: 403, reason: expected, credentialsBefore: 0)
        #expect(try await f.store.device(DeviceID(rawValue: "dev-9")!) == nil, "nothing registered")
        try await f.server.stop()
    }

    @Test(arguments: [DeviceState.suspended, .revoked, .decommissioned])
    func deviceStateForbids(state: DeviceState) async throws {
        let f = try await ESTFixture()
        let (idKey, idCert) = try await f.idevid("HW-S", state: state)
        let reply = try await withClient(try f.server.client(certificate: [idCert], key: idKey)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
        try await f.expectRefused(reply, status: 403, reason: "device is \(state.rawValue)", credentialsBefore: 0)
        #expect(try await f.store.device(hardwareSerial: "HW-S")?.state == state, "state unchanged")
        try await f.server.stop()
    }

    @Test("an IDevID from a trusted manufacturer that is not in the allowlist does not enroll")
    func notAllowlisted() async throws {
        let f = try await ESTFixture()
        let (idKey, idCert) = try await f.idevid("HW-X", register: false)
        let reply = try await withClient(try f.server.client(certificate: [idCert], key: idKey)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
        try await f.expectRefused(reply, status: 403, reason: "device HW-X is not in the allowlist", credentialsBefore: 0)
        #expect(try await f.store.device(hardwareSerial: "HW-X") == nil)
        try await f.server.stop()
    }

    @Test("a CSR that names another device is refused")
    func csrNamesAnotherDevice() async throws {
        let f = try await ESTFixture()
        let token = try await f.token(device: "dev-a")
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(commonName: "dev-b", key: try KeyMaterial.generate(.p256)),
                client: $0, headers: [("Authorization", "Bearer \(token.secret)")])
        }
        #expect(reply.status == 403)
        #expect(try await f.store.credentialCount() == 0)
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 1, "the token is not spent")
        let denied = try await f.store.auditEvents(AuditFilter(action: "est.enroll", outcome: .denied))
        #expect(denied.first?.reason == String(reply.body.dropLast()))
        try await f.server.stop()
    }

    // MARK: Refusals: 400, 413, 415

    enum BadBody: String, CaseIterable, Sendable { case notBase64, notDER, badSignature, ed25519Key }

    @Test(arguments: BadBody.allCases)
    func badRequest(body: BadBody) async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        var raw: String?
        var csr: [UInt8] = []
        switch body {
        case .notBase64: raw = "this is %%% not base64"
        case .notDER: raw = ESTBase64.encode(Array("definitely not a certificate request".utf8))
        case .badSignature:
            csr = try ESTFixture.csr(commonName: "dev-bad", key: try KeyMaterial.generate(.p256))
            csr[csr.count - 5] ^= 0xff
        case .ed25519Key:
            csr = try ESTFixture.csr(commonName: "dev-ed", key: Certificate.PrivateKey(Curve25519.Signing.PrivateKey()))
        }
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: csr, client: $0, headers: [("Authorization", "Bearer \(token.secret)")],
                rawBody: raw)
        }
        #expect(reply.status == 400, "\(reply.body)")
        #expect(!reply.body.isEmpty && reply.body.filter { $0 == "\n" }.count == 1, "one line")
        #expect(try await f.store.credentialCount() == 0)
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 1)
        let denied = try await f.store.auditEvents(AuditFilter(action: "est.enroll", outcome: .denied))
        #expect(denied.first?.reason == String(reply.body.dropLast()))
        try await f.server.stop()
    }

    @Test func wrongContentTypeIs415AndOversizedBodyIs413() async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        let csr = try ESTFixture.csr(commonName: "dev", key: try KeyMaterial.generate(.p256))
        let (wrongType, huge) = try await withClient(try f.server.client()) { client in
            (
                try await f.post(
                    "simpleenroll", csr: csr, client: client, headers: [("Authorization", "Bearer \(token.secret)")],
                    contentType: "application/json"),
                try await f.post(
                    "simpleenroll", csr: csr, client: client, headers: [("Authorization", "Bearer \(token.secret)")],
                    rawBody: String(repeating: "A", count: 200_000))
            )
        }
        try await f.expectRefused(
            wrongType, status: 415, reason: "Content-Type must be application/pkcs10", credentialsBefore: 0)
        try await f.expectRefused(huge, status: 413, reason: "request body over 65536 bytes", credentialsBefore: 0)
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 1)
        try await f.server.stop()
    }

    // MARK: Tenant policy

    @Test("manual approval parks an unknown device with 202 + Retry-After until approved")
    func manualApproval() async throws {
        let f = try await ESTFixture(policy: TenantPolicy(manualApproval: true))
        let (idKey, idCert) = try await f.idevid("HW-NEW", register: false)
        let csr = try ESTFixture.csr(key: try KeyMaterial.generate(.p256))
        let client = try f.server.client(certificate: [idCert], key: idKey)
        let parked = try await f.post("simpleenroll", csr: csr, client: client, label: "acme")
        #expect(parked.status == 202)
        #expect(parked.header("Retry-After") == "60")
        #expect(try await f.store.device(hardwareSerial: "HW-NEW")?.state == .pendingApproval)
        #expect(try await f.post("simpleenroll", csr: csr, client: client, label: "acme").status == 202)
        #expect(try await f.store.credentialCount() == 0)
        // A hold cannot be used to skip the approval: suspending a parked device is refused and changes nothing.
        let suspend = try await f.admin("POST", "/v1/admin/devices/HW-NEW/suspend")
        #expect(suspend.status == 409, "\(suspend.body)")
        #expect(suspend.body.contains("device HW-NEW is pending_approval; cannot suspend"), "\(suspend.body)")
        #expect(try await f.store.device(hardwareSerial: "HW-NEW")?.state == .pendingApproval)

        try await f.store.updateDeviceState(DeviceID(rawValue: "HW-NEW")!, from: .pendingApproval, to: .manufactured, audit: nil)
        let issued = try await f.post("simpleenroll", csr: csr, client: client, label: "acme")
        #expect(try ESTFixture.certificate(issued).commonName == "HW-NEW")
        try await client.shutdown()
        try await f.server.stop()
    }

    @Test("auto-registration lets an unknown IDevID enroll into the label's tenant")
    func autoRegister() async throws {
        let f = try await ESTFixture(policy: TenantPolicy(autoRegister: true))
        let (idKey, idCert) = try await f.idevid("HW-AUTO", register: false)
        let reply = try await withClient(try f.server.client(certificate: [idCert], key: idKey)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0, label: "acme")
        }
        #expect(try ESTFixture.certificate(reply).commonName == "HW-AUTO")
        #expect(try await f.store.device(hardwareSerial: "HW-AUTO")?.tenant == f.tenant)
        try await f.server.stop()
    }

    @Test("concurrent re-enrollments with one LDevID leave the device one active LDevID, every other superseded")
    func concurrentReenrollmentsLeaveOneActive() async throws {
        let f = try await ESTFixture()
        let token = try await f.token()
        let firstKey = try KeyMaterial.generate(.p256)
        let first = try ESTFixture.certificate(
            try await withClient(try f.server.client()) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(commonName: "dev-race", key: firstKey), client: $0,
                    headers: [("Authorization", "Bearer \(token.secret)")])
            })
        // Eight renewals with the same certificate at once. Each read it `active` (or, after a winner committed,
        // superseded by an unseen successor: the overlap's retry, which gives that successor up). Before, renewals
        // decided on the first read all committed, and all but the last LDevID stayed `active`, orphaned: never
        // superseded, so never revoked by the sweeper.
        let client = try f.server.client(certificate: [first], key: firstKey)
        let replies = try await withThrowingTaskGroup(of: Reply.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await f.post(
                        "simplereenroll", csr: try ESTFixture.csr(commonName: "dev-race", key: try KeyMaterial.generate(.p256)),
                        client: client)
                }
            }
            return try await group.reduce(into: [Reply]()) { $0.append($1) }
        }
        try await client.shutdown()
        #expect(replies.contains { $0.status == 200 })
        // A loser is refused at the write (`conflict`), or at its read when it found the successor it would give
        // up already superseded by a third (`successor_in_use`).
        for reply in replies where reply.status != 200 {
            #expect(
                reply.status == 403 && ["conflict", "successor_in_use"].contains(reply.header("DevID-Refusal") ?? ""),
                "\(reply.status) \(reply.header("DevID-Refusal") ?? "-") \(reply.body)")
        }
        let credentials = try await f.store.credentials(device: DeviceID(rawValue: "dev-race")!)
        let active = credentials.filter { $0.status == .active }
        #expect(active.count == 1, "\(credentials.map { "\($0.serial) \($0.status)" })")
        #expect(credentials.count == 1 + replies.filter { $0.status == 200 }.count, "nothing stored for a refusal")
        #expect(credentials.filter { $0.status == .superseded }.allSatisfy { $0.replacedBy != nil })
        try await f.server.stop()
    }

    @Test("a single-use token enrolls exactly once under concurrency")
    func singleUseUnderConcurrency() async throws {
        let f = try await ESTFixture()
        let token = try await f.token(device: "race-1")
        let client = try f.server.client()
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await f.post(
                        "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: client,
                        headers: [("Authorization", "Bearer \(token.secret)")]
                    ).status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        try await client.shutdown()
        #expect(statuses.filter { $0 == 200 }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0 == 403 }.count == 7, "\(statuses)")
        #expect(try await f.store.credentialCount() == 1)
        try await f.server.stop()
    }
}
