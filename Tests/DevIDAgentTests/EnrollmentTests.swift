import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Synchronization
import Testing
import X509

/// The agent against a real DevID server on loopback: enroll, check, write; refuse and write nothing.
@Suite("agent enrollment against a live server", .serialized)
struct EnrollmentTests {
    @Test("claim token as Bearer (token bound to a device): files, modes, openssl verify, key match, status")
    func bearerToken() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-bearer")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let identity = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                bootstrap: .token(secret, deviceID: nil), clock: server.clock)

            #expect(identity.deviceID.rawValue == "sensor-bearer")
            #expect(identity.tenant == server.tenant)
            #expect(identity.bootstrap == "claim-token")
            #expect(identity.serverURL == server.estURL)
            #expect(identity.spiffeID == "spiffe://\(server.hierarchy.trustDomain)/tenant/acme/device/sensor-bearer")
            try await expectInstalled(dir, identity: identity, server: server)
        }
    }

    @Test("agent.json is written before the identity: an install that fails leaves the settings, never the reverse")
    func settingsBeforeIdentity() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-settings")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")
            // The install's commit point (cert.pem) cannot be written: a directory is in its place.
            try FileManager.default.createDirectory(atPath: dir + "/cert.pem", withIntermediateDirectories: true)
            var configuration = AgentConfiguration(serverURL: "https://example.invalid", label: "acme")
            configuration.onRotate = "systemctl reload mosquitto"
            configuration.keyURI = "pkcs11:token=devid;object=ldevid"
            await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL + "/", trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .token(secret, deviceID: nil), clock: server.clock, configuration: configuration)
            }
            // Before, the CLI wrote agent.json after the identity: a crash in between left an identity whose agent
            // renewed with a key in a file instead of the token, without the hook.
            let saved = try #require(try AgentConfiguration.load(stateDirectory: dir))
            #expect(saved.serverURL == server.estURL, "the URL the enrollment used, normalized")
            #expect(saved.keyURI == configuration.keyURI && saved.onRotate == configuration.onRotate)
            #expect(saved.label == "acme")
            #expect(try AgentStateDirectory(path: dir).identity() == nil)
        }
    }

    @Test("claim token as Basic with a device id: the CSR names the device and the certificate does too")
    func basicTokenWithDeviceID() async throws {
        try await withServer { server in
            let secret = try await server.claimToken()
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let identity = try await Enroller().enroll(
                server: server.estURL + "/", trustBundle: [server.hierarchy.root], stateDirectory: dir,
                bootstrap: .token(secret, deviceID: "sensor-basic"), clock: server.clock)

            #expect(identity.deviceID.rawValue == "sensor-basic")
            #expect(identity.serverURL == server.estURL, "a trailing slash is dropped")
            try await expectInstalled(dir, identity: identity, server: server)
            let registered = try await server.store.device(DeviceID("sensor-basic"))
            #expect(registered?.state == .active)
        }
    }

    @Test("IDevID over mTLS: the allowlisted device enrolls as its registry id")
    func idevid() async throws {
        try await withServer { server in
            let (key, certificate) = try await server.idevid(hardwareSerial: "SN-AGENT-0001")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let identity = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                bootstrap: .idevid(certificateChain: [certificate], key: key), clock: server.clock)

            #expect(identity.deviceID == DeviceID(derivedFromHardwareSerial: "SN-AGENT-0001"))
            #expect(identity.bootstrap == "idevid")
            try await expectInstalled(dir, identity: identity, server: server)
            // The LDevID has a new key, never the IDevID's.
            let installed = try #require(try AgentStateDirectory(path: dir).certificate())
            #expect(installed.publicKey != key.publicKey)
        }
    }

    @Test("a used-up claim token: 403 with the server's reason, and the state directory is unchanged")
    func usedUpToken() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-once")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let enrolled = state.file("enrolled")
            let fresh = state.file("fresh")
            _ = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: enrolled,
                bootstrap: .token(secret, deviceID: nil), clock: server.clock)
            let before = Files.snapshot(enrolled)

            for dir in [enrolled, fresh] {
                let error = await #expect(throws: AgentError.self) {
                    try await Enroller().enroll(
                        server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                        bootstrap: .token(secret, deviceID: nil), clock: server.clock)
                }
                #expect(error?.code == .refused(status: 403))
                #expect(error?.status == 403)
                #expect(error?.serverReason == "claim token used up")
                #expect(error?.description.contains("claim token used up") == true)
                #expect(error?.description.contains(secret) == false, "an error never shows the token")
            }
            #expect(Files.snapshot(enrolled) == before)
            #expect(!Files.exists(fresh), "a refused enrollment creates nothing")
        }
    }

    @Test("an unknown claim token: 401 with the server's reason")
    func unknownToken() async throws {
        try await withServer { server in
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: state.file("agent"),
                    bootstrap: .token("devid_ct_not-a-real-token", deviceID: "sensor-x"), clock: server.clock)
            }
            #expect(error?.code == .refused(status: 401))
            #expect(error?.serverReason == "invalid claim token")
            #expect(!Files.exists(state.file("agent")))
        }
    }

    @Test("a server whose CA is not in the trust bundle: TLS failure, nothing sent, nothing written")
    func untrustedServer() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-tls")
            let other = try TestChain()
            defer { other.directory.remove() }
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [other.hierarchy.root], stateDirectory: dir,
                    bootstrap: .token(secret, deviceID: nil), clock: server.clock)
            }
            #expect(error?.code == .tlsFailure)
            #expect(error?.status == nil)
            #expect(
                error?.description.contains("does not chain to the trust bundle") == true,
                "\(String(describing: error))")
            #expect(!Files.exists(dir))
            // The token was never presented, so it still works with the right trust bundle.
            _ = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                bootstrap: .token(secret, deviceID: nil), clock: server.clock)
        }
    }

    @Test("an IDevID from a manufacturer the server does not trust: the server ends the handshake")
    func foreignIDevID() async throws {
        try await withServer { server in
            let foreign = try TestChain()
            defer { foreign.directory.remove() }
            let (key, certificate) = try foreign.idevid(hardwareSerial: "SN-FOREIGN-1")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .idevid(certificateChain: [certificate], key: key), clock: server.clock)
            }
            #expect(error?.code == .tlsFailure, "\(String(describing: error))")
            #expect(!Files.exists(dir))
        }
    }

    @Test("an IDevID key that does not belong to the certificate is refused before connecting")
    func idevidKeyMismatch() async throws {
        let state = try TemporaryDirectory(prefix: "devid-agent-state")
        defer { state.remove() }
        let chain = try TestChain()
        defer { chain.directory.remove() }
        let (_, certificate) = try chain.idevid()
        let error = await #expect(throws: AgentError.self) {
            try await Enroller().enroll(
                server: "https://127.0.0.1:1", trustBundle: [chain.hierarchy.root], stateDirectory: state.file("agent"),
                bootstrap: .idevid(certificateChain: [certificate], key: try KeyMaterial.generate(.p256)),
                clock: chain.clock)
        }
        #expect(error?.code == .invalidArgument)
    }

    @Test("an agent clock outside the certificate's validity: the certificate is refused and nothing is written")
    func agentClockFarAhead() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-clock")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")
            let agentClock = ManualWallClock(server.clock.now().addingTimeInterval(400 * 86_400))

            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .token(secret, deviceID: nil), clock: agentClock)
            }
            #expect(error?.code == .untrustedCertificate)
            #expect(!Files.exists(dir))
        }
    }

    @Test("an unlisted IDevID under a manual-approval label: 202 pending with Retry-After")
    func pendingApproval() async throws {
        try await withServer(policy: TenantPolicy(manualApproval: true)) { server in
            let (key, certificate) = try await server.idevid(hardwareSerial: "SN-AGENT-PARKED", register: false)
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .idevid(certificateChain: [certificate], key: key), label: server.tenant.rawValue,
                    clock: server.clock)
            }
            #expect(error?.code == .pending)
            #expect(error?.status == 202)
            #expect(error?.retryAfter == server.state.configuration.approvalRetryAfterSeconds)
            #expect(error?.serverReason?.contains("waiting for operator approval") == true)
            #expect(!Files.exists(dir))
        }
    }

    @Test("the EST client re-enrolls with the installed LDevID as its TLS identity and a new key")
    func reenroll() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-renew")
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = AgentStateDirectory(path: state.file("agent"))
            _ = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir.path,
                bootstrap: .token(secret, deviceID: nil), clock: server.clock)
            let current = try #require(try dir.certificate())
            let currentKey = try #require(try dir.privateKey())

            let client = try server.estClient(presenting: current, key: currentKey)
            let newKey = try KeyMaterial.generate(.p256)
            let csr = try #require(try? Self.csr(key: newKey))
            let renewed: Certificate
            let reused: AgentError?
            do {
                renewed = try await client.simpleReenroll(csrDER: csr)
                // The same (now superseded) key again: the server wants a new one.
                reused = await #expect(throws: AgentError.self) {
                    try await client.simpleReenroll(csrDER: try Self.csr(key: currentKey))
                }
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
            #expect(renewed.publicKey == newKey.publicKey)
            #expect(renewed.subject == current.subject)
            #expect(renewed.serialNumber != current.serialNumber)
            #expect(reused?.code == .refused(status: 400))
            #expect(reused?.serverReason?.contains("new key") == true)
        }
    }

    static func csr(key: Certificate.PrivateKey) throws -> [UInt8] {
        let request = try CertificateSigningRequest(
            version: .v1, subject: DistinguishedName(), privateKey: key, attributes: .init(),
            signatureAlgorithm: .ecdsaWithSHA256)
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }

    @Test("cacerts and simpleenroll on one TLS connection; the key is prepared only after cacerts answered")
    func oneConnectionForAnEnrollment() async throws {
        try await withServer { server in
            let (idevidKey, idevid) = try await server.idevid(hardwareSerial: "SN-ONE-CONN")
            let client = try server.estClient(presenting: idevid, key: idevidKey)
            let key = try KeyMaterial.generate(.p256)
            let prepared = Mutex(0)
            let (caCertificates, certificate) = try await client.cacertsThenSimpleEnroll {
                prepared.withLock { $0 += 1 }
                return (try Self.csr(key: key), .clientCertificate)
            }
            #expect(prepared.withLock { $0 } == 1)
            #expect(Set(caCertificates) == Set(server.hierarchy.estCACertificates))
            #expect(certificate.publicKey == key.publicKey)
            #expect(client.connectionsOpened == 1, "both requests on one connection")
            #expect(try await server.store.credentialCount() == 1)
            // A plain request opens (and closes) a connection of its own.
            _ = try await client.cacerts()
            #expect(client.connectionsOpened == 2)

            // A renewal the same way, with the new LDevID as the client certificate.
            let renewing = try server.estClient(presenting: certificate, key: key)
            let next = try KeyMaterial.generate(.p256)
            let renewed = try await renewing.cacertsThenSimpleReenroll { try Self.csr(key: next) }
            #expect(renewed.certificate.publicKey == next.publicKey)
            #expect(renewing.connectionsOpened == 1)
            #expect(try await server.store.credentialCount() == 2)
        }
    }

    @Test("the server closed the kept connection (its idle timeout) while the key was made: a new connection enrolls")
    func keptConnectionClosedMeanwhile() async throws {
        try await withServer(idleTimeoutSeconds: 1) { server in
            let (idevidKey, idevid) = try await server.idevid(hardwareSerial: "SN-IDLE-CONN")
            let client = try server.estClient(presenting: idevid, key: idevidKey)
            let key = try KeyMaterial.generate(.p256)
            let (_, certificate) = try await client.cacertsThenSimpleEnroll {
                try await Task.sleep(for: .seconds(3))  // a slow secure element
                return (try Self.csr(key: key), .clientCertificate)
            }
            #expect(certificate.publicKey == key.publicKey)
            #expect(client.connectionsOpened == 2, "the second request went on a new connection")
            #expect(try await server.store.credentialCount() == 1)
        }
    }

    @Test("cacerts refused: the error is cacerts', nothing is prepared and nothing is issued")
    func refusedCacertsPreparesNothing() async throws {
        try await withServer { server in
            let (idevidKey, idevid) = try await server.idevid(hardwareSerial: "SN-NO-LABEL")
            let client = try server.estClient(presenting: idevid, key: idevidKey, label: "no-such-tenant")
            let prepared = Mutex(0)
            await #expect {
                _ = try await client.cacertsThenSimpleEnroll {
                    prepared.withLock { $0 += 1 }
                    return ([], .clientCertificate)
                }
            } throws: { error in
                (error as? AgentError)?.code == .refused(status: 404)
                    && (error as? AgentError)?.reason.contains("cacerts") == true
            }
            #expect(prepared.withLock { $0 } == 0)
            #expect(try await server.store.credentialCount() == 0)
        }
    }

    @Test("the EST client: cacerts, and the server's Date header is recorded")
    func cacertsAndServerDate() async throws {
        try await withServer { server in
            let client = try ESTClient(baseURL: server.estURL, trustRoots: [server.hierarchy.root])
            #expect(client.lastServerDate == nil)
            let certificates: [Certificate]
            do {
                certificates = try await client.cacerts()
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
            #expect(Set(certificates) == Set(server.hierarchy.estCACertificates))
            let serverDate = try #require(client.lastServerDate)
            // Hummingbird stamps the real time (whole seconds), not the server's injected clock.
            #expect(abs(serverDate.timeIntervalSinceNow) < 120)
        }
    }

    @Test(
        "the EST client refuses unusable arguments",
        arguments: ["http://127.0.0.1:8443", "127.0.0.1:8443", "https://", "https://host/?q=1", ""])
    func invalidURLs(_ url: String) throws {
        let chain = try TestChain()
        defer { chain.directory.remove() }
        let error = #expect(throws: AgentError.self) {
            _ = try ESTClient(baseURL: url, trustRoots: [chain.hierarchy.root])
        }
        #expect(error?.code == .invalidArgument)
    }

    @Test("the EST client needs a trust bundle")
    func emptyTrustBundle() {
        let error = #expect(throws: AgentError.self) {
            _ = try ESTClient(baseURL: "https://127.0.0.1:8443", trustRoots: [])
        }
        #expect(error?.code == .invalidArgument)
    }

    /// Every file in place with the right modes; the chain verifies with openssl; the key is the certificate's;
    /// the status reads back valid with the planned renewal at 2/3 of the lifetime.
    private func expectInstalled(
        _ dir: String, identity: EnrolledIdentity, server: AgentTestServer,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let layout = AgentStateDirectory(path: dir)
        for file in AgentStateDirectory.File.allCases {
            #expect(Files.exists(layout.path(file)), "\(file.rawValue)", sourceLocation: sourceLocation)
            #expect(!Files.exists(layout.pendingPath(file)), sourceLocation: sourceLocation)
        }
        #expect(
            Set(Files.snapshot(dir).keys) == Set(AgentStateDirectory.File.allCases.map(\.rawValue)),
            "no temporary files left", sourceLocation: sourceLocation)
        #expect(try Files.mode(dir) == 0o700, sourceLocation: sourceLocation)
        #expect(try Files.mode(layout.path(.key)) == 0o600, sourceLocation: sourceLocation)
        #expect(
            try Files.text(layout.path(.key)).hasPrefix("-----BEGIN " + "PRIVATE KEY-----"), sourceLocation: sourceLocation)

        let verify = try await ExternalTool.runAsync([
            "openssl", "verify", "-CAfile", server.layout.rootCertificate, "-untrusted",
            server.layout.issuingCertificate, layout.path(.certificate),
        ])
        #expect(verify.succeeded, "\(verify.stdout) \(verify.stderr)", sourceLocation: sourceLocation)

        let certificate = try #require(try layout.certificate(), sourceLocation: sourceLocation)
        let key = try #require(try layout.privateKey(), sourceLocation: sourceLocation)
        #expect(key.publicKey == certificate.publicKey, sourceLocation: sourceLocation)
        #expect(certificate.devidSerial == identity.serial, sourceLocation: sourceLocation)
        // openssl agrees that key.pem and cert.pem are a pair.
        let keyPub = try await ExternalTool.runAsync(["openssl", "pkey", "-in", layout.path(.key), "-pubout"])
        let certPub = try await ExternalTool.runAsync([
            "openssl", "x509", "-in", layout.path(.certificate), "-noout", "-pubkey",
        ])
        #expect(keyPub.succeeded && keyPub.stdout == certPub.stdout, sourceLocation: sourceLocation)

        let chain = try #require(try layout.chain(), sourceLocation: sourceLocation)
        #expect(
            chain == [certificate, server.hierarchy.issuing.certificate, server.hierarchy.root],
            sourceLocation: sourceLocation)
        #expect(
            try PEM.certificates(try Files.text(layout.path(.trust))) == [server.hierarchy.root],
            sourceLocation: sourceLocation)
        #expect(try layout.identity() == identity, sourceLocation: sourceLocation)

        let status = try IdentityStatus.read(stateDirectory: dir, clock: server.clock)
        #expect(status.state == .valid, sourceLocation: sourceLocation)
        #expect(status.deviceID == identity.deviceID, sourceLocation: sourceLocation)
        #expect(status.tenant == server.tenant, sourceLocation: sourceLocation)
        #expect(status.serial == identity.serial, sourceLocation: sourceLocation)
        #expect(
            status.issuer == String(describing: server.hierarchy.issuing.certificate.subject),
            sourceLocation: sourceLocation)
        #expect(status.keyMatchesCertificate == true, sourceLocation: sourceLocation)
        #expect(status.renewalDue == false, sourceLocation: sourceLocation)
        #expect(status.serverURL == server.estURL, sourceLocation: sourceLocation)
        let lifetime = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        #expect(
            status.plannedRenewal == certificate.notValidBefore.addingTimeInterval((lifetime * 2 / 3).rounded(.down)),
            sourceLocation: sourceLocation)
        #expect(identity.plannedRenewal == status.plannedRenewal, sourceLocation: sourceLocation)
    }
}
