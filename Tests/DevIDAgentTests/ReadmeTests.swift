import DevIDServer
import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// README.md as executable documentation: a newcomer's walk through it, top to bottom, against a real `devid serve`.
///
/// The commands come from the Markdown itself: the `$ ...` lines of transcript blocks (with their `\` continuation
/// lines) and every line of the ```` ```sh ```` blocks the README tells the reader to run. They run in one `bash`
/// session, so shell variables (`T=$(devid token create ...)`), `cd` and background jobs (`devid serve &`,
/// `kill -INT %1`) carry from one command to the next as in the reader's terminal. The output a transcript shows is
/// compared line by line with what the product printed (stdout and stderr together, as a terminal shows them);
/// volatile values (serials, timestamps, token ids, fingerprints) are compared by shape ([DocShape]).
///
/// What the test changes, and nothing else ([DocWalk.substitute]): the `alias devid=...` line names the built
/// executable, `/tmp/devid-demo` lies in a temporary directory, and the server listens on free ports
/// (`DEVID_EST_PORT=0`, `DEVID_OPS_PORT=0` in the session's environment), which replace `127.0.0.1:8443` and
/// `127.0.0.1:8080` in the commands and the outputs once the server has started.
@Suite("README", .serialized)
struct ReadmeTests {
    static let readme = "README.md"

    /// Quick start: the first-start banner as the README shows it, then every command of "Try it".
    @Test("README: Quick start banner and Try it", .timeLimit(.minutes(3)))
    func quickStartAndTryIt() async throws {
        let doc = try DocFile(Self.readme)
        let work = try TemporaryDirectory(prefix: "devid-readme-try")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }

        // Not run: the Quick start block (`swift run devid serve`, `scripts/test`) builds the package and runs the
        // whole test suite. The test starts the same server from the built executable instead, in the background
        // of the session, as the reader's first terminal would run it.
        let quickStart = doc.blocks(in: "## Quick start")
        #expect(quickStart.first?.lines == ["swift run devid serve", "scripts/test"], "\(quickStart)")
        try await walk.run("alias devid=devid")
        try await walk.run("devid serve > first-start.txt 2> serve.log &", expectServerStart: true)
        let banner = try #require(quickStart.first { $0.lines.first?.hasPrefix("DevID first start in") == true })
        let printed = try await walk.waitForFile("first-start.txt", containing: "Stop with Ctrl-C")
        walk.expectShape(of: printed, as: banner.lines, "the first-start banner", banner)

        let tryIt = doc.blocks(in: "### Try it")
        #expect(tryIt.count == 1 && tryIt.first?.info == "sh", "\(tryIt)")
        let commands = try await walk.run(try #require(tryIt.first))
        func output(_ prefix: String) -> DocWalk.Result? { commands.last { $0.command.hasPrefix(prefix) } }
        #expect(commands.count == 9, "Try it lost or gained commands: \(commands.map(\.command))")

        let health = try #require(output("curl -s http://127.0.0.1:"))
        #expect(
            health.output.wholeMatch(of: #/\{"status":"ok","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}/#) != nil,
            "\(health)")
        let ca = try #require(output("devid ca show")).output
        for role in ["root", "issuing", "manufacturer", "server-tls"] {
            #expect(ca.contains("\n\(role)\n"), "devid ca show lists \(role): \(ca)")
        }
        #expect(ca.contains("key:        ECDSA P-384") && ca.contains("sha256:     "), "\(ca)")
        #expect(output("devid tenant create acme")?.output == "created tenant acme\n")
        let tenants = try #require(output("devid tenant list")).output
        #expect(tenants.firstMatch(of: #/\nacme +Acme Corp +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n/#) != nil, "\(tenants)")
        let audit = try #require(output("devid audit list")).output
        #expect(audit.hasPrefix("SEQ  TIME "), "\(audit)")
        #expect(audit.contains("tenant.create       success  created tenant acme"), "\(audit)")
        #expect(output("devid audit verify")?.output.hasPrefix("audit chain intact") == true, "\(commands)")
        #expect(output("openssl verify")?.output == "devid-data/tls/server.crt: OK\n", "\(commands)")
        // The comment above the command says what the peer endpoint answers; it is taken from the README.
        let peerComment = try #require(tryIt.first?.lines.first { $0.contains("answers 401 ") })
        let expectedPeer = try #require(peerComment.firstMatch(of: #/answers 401 (\{.*\})/#)?.1)
        #expect(output("curl -s --cacert devid-data/ca/root.crt")?.output == "\(expectedPeer)", "\(commands)")

        // "Stop the server with Ctrl-C or `kill -TERM`: it finishes open requests, prints `DevID stopped.` and exits
        // with status 0."
        let quickStartProse = doc.prose(in: "## Quick start")
        #expect(quickStartProse.contains("Stop the server with Ctrl-C or\n`kill -TERM`"), "\(quickStartProse)")

        // Commands the README shows in its prose and in plain blocks, run in the same directory.
        let security = doc.prose(in: "## Security notes")
        let pkey = try #require(security.firstMatch(of: #/`(openssl pkey [^`]+)`/#)?.1, "Security notes: keys at rest")
        let readsKey = try await walk.run(String(pkey))
        #expect(readsKey.status == 0 && readsKey.output.isEmpty, "OpenSSL reads the encrypted issuing key: \(readsKey)")
        let policy = doc.blocks(in: "### Brokers enforce it: topic policies and policy decisions")
        #expect(
            policy.first?.lines == [
                "devid policy show --tenant acme", "devid policy set --tenant acme --file acme-topics.json",
            ], "\(policy)")
        let shown = try await walk.run("devid policy show --tenant acme")
        #expect(shown.status == 0 && shown.output.contains("tenants/{tenant}/devices/{device}/telemetry/#"), "\(shown)")
        // Not run: `devid policy set --tenant acme --file acme-topics.json` needs the reader's own policy file;
        // docs/policy.md shows one, and PolicyCLITests sets policies with the CLI.

