import DevIDTesting
import Foundation
import Testing

/// docs/admin-api.md as executable documentation: every command it tells the reader to run, in order, against a real
/// `devid serve`, with the output it shows compared by shape (see [ReadmeTests] for how commands are taken from
/// the Markdown and run).
///
/// The page continues the README's "Enroll a device" demo once device L1-000001 has enrolled into `dev1`, so the walk
/// first runs that part of the README, then every block of the page that holds commands: its `sh` blocks and its
/// transcripts (`$ ` lines). The other blocks are formats or pretty-printed answers (```` ```json ````) and
/// catalogues of refusals (a status line and a body, no command): the route tests check those answers.
@Suite("docs/admin-api.md", .serialized)
struct AdminAPIDocTests {
    static let page = "docs/admin-api.md"

    @Test("docs/admin-api.md, every command in order", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-admin-api-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }
        // A revocation is in the served CRL within a second: the certificate's detail, which shows it listed, waits
        // as a reader would.
        walk.pauses.append((#"curl -s -H "Authorization: Bearer $TOKEN" $OPS/v1/admin/certificates/"#, 1))

        // The README up to device L1-000001's enrollment into dev1.
        try await walk.runReadmeThroughFirstEnrollment()
        #expect(page.text.contains("](../README.md#enroll-a-device)"), "the page says where its examples start")

        var ran: [DocWalk.Result] = []
        for block in page.blocks where block.info == "sh" || block.lines.contains(where: { $0.hasPrefix("$ ") }) {
            ran += try await walk.run(block)
        }
        // Every command succeeded (exit 0; curl without -f exits 0 on an HTTP refusal too), and none slipped in or out
        // of the page unnoticed.
        for result in ran where result.status != 0 {
            Issue.record("`\(result.command)` exited \(result.status): \(result.output)")
        }
        #expect(ran.count == 63, "the page lost or gained commands: \(ran.map(\.command))")
        // The page's refusals and states are the ones it says it shows.
        func output(_ prefix: String) -> String { ran.last { $0.command.hasPrefix(prefix) }?.output ?? "<not run>" }
        #expect(output(#"curl -si -X POST -H "Authorization: Bearer $AUDITOR""#).hasPrefix("HTTP/1.1 403"))
        #expect(output(#"curl -si -H "Authorization: Bearer $ACME_OPS""#).hasPrefix("HTTP/1.1 403"))
        #expect(output("curl -s -H \"Authorization: Bearer $TOKEN\" $OPS/v1/admin/certificates/").contains(#""listed":true"#))
        #expect(output("curl -s --cacert devid-data/ca/root.crt --cert old-cert.pem").contains(#""credentialStatus":"superseded""#))
        #expect(output("curl -si --cacert devid-data/ca/root.crt --cert dev2/cert.pem").contains("credential is revoked"))

        // The catalogues of refusals: every line the page shows is what the server answers to its request.
        try await Self.checkRefusals(page, walk: &walk, directory: work.file("devid-demo"))

        try DocWalk.dumpIfAsked(ran)
    }
}

extension AdminAPIDocTests {
    /// The page's catalogues of refusals (blocks without a command, of `STATUS BODY` lines, or one answer as
    /// `HTTP/1.1 STATUS REASON`, a blank line and the body), each line as `STATUS BODY` with the heading it is under.
    static func catalogued(_ page: DocFile) -> [(heading: String, line: String)] {
        var lines: [(String, String)] = []
        for block in page.blocks where block.info.isEmpty && !block.lines.contains(where: { $0.hasPrefix("$ ") }) {
            if let status = block.lines.first, status.hasPrefix("HTTP/1.1 "), let body = block.lines.last {
                lines.append((block.heading, "\(status.split(separator: " ")[1]) \(body)"))
            } else if block.lines.allSatisfy({ $0.range(of: #"^\d{3} \{"#, options: .regularExpression) != nil }) {
                lines += block.lines.map { (block.heading, $0) }
            }
        }
        return lines
    }

    /// The request behind each catalogued refusal, by the heading it is under and the line: `curl` arguments after the
    /// admin token and the JSON content type. Files named `@...` are made by ``checkRefusals``.
    static let refusalRequests: [String: [String: String]] = [
        "### POST /v1/admin/tenants": [
            #"409 {"error":{"message":"tenant initech already exists"}}"#: #"-d '{"id":"initech"}' $OPS/v1/admin/tenants"#,
            #"400 {"error":{"message":"tenant must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with . or -"}}"#:
                #"-d '{"id":"-bad id"}' $OPS/v1/admin/tenants"#,
            #"400 {"error":{"message":"a new tenant id may not contain a dot (RabbitMQ reads it as a topic level separator); use _ or -"}}"#:
                #"-d '{"id":"acme.eu"}' $OPS/v1/admin/tenants"#,
            #"400 {"error":{"message":"Coding key `id` not found."}}"#: #"-d '{"name":"x"}' $OPS/v1/admin/tenants"#,
        ],
        "### PUT /v1/admin/tenants/:id/policy": [
            #"400 {"error":{"message":"Type mismatch for `manualApproval` key, expected `Bool` type."}}"#:
                #"-X PUT -d '{"manualApproval":"yes"}' $OPS/v1/admin/tenants/acme/policy"#
        ],
        "### POST /v1/admin/devices/import": [
            #"404 {"error":{"message":"unknown tenant nope"}}"#: "--data-binary @refusal-nope.json $OPS/v1/admin/devices/import",
            #"422 {"error":{"message":"the manifest's manufacturer CA is not trusted by this server"}}"#:
                "--data-binary @refusal-untrusted.json $OPS/v1/admin/devices/import",
            #"409 {"error":{"message":"import devices: the lot of device L3-000001 belongs to another tenant"}}"#:
                "--data-binary @refusal-lot.json $OPS/v1/admin/devices/import",
            #"409 {"error":{"message":"import devices: device L1-000002 is registered with another tenant, hardware serial, lot or IDevID"}}"#:
                "--data-binary @refusal-serial.json $OPS/v1/admin/devices/import",
            #"400 {"error":{"message":"invalid hardware serial for device L1-000002"}}"#:
                "--data-binary @refusal-bad-serial.json $OPS/v1/admin/devices/import",
            #"413 {"error":{"message":"at most 100000 devices per import"}}"#:
                "--data-binary @refusal-large.json $OPS/v1/admin/devices/import",
        ],
        "### POST /v1/admin/tokens": [
            #"400 {"error":{"message":"invalid tenant"}}"#: #"-d '{"tenant":"-x","device":"d1"}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"invalid device id"}}"#: #"-d '{"tenant":"acme","device":"bad id"}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"ttlSeconds must be 1-2592000"}}"#:
                #"-d '{"tenant":"acme","device":"d1","ttlSeconds":0}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"uses must be 1-10000"}}"#:
                #"-d '{"tenant":"acme","device":"d1","uses":0}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"tenant acme allows at most 1 use(s) for a token that names no device (devid tenant policy acme --max-token-uses N)"}}"#:
                #"-d '{"tenant":"acme","uses":2}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"tenant acme allows at most 86400s for a token that names no device (devid tenant policy acme --max-token-ttl D)"}}"#:
                #"-d '{"tenant":"acme","ttlSeconds":90000}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"lot binds a token that names no device; drop --device or --lot"}}"#:
                #"-d '{"tenant":"acme","device":"d1","lot":"L1"}' $OPS/v1/admin/tokens"#,
            #"400 {"error":{"message":"invalid namePattern: device-id characters, * and ? only"}}"#:
                #"-d '{"tenant":"acme","namePattern":"a b"}' $OPS/v1/admin/tokens"#,
            #"404 {"error":{"message":"unknown tenant nope"}}"#: #"-d '{"tenant":"nope","device":"d1"}' $OPS/v1/admin/tokens"#,
            #"404 {"error":{"message":"tenant acme has no lot L7"}}"#: #"-d '{"tenant":"acme","lot":"L7"}' $OPS/v1/admin/tokens"#,
            #"409 {"error":{"message":"device L1-000001 belongs to another tenant"}}"#:
                #"-d '{"tenant":"beta","device":"L1-000001"}' $OPS/v1/admin/tokens"#,
        ],
        "### POST /v1/admin/rotate": [
            #"400 {"error":{"message":"give exactly one of device, lot, tenant, expiringBefore"}}"#:
                #"-d '{"lot":"L1","tenant":"acme","dryRun":true}' $OPS/v1/admin/rotate"#,
            #"400 {"error":{"message":"invalid lot"}}"#: #"-d '{"lot":"-x"}' $OPS/v1/admin/rotate"#,
            #"404 {"error":{"message":"mark rotation due: no such lot"}}"#: #"-d '{"lot":"L9"}' $OPS/v1/admin/rotate"#,
            #"404 {"error":{"message":"preview rotation: no such lot"}}"#: #"-d '{"lot":"L9","dryRun":true}' $OPS/v1/admin/rotate"#,
        ],
        "### POST /v1/admin/revoke": [
            #"400 {"error":{"message":"give exactly one of device, lot, tenant, serial, token"}}"#:
                #"-d '{"lot":"L1","tenant":"acme","dryRun":true}' $OPS/v1/admin/revoke"#,
            #"400 {"error":{"message":"reason must be one of: unspecified, keyCompromise, caCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aaCompromise"}}"#:
                #"-d '{"device":"L1-000001","reason":"certificateHold","dryRun":true}' $OPS/v1/admin/revoke"#,
            #"400 {"error":{"message":"invalid serial (hex expected)"}}"#: #"-d '{"serial":"xyz","dryRun":true}' $OPS/v1/admin/revoke"#,
            #"400 {"error":{"message":"Type mismatch for `dryRun` key, expected `Bool` type."}}"#:
                #"-d '{"device":"L1-000001","dryRun":"yes"}' $OPS/v1/admin/revoke"#,
            #"404 {"error":{"message":"preview revocation: no such lot"}}"#: #"-d '{"lot":"L9","dryRun":true}' $OPS/v1/admin/revoke"#,
            #"404 {"error":{"message":"revoke scope: no such device"}}"#: #"-d '{"device":"nope"}' $OPS/v1/admin/revoke"#,
        ],
    ]

    /// Sends the request behind every catalogued refusal through the walk's shell (after the page's own commands, with
    /// its `$OPS` and admin `$TOKEN`), and checks the answer is the line the page shows; a line without a request, or a
    /// request for a line the page no longer shows, fails.
    static func checkRefusals(_ page: DocFile, walk: inout DocWalk, directory: String) async throws {
        // Manifests that are refused, from lot L1's and lot L3's (which the page's walk made).
        func manifest(_ lot: String) throws -> [String: Any] {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/lot-\(lot)/manifest.json"))
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }
        func write(_ object: [String: Any], _ name: String) throws {
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        func device(_ object: [String: Any], _ id: String, _ change: (inout [String: Any]) -> Void) -> [String: Any] {
            var object = object
            var one = ((object["devices"] as? [[String: Any]]) ?? []).first { $0["deviceID"] as? String == id } ?? [:]
            change(&one)
            object["devices"] = [one]
            return object
        }
        var nope = try manifest("L1")
        nope["tenant"] = "nope"
        try write(nope, "refusal-nope.json")
        var untrusted = try manifest("L1")
        untrusted["manufacturerCASHA256"] = String(repeating: "0", count: 64)
        try write(untrusted, "refusal-untrusted.json")
        var otherTenant = try manifest("L3")
        otherTenant["tenant"] = "beta"
        try write(otherTenant, "refusal-lot.json")
        try write(device(try manifest("L1"), "L1-000002") { $0["hardwareSerial"] = "HW-OTHER" }, "refusal-serial.json")
        try write(device(try manifest("L1"), "L1-000002") { $0["hardwareSerial"] = "" }, "refusal-bad-serial.json")
        var large = try manifest("L1")
        large["devices"] = (1...100_001).map {
            [
                "deviceID": "B-\($0)", "hardwareSerial": "B-\($0)", "idevidSHA256": String(format: "%064x", $0),
                "idevidSerial": String(format: "%032x", $0),
            ]
        }
        try write(large, "refusal-large.json")

        let shown = catalogued(page)
        var requested = Set<String>()
        for (heading, line) in shown {
            guard let arguments = refusalRequests[heading]?[line] else {
                Issue.record("docs/admin-api.md: no request for the refusal \(line) under \(heading)")
                continue
            }
            requested.insert(heading + line)
            let result = try await walk.run(
                #"curl -s -w '\n%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "#
                    + arguments)
            let parts = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            let answer = "\(parts.last ?? "") \(parts.dropLast().joined(separator: "\n"))"
            #expect(answer == line, "\(heading): `\(arguments)`")
        }
        for (heading, lines) in refusalRequests {
            for line in lines.keys where !requested.contains(heading + line) {
                Issue.record("docs/admin-api.md no longer shows \(line) under \(heading)")
            }
        }
    }
}
