import AsyncHTTPClient
import Crypto
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// Issue #12 findings 1 and 5, and the revoked-serial gaps: who may enroll as an existing device. Black-box with
/// curl and openssl where the finding was black-box.
@Suite("Trust: enrollment bindings", .serialized)
struct EnrollmentBindingTests {
    /// curl and openssl in a scratch directory against the fixture's server.
    struct Shell {
        let dir: TemporaryDirectory
        let root: String
        let est: String

        func run(_ script: String) async throws -> ExternalTool.Result {
            try await ExternalTool.runAsync(["bash", "-c", "set -uo pipefail; cd '\(dir.path)'; \(script)"])
        }

        /// An openssl P-256 key and a base64 DER CSR with `subject`.
        func csr(_ name: String, subject: String) async throws {
            let result = try await run(
                """
                openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \(name).key \
                  -subj '\(subject)' -outform DER -out \(name).csr.der 2>/dev/null && \
                openssl base64 -in \(name).csr.der -out \(name).csr.b64
                """)
            #expect(result.succeeded, "\(result.stderr)")
        }

        /// POSTs `name`'s CSR to simpleenroll with curl; returns the HTTP status and the DevID-Refusal header.
        func enroll(_ name: String, auth: String) async throws -> (status: String, code: String?, body: String) {
            let result = try await run(
                """
                curl -sS -o \(name).body -D \(name).headers -w '%{http_code}' --cacert \(root) \(auth) \
                  -H 'Content-Type: application/pkcs10' --data-binary @\(name).csr.b64 \(est)/simpleenroll
                """)
            let headers = (try? String(contentsOfFile: dir.file("\(name).headers"), encoding: .utf8)) ?? ""
            let code = headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("devid-refusal:") }
                .map { $0.dropFirst("devid-refusal:".count).trimmingCharacters(in: .whitespaces) }
            let body = (try? String(contentsOfFile: dir.file("\(name).body"), encoding: .utf8)) ?? ""
            return (result.stdout, code, body)
        }
    }

    func shell(_ f: ESTFixture) throws -> Shell {
        Shell(
            dir: try TemporaryDirectory(prefix: "devid-binding"),
            root: CALayout(dataDirectory: f.server.configuration.dataDirectory).rootCertificate,
            est: f.server.estURL + "/.well-known/est")
    }

    /// Creates a claim token through the admin API; returns the reply and, when created, (id, secret).
    func createToken(_ f: ESTFixture, _ body: String) async throws -> (reply: Reply, token: (id: String, secret: String)?) {
        let reply = try await f.admin("POST", "/v1/admin/tokens", body: body)
        guard reply.status == 201,
            let id = reply.body.firstMatch(of: /"id":"(ct_[a-z2-7]+)"/)?.1,
            let secret = reply.body.firstMatch(of: /"token":"(devid_ct_[a-z2-7]+)"/)?.1
        else { return (reply, nil) }
        return (reply, (String(id), String(secret)))
    }

    @Test("finding 1: a bulk token cannot take over an active device (Basic user name, or Bearer with the CSR's CN)")
    func bulkTokenTakeover() async throws {
        let f = try await ESTFixture(policy: TenantPolicy(maxUnboundTokenUses: 50))
        let sh = try shell(f)
        let victim = try await f.enroll("victim-1")
        let (_, bulk) = try await createToken(f, #"{"tenant":"acme","uses":50}"#)
        let token = try #require(bulk)
        let before = try await f.store.credentialCount()

        try await sh.csr("takeover-basic", subject: "/CN=victim-1")
        let basic = try await sh.enroll("takeover-basic", auth: "-u 'victim-1:\(token.secret)'")
        #expect(basic.status == "403", "\(basic.body)")
        #expect(basic.code == "token_not_for_existing_device")
        #expect(basic.body.hasPrefix("device victim-1 is already registered"), "\(basic.body)")

        try await sh.csr("takeover-bearer", subject: "/CN=victim-1")
        let bearer = try await sh.enroll("takeover-bearer", auth: "-H 'Authorization: Bearer \(token.secret)'")
        #expect(bearer.status == "403", "\(bearer.body)")
        #expect(bearer.code == "token_not_for_existing_device")

        // Nothing issued, the victim untouched, no use spent.
        #expect(try await f.store.credentialCount() == before)
        let credential = try #require(try await f.store.credential(serial: victim.certificate.devidSerial))
        #expect(credential.status == .active)
        #expect(credential.replacedBy == nil)
        #expect(try await f.store.claimToken(id: token.id)?.usesRemaining == 50)
        #expect(try await f.status(victim).status == 200, "the victim still checks in")

        // The same token still does what it is for: new devices, remembered as its enrollments.
        try await sh.csr("fresh", subject: "/CN=fresh-1")
        let fresh = try await sh.enroll("fresh", auth: "-H 'Authorization: Bearer \(token.secret)'")
        #expect(fresh.status == "200", "\(fresh.body)")
        #expect(try await f.store.device(DeviceID(rawValue: "fresh-1")!)?.enrolledWithToken == token.id)

        // A token bound to the device (what `devid device reprovision` mints) still re-enrolls it.
        let bound = try await f.token(device: "victim-1")
        try await sh.csr("rebound", subject: "/CN=victim-1")
        #expect(try await sh.enroll("rebound", auth: "-H 'Authorization: Bearer \(bound.secret)'").status == "200")
        sh.dir.remove()
        try await f.server.stop()
    }

    @Test("no IDevID enrolls as a claim-token device, not even one whose serialNumber is claim:<id>")
    func idevidCannotTakeOverClaimDevice() async throws {
        let f = try await ESTFixture()
        let victim = try await f.enroll("victim-2")
        let manufacturer = try #require(f.hierarchy.manufacturer)
        let key = try KeyMaterial.generate(.p256)
        let forged = try manufacturer.issueIDevID(
            hardwareSerial: "claim:victim-2", publicKey: key.publicKey, now: f.server.clock.now())
        let before = try await f.store.credentialCount()
        let reply = try await withClient(try f.server.client(certificate: [forged, manufacturer.certificate], key: key)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
        #expect(reply.status == 403, "\(reply.body)")
        #expect(reply.header("DevID-Refusal") == "credential_unknown")
        #expect(try await f.store.credentialCount() == before)
        #expect(try await f.store.credential(serial: victim.certificate.devidSerial)?.status == .active)
        try await f.server.stop()
    }

    @Test("a refused check-in or re-enrollment confirms nothing; the first successful one confirms")
    func refusalsConfirmNothing() async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("conf-1")
        let serial = identity.certificate.devidSerial
        #expect(try await f.admin("POST", "/v1/admin/devices/conf-1/suspend").status == 200)
        #expect(try await f.status(identity).status == 403)
        let badCSR = try await withClient(try f.server.client(certificate: [identity.certificate], key: identity.key)) {
            try await f.post("simplereenroll", csr: [], client: $0, rawBody: "not base64!")
        }
        #expect(badCSR.status == 403, "\(badCSR.body)")  // the suspended device is refused first
        #expect(try await f.store.credential(serial: serial)?.confirmedAt == nil, "refusals store nothing")
        #expect(try await f.admin("POST", "/v1/admin/devices/conf-1/resume").status == 200)
        #expect(try await f.status(identity).status == 200)
        #expect(try await f.store.credential(serial: serial)?.confirmedAt != nil)
        try await f.server.stop()
    }

    @Test("an unbound token cannot claim a manufactured device of the allowlist before its IDevID enrolls")
    func unboundTokenCannotClaimAllowlistedDevice() async throws {
        let f = try await ESTFixture()
        _ = try await f.idevid("HW-ALLOW-1")
        let token = try await f.token()  // single use, no device
        let before = try await f.store.credentialCount()
        let reply = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0,
                headers: [("Authorization", "Basic " + Data("HW-ALLOW-1:\(token.secret)".utf8).base64EncodedString())])
        }
        try await f.expectRefused(
            reply, status: 403,
            reason: "device HW-ALLOW-1 is already registered: a claim token that names no device enrolls new devices "
                + "only (re-enroll with its IDevID or LDevID, or devid device reprovision HW-ALLOW-1)",
            credentialsBefore: before)
        #expect(reply.header("DevID-Refusal") == "token_not_for_existing_device")
        #expect(try await f.store.device(DeviceID(rawValue: "HW-ALLOW-1")!)?.state == .manufactured)
        try await f.server.stop()
    }

    @Test(
        "tenant caps on tokens that name no device: 1 use and 24 h unless the tenant raised them",
        arguments: [
            (#"{"tenant":"acme","uses":2}"#, 400, "tenant acme allows at most 1 use(s) for a token that names no device"),
            (#"{"tenant":"acme","ttlSeconds":172800}"#, 400, "tenant acme allows at most 86400s for a token"),
            (#"{"tenant":"acme","device":"d-1","lot":"L1"}"#, 400, "lot binds a token that names no device"),
            (#"{"tenant":"acme","lot":"nope"}"#, 404, "tenant acme has no lot nope"),
            (#"{"tenant":"acme","namePattern":"a/b*"}"#, 400, "invalid namePattern"),
            (#"{"tenant":"acme","device":"d-1","uses":2}"#, 201, ""),
            (#"{"tenant":"acme","ttlSeconds":86400}"#, 201, ""),
        ])
    func tokenCaps(body: String, status: Int, message: String) async throws {
        let f = try await ESTFixture()
        let (reply, _) = try await createToken(f, body)
        #expect(reply.status == status, "\(reply.body)")
        if !message.isEmpty { #expect(errorMessage(reply)?.hasPrefix(message) == true, "\(reply.body)") }
        if status != 201 { #expect(try await f.store.claimTokens(tenant: nil).isEmpty, "nothing stored") }
        try await f.server.stop()
    }

    @Test("the tenant policy raises the caps; a bulk token bound to a lot and a name pattern creates only those")
    func lotAndPatternBinding() async throws {
        let f = try await ESTFixture()
        let raised = try await f.admin(
            "PUT", "/v1/admin/tenants/acme/policy", body: #"{"maxUnboundTokenUses":10,"maxUnboundTokenTTL":604800}"#)
        #expect(raised.status == 200, "\(raised.body)")
        #expect(try await f.store.tenant(f.tenant)?.policy.maxUnboundTokenUses == 10)
        try await f.store.createLot(Lot(id: LotID(rawValue: "L9")!, tenant: f.tenant, createdAt: f.server.clock.now()))
        let (reply, created) = try await createToken(
            f, #"{"tenant":"acme","uses":10,"ttlSeconds":604800,"lot":"L9","namePattern":"sensor-*"}"#)
        let token = try #require(created, "\(reply.body)")

        func enroll(_ name: String) async throws -> Reply {
            try await withClient(try f.server.client()) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0,
                    headers: [("Authorization", "Basic " + Data("\(name):\(token.secret)".utf8).base64EncodedString())])
            }
        }
        let outside = try await enroll("pump-1")
        #expect(outside.status == 403)
        #expect(outside.header("DevID-Refusal") == "token_out_of_scope")
        #expect(try await f.store.device(DeviceID(rawValue: "pump-1")!) == nil)
        let inside = try await enroll("sensor-1")
        #expect(inside.status == 200, "\(inside.body)")
        let device = try #require(try await f.store.device(DeviceID(rawValue: "sensor-1")!))
        #expect(device.lot == LotID(rawValue: "L9"))
        #expect(device.enrolledWithToken == token.id)
        try await f.server.stop()
    }

    @Test("devid revoke --token: the token and exactly the devices it enrolled; dry run first")
    func revokeByToken() async throws {
        let f = try await ESTFixture(policy: TenantPolicy(maxUnboundTokenUses: 5))
        let (_, created) = try await createToken(f, #"{"tenant":"acme","uses":5}"#)
        let token = try #require(created)
        var leaked: [(key: Certificate.PrivateKey, certificate: Certificate)] = []
        for name in ["bt-1", "bt-2"] {
            let key = try KeyMaterial.generate(.p256)
            let reply = try await withClient(try f.server.client()) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(commonName: name, key: key), client: $0,
                    headers: [("Authorization", "Bearer \(token.secret)")])
            }
            leaked.append((key, try ESTFixture.certificate(reply)))
        }
        let neighbour = try await f.enroll("other-1")

        let dry = try await f.admin("POST", "/v1/admin/revoke", body: #"{"token":"\#(token.id)","dryRun":true}"#)
        #expect(dry.status == 200, "\(dry.body)")
        #expect(dry.body.contains("\"devices\":2"), "\(dry.body)")
        #expect(try await f.store.claimToken(id: token.id)?.revoked == false, "a dry run changes nothing")

        let revoked = try await f.admin(
            "POST", "/v1/admin/revoke", body: #"{"token":"\#(token.id)","reason":"keyCompromise"}"#)
        #expect(revoked.status == 200, "\(revoked.body)")
        #expect(try await f.store.claimToken(id: token.id)?.revoked == true)
        for identity in leaked {
            #expect(try await f.store.credential(serial: identity.certificate.devidSerial)?.status == .revoked)
            #expect(try await f.status(identity).status == 403)
        }
        #expect(try await f.status(neighbour).status == 200, "a device enrolled otherwise is untouched")
        let unknown = try await f.admin("POST", "/v1/admin/revoke", body: #"{"token":"ct_nosuchtoken"}"#)
        #expect(unknown.status == 404)
        try await f.server.stop()
    }

    @Test("revoked serial of an active device: simplereenroll 403, /v1/authz/mqtt denies, OCSP says revoked")
    func revokedSerialOfActiveDevice() async throws {
        let f = try await ESTFixture()
        let sh = try shell(f)
        let old = try await f.enroll("rs-1")
        // Rotate once, so the device stays active with a good credential while the old serial is revoked.
        let nextKey = try KeyMaterial.generate(.p256)
        let renewed = try await withClient(try f.server.client(certificate: [old.certificate], key: old.key)) {
            try await f.post("simplereenroll", csr: try ESTFixture.csr(key: nextKey), client: $0)
        }
        let current = (key: nextKey, certificate: try ESTFixture.certificate(renewed))
        let revoke = try await f.admin(
            "POST", "/v1/admin/revoke", body: #"{"serial":"\#(old.certificate.devidSerial)","reason":"keyCompromise"}"#)
        #expect(revoke.status == 200, "\(revoke.body)")
        #expect(try await f.store.device(DeviceID(rawValue: "rs-1")!)?.state == .active)

        let before = try await f.store.credentialCount()
        let again = try await withClient(try f.server.client(certificate: [old.certificate], key: old.key)) {
            try await f.post("simplereenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
        try await f.expectRefused(
            again, status: 403, reason: "credential is revoked", credentialsBefore: before, action: "est.reenroll")
        #expect(again.header("DevID-Refusal") == "credential_revoked")
        let checkIn = try await f.status(old)
        #expect(checkIn.status == 403)
        #expect(checkIn.header("DevID-Refusal") == "credential_revoked")

        #expect(try await f.decide(["certificate": try ESTFixture.pem(old.certificate), "action": "connect"]) == ("deny", "revoked"))
        #expect(try await f.decide(["certificate": try ESTFixture.pem(current.certificate), "action": "connect"]) == ("allow", "ok"))

        let hierarchy = f.server.state.hierarchy
        _ = try sh.dir.write("issuing.pem", PEM.bundle([hierarchy.issuing.certificate]))
        _ = try sh.dir.write("chain.pem", PEM.bundle([hierarchy.issuing.certificate, hierarchy.root]))
        _ = try sh.dir.write("old.pem", old.certificate.pemString)
        let ocsp = try await sh.run(
            "openssl ocsp -issuer issuing.pem -cert old.pem -url \(f.server.opsURL)/ocsp -CAfile chain.pem -no_nonce 2>&1")
        #expect(ocsp.stdout.contains("old.pem: revoked"), "\(ocsp.stdout)")
        #expect(ocsp.stdout.contains("Reason: keyCompromise"), "\(ocsp.stdout)")
        sh.dir.remove()
        try await f.server.stop()
    }

    /// A server that trusts its own manufacturer CA (A) and an external one (B), with A's lot `LA` and B's lot `LB`
    /// imported; returns the fixture, B's CA, the two manifests and the directory the lots were minted into.
    func twoManufacturers() async throws -> (
        f: ESTFixture, external: CertificateAuthority, a: LotManifest, b: LotManifest, scratch: TemporaryDirectory
    ) {
        let factoryB = try TestChain(clock: ManualWallClock(Date().addingTimeInterval(-3_600)))
        let external = try #require(factoryB.hierarchy.manufacturer)
        let f = try await ESTFixture(configure: { configuration in
            try? SecureFile.createDirectory(configuration.dataDirectory)
            _ = try? CAStore.initialize(
                layout: CALayout(dataDirectory: configuration.dataDirectory),
                options: CAInitOptions(
                    trustDomain: configuration.trustDomain, externalManufacturerCAs: [external.certificate],
                    createManufacturerCA: true, keyEncryptionRounds: 1_000),
                passphrase: Array((configuration.caPassphrase ?? "").utf8), now: Date().addingTimeInterval(-3_600))
        })
        #expect(f.hierarchy.trustedManufacturers.count == 2)
        let scratch = try TemporaryDirectory(prefix: "devid-binding-lot")
        var manifests: [LotManifest] = []
        for (lot, manufacturer) in [("LA", try #require(f.hierarchy.manufacturer)), ("LB", external)] {
            let manifest = try LotMinter(manufacturer: manufacturer).mint(
                lot: LotID(rawValue: lot)!, tenant: f.tenant, count: 1, outputDirectory: scratch.file(lot),
                now: f.server.clock.now())
            let imported = try await f.admin(
                "POST", "/v1/admin/devices/import",
                body: String(decoding: try DevIDJSON.encoder.encode(manifest), as: UTF8.self))
            #expect(imported.status == 200, "\(imported.body)")
            manifests.append(manifest)
        }
        return (f, external, manifests[0], manifests[1], scratch)
    }

    func enrollWithIDevID(_ f: ESTFixture, chain: [Certificate], key: Certificate.PrivateKey) async throws -> Reply {
        try await withClient(try f.server.client(certificate: chain, key: key)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
    }

    func minted(_ scratch: TemporaryDirectory, lot: String, device: DeviceID) throws -> (
        chain: [Certificate], key: Certificate.PrivateKey
    ) {
        let directory = scratch.file("\(lot)/\(device)")
        return (
            try PEM.certificates(try String(contentsOfFile: directory + "/chain.pem", encoding: .utf8)),
            try KeyMaterial.privateKey(
                pem: try String(contentsOfFile: directory + "/idevid.key", encoding: .utf8), passphrase: nil)
        )
    }

    @Test("finding 5: with two trusted manufacturer CAs, B's IDevID carrying A's device serial is refused")
    func manufacturerBinding() async throws {
        let (f, external, lotA, _, scratch) = try await twoManufacturers()
        let entry = try #require(lotA.devices.first)
        let registered = try #require(try await f.store.device(entry.deviceID))
        #expect(registered.idevidIssuerSHA256 == f.hierarchy.manufacturer?.certificate.sha256Fingerprint)
        #expect(registered.idevidSHA256 == entry.idevidSHA256)

        // Manufacturer B (also trusted) issues a certificate for A's hardware serial.
        let forgedKey = try KeyMaterial.generate(.p256)
        let forged = try external.issueIDevID(
            hardwareSerial: entry.hardwareSerial, publicKey: forgedKey.publicKey, now: f.server.clock.now())
        let before = try await f.store.credentialCount()
        let reply = try await enrollWithIDevID(f, chain: [forged, external.certificate], key: forgedKey)
        try await f.expectRefused(
            reply, status: 403,
            reason: "IDevID of device \(entry.deviceID) is not from the manufacturer CA the device was registered with",
            credentialsBefore: before)
        #expect(reply.header("DevID-Refusal") == "idevid_mismatch")
        #expect(try await f.store.device(entry.deviceID)?.state == .manufactured)

        // A's own certificate still enrolls.
        let own = try minted(scratch, lot: "LA", device: entry.deviceID)
        #expect(try await enrollWithIDevID(f, chain: own.chain, key: own.key).status == 200)
        scratch.remove()
        try await f.server.stop()
    }

    @Test("finding 5: an external lot's manifest fingerprint binds; another certificate of the same CA and serial is refused")
    func fingerprintBinding() async throws {
        let (f, external, _, lotB, scratch) = try await twoManufacturers()
        let entry = try #require(lotB.devices.first)
        let registered = try #require(try await f.store.device(entry.deviceID))
        #expect(registered.idevidSerial == nil, "an external manufacturer's serials are not DevID's to publish")
        #expect(registered.idevidSHA256 == entry.idevidSHA256)

        // The same CA, the same hardware serial, another certificate (a cloned or re-issued identity).
        let otherKey = try KeyMaterial.generate(.p256)
        let other = try external.issueIDevID(
            hardwareSerial: entry.hardwareSerial, publicKey: otherKey.publicKey, now: f.server.clock.now())
        let before = try await f.store.credentialCount()
        let reply = try await enrollWithIDevID(f, chain: [other, external.certificate], key: otherKey)
        try await f.expectRefused(
            reply, status: 403, reason: "IDevID is not the certificate registered for device \(entry.deviceID)",
            credentialsBefore: before)
        #expect(reply.header("DevID-Refusal") == "idevid_mismatch")
        let real = try minted(scratch, lot: "LB", device: entry.deviceID)
        #expect(try await enrollWithIDevID(f, chain: real.chain, key: real.key).status == 200)
        scratch.remove()
        try await f.server.stop()
    }
}