        try await walk.stopServer(with: "kill -TERM %1", log: "first-start.txt")

        // "Later starts reuse the data directory and print `DevID starting in ./devid-data`."
        #expect(quickStartProse.contains("Later starts reuse the data directory and print `DevID starting in ./devid-data`"))
        try await walk.run("devid serve > second-start.txt 2> serve.log &")
        let second = try await walk.waitForFile("second-start.txt", containing: "Stop with Ctrl-C")
        #expect(second.hasPrefix("DevID starting in ./devid-data\n"), "\(second)")
        try await walk.stopServer(with: "kill -INT $!", log: "second-start.txt")
    }

    /// "Enroll a device" and "Rotate and revoke", in order, in the same session and against the same server.
    @Test("README: Enroll a device, Rotate and revoke", .timeLimit(.minutes(4)))
    func enrollRotateAndRevoke() async throws {
        let doc = try DocFile(Self.readme)
        let work = try TemporaryDirectory(prefix: "devid-readme-enroll")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        defer { walk.close() }

        let enroll = doc.blocks(in: "## Enroll a device")
        #expect(enroll.count == 7, "Enroll a device gained or lost blocks: \(enroll)")
        var results: [DocWalk.Result] = []
        for block in enroll { results += try await walk.run(block) }
        // "The device is now `active` in `devid device list`, and `devid device show L1-000001` lists its LDevID."
        // Run after the section, so that the audit sequence numbers the section shows stay those a reader sees.
        let enrollProse = doc.prose(in: "## Enroll a device")
        #expect(enrollProse.contains("The device is now `active` in `devid device list`, and `devid device show L1-000001`"))
        let list = try await walk.run("devid device list")
        #expect(list.output.contains("\nL1-000001  acme    L1   active        L1-000001        20"), "\(list)")
        let show = try await walk.run("devid device show L1-000001")
        #expect(show.output.firstMatch(of: #/\n[0-9a-f]{30,40}  ldevid  active  /#) != nil, "\(show)")

        let rotate = doc.blocks(in: "## Rotate and revoke")
        #expect(rotate.count == 4, "Rotate and revoke gained or lost blocks: \(rotate)")
        for block in rotate { results += try await walk.run(block) }

        // Every block shows its output; a few key lines checked by name as well, so that a README that lost its
        // transcripts fails here too.
        func output(_ command: String) -> String { results.last { $0.command == command }?.output ?? "<not run>" }
        #expect(output("devid device import lot-L1/manifest.json") == "lot L1: 3 devices registered, 0 already present\n")
        #expect(output("devid device list").contains("L1-000003  acme    L1   manufactured  L1-000003        -"))
        #expect(results.contains { $0.output.hasPrefix("enrolled device L1-000001 (tenant acme)\n") })
        #expect(output("devid agent status --state-dir dev1").hasPrefix("state:    valid\n"))
        #expect(output("devid rotate --lot L1 --dry-run").contains("3 credentials on 3 devices would be marked"))
        #expect(output("devid revoke --device L1-000002 --reason keyCompromise").hasPrefix("revoked 1 credentials"))
        #expect(output("devid cert status --device L1-000002").contains("status:   revoked\n"))

        // The walk ends where the README says to stop the server.
        let prose = doc.prose(in: "## Rotate and revoke")
        let stop = try #require(prose.firstMatch(of: #/Stop the server with `([^`]+)`/#)?.1, "\(prose)")
        #expect(stop == "kill -INT %1")
        try await walk.stopServer(with: String(stop), log: "devid.log")
    }

    /// Text that said something the product no longer is.
    @Test("README and concepts: no stale claims")
    func noStaleText() throws {
        let readme = try DocFile(Self.readme).text
        #expect(!readme.contains("not served yet"), "README: CRL and OCSP are served (docs/revocation.md)")
        let concepts = try DocFile("docs/concepts.md").text
        #expect(!concepts.contains("Still planned: the CRL"), "docs/concepts.md: CRL and OCSP are served")
        #expect(!concepts.contains("CRL and OCSP (the rest of\nrevocation), and broker integrations, come in the next"))
    }
}

