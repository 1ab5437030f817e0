import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// Break glass with a fleet: 50 devices running the real agent (`RotationAgent`, the code of `devid agent run`)
/// against a live server, each one also a Mosquitto client with its LDevID. The issuing CA is replaced
/// (prepare → activate → taint → revoke) while 49 of them check in, and one stays offline through all of it.
@Suite(.serialized)
struct BreakGlassFleetTests {
    static let fleetSize = 50
    /// Agents stepping at once (a fleet's check-ins are spread; this is a burst).
    static let concurrency = 10

    struct Member {
        let id: String
        let stateDirectory: String
        let agent: RotationAgent
        let directory: AgentStateDirectory
    }

    @Test(
        "50 agents through Mosquitto: taint moves every online device with no failed check-in or refused connection; revoke refuses the old CA everywhere; the offline device bootstraps back",
        .timeLimit(.minutes(10)))
    func issuingCARollover() async throws {
        let work = try TemporaryDirectory(prefix: "devid-breakglass")
        defer { if ProcessInfo.processInfo.environment["DEVID_KEEP_TEST_DIRS"] == nil { work.remove() } }
        let exportDirectory = work.file("export")
        let pidFile = work.file("mosquitto.pid")
        let port = try Loopback.freePort()
        // The server's (virtual) time starts two minutes behind the machine's: the test moves it on by the agents'
        // rotate-now jitter, and Mosquitto and openssl, which check CRLs against the machine's clock, must never
        // see a CRL from the future.
        let fixture = try await ESTFixture(clock: ManualWallClock(Date().addingTimeInterval(-120))) { configuration in
            configuration.mosquitto = MosquittoSyncConfiguration(
                directory: exportDirectory, pidFile: pidFile, port: port, bindAddress: "127.0.0.1",
                brokerNames: ["127.0.0.1", "localhost"])
            configuration.ldevidPolicy.rotation.overlap = 3_600
            configuration.ldevidPolicy.rotation.confidence = 0
        }
        try await fixture.setBrokerTestPolicy(fixture.tenant)
        let config = "\(exportDirectory)/\(MosquittoExport.configurationFile)"
        try #require(await eventually(timeout: 10) { FileManager.default.fileExists(atPath: config) } != nil)
        let broker = try await MosquittoBroker(exportDirectory: exportDirectory, port: port, directory: work)
        try "\(broker.process.pid)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        broker.reload()
        let caFile = "\(exportDirectory)/\(MosquittoExport.caFile)"
        let server = fixture.server
        let clock = server.clock
        let root = fixture.hierarchy.root

        // The fleet: IDevIDs from the manufacturer CA, enrolled by the agent's own enroller.
        var fleet: [Member] = []
        for index in 0..<Self.fleetSize {
            let serial = "fleet-\(index)"
            let (key, certificate) = try await fixture.idevid(serial)
            let stateDirectory = work.file("state-\(index)")
            var configuration = AgentConfiguration(serverURL: server.estURL)
            configuration.idevidCertificate = try work.write("\(serial)-idevid.pem", PEM.bundle([certificate]))
            configuration.idevidKey = work.file("\(serial)-idevid.key")
            try SecureFile.write(
                Array(try key.serializeAsPEM().pemString.utf8), to: work.file("\(serial)-idevid.key"), mode: 0o600)
            _ = try await Enroller().enroll(
                server: server.estURL, trustBundle: [root], stateDirectory: stateDirectory,
                bootstrap: .idevid(certificateChain: [certificate], key: key), clock: clock)
            try configuration.save(stateDirectory: stateDirectory)
            let agent = try RotationAgent(
                stateDirectory: stateDirectory, options: .init(checkInInterval: 3_600), clock: clock,
                random: SplitMix64(seed: UInt64(index + 1)))
            fleet.append(
                Member(
                    id: DeviceID(derivedFromHardwareSerial: serial).rawValue, stateDirectory: stateDirectory, agent: agent,
                    directory: AgentStateDirectory(path: stateDirectory)))
        }
        let online = Array(fleet.dropLast())
        let offline = try #require(fleet.last)
        let oldCA = fixture.hierarchy.issuing.certificate
        let oldCertificates = try Dictionary(
            uniqueKeysWithValues: fleet.map { ($0.id, try #require(try $0.directory.certificate())) })
        #expect(oldCertificates.values.allSatisfy { $0.issuer == oldCA.subject })
        try #require(await eventually(timeout: 10) { Self.acl(exportDirectory).contains("user \(offline.id)\n") } != nil)

        // Every device connects to the broker before anything happens.
        let before = try await Self.publish(online + [offline], port: port, caFile: caFile, work: work, tag: "before")
        #expect(before.isEmpty, "refused before the event: \(before)")

        // prepare: a new CA from the root key (dev mode keeps it in the data directory), recorded as prepared.
        let layout = CALayout(dataDirectory: server.configuration.dataDirectory)
        let prepared = try CAStore.prepareIssuing(
            layout: layout, rootKeyPath: layout.rootKey, passphrase: Array((server.configuration.caPassphrase ?? "").utf8),
            now: clock.now(), keyEncryptionRounds: server.configuration.keyEncryptionRounds)
        #expect(prepared.id == 2)
        let registered = try await fixture.admin("POST", "/v1/admin/ca/issuing/register", body: "{}")
        #expect(registered.status == 200, "\(registered.body)")
        // activate and taint: the broker's CA file holds both CAs before any device moves.
        let activated = try await fixture.admin("POST", "/v1/admin/ca/issuing/2/activate", body: "{}")
        #expect(activated.status == 200, "\(activated.body)")
        try #require(
            await eventually(timeout: 5) { Self.certificates(caFile).contains(prepared.certificate) } != nil,
            "the Mosquitto CA file never listed the new issuing CA")
        let dryTaint = try await fixture.admin("POST", "/v1/admin/ca/issuing/1/taint", body: #"{"dryRun":true}"#)
        #expect(dryTaint.body.contains(#""rotationDue":50"#), "\(dryTaint.body)")
        let tainted = try await fixture.admin("POST", "/v1/admin/ca/issuing/1/taint", body: "{}")
        #expect(tainted.status == 200 && tainted.body.contains(#""rotationDue":50"#), "\(tainted.body)")

        // Every online agent checks in and is told to rotate; each draws a moment within its rotate-now jitter
        // (60 s), so the fleet does not renew in the same second.
        let told = try await Self.stepAll(online)
        #expect(told.values.allSatisfy { $0.error == nil && $0.change == nil }, "\(told.mapValues(\.description))")
        let delays = told.values.map(\.delay)
        #expect(delays.allSatisfy { (0...RotationAgent.defaultRotateNowJitter).contains($0) }, "\(delays)")
        #expect((delays.max() ?? 0) - (delays.min() ?? 0) > 30, "the fleet's renewals spread over the minute: \(delays.sorted())")
        #expect(Set(delays.map { Int($0) }).count > 25, "\(delays.sorted())")
        clock.advance(by: RotationAgent.defaultRotateNowJitter + 1)

        // A minute on, every online agent renews onto the new CA.
        let taintStart = ContinuousClock.now
        let wakes = try await Self.stepAll(online)
        let rolloverSeconds = Self.seconds(ContinuousClock.now - taintStart)
        let failed = wakes.filter { $0.value.error != nil }
        #expect(failed.isEmpty, "failed check-ins: \(failed.mapValues { String(describing: $0.error) })")
        #expect(
            wakes.values.allSatisfy { $0.change == IdentityChange.renewal },
            "\(wakes.mapValues { String(describing: $0.change) })")
        for member in online {
            let current = try #require(try member.directory.certificate())
            #expect(current.issuer == prepared.certificate.subject, "\(member.id) still on \(current.issuer)")
        }
        let progress = try await fixture.admin("GET", "/v1/admin/rotate/status?issuingCA=1")
        #expect(progress.body.contains(#""pending":1"#) && progress.body.contains(#""rotated":49"#), "\(progress.body)")
        let renewalsPerSecond = Double(online.count) / rolloverSeconds
        print(
            "break glass: \(online.count) agents moved to issuing CA 2 in \(String(format: "%.1f", rolloverSeconds)) s "
                + "(\(String(format: "%.1f", renewalsPerSecond)) renewals/s with \(Self.concurrency) at a time; "
                + "30,000 devices: \(String(format: "%.0f", 30_000 / renewalsPerSecond)) s)")

        // Zero refused broker connections: every new LDevID, and the offline device's old one (still valid).
        let during = try await Self.publish(online + [offline], port: port, caFile: caFile, work: work, tag: "during")
        #expect(during.isEmpty, "refused during the event: \(during)")

        // revoke: refused while the offline device (seen at its enrollment, within the hour) holds an old LDevID.
        let refused = try await fixture.admin("POST", "/v1/admin/ca/issuing/1/revoke", body: "{}")
        #expect(refused.status == 409, "\(refused.body)")
        #expect(refused.body.contains("1 online device(s) still hold LDevIDs of issuing CA 1"), "\(refused.body)")
        let revoked = try await fixture.admin(
            "POST", "/v1/admin/ca/issuing/1/revoke", body: #"{"force":true,"reason":"keyCompromise"}"#)
        #expect(revoked.status == 200, "\(revoked.body)")
        // The root's CRL lists it once the root key signs again (a root ceremony).
        let records = try await fixture.store.issuingCAs()
        _ = try DataDirectory.signRootCRLs(
            configuration: server.configuration, rootKeyPath: nil, count: 13, clock: clock, revokedIssuing: records)
        #expect((try await fixture.admin("POST", "/v1/admin/ca/issuing/register", body: "{}")).status == 200)

        // Mosquitto refuses the old CA's LDevIDs (its CA file no longer has CA 1), and still takes the new ones.
        let offlineOld = try #require(oldCertificates[offline.id])
        let offlineFiles = try BrokerDevice.write(
            offline.id, (try #require(try offline.directory.privateKey()), offlineOld), caFile: caFile,
            directory: work, suffix: "-old")
        let cutOff = await eventually(timeout: 5) {
            let attempt = try? await MQTTClients.publish(
                port: port, credentials: offlineFiles.files,
                topic: "tenants/acme/devices/\(offline.id)/telemetry/t", message: "after revoke")
            return attempt.map { !$0.connected } ?? false
        }
        #expect(cutOff != nil, "Mosquitto still accepts an LDevID of the revoked CA")
        // The broker's CRL file carries the root's CRL, which lists the revoked issuing CA.
        let listsCA = await eventually(timeout: 5) {
            let text = (try? String(contentsOfFile: "\(exportDirectory)/\(MosquittoExport.crlFile)", encoding: .utf8)) ?? ""
            return text.components(separatedBy: "-----BEGIN X509 CRL-----").dropFirst().contains { block in
                let body = block.components(separatedBy: "-----END X509 CRL-----")[0].filter { !$0.isWhitespace }
                guard let der = Data(base64Encoded: body), let crl = try? CertificateRevocationList(derEncoded: Array(der))
                else { return false }
                return crl.issuer == root.subject && crl.entry(for: oldCA.serialNumber) != nil
            }
        }
        #expect(listsCA != nil, "the Mosquitto CRL file has no root CRL listing issuing CA 1")
        let after = try await Self.publish(online, port: port, caFile: caFile, work: work, tag: "after")
        #expect(after.isEmpty, "refused after the revocation: \(after)")

        // openssl verify -crl_check_all with the root's CRL and the issuing CRLs: the old LDevID is refused.
        let crls = try await Self.crlBundle(server.opsURL, names: ["root", "issuing", "issuing2"], work: work)
        let rootFile = try work.write("root.pem", PEM.bundle([root]))
        let oldCAFile = try work.write("issuing-1.pem", PEM.bundle([oldCA]))
        let newCAFile = try work.write("issuing-2.pem", PEM.bundle([prepared.certificate]))
        let oldLeaf = try work.write("old-leaf.pem", PEM.bundle([offlineOld]))
        let newLeaf = try work.write("new-leaf.pem", PEM.bundle([try #require(try online[0].directory.certificate())]))
        let refusedByOpenSSL = try await ExternalTool.runAsync([
            "openssl", "verify", "-crl_check_all", "-CAfile", rootFile, "-untrusted", oldCAFile, "-CRLfile", crls,
            oldLeaf,
        ])
        #expect(!refusedByOpenSSL.succeeded)
        #expect((refusedByOpenSSL.stdout + refusedByOpenSSL.stderr).contains("certificate revoked"), "\(refusedByOpenSSL)")
        // The issuing CA itself is listed in the root's CRL: checked alone, without its LDevIDs' CRL.
        let rootOnly = try await Self.crlBundle(server.opsURL, names: ["root"], work: work, file: "root-only.pem")
        let caRevoked = try await ExternalTool.runAsync([
            "openssl", "verify", "-crl_check", "-CAfile", rootFile, "-CRLfile", rootOnly, oldCAFile,
        ])
        #expect(!caRevoked.succeeded && (caRevoked.stdout + caRevoked.stderr).contains("certificate revoked"), "\(caRevoked)")
        let accepted = try await ExternalTool.runAsync([
            "openssl", "verify", "-crl_check_all", "-CAfile", rootFile, "-untrusted", newCAFile, "-CRLfile", crls,
            newLeaf,
        ])
        #expect(accepted.succeeded, "\(accepted)")

        // pkilint (scripts/test installs it) accepts the new issuing CA certificate and the root's CRL as an ARL
        // with an entry: nothing at WARNING or above.
        let issuingLint = try await ExternalTool.runAsync(["lint_pkix_cert", "lint", "-s", "WARNING", newCAFile])
        #expect(issuingLint.succeeded && issuingLint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(issuingLint)")
        let arlLint = try await ExternalTool.runAsync([
            "lint_crl", "lint", "-t", "ARL", "-p", "PKIX", "-s", "WARNING", work.file("root.crl"),
        ])
        #expect(arlLint.succeeded && arlLint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(arlLint)")
        let issuingCRLLint = try await ExternalTool.runAsync([
            "lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", work.file("issuing.crl"),
        ])
        #expect(issuingCRLLint.succeeded && issuingCRLLint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(issuingCRLLint)")

        // The offline device comes back: refused with its old LDevID, it bootstraps with its IDevID.
        let back = await offline.agent.step()
        #expect(back.error == nil, "\(String(describing: back.error))")
        #expect(back.change == IdentityChange.bootstrap, "\(String(describing: back.change))")
        let recovered = try #require(try offline.directory.certificate())
        #expect(recovered.issuer == prepared.certificate.subject)
        let recoveredRefusals = try await Self.publish([offline], port: port, caFile: caFile, work: work, tag: "recovered")
        #expect(recoveredRefusals.isEmpty, "\(recoveredRefusals)")

        await broker.stop()
        try await server.stop()
    }

    /// One step of every agent, `concurrency` at a time; the wake of each, by device id.
    static func stepAll(_ members: [Member]) async throws -> [String: Wake] {
        var wakes: [String: Wake] = [:]
        var pending = members[...]
        try await withThrowingTaskGroup(of: (String, Wake).self) { group in
            for _ in 0..<min(concurrency, pending.count) {
                let member = pending.removeFirst()
                group.addTask { (member.id, await member.agent.step()) }
            }
            while let (id, wake) = try await group.next() {
                wakes[id] = wake
                if let member = pending.popFirst() {
                    group.addTask { (member.id, await member.agent.step()) }
                }
            }
        }
        return wakes
    }

    /// Publishes once as each device with its current LDevID; the ids whose connection or publish was refused.
    static func publish(
        _ members: [Member], port: Int, caFile: String, work: TemporaryDirectory, tag: String
    ) async throws -> [String] {
        var devices: [(String, MQTTClientCredentials)] = []
        for member in members {
            let certificate = try #require(try member.directory.certificate())
            let key = try #require(try member.directory.privateKey())
            devices.append(
                (member.id, try BrokerDevice.write(member.id, (key, certificate), caFile: caFile, directory: work, suffix: "-\(tag)").files))
        }
        var refused: [String] = []
        var pending = devices[...]
        await withTaskGroup(of: (String, Bool).self) { group in
            func add(_ device: (String, MQTTClientCredentials)) {
                group.addTask {
                    let result = try? await MQTTClients.publish(
                        port: port, credentials: device.1, topic: "tenants/acme/devices/\(device.0)/telemetry/t",
                        message: tag)
                    return (device.0, result?.accepted == true)
                }
            }
            for _ in 0..<min(concurrency, pending.count) { add(pending.removeFirst()) }
            while let (id, accepted) = await group.next() {
                if !accepted { refused.append(id) }
                if let next = pending.popFirst() { add(next) }
            }
        }
        return refused.sorted()
    }

    /// The named CRLs from the operations listener, as one PEM file.
    static func crlBundle(
        _ opsURL: String, names: [String], work: TemporaryDirectory, file: String = "crls.pem"
    ) async throws -> String {
        var pem = ""
        for name in names {
            let der = work.file("\(name).crl")
            let fetched = try await ExternalTool.runAsync(["curl", "-sf", "-o", der, "\(opsURL)/crl/\(name).crl"])
            try #require(fetched.succeeded, "\(name): \(fetched)")
            let converted = try await ExternalTool.runAsync(["openssl", "crl", "-inform", "DER", "-in", der])
            try #require(converted.succeeded, "\(converted)")
            pem += converted.stdout
        }
        return try work.write(file, pem)
    }

    static func acl(_ directory: String) -> String {
        (try? String(contentsOfFile: "\(directory)/\(MosquittoExport.aclFile)", encoding: .utf8)) ?? ""
    }

    static func certificates(_ path: String) -> [Certificate] {
        ((try? String(contentsOfFile: path, encoding: .utf8)).flatMap { try? PEM.certificates($0) }) ?? []
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
