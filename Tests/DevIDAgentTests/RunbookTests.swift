import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDTesting
import Foundation
import Testing
import X509

/// Runs every `$ devid ...` command of a runbook, in order, against a real `devid serve` with a lot of three
/// enrolled devices. The commands come from the Markdown file itself, so the runbook cannot drift from what works.
@Suite("Runbooks", .serialized)
struct RunbookTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `$ devid ...` lines of a runbook, as argument lists.
    static func commands(in runbook: String) throws -> [[String]] {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(runbook), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("$ devid ") else { return nil }
            return line.dropFirst("$ devid ".count).split(separator: " ").map(String.init)
        }
    }

    /// The fleet every runbook talks about: a running `devid serve` in a temporary directory, tenant `acme`, and
    /// lot `L1` of three devices (`L1-000001` to `L1-000003`), each enrolled with its IDevID.
    struct Fleet {
        let work: TemporaryDirectory
        let dataDir: String
        let server: ServeProcess
        let endpoints: ServerEndpoints

        static func start() async throws -> Fleet {
            let work = try TemporaryDirectory(prefix: "devid-runbook")
            let dataDir = work.file("data")
            let server: ServeProcess
            do {
                server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
            } catch {
                work.remove()
                throw error
            }
            var fleet: Fleet?
            defer { if fleet == nil { server.kill(); work.remove() } }
            let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
            let started = Fleet(work: work, dataDir: dataDir, server: server, endpoints: endpoints)
            try #require(try await started.devid(["tenant", "create", "acme"]).succeeded)
            let lot = work.file("lot-L1")
            try #require(
                try await started.devid(["factory", "mint", "--lot", "L1", "--tenant", "acme", "--count", "3", "--out", lot])
                    .succeeded)
            try #require(try await started.devid(["device", "import", "\(lot)/manifest.json"]).succeeded)
            for index in 1...3 {
                let device = "L1-00000\(index)"
                let enroll = try await ServeCLITests.devid(
                    [
                        "agent", "enroll", "--server", endpoints.estURL, "--trust-bundle", "\(dataDir)/ca/root.crt",
                        "--state-dir", started.stateDirectory(index), "--idevid-cert", "\(lot)/\(device)/chain.pem",
                        "--idevid-key", "\(lot)/\(device)/idevid.key",
                    ], in: work.path)
                try #require(enroll.succeeded, "\(enroll)")
            }
            fleet = started
            return started
        }

        /// The agent state directory of device `L1-00000<index>`.
        func stateDirectory(_ index: Int) -> String { work.file("state-\(index)") }

        /// `devid arguments --data-dir DATA`, as the runbooks' commands are run.
        func devid(_ arguments: [String]) async throws -> ServeCLITests.CommandResult {
            try await ServeCLITests.devid(arguments + ["--data-dir", dataDir], in: work.path)
        }
    }

    @Test("docs/runbooks/rotation.md", .timeLimit(.minutes(5)))
    func rotationRunbook() async throws {
        let commands = try Self.commands(in: "docs/runbooks/rotation.md")
        #expect(commands.count >= 8, "the runbook lost its commands: \(commands)")

        let fleet = try await Fleet.start()
        defer { fleet.server.kill(); fleet.work.remove() }

        var outputs: [String: String] = [:]
        for command in commands {
            let result = try await fleet.devid(command)
            #expect(result.succeeded, "devid \(command.joined(separator: " ")): \(result)")
            outputs[command.joined(separator: " ")] = result.stdout
        }
        #expect(outputs["rotate --lot L1 --dry-run"]?.contains("3 credentials on 3 devices") == true, "\(outputs)")
        #expect(outputs["rotate --lot L1"]?.contains("marked 3 credentials rotation-due") == true, "\(outputs)")
        #expect(outputs["rotate status --lot L1"]?.contains("3") == true, "\(outputs)")
        #expect(outputs["audit list --action rotation.campaign"]?.contains("marked rotation-due: lot L1") == true)
        _ = try await fleet.server.interrupt(timeout: 30)
    }

    @Test("docs/runbooks/compromise.md", .timeLimit(.minutes(5)))
    func compromiseRunbook() async throws {
        let commands = try Self.commands(in: "docs/runbooks/compromise.md")
        #expect(commands.count >= 11, "the runbook lost its commands: \(commands)")

        let fleet = try await Fleet.start()
        defer { fleet.server.kill(); fleet.work.remove() }

        var outputs: [String: ServeCLITests.CommandResult] = [:]
        /// The bulk token's id as the runbook prints it, and the one the server gave.
        let exampleTokenID = "ct_bk5tqx3ana"
        var leakedTokenID = exampleTokenID
        var leakedAdminToken = ""
        for var command in commands {
            let line = command.joined(separator: " ")
            command = command.map { $0 == exampleTokenID ? leakedTokenID : $0 }
            if line.hasPrefix("crl fetch") || line.hasPrefix("cert status") {
                // What relying parties see is published within a second of a revocation; an operator reading
                // the previous output is slower than that. (3 s rather than 1, as in the README walk: this suite
                // runs beside the others on 2 cores; CRLServingTests measures the 1 s alone.)
                try await Task.sleep(for: .seconds(3))
            }
            let result = try await fleet.devid(command)
            #expect(result.succeeded, "devid \(line): \(result)")
            outputs[line] = result
            if line == "token create --tenant acme --uses 20 --ttl 7d" {
                // The runbook's story: two new devices enroll with the bulk token; it cannot take over a device.
                let secret = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                leakedTokenID = try #require(result.stderr.firstMatch(of: #/claim token (ct_[a-z2-7]+) /#)?.1).description
                #expect(result.stderr.contains("new devices only, 20 use(s)"), "\(result)")
                for (index, device) in ["sensor-1", "sensor-2", "L1-000003"].enumerated() {
                    let enroll = try await ServeCLITests.devid(
                        [
                            "agent", "enroll", "--server", fleet.endpoints.estURL, "--trust-bundle",
                            "\(fleet.dataDir)/ca/root.crt", "--state-dir", fleet.work.file("state-bulk-\(index)"),
                            "--token", secret, "--device", device,
                        ], in: fleet.work.path)
                    if device == "L1-000003" {
                        #expect(!enroll.succeeded, "a token that names no device never takes over a device")
                        #expect(enroll.stderr.contains("HTTP 403: device L1-000003 is already registered"), "\(enroll)")
                    } else {
                        #expect(enroll.succeeded, "\(enroll)")
                    }
                }
            }
            if line == "admin-token create --name ci-deploy --role operator --tenant acme --expires-in 90d" {
                // The token that leaks: its owner used it, and so did someone trying more than its role allows.
                leakedAdminToken = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                let used = try await AdminTokenCLITests.devid(
                    ["device", "list"], token: leakedAdminToken, server: fleet.endpoints.opsURL)
                #expect(used.succeeded, "\(used.stderr)")
                let refused = try await AdminTokenCLITests.devid(
                    ["tenant", "create", "evil"], token: leakedAdminToken, server: fleet.endpoints.opsURL)
                #expect(refused.stderr.contains("server answered 403: role operator may not POST /v1/admin/tenants"))
            }
            if line == "admin-token revoke ci-deploy" {
                let after = try await AdminTokenCLITests.devid(
                    ["device", "list"], token: leakedAdminToken, server: fleet.endpoints.opsURL)
                #expect(after.stderr.contains("server answered 401: admin token is revoked"), "\(after.stderr)")
            }
            if line == "device reprovision L1-000002" {
                // What the runbook tells the device to do with the token: enroll again, over its revoked identity.
                let token = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                let enroll = try await ServeCLITests.devid(
                    [
                        "agent", "enroll", "--server", fleet.endpoints.estURL, "--trust-bundle",
                        "\(fleet.dataDir)/ca/root.crt", "--state-dir", fleet.stateDirectory(2), "--token", token,
                        "--device", "L1-000002",
                    ], in: fleet.work.path)
                #expect(enroll.succeeded, "agent enroll with the re-provisioning token: \(enroll)")
                #expect(enroll.stdout.contains("enrolled device L1-000002 (tenant acme)"), "\(enroll)")
                // The token is the only way back: the device's IDevID stays revoked.
                let idevid = try await ServeCLITests.devid(
                    [
                        "agent", "enroll", "--server", fleet.endpoints.estURL, "--trust-bundle",
                        "\(fleet.dataDir)/ca/root.crt", "--state-dir", fleet.work.file("state-idevid-2"),
                        "--idevid-cert", fleet.work.file("lot-L1/L1-000002/chain.pem"), "--idevid-key",
                        fleet.work.file("lot-L1/L1-000002/idevid.key"),
                    ], in: fleet.work.path)
                #expect(!idevid.succeeded)
                #expect(
                    idevid.stderr.contains("HTTP 403: IDevID of device L1-000002 is revoked (keyCompromise)"),
                    "\(idevid)")
            }
        }
        func stdout(_ line: String) -> String { outputs[line]?.stdout ?? "<not run: \(line)>" }

        // A device's key leaked.
        #expect(
            stdout("revoke --device L1-000002 --reason keyCompromise --dry-run").contains(
                "dry run: would revoke 1 credentials on 1 devices (keyCompromise)"), "\(outputs)")
        #expect(
            stdout("revoke --device L1-000002 --reason keyCompromise").contains(
                "revoked 1 credentials on 1 devices (keyCompromise)"), "\(outputs)")
        let show = stdout("device show L1-000002")
        #expect(show.contains("state:     revoked"), "\(show)")
        #expect(show.contains("ldevid  revoked"), "\(show)")
        #expect(show.contains(", keyCompromise)"), "the IDevID is revoked with the device: \(show)")
        #expect(stdout("audit list --action revoke").contains("revoked device L1-000002 (keyCompromise)"))
        let reprovision = outputs["device reprovision L1-000002"]
        #expect(reprovision?.stdout.hasPrefix("devid_ct_") == true, "\(String(describing: reprovision))")
        #expect(reprovision?.stdout.split(separator: "\n").count == 1, "only the token goes to stdout")
        #expect(reprovision?.stderr.contains("device L1-000002 re-provisioned") == true)

        // The reversible hold.
        #expect(stdout("device suspend L1-000003").contains("suspended L1-000003"))
        #expect(stdout("device resume L1-000003").contains("resumed L1-000003: active"))

        // A factory lot leaked: the re-enrolled L1-000002 and the resumed L1-000003 hold a credential again.
        #expect(
            stdout("revoke --lot L1 --reason keyCompromise --dry-run").contains(
                "dry run: would revoke 3 credentials on 3 devices (keyCompromise)"), "\(outputs)")
        #expect(
            stdout("revoke --lot L1 --reason keyCompromise").contains(
                "revoked 3 credentials on 3 devices (keyCompromise)"), "\(outputs)")
        let list = stdout("device list --lot L1")
        for index in 1...3 {
            #expect(list.contains("L1-00000\(index)  acme    L1   revoked"), "\(list)")
        }
        #expect(stdout("audit verify").contains("audit chain intact"))

        // An admin token leaked: revoked, replaced, and what it was refused is in the trail.
        #expect(stdout("admin-token list").contains("ci-deploy  operator  acme"), "\(outputs)")
        #expect(stdout("admin-token revoke ci-deploy").hasPrefix("revoked admin token "), "\(outputs)")
        #expect(
            stdout("admin-token create --name ci-deploy-2 --role operator --tenant acme --expires-in 90d")
                .hasPrefix("devid_adm_"))
        let denials = stdout("audit list --action admin.auth --outcome denied")
        #expect(denials.contains("denied   revoked admin token ci-deploy: GET /v1/admin/devices"), "\(denials)")
        #expect(denials.contains("denied   role operator may not POST /v1/admin/tenants"), "\(denials)")

        // A bulk claim token leaked: it and exactly its two enrollments are revoked.
        #expect(
            stdout("revoke --token \(exampleTokenID) --reason keyCompromise --dry-run").contains(
                "dry run: would revoke 2 credentials on 2 devices (keyCompromise)"), "\(outputs)")
        #expect(
            stdout("revoke --token \(exampleTokenID) --reason keyCompromise").contains(
                "revoked 2 credentials on 2 devices (keyCompromise)"), "\(outputs)")
        #expect(
            stdout("audit list --action token.revoke").contains(
                "revoked claim token \(leakedTokenID) before revoking its enrollments"), "\(outputs)")

        // What relying parties see: OCSP and the CRL (docs/revocation.md).
        let single = stdout("cert status --device L1-000002")
        #expect(single.contains("status:   revoked"), "\(single)")
        #expect(single.contains("crl:      listed (keyCompromise"), "\(single)")
        #expect(single.contains("ocsp:     revoked (keyCompromise"), "\(single)")
        #expect(single.contains("\(fleet.endpoints.opsURL)/ocsp"), "\(single)")
        let firstCRL = stdout("crl fetch --name issuing --out issuing.crl")
        #expect(firstCRL.contains(": 1 revoked"), "\(firstCRL)")
        #expect(firstCRL.contains("signature: valid"), "\(firstCRL)")
        #expect(FileManager.default.fileExists(atPath: fleet.work.file("issuing.crl")))
        let lotCRL = stdout("crl fetch --name issuing")
        #expect(lotCRL.contains(": 4 revoked"), "\(lotCRL)")
        let lotMember = stdout("cert status --device L1-000001")
        #expect(lotMember.contains("crl:      listed (keyCompromise"), "\(lotMember)")
        #expect(lotMember.contains("ocsp:     revoked (keyCompromise"), "\(lotMember)")
        let manufacturerCRL = stdout("crl fetch --name manufacturer")
        #expect(manufacturerCRL.contains(": 3 revoked"), "every IDevID of the lot: \(manufacturerCRL)")
        #expect(manufacturerCRL.contains("signature: valid"), "\(manufacturerCRL)")

        // What relying parties see: the lot's IDevIDs are refused now.
        let idevid = try await ServeCLITests.devid(
            [
                "agent", "enroll", "--server", fleet.endpoints.estURL, "--trust-bundle", "\(fleet.dataDir)/ca/root.crt",
                "--state-dir", fleet.work.file("state-again"), "--idevid-cert",
                fleet.work.file("lot-L1/L1-000001/chain.pem"), "--idevid-key", fleet.work.file("lot-L1/L1-000001/idevid.key"),
            ], in: fleet.work.path)
        #expect(!idevid.succeeded)
        #expect(idevid.stderr.contains("HTTP 403: device is revoked"), "\(idevid)")
        _ = try await fleet.server.interrupt(timeout: 30)
    }

    /// `devid agent enroll` of device `<lot>-00000<index>` with its IDevID, trusting the active root.
    static func enrollWithIDevID(
        _ fleet: Fleet, lot: String, index: Int, state: String
    ) async throws -> ServeCLITests.CommandResult {
        let device = "\(lot)-00000\(index)"
        return try await ServeCLITests.devid(
            [
                "agent", "enroll", "--server", fleet.endpoints.estURL, "--trust-bundle", "\(fleet.dataDir)/ca/roots/2.crt",
                "--state-dir", fleet.work.file(state), "--idevid-cert", fleet.work.file("lot-\(lot)/\(device)/chain.pem"),
                "--idevid-key", fleet.work.file("lot-\(lot)/\(device)/idevid.key"),
            ], in: fleet.work.path)
    }

    @Test("docs/runbooks/break-glass.md", .timeLimit(.minutes(5)))
    func breakGlassRunbook() async throws {
        let commands = try Self.commands(in: "docs/runbooks/break-glass.md")
        #expect(commands.count >= 14, "the runbook lost its commands: \(commands)")

        let fleet = try await Fleet.start()
        defer { fleet.server.kill(); fleet.work.remove() }
        /// The fleet's agents check in once each, as running agents would between two operator commands.
        func checkIns() async throws -> [String] {
            var logs: [String] = []
            for index in 1...3 {
                let run = try await ServeCLITests.devid(
                    ["agent", "run", "--state-dir", fleet.stateDirectory(index), "--once", "--rotate-now-jitter", "0"],
                    in: fleet.work.path)
                #expect(run.succeeded, "agent run --once: \(run)")
                logs.append(run.stdout + run.stderr)
            }
            return logs
        }
        func issuer(_ index: Int) throws -> String {
            let pem = try String(contentsOfFile: fleet.stateDirectory(index) + "/cert.pem", encoding: .utf8)
            return try #require(try PEM.certificates(pem).first).issuer.description
        }

        // The runbook restarts `devid serve` twice (root rotation): same data directory, same ports.
        var server = fleet.server
        defer { server.kill() }
        func restart() async throws {
            _ = try await server.interrupt(timeout: 30)
            let port = { (url: String) in Int(url.split(separator: ":").last ?? "") ?? 0 }
            server = try ServeProcess.start(
                dataDir: fleet.dataDir, workingDirectory: fleet.work.path, estPort: port(fleet.endpoints.estURL),
                opsPort: port(fleet.endpoints.opsURL))
            _ = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
        }
        func trustCount(_ index: Int) throws -> Int {
            let pem = try String(contentsOfFile: fleet.stateDirectory(index) + "/trust.pem", encoding: .utf8)
            return try PEM.certificates(pem).count
        }

        var outputs: [String: String] = [:]
        for var command in commands {
            let line = command.joined(separator: " ")
            // The runbook's paths are a development data directory's (`devid-data/`).
            command = command.map { $0.hasPrefix("devid-data/") ? fleet.dataDir + $0.dropFirst("devid-data".count) : $0 }
            let result = try await fleet.devid(command)
            #expect(result.succeeded, "devid \(line): \(result)")
            outputs[line] = result.stdout
            if line == "ca root prepare" {
                // Restarted, the server lists both roots; each agent learns root 2 through the cross-certificate.
                try await restart()
                for log in try await checkIns() { #expect(log.contains("trust bundle updated"), "\(log)") }
                for index in 1...3 { #expect(try trustCount(index) == 2) }
            }
            if line == "ca manufacturer prepare" { try await restart() }
            if line == "device import lot-L2/manifest.json" {
                // A device of the new lot bootstraps with an IDevID of manufacturer CA 2.
                let enroll = try await Self.enrollWithIDevID(fleet, lot: "L2", index: 1, state: "state-L2")
                #expect(enroll.succeeded, "\(enroll)")
            }
            if line == "ca manufacturer distrust 1" {
                try await restart()
                let refused = try await Self.enrollWithIDevID(fleet, lot: "L1", index: 1, state: "state-L1-again")
                #expect(!refused.succeeded, "an IDevID of a distrusted manufacturer CA still enrolls: \(refused)")
                #expect(refused.stderr.contains("TLS"), "refused in the handshake: \(refused)")
                // Its devices keep their LDevIDs.
                for log in try await checkIns() { #expect(!log.contains("change="), "\(log)") }
            }
            if line == "ca issuing revoke 3 --reason superseded" {
                try await restart()
                let audit = try await fleet.devid(["audit", "list", "--action", "tls.server_certificate"])
                #expect(audit.stdout.contains("re-issued the listeners' certificate from the active issuing CA 4"), "\(audit)")
            }
            if line == "ca root retire 1" {
                for log in try await checkIns() { #expect(log.contains("trust bundle updated"), "\(log)") }
                for index in 1...3 { #expect(try trustCount(index) == 1, "only root 2 is left") }
                // Trusting only root 2 now, the agents still reach the server and keep their identity.
                for log in try await checkIns() { #expect(!log.contains("change="), "\(log)") }
            }
            if line == "ca issuing taint 1" || line == "ca issuing emergency" || line == "ca issuing taint 3" {
                // Each agent is told "rotate now" and renews onto the active CA.
                for log in try await checkIns() { #expect(log.contains("change=renewal"), "\(log)") }
                let active =
                    line == "ca issuing taint 1"
                    ? "DevID Issuing CA 2" : line == "ca issuing taint 3" ? "DevID Issuing CA 4" : "DevID Issuing CA 3"
                for index in 1...3 {
                    let name = try issuer(index)
                    #expect(name.contains(active), "\(name)")
                }
            }
        }
        func stdout(_ line: String) -> String { outputs[line] ?? "<not run: \(line)>" }

        // `ca issuing list` runs twice; the last output is kept (checked below).
        #expect(stdout("ca issuing prepare").contains("prepared issuing CA 2; activate it with: devid ca issuing activate 2"))
        #expect(stdout("ca issuing prepare").contains("2   prepared"))
        #expect(
            stdout("ca issuing activate 2 --dry-run").contains(
                "dry run, nothing changed: issuing CA 2: prepared -> active; issuing CA 1: active -> retiring"))
        #expect(stdout("ca issuing activate 2").contains("note: new LDevIDs and renewals are signed by issuing CA 2"))
        #expect(stdout("ca issuing taint 1 --dry-run").contains("3 LDevIDs would be marked rotation-due"), "\(outputs)")
        #expect(stdout("ca issuing taint 1").contains("3 LDevIDs marked rotation-due"))
        #expect(stdout("rotate status --issuing-ca 1").contains("3    3        0        0"), "\(outputs)")
        #expect(
            stdout("ca issuing revoke 1 --reason superseded --dry-run").contains(
                "would revoke 3 LDevIDs of 3 devices (0 seen recently)"), "\(outputs)")
        #expect(stdout("ca issuing revoke 1 --reason superseded").contains("revoked 3 LDevIDs of 3 devices"))
        #expect(
            stdout("ca issuing revoke 1 --reason superseded").contains(
                "note: re-signed the root's CRL: /crl/root.crl lists issuing CA 1"))
        #expect(
            stdout("ca issuing emergency").contains("issuing CA 3: prepared -> active; issuing CA 2: active -> tainted"),
            "\(outputs)")
        #expect(stdout("rotate status --issuing-ca 2").contains("3    3        0        0"), "\(outputs)")
        #expect(stdout("rotate status --issuing-ca 3").contains("3    3        0        0"), "\(outputs)")
        #expect(stdout("ca root prepare").contains("prepared root 2; restart devid serve, then: devid ca root activate 2"))
        #expect(stdout("ca root retire 1").contains("1   retired"), "\(outputs)")
        #expect(stdout("ca manufacturer prepare").contains("2   trusted"), "\(outputs)")
        #expect(stdout("ca manufacturer list").contains("1   distrusted"), "\(outputs)")
        #expect(stdout("ca manufacturer list").contains("2   active"), "\(outputs)")
        let l2 = try String(contentsOfFile: fleet.work.file("lot-L2/L2-000001/chain.pem"), encoding: .utf8)
        #expect(try PEM.certificates(l2).first?.issuer.description.contains("DevID Manufacturer CA 2") == true)

        // A relying party that trusts only the old root accepts the new chain through the cross-certificate, and
        // pkilint accepts both cross-certificates and the new root.
        let roots = fleet.dataDir + "/ca/roots"
        let leaf = fleet.stateDirectory(1) + "/cert.pem"
        let onlyOld = try await ExternalTool.runAsync([
            "openssl", "verify", "-CAfile", fleet.dataDir + "/ca/root.crt", "-untrusted", roots + "/2-by-1.crt",
            "-untrusted", fleet.dataDir + "/ca/issuing/4.crt", leaf,
        ])
        #expect(onlyOld.succeeded, "\(onlyOld)")
        // The server's TLS chain (now of issuing CA 4, under root 2) validates with either root alone: a device that
        // was away through the rollover still trusts only root 1.
        for anchor in [fleet.dataDir + "/ca/root.crt", roots + "/2.crt"] {
            let curl = try await ExternalTool.runAsync([
                "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", anchor,
                fleet.endpoints.estURL + "/.well-known/est/cacerts",
            ])
            #expect(curl.succeeded && curl.stdout == "200", "\(anchor): \(curl)")
        }
        for file in ["2-by-1.crt", "1-by-2.crt", "2.crt"] {
            let lint = try await ExternalTool.runAsync(["lint_pkix_cert", "lint", "-s", "WARNING", roots + "/" + file])
            #expect(lint.succeeded && lint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(file): \(lint)")
        }
        #expect(stdout("ca issuing revoke 2 --reason keyCompromise --force").contains("issuing CA 2: tainted -> revoked"))
        let list = stdout("ca issuing list")
        #expect(list.contains("3   active"), "the list of section 3: \(list)")
        #expect(stdout("audit list --action ca.issuing.emergency").contains("CA 3 prepared → active, CA 2 active → tainted"))
        #expect(stdout("audit verify").contains("audit chain intact"))
        let show = stdout("ca show")
        for role in ["root", "root2", "root2-by-root1", "root1-by-root2", "issuing", "issuing4", "manufacturer2", "server-tls"] {
            #expect(show.contains("\n\(role)\n"), "devid ca show lists \(role): \(show)")
        }

        // The old root's CRL lists the three revoked CAs under it, and the devices (all on CA 4) still check in.
        let rootCRL = try await ServeCLITests.devid(
            ["crl", "fetch", "--name", "root", "--data-dir", fleet.dataDir], in: fleet.work.path)
        #expect(rootCRL.stdout.contains(": 3 revoked"), "\(rootCRL)")
        for log in try await checkIns() { #expect(!log.contains("change="), "nothing to change: \(log)") }

        // The refusals the runbook names: each changes nothing.
        let before = try await fleet.devid(["ca", "issuing", "list"]).stdout
        let activeRevoke = try await fleet.devid(["ca", "issuing", "revoke", "4"])
        #expect(
            activeRevoke.stderr.contains(
                "Error: server answered 409: issuing CA 4 is the active CA: activate another one and taint this one first"),
            "\(activeRevoke)")
        let retireActive = try await fleet.devid(["ca", "root", "retire", "2"])
        #expect(
            retireActive.stderr.contains("Error: server answered 409: root 2 is the active root: activate another one first"),
            "\(retireActive)")
        let reactivate = try await fleet.devid(["ca", "issuing", "activate", "1"])
        #expect(
            reactivate.stderr.contains("issuing CA 1 is revoked: it never signs again; prepare a new one"), "\(reactivate)")
        let twice = try await fleet.devid(["ca", "issuing", "taint", "2"])
        #expect(twice.stderr.contains("issuing CA 2 is already revoked"), "\(twice)")
        #expect(try await fleet.devid(["ca", "issuing", "list"]).stdout == before)
        let denied = try await fleet.devid(["audit", "list", "--action", "ca.issuing.revoke", "--outcome", "denied"])
        #expect(denied.stdout.contains("issuing CA 4 is the active CA"), "\(denied)")
        _ = try await server.interrupt(timeout: 30)
    }
}