// MARK: - Reading the Markdown

/// A Markdown file of the package, as its fenced blocks and the heading each one sits under.
struct DocFile: Sendable {
    struct Block: Sendable, CustomStringConvertible {
        /// The info string after the opening fence (`sh`, `json`, `not-run`, or empty).
        var info: String
        var lines: [String]
        /// The heading line the block sits under, e.g. `## Enroll a device`.
        var heading: String
        /// 1-based line number of the opening fence.
        var line: Int
        var description: String { "\(heading) block at line \(line)" }
        var isNotRun: Bool { info.split(separator: " ").contains("not-run") }
    }

    let path: String
    let text: String
    let blocks: [Block]

    init(_ path: String) throws {
        self.path = path
        text = try String(contentsOf: RunbookTests.packageRoot.appendingPathComponent(path), encoding: .utf8)
        var blocks: [Block] = []
        var heading = ""
        var open: Block?
        // A block indented inside a list item: its fence's indentation is taken off each of its lines.
        var indent = 0
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(line)
            if var block = open {
                if Self.isFence(line) {
                    blocks.append(block)
                    open = nil
                } else {
                    let spaces = min(indent, line.prefix { $0 == " " }.count)
                    block.lines.append(String(line.dropFirst(spaces)))
                    open = block
                }
            } else if Self.isFence(line) {
                indent = line.prefix { $0 == " " }.count
                open = Block(
                    info: line.dropFirst(indent + 3).trimmingCharacters(in: .whitespaces), lines: [], heading: heading,
                    line: index + 1)
            } else if line.hasPrefix("#") {
                heading = line
            }
        }
        self.blocks = blocks
    }

    /// A fence line: three backticks at the start, or after up to 3 spaces or a list item's indentation.
    static func isFence(_ line: some StringProtocol) -> Bool {
        line.drop { $0 == " " }.hasPrefix("```")
    }

    /// The blocks directly under `heading` (not under its subsections).
    func blocks(in heading: String) -> [Block] { blocks.filter { $0.heading == heading } }

    /// The text directly under `heading`, outside fenced blocks.
    func prose(in heading: String) -> String {
        var current = ""
        var fenced = false
        var prose: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if Self.isFence(line) {
                fenced.toggle()
            } else if !fenced, line.hasPrefix("#") {
                current = String(line)
            } else if !fenced, current == heading {
                prose.append(line)
            }
        }
        return prose.joined(separator: "\n")
    }
}

/// One command of a block and the output the block shows for it.
struct DocCommand: Sendable {
    var command: String
    /// The lines a transcript shows after the command; nil for a line of a `sh` block, which shows none.
    var expected: [String]?

