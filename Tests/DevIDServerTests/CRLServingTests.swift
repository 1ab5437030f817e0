import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import ServiceLifecycle
import Testing
import X509

/// `GET /crl/<name>.crl` on the operations listener, checked with curl and openssl as relying parties.
@Suite("CRL serving", .serialized)
struct CRLServingTests {
    @Test("issued LDevIDs name the CRL and OCSP URLs; a revocation is in the served CRL within a second")
    func revocationPublishedWithinASecond() async throws {
        let f = try await PublicationFixture.start()
        let revoked = try await f.enroll("dev-r")
        let good = try await f.enroll("dev-g")

        // Every issued certificate carries the CRL Distribution Point and the AIA OCSP URL.
        let extensions = try await f.sh("openssl x509 -in dev-r.pem -noout -ext crlDistributionPoints,authorityInfoAccess")
        #expect(extensions.stdout.contains("URI:\(f.server.opsURL)/crl/issuing.crl"), "\(extensions.stdout)")
        #expect(extensions.stdout.contains("OCSP - URI:\(f.server.opsURL)/ocsp"), "\(extensions.stdout)")
        #expect(RevocationExtensions.crlDistributionPointURI(of: good) == "\(f.server.opsURL)/crl/issuing.crl")

        let before = try await f.crl("issuing")
        #expect(before.entries.isEmpty)
        let reply = try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"dev-r","reason":"keyCompromise"}"#)
        #expect(reply.status == 200, "\(reply.body)")
        // Counted from the moment the revocation is stored (the POST answered).
        let waited = try await f.waitUntilListed(revoked.serialNumber, in: "issuing")
        #expect(waited != nil, "the revoked certificate never appeared in the CRL")
        #expect(waited.map { $0 < .seconds(1) } == true, "listed \(String(describing: waited)) after POST revoke")

        let after = try await f.crl("issuing")
        #expect(after.crlNumber! > before.crlNumber!, "the CRL number goes up with every re-signing")
        #expect(after.entry(for: revoked.serialNumber)?.reason == .keyCompromise)
        #expect(after.entry(for: good.serialNumber) == nil)
        #expect(after.nextUpdate! > after.thisUpdate)

        // openssl as the relying party: fetch with curl, check the signature, then check the two leaves.
        let url = f.server.opsURL
        let check = try await f.sh(
            """
            curl -sS --fail -o issuing.crl \(url)/crl/issuing.crl
            curl -sS --fail -o manufacturer.crl \(url)/crl/manufacturer.crl
            openssl crl -inform DER -in issuing.crl -CAfile issuing.pem -noout -verify 2>&1
            openssl crl -inform DER -in manufacturer.crl -CAfile manufacturer.pem -noout -verify 2>&1
            openssl crl -inform DER -in issuing.crl -out issuing.crl.pem
            echo "revoked leaf:"; openssl verify -crl_check -CAfile root.pem -untrusted issuing.pem \
              -CRLfile issuing.crl.pem dev-r.pem 2>&1
            echo "good leaf:"; openssl verify -crl_check -CAfile root.pem -untrusted issuing.pem \
              -CRLfile issuing.crl.pem dev-g.pem 2>&1
            openssl crl -inform DER -in issuing.crl -noout -text
            """)
        let out = check.stdout
        #expect(out.components(separatedBy: "verify OK").count == 3, "both CRLs verify: \(out)")
        let revokedPart = out.components(separatedBy: "revoked leaf:").last?.components(separatedBy: "good leaf:").first
        #expect(revokedPart?.contains("certificate revoked") == true, "\(out)")
        let goodPart = out.components(separatedBy: "good leaf:").last
        #expect(goodPart?.contains("dev-g.pem: OK") == true, "\(out)")
        #expect(out.contains("Key Compromise"), "\(out)")
        try await f.stop()
    }

    @Test("caching headers; If-None-Match gets 304; unknown names get 404 with a one-line reason")
    func headersAndErrors() async throws {
        let f = try await PublicationFixture.start()
        _ = try await f.crl("issuing")  // published
        let reply = try await f.fetch("/crl/issuing.crl")
        #expect(reply.status == 200)
        let cacheControl = try #require(reply.header("Cache-Control"))
        #expect(cacheControl.hasPrefix("public, max-age="), "\(cacheControl)")
        let maxAge = Int(cacheControl.split(separator: "=")[1].split(separator: ",")[0]) ?? -1
        #expect((0...60).contains(maxAge), "\(cacheControl)")
        let etag = try #require(reply.header("ETag"))
        #expect(reply.header("Last-Modified")?.hasSuffix("GMT") == true)
        #expect(reply.header("Expires")?.hasSuffix("GMT") == true)

        let notModified = try await f.fetch("/crl/issuing.crl", headers: [("If-None-Match", etag)])
        #expect(notModified.status == 304)
        #expect(notModified.body.isEmpty)

        for (path, reason) in [
            ("/crl/nope.crl", "unknown CRL nope"), ("/crl/issuing", "unknown CRL issuing"),
            ("/crl/issuing-4-1.crl", "unknown CRL issuing-4-1"), ("/crl/.crl", "unknown CRL .crl"),
        ] {
            let missing = try await f.fetch(path)
            #expect(missing.status == 404, "\(path)")
            #expect(String(decoding: missing.body, as: UTF8.self) == reason + "\n", "\(path)")
            #expect(missing.header("Content-Type")?.hasPrefix("text/plain") == true)
        }
        try await f.stop()
    }

    @Test("partitioned: each LDevID names its partition, whose CRL carries the matching IDP; openssl accepts all")
    func partitions() async throws {
        let f = try await PublicationFixture.start { $0.crlPartitions = 4 }
        var certificates: [String: Certificate] = [:]
        for index in 0..<8 {
            certificates["dev-\(index)"] = try await f.enroll("dev-\(index)")
        }
        let endpoints = RevocationEndpoints(baseURL: f.server.opsURL, caName: "issuing", partitionCount: 4)
        for certificate in certificates.values {
            let partition = CRLPartitioner.partition(for: certificate.serialNumber, partitions: 4)
            #expect(
                RevocationExtensions.crlDistributionPointURI(of: certificate)
                    == "\(f.server.opsURL)/crl/issuing-4-\(partition).crl")
            #expect(endpoints.crlURL(for: certificate.serialNumber).hasSuffix("issuing-4-\(partition).crl"))
        }
        let revokedNames = ["dev-0", "dev-1", "dev-2", "dev-3"]
        for name in revokedNames {
            let reply = try await f.admin("POST", "/v1/admin/revoke", body: "{\"device\":\"\(name)\",\"reason\":\"superseded\"}")
            #expect(reply.status == 200, "\(reply.body)")
        }
        let last = try #require(certificates["dev-3"])
        let lastPartition = CRLPartitioner.partition(for: last.serialNumber, partitions: 4)
        #expect(try await f.waitUntilListed(last.serialNumber, in: "issuing-4-\(lastPartition)") != nil)

        var total = 0
        for partition in 0..<4 {
            let crl = try await f.crl("issuing-4-\(partition)")
            #expect(crl.distributionPoint == "\(f.server.opsURL)/crl/issuing-4-\(partition).crl")
            #expect(crl.onlyContainsUserCertificates)
            for entry in crl.entries {
                #expect(CRLPartitioner.partition(for: entry.serial, partitions: 4) == partition)
            }
            total += crl.entries.count
        }
        #expect(total == 4)
        // The complete CRL is small enough to be served too (for certificates issued before partitioning).
        #expect(try await f.crl("issuing").entries.count == 4)

        // Every partition verifies; each leaf is checked against the CRL its CDP names.
        var script = "set -e\n"
        for partition in 0..<4 {
            script += """
                curl -sS --fail -o p\(partition).crl \(f.server.opsURL)/crl/issuing-4-\(partition).crl
                openssl crl -inform DER -in p\(partition).crl -CAfile issuing.pem -noout -verify 2>&1
                openssl crl -inform DER -in p\(partition).crl -out p\(partition).pem
                openssl crl -in p\(partition).pem -noout -text | grep -A1 'Issuing Distribution Point' | head -2

                """
        }
        let fetched = try await f.sh(script)
        #expect(fetched.succeeded, "\(fetched.stderr)")
        #expect(fetched.stdout.components(separatedBy: "verify OK").count == 5, "\(fetched.stdout)")
        #expect(fetched.stdout.contains("Issuing Distribution Point: critical"), "\(fetched.stdout)")
        for (name, certificate) in certificates {
            let partition = CRLPartitioner.partition(for: certificate.serialNumber, partitions: 4)
            let verdict = try await f.sh(
                "openssl verify -crl_check -CAfile root.pem -untrusted issuing.pem -CRLfile p\(partition).pem \(name).pem 2>&1")
            if revokedNames.contains(name) {
                #expect(!verdict.succeeded && verdict.stdout.contains("certificate revoked"), "\(name): \(verdict.stdout)")
            } else {
                #expect(verdict.succeeded && verdict.stdout.contains("\(name).pem: OK"), "\(name): \(verdict.stdout)")
            }
        }
        try await f.stop()
    }

    @Test("after crl.partitions is raised, the earlier count's partitions stay published until its certificates expire")
    func earlierPartitionCountsStayPublished() async throws {
        // Ports change across the restart; the base URL in the certificates must not.
        let base = "http://pki.example.test/devid"
        let first = try await PublicationFixture.start {
            $0.crlPartitions = 4
            $0.revocationBaseURL = base
        }
        let old = try await first.enroll("dev-old")
        let oldURI = try #require(RevocationExtensions.crlDistributionPointURI(of: old))
        let oldName = String(try #require(oldURI.split(separator: "/").last).dropLast(".crl".count))
        #expect(oldName.hasPrefix("issuing-4-"), "\(oldURI)")
        let token = first.server.adminToken
        let dataDirectory = first.server.configuration.dataDirectory
        await first.server.group.triggerGracefulShutdown()
        try await first.server.runTask.value

        // The same data directory, now with 8 partitions.
        let server = try await LiveServer(clock: first.server.clock) {
            $0.dataDirectory = dataDirectory
            $0.crlPartitions = 8
            $0.revocationBaseURL = base
        }
        let f = PublicationFixture(server: server, scratch: first.scratch)
        func lookUp(_ name: String) async throws -> Int {
            try await f.fetch("/crl/\(name).crl").status
        }
        var status = 0
        for _ in 0..<250 {
            status = try await lookUp("issuing-8-0")
            if status == 200 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(status == 200, "the current count is published")
        let new = try await f.enroll("dev-new")
        #expect(RevocationExtensions.crlDistributionPointURI(of: new)?.contains("/crl/issuing-8-") == true)
        #expect(try await lookUp(oldName) == 200, "the earlier count is still published after the restart")

        let revoke = try await withClient(try server.client()) {
            try await $0.send(
                "POST", server.opsURL + "/v1/admin/revoke",
                headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")],
                body: #"{"device":"dev-old","reason":"keyCompromise"}"#)
        }
        #expect(revoke.status == 200, "\(revoke.body)")
        #expect(try await f.waitUntilListed(old.serialNumber, in: oldName) != nil)
        let crl = try await f.crl(oldName)
        #expect(crl.distributionPoint == oldURI, "the IDP matches the old certificate's CDP")
        #expect(crl.entry(for: old.serialNumber)?.reason == .keyCompromise)
        let verdict = try await f.sh(
            """
            curl -sS --fail -o old.crl '\(server.opsURL)/crl/\(oldName).crl'
            openssl crl -inform DER -in old.crl -out old.pem
            openssl crl -in old.pem -CAfile issuing.pem -noout -verify 2>&1
            openssl verify -crl_check -CAfile root.pem -untrusted issuing.pem -CRLfile old.pem dev-old.pem 2>&1
            """)
        #expect(verdict.stdout.contains("verify OK"), "\(verdict.stdout) \(verdict.stderr)")
        #expect(verdict.stdout.contains("certificate revoked"), "\(verdict.stdout)")
        let history = try String(contentsOfFile: dataDirectory + "/crl/partitions.json", encoding: .utf8)
        #expect(history.contains(#""partitions":4"#) && history.contains(#""partitions":8"#), "\(history)")

        // Once every certificate issued under 4 partitions has expired, they are no longer published.
        let lifetime = try #require(server.configuration.ldevidPolicy.lifetime)
        // (The history rounds each count's end up by one hour.)
        server.clock.advance(by: lifetime + server.configuration.crlValidity + 3_600 + 60)
        await server.state.revocation.invalidate()
        for _ in 0..<250 {
            status = try await lookUp(oldName)
            if status == 404 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(status == 404)
        #expect(try await lookUp("issuing-8-0") == 200)
        let forgotten = try String(contentsOfFile: dataDirectory + "/crl/partitions.json", encoding: .utf8)
        #expect(!forgotten.contains(#""partitions":4"#), "\(forgotten)")
        try await server.stop()

        // An unreadable history is moved aside, not overwritten, and the CRLs of the current count are published.
        try "{broken".write(toFile: dataDirectory + "/crl/partitions.json", atomically: true, encoding: .utf8)
        let third = try await LiveServer(clock: server.clock) {
            $0.dataDirectory = dataDirectory
            $0.crlPartitions = 8
            $0.revocationBaseURL = base
        }
        let g = PublicationFixture(server: third, scratch: first.scratch)
        status = 0
        for _ in 0..<250 {
            status = try await g.fetch("/crl/issuing-8-0.crl").status
            if status == 200 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(status == 200)
        #expect(
            try String(contentsOfFile: dataDirectory + "/crl/partitions.json.unreadable", encoding: .utf8) == "{broken")
        #expect(try String(contentsOfFile: dataDirectory + "/crl/partitions.json", encoding: .utf8).contains(#""partitions":8"#))
        try await third.stop()
        first.scratch.remove()
        first.server.directory.remove()
    }

    @Test("a burst of revocations shares a few rebuilds, and every one is listed within a second of the last")
    func burstCoalesces() async throws {
        let f = try await PublicationFixture.start()
        var serials: [Certificate.SerialNumber] = []
        for index in 0..<12 {
            serials.append(try await f.enroll("burst-\(index)").serialNumber)
        }
        let before = try #require(try await f.crl("issuing").crlNumber)
        let posted = ContinuousClock.now
        for index in 0..<12 {
            let reply = try await f.admin("POST", "/v1/admin/revoke", body: "{\"device\":\"burst-\(index)\"}")
            #expect(reply.status == 200)
        }
        let lastPosted = ContinuousClock.now
        var listed = false
        while ContinuousClock.now - lastPosted < .seconds(1) {
            let crl = try await f.crl("issuing")
            if serials.allSatisfy({ crl.entry(for: $0) != nil }) {
                listed = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(listed, "all 12 revocations listed within a second of the last POST")
        let after = try #require(try await f.crl("issuing").crlNumber)
        // One rebuild per coalescing window while the requests arrive, not one per revocation.
        let windows = Int((lastPosted - posted) / .milliseconds(200)) + 2
        #expect(after - before <= UInt64(min(windows, 11)), "\(after - before) rebuilds for 12 revocations in \(lastPosted - posted)")
        try await f.stop()
    }

    @Test("re-signed on schedule before nextUpdate, and the CRL number survives a restart")
    func scheduleAndRestart() async throws {
        let first = try await PublicationFixture.start { $0.crlValidity = 2 }
        let initial = try await first.crl("issuing")
        #expect(initial.nextUpdate!.timeIntervalSince(initial.thisUpdate) == 2)
        // At half of the validity the CRL is re-signed without any revocation.
        try await Task.sleep(for: .milliseconds(2_300))
        let resigned = try await first.crl("issuing")
        #expect(resigned.crlNumber! > initial.crlNumber!, "re-signed on schedule")
        let dataDirectory = first.server.configuration.dataDirectory
        let lastNumber = try #require(try await first.crl("issuing").crlNumber)
        await first.server.group.triggerGracefulShutdown()
        try await first.server.runTask.value

        // A restart on the same data directory continues the numbering.
        let second = try await LiveServer { $0.dataDirectory = dataDirectory }
        var number: UInt64?
        for _ in 0..<100 {
            let reply = try await withClient(try second.client()) { try await $0.send("GET", second.opsURL + "/crl/issuing.crl") }
            if reply.status == 200 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let crl = try await PublicationFixture(server: second, scratch: first.scratch).crl("issuing")
        number = crl.crlNumber
        #expect(number! > lastNumber, "CRL number \(number!) after restart, \(lastNumber) before")
        try await second.stop()
        first.scratch.remove()
        first.server.directory.remove()
    }

    @Test("revocation settings come from the environment; a configured base URL goes into certificates and IDPs")
    func settings() async throws {
        let loaded = try await ServerConfiguration.load(
            configFile: nil,
            environment: [
                "DEVID_REVOCATION_BASE_URL": "https://pki.example.test/devid/", "DEVID_CRL_VALIDITY_HOURS": "6",
                "DEVID_CRL_PARTITIONS": "16", "DEVID_CRL_MAX_BYTES": "500000", "DEVID_OCSP_VALIDITY_MINUTES": "15",
                "DEVID_OCSP_SIGNER_LIFETIME_HOURS": "12",
            ])
        #expect(loaded.revocationBaseURL == "https://pki.example.test/devid/")
        #expect(loaded.crlValidity == 6 * 3_600)
        #expect(loaded.crlPartitions == 16)
        #expect(loaded.crlMaximumBytes == 500_000)
        #expect(loaded.ocspValidity == 15 * 60)
        #expect(loaded.ocspSignerLifetime == 12 * 3_600)
        try loaded.validateRevocation()

        let refusals: [(String, (inout ServerConfiguration) -> Void)] = [
            ("revocation base URL must be http(s)://host[:port][/path], printable ASCII", { $0.revocationBaseURL = "ftp://x" }),
            ("revocation base URL must be http(s)://host[:port][/path], printable ASCII", { $0.revocationBaseURL = "http://a b" }),
            ("CRL partitions must be 1-4096", { $0.crlPartitions = 0 }),
            ("the CRL size limit must be at least 10000 bytes", { $0.crlMaximumBytes = 100 }),
            (
                "CRL validity must be at least 2 seconds, OCSP validity a minute, the OCSP signer lifetime an hour",
                { $0.ocspSignerLifetime = 60 }
            ),
        ]
        for (reason, change) in refusals {
            var configuration = ServerConfiguration()
            change(&configuration)
            #expect(throws: DevIDCoreError(code: .invalidPolicy, reason: reason)) { try configuration.validateRevocation() }
            do {
                try configuration.validateRevocation()
            } catch {
                #expect(error.reason == reason)
            }
        }

        // The base URL relying parties use can differ from the listener (a proxy, a CDN).
        let f = try await PublicationFixture.start {
            $0.revocationBaseURL = "http://pki.example.test:9999/devid"
            $0.crlPartitions = 2
        }
        let leaf = try await f.enroll("dev-url")
        let partition = CRLPartitioner.partition(for: leaf.serialNumber, partitions: 2)
        let expected = "http://pki.example.test:9999/devid/crl/issuing-2-\(partition).crl"
        #expect(RevocationExtensions.crlDistributionPointURI(of: leaf) == expected)
        let aia = try await f.sh("openssl x509 -in dev-url.pem -noout -ext authorityInfoAccess")
        #expect(aia.stdout.contains("OCSP - URI:http://pki.example.test:9999/devid/ocsp"), "\(aia.stdout)")
        #expect(try await f.crl("issuing-2-\(partition)").distributionPoint == expected)
        try await f.stop()
    }
}