    /// The commands of a block: the `$ ` lines of a transcript with the lines that follow each, or every
    /// command line of a `sh` block (comment lines and blank lines skipped). A line ending in `\` continues on the
    /// next one; in a `sh` block, a shell function whose first line opens its body (`name() {`) continues to the line
    /// that closes it (`}`).
    static func commands(in block: DocFile.Block) -> [DocCommand] {
        var commands: [DocCommand] = []
        var pending: String?
        var inFunction = false
        let transcript = block.info != "sh"
        for line in block.lines {
            if let partial = pending {
                pending = partial + "\n" + line
                if inFunction {
                    if line == "}" {
                        commands.append(DocCommand(command: pending!, expected: nil))
                        pending = nil
                        inFunction = false
                    }
                    continue
                }
                if !line.hasSuffix("\\") {
                    commands.append(DocCommand(command: pending!, expected: transcript ? [] : nil))
                    pending = nil
                }
                continue
            }
            if transcript {
                if line.hasPrefix("$ ") {
                    let command = String(line.dropFirst(2))
                    if command.hasSuffix("\\") {
                        pending = command
                    } else {
                        commands.append(DocCommand(command: command, expected: []))
                    }
                } else if !commands.isEmpty {
                    commands[commands.count - 1].expected?.append(line)
                }
            } else {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                if line.range(of: #"^[A-Za-z_][A-Za-z0-9_]*\(\) *\{"#, options: .regularExpression) != nil,
                    !line.contains("}")
                {
                    pending = line
                    inFunction = true
                } else if line.hasSuffix("\\") {
                    pending = line
                } else {
                    commands.append(DocCommand(command: line, expected: nil))
                }
            }
        }
        return commands
    }
}

// MARK: - Comparing output by shape

/// Compares shown output with printed output line by line. Trailing spaces do not count, a shown line `...`
/// (indented or not) stands for any number of printed lines, and volatile values match by shape: ISO 8601 times, serials, SHA-256
/// fingerprints, token ids and secrets, openssl's dates, HTTP dates, `in 0.1 s` durations, a measured clock skew
/// and a `Retry-After` header's seconds.
enum DocShape {
    private static let volatile: [(String, String)] = [
        (#"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d{4})"#, #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d{4})"#),
        (#"devid_adm_[a-z0-9]+_[a-z0-9]+"#, #"devid_adm_[a-z0-9]+_[a-z0-9]+"#),
        (#"devid_ct_[a-z0-9]+"#, #"devid_ct_[a-z0-9]+"#),
        (#"\bct_[a-z2-7]{10}\b"#, #"ct_[a-z2-7]{10}"#),
        (#"\b[0-9a-f]{64}\b"#, #"[0-9a-f]{64}"#),
        (#"\b[0-9a-f]{32}\b"#, #"[0-9a-f]{30,40}"#),
        (#"\b[0-9A-F]{32}\b"#, #"[0-9A-F]{30,40}"#),
        // The first 16 hex digits of a fingerprint (`devid ca issuing list`); an admin token's id in its list.
        (#"\b[0-9a-f]{16}\b"#, #"[0-9a-f]{16}"#),
        (#"^[a-z0-9]{8}(?=  [A-Za-z0-9._-]+ +(?:admin|operator|factory|auditor|broker) )"#, #"[a-z0-9]{8}"#),
        (#"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT"#, #"[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \d{4} GMT"#),
        (#"\bin \d+\.\d s\b"#, #"in \d+\.\d s"#),
        (#"skew_s=[+-]?\d+\.\d\b"#, #"skew_s=[+-]?\d+\.\d"#),
        (#"skew: +[+-]?\d+\.\d s\b"#, #"skew: +[+-]?\d+\.\d s"#),
        // An HTTP date (IMF-fixdate), as in a `Date` header.
        (#"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"#, #"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"#),
        // Seconds until a rate-limit bucket refills: one less when the machine is slow between two requests.
        (#"^Retry-After: \d+$"#, #"Retry-After: \d+"#),
        // Admin token ids (docs/admin-api.md): as an actor, a JSON id and in a refusal's reason.
        (#"\badmin:[a-z0-9]{8}\b"#, #"admin:[a-z0-9]{8}"#),
        (#""id":"[a-z0-9]{8}""#, #""id":"[a-z0-9]{8}""#),
        (#"\badmin token [a-z0-9]{8} \("#, #"admin token [a-z0-9]{8} \("#),
        // An audit entry's time in milliseconds; a body's length, which follows the ids and times in it; a CRL's
        // number, which counts its publications (one per second at most, however many revocations).
        (#""timeMillis":\d+"#, #""timeMillis":\d+"#),
        (#"^Content-Length: \d+$"#, #"Content-Length: \d+"#),
        (#"^ETag: "issuing-\d+"$"#, #"ETag: "issuing-\d+""#),
        (#""number":\d+"#, #""number":\d+"#),
        // (No capturing groups in the first of a pair: the groups of the combined expression tell which pair matched.)
        // docs/cli.md: `ls -l`'s links, owner, group, size and time (the mode and the name are compared); an audit
        // checkpoint's time in milliseconds and its Ed25519 signature; audit sequence numbers and counts, which any
        // background entry of the server would shift.
        (#"(?<=^[d-][rwx-]{9} )\d+ \S+ +\S+ +\d+ [A-Z][a-z]{2} [ \d]\d \d\d:\d\d(?= )"#,
         #"\d+ \S+ +\S+ +\d+ [A-Z][a-z]{2} [ \d]\d \d\d:\d\d"#),
        (#"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"#, #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"#),
        (#""signature":"[A-Za-z0-9+/]{86}==""#, #""signature":"[A-Za-z0-9+/]{86}==""#),
        (#"^\d+ +(?=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  )"#, #"\d+ +"#),
        (#"\b\d+ (?:audit )?entries\b"#, #"\d+ (?:audit )?entries"#),
        (#"\(sequence 1-\d+\)"#, #"\(sequence 1-\d+\)"#),
        (#"checkpoint at sequence \d+"#, #"checkpoint at sequence \d+"#),
        (#""(?:sequence|entries|headSequence|checkpointSequence)" ?: ?\d+"#, #""(?:sequence|entries|headSequence|checkpointSequence)" ?: ?\d+"#),
    ]

    /// The regular expression a shown line stands for.
    static func pattern(for line: String) -> String {
        let combined = try! NSRegularExpression(pattern: volatile.map { "(\($0.0))" }.joined(separator: "|"))
        let text = line as NSString
        var pattern = ""
        var position = 0
        for match in combined.matches(in: line, range: NSRange(location: 0, length: text.length)) {
            pattern += NSRegularExpression.escapedPattern(
                for: text.substring(with: NSRange(location: position, length: match.range.location - position)))
            let group = (1...volatile.count).first { match.range(at: $0).location != NSNotFound } ?? 1
            pattern += volatile[group - 1].1
            position = match.range.location + match.range.length
        }
        pattern += NSRegularExpression.escapedPattern(for: text.substring(from: position))
        return "^" + pattern + "$"
    }

    static func matches(_ line: String, _ shown: String) -> Bool {
        let regex = try! NSRegularExpression(pattern: pattern(for: shown))
        return regex.firstMatch(in: line, range: NSRange(location: 0, length: (line as NSString).length)) != nil
    }

    /// Nil if `printed` has the shape of `shown`, else what differs.
    static func mismatch(printed: String, shown: [String]) -> String? {
        // Trailing spaces do not count, nor the carriage return of a CRLF line (`curl -i` prints HTTP headers so): a
        // terminal shows both the same.
        func trimmed(_ line: some StringProtocol) -> String {
            String(line.reversed().drop { $0 == " " || $0 == "\r" }.reversed())
        }
        // "\r\n" is one Character in Swift: split it as a line break too.
        var lines = printed.replacingOccurrences(of: "\r\n", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false).map(trimmed)
        while lines.last == "" { lines.removeLast() }
        var expected = shown.map(trimmed)
        while expected.last == "" { expected.removeLast() }

        func match(_ printedIndex: Int, _ shownIndex: Int) -> Bool {
            if shownIndex == expected.count { return printedIndex == lines.count }
            if expected[shownIndex].trimmingCharacters(in: .whitespaces) == "..." {
                return (printedIndex...lines.count).contains { match($0, shownIndex + 1) }
            }
            guard printedIndex < lines.count, matches(lines[printedIndex], expected[shownIndex]) else { return false }
            return match(printedIndex + 1, shownIndex + 1)
        }
        if match(0, 0) { return nil }
        // Point at the first shown line that does not match, for the report.
        var firstDifference = "line count: shown \(expected.count), printed \(lines.count)"
        for (index, line) in expected.enumerated() where line.trimmingCharacters(in: .whitespaces) != "..." {
            if index >= lines.count || !matches(lines[index], line) {
                firstDifference = "shown line \(index + 1) \"\(line)\" vs printed \"\(index < lines.count ? lines[index] : "<none>")\""
                break
            }
        }
        return "\(firstDifference)\n--- shown:\n\(expected.joined(separator: "\n"))\n--- printed:\n\(lines.joined(separator: "\n"))"
    }
}

// MARK: - Running the commands

/// A reader's terminal: one `bash` session in which a doc's commands run in order, checked against what the doc
/// shows.
struct DocWalk {
    struct Result: Sendable, CustomStringConvertible {
        var command: String
        var status: Int32
        var output: String
        var description: String { "$ \(command)\nexit \(status)\n\(output)" }
    }

    let session: ShellSession
    /// Where `server.json` of the server the doc starts appears.
    let dataDirectory: String
    private(set) var endpoints: ServerEndpoints?
    /// Text the doc says and the test replaces (ports, paths), in commands and shown output alike.
    var replacements: [(String, String)] { extra + paths + ports }
    private let paths: [(String, String)]
    /// More text a test replaces (docs/deployment.md: the database's port, names and password file), first.
    var extra: [(String, String)] = []
    private var ports: [(String, String)] = []

    init(directory: String, dataDirectory: String) throws {
        let executable = try ServeCLITests.executable()
        session = try ShellSession(
            directory: directory,
            environment: ServeCLITests.environment(["DEVID_EST_PORT": "0", "DEVID_OPS_PORT": "0"]))
        self.dataDirectory = dataDirectory
        paths = [("/tmp/devid-demo", URL(fileURLWithPath: dataDirectory).deletingLastPathComponent().path)]
        aliasLine = "alias devid='\(executable)'"
    }

    private let aliasLine: String

    /// The command as the test runs it: the `alias devid=...` line names the built executable, and the doc's
    /// ports and paths are replaced by the test's.
    func substitute(_ command: String) -> String {
        if command.hasPrefix("alias devid=") { return aliasLine }
        return apply(command)
    }

    func apply(_ text: String) -> String {
        replacements.reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }

    /// Runs one command; with `expectServerStart`, waits until the server it starts is listening.
    @discardableResult
    mutating func run(_ command: String, expectServerStart: Bool = false, timeout: TimeInterval = 60) async throws
        -> Result
    {
        let (status, output) = try await session.run(substitute(command), timeout: timeout)
        let startsServer = command.contains("devid serve") && command.range(of: #"&\s*(#.*)?$"#, options: .regularExpression) != nil
        if expectServerStart || startsServer {
            try await waitForServer()
        }
        return Result(command: command, status: status, output: output)
    }

    /// Runs the commands of a block in order and checks each: its exit status (non-zero exactly when the block
    /// shows an `Error:` line for it) and, for a transcript, the output it shows. A block that shows output
    /// without commands is checked against the output of the last command that ran before it.
    @discardableResult
    mutating func run(_ block: DocFile.Block, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> [Result]
    {
        let commands = DocCommand.commands(in: block)
        if commands.isEmpty {
            let previous = try #require(lastResult, "\(block) shows output, but nothing ran before it")
            expectShape(of: previous.output, as: block.lines, previous.command, block, sourceLocation: sourceLocation)
            return []
        }
        var results: [Result] = []
        for command in commands {
            let pause = pauses.first { command.command.hasPrefix($0.prefix) }
            if let pause {
                try await Task.sleep(for: .seconds(pause.seconds))
            }
            let timeout = timeouts.first { command.command.hasPrefix($0.prefix) }?.seconds ?? 60
            var result = try await run(command.command, timeout: timeout)
            // A paused command reads state that lags a change by design (a CRL, a setting): on a machine loaded by the
            // rest of the suite the lag can outlast the pause, so it is read again until it shows what the doc shows.
            if pause != nil, let shown = command.expected {
                let deadline = Date().addingTimeInterval(Self.settleSeconds)
                while DocShape.mismatch(printed: result.output, shown: shown.map(apply)) != nil, Date() < deadline {
                    try await Task.sleep(for: .milliseconds(500))
                    result = try await run(command.command, timeout: timeout)
                }
            }
            results.append(result)
            lastResult = result
            let shown = command.expected ?? []
            let fails = shown.contains { $0.hasPrefix("Error:") } || refusals.contains { command.command.hasPrefix($0) }
            #expect(
                (result.status != 0) == fails,
                "\(block): `\(command.command)` exited \(result.status)\n\(result.output)", sourceLocation: sourceLocation)
            if command.expected != nil {
                expectShape(of: result.output, as: shown, command.command, block, sourceLocation: sourceLocation)
            }
        }
        return results
    }

    private(set) var lastResult: Result?

    /// Commands (by prefix) that fail by design without an `Error:` line, as the page says in its prose (`openssl
    /// verify` refusing a revoked certificate exits 2): their exit status must be non-zero.
    var refusals: [String] = []

    /// Commands (by prefix) before which the walk pauses as long as a reader would at least: what relying parties
    /// see is published within a second of a revocation, and a reader of the previous output is slower than that.
    /// Their output is read again, for up to ``settleSeconds``, while it differs from the doc: this suite runs
    /// beside the others on 2 cores (CRLServingTests measures the one second alone). They only read.
    var pauses: [(prefix: String, seconds: Double)] = [("devid cert status", 1), ("devid crl fetch", 1)]

    /// How long a paused command's output may take to show what the doc shows.
    static let settleSeconds: TimeInterval = 30

    /// Commands (by prefix) that may take longer than the 60 s every other command is given: a simulation of a year
    /// takes seconds alone, and minutes with the whole suite loading 2 cores beside it.
    var timeouts: [(prefix: String, seconds: TimeInterval)] = []

    func expectShape(
        of printed: String, as shown: [String], _ what: String, _ block: DocFile.Block,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        if let mismatch = DocShape.mismatch(printed: printed, shown: shown.map(apply)) {
            Issue.record("\(block): output of `\(what)` differs from the doc: \(mismatch)", sourceLocation: sourceLocation)
        }
    }

    /// Waits for `server.json` of a running server, then replaces the doc's ports with the server's.
    mutating func waitForServer() async throws {
        let deadline = Date().addingTimeInterval(ServeCLITests.startTimeout)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: "\(dataDirectory)/server.json"),
                let found = try? JSONDecoder().decode(ServerEndpoints.self, from: data), kill(found.pid, 0) == 0
            {
                endpoints = found
                let est = found.estURL.replacingOccurrences(of: "https://", with: "")
                let ops = found.opsURL.replacingOccurrences(of: "http://", with: "")
                let estPort = String(est.split(separator: ":").last ?? "")
                ports = [
                    ("127.0.0.1:8443", est), ("127.0.0.1:8080", ops), ("localhost:8443", "localhost:\(estPort)"),
                ]
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ServeError("no server.json in \(dataDirectory) within \(Int(ServeCLITests.startTimeout)) s")
    }

    /// Waits until a file of the session's directory holds `text`, and returns it.
    func waitForFile(_ name: String, containing text: String, timeout: TimeInterval = 30) async throws -> String {
        let path = "\(session.directory)/\(name)"
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let content = try? String(contentsOfFile: path, encoding: .utf8), content.contains(text) { return content }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ServeError("\(path) does not contain \"\(text)\" after \(Int(timeout)) s")
    }

    /// Stops the server as the doc says (`kill -INT %1`, say), then checks what the README promises: it exits with
    /// status 0 and prints `DevID stopped.` last.
    mutating func stopServer(with command: String, log: String, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        let stop = try await run(command)
        #expect(stop.status == 0, "\(stop)", sourceLocation: sourceLocation)
        let pid = try #require(endpoints?.pid, "no server started", sourceLocation: sourceLocation)
        let exit = try await run("wait \(pid)", timeout: 60)
        #expect(exit.status == 0, "devid serve exit status: \(exit)", sourceLocation: sourceLocation)
        // The server ran in the directory that holds its data directory, so its log is there too.
        let directory = URL(fileURLWithPath: dataDirectory).deletingLastPathComponent().path
        let content = (try? String(contentsOfFile: "\(directory)/\(log)", encoding: .utf8)) ?? ""
        #expect(content.hasSuffix("DevID stopped.\n"), "\(log) ends with: \(content.suffix(300))", sourceLocation: sourceLocation)
    }

    /// Kills what the session left running (the server, if the walk did not stop it) and ends the session.
    func close() {
        if let pid = endpoints?.pid, kill(pid, 0) == 0 {
            kill(pid, SIGKILL)
        }
        session.close()
    }
}

extension DocWalk {
    /// The README's "Enroll a device" up to device L1-000001's enrollment into `dev1`: where docs/policy.md and
    /// docs/admin-api.md start. Checks that the README still ends that part there.
    mutating func runReadmeThroughFirstEnrollment(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let setup = Array(try DocFile(ReadmeTests.readme).blocks(in: "## Enroll a device").prefix(3))
        #expect(
            setup.last?.lines.contains { $0.contains("--state-dir dev1 --idevid-cert lot-L1/L1-000001/chain.pem") }
                == true, "\(setup)", sourceLocation: sourceLocation)
        for block in setup { try await run(block, sourceLocation: sourceLocation) }
    }

    /// The README's whole "Enroll a device" (L1-000001 into `dev1`, sensor-9 and sensor-10 with claim tokens, the
    /// last token still in `$T`): where docs/cli.md and docs/enrollment.md start.
    mutating func runReadmeEnrollADevice(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for block in try DocFile(ReadmeTests.readme).blocks(in: "## Enroll a device") {
            try await run(block, sourceLocation: sourceLocation)
        }
    }

    /// For whoever records a page again (`DEVID_DOC_DUMP=FILE`): every command the walk ran and what it printed, as
    /// JSON.
    static func dumpIfAsked(_ ran: [Result]) throws {
        guard let dump = ProcessInfo.processInfo.environment["DEVID_DOC_DUMP"] else { return }
        let items = ran.map { ["command": $0.command, "status": String($0.status), "output": $0.output] }
        try JSONSerialization.data(withJSONObject: items).write(to: URL(fileURLWithPath: dump))
    }
}

/// A `bash` process fed one command at a time on its standard input, like a terminal. Each command runs in the
/// shell itself (so variables, `cd`, aliases and jobs persist) with its stdout and stderr captured together.
final class ShellSession: @unchecked Sendable {
    let directory: String
    private let process: SpawnedProcess
    private let input: FileHandle
    private let captures: String
    private var count = 0
    /// The exit status of the command before, which the next one sees as `$?` (each runs in its own `{ ...; }`
    /// group, after which `$?` would be the status of the bookkeeping around it).
    private var lastStatus: Int32 = 0

    init(directory: String, environment: [String: String]) throws {
        self.directory = directory
        captures = "\(directory)/.doc-session"
        try FileManager.default.createDirectory(atPath: captures, withIntermediateDirectories: true)
        let pipe = Pipe.closeOnExec()
        guard let null = FileHandle(forWritingAtPath: "/dev/null") else { throw ServeError("cannot open /dev/null") }
        defer { try? null.close() }
        // posix_spawn, not Foundation's `Process`: its launch can crash the test process at the suite's descriptor
        // peak (``SpawnedProcess``); it did here, in a clean-clone CI rehearsal.
        process = try SpawnedProcess(
            executable: "/bin/bash", arguments: ["--noprofile", "--norc"], environment: environment,
            directory: directory, stdin: pipe.fileHandleForReading.fileDescriptor, stdout: null.fileDescriptor,
            stderr: null.fileDescriptor)
        try? pipe.fileHandleForReading.close()
        input = pipe.fileHandleForWriting
        try send("shopt -s expand_aliases\n")
    }

    private func send(_ text: String) throws {
        try input.write(contentsOf: Data(text.utf8))
    }

    /// Runs `command` and returns its exit status and output; throws if it takes longer than `timeout`.
    func run(_ command: String, timeout: TimeInterval) async throws -> (Int32, String) {
        count += 1
        let out = "\(captures)/out.\(count)"
        let status = "\(captures)/status.\(count)"
        try send(
            "{ (exit \(lastStatus)); \(command)\n} > '\(out)' 2>&1 < /dev/null; echo $? > '\(status).tmp'; mv '\(status).tmp' '\(status)'\n"
        )
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: status, encoding: .utf8), let code = Int32(text.trimmed) {
                lastStatus = code
                return (code, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
            }
            guard process.isRunning else { throw ServeError("the shell exited while running `\(command)`") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ServeError("`\(command)` did not finish within \(Int(timeout)) s")
    }

    /// Ends the shell (SIGKILL if `exit` is not enough within 5 s), waiting at most 5 s more for Foundation to see it
    /// go.
    ///
    /// Not `waitUntilExit()`: it spins until Foundation has noticed the exit, and in a clean-clone CI run it never
    /// did. bash had exited (a zombie), `waitUntilExit` spun at 100% of a core on one of the two threads Swift
    /// concurrency runs tests on, and the whole suite stalled for 8 minutes until the run was killed. A shell that is
    /// gone, or killed, needs nothing more from the test.
    func close() {
        try? send("exit\n")
        try? input.close()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.signal(SIGKILL) }
        let gone = Date().addingTimeInterval(5)
        while process.isRunning && Date() < gone { usleep(50_000) }
    }
}

extension String {
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
