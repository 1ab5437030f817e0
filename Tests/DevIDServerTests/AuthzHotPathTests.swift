import DevIDCore
@testable import DevIDServer
import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import Testing

/// The decision API's hot path without Foundation's coders: the fast JSON reader and writer must give exactly what
/// `JSONDecoder` and `JSONEncoder` give, or step aside; the token digest and the plain bearer parser must agree with
/// the general code they shortcut.
@Suite("Authz hot path")
struct AuthzHotPathTests {
    static func fields(_ request: MQTTDecisionRequest) -> [String?] {
        [request.certificate, request.fingerprint, request.device, request.tenant, request.action, request.topic]
    }

    @Test(
        "the fast reader agrees with JSONDecoder wherever it answers",
        arguments: [
            #"{"device":"bench-1","action":"publish","topic":"tenants/bench/devices/bench-1/telemetry/temp"}"#,
            #"  { "action" : "connect" , "device" : "d-1" }  "#,
            "{\n\t\"action\":\"connect\",\r\n\"fingerprint\":\"ab:cd\"}\n",
            #"{"action":"connect","device":"d-1","tenant":null,"topic":null}"#,
            #"{"action":"subscribe","device":"d-1","topic":"tenants/ä/devices/d-1/#","extra":"x"}"#,
            #"{"action":"connect","device":"d-1","extra":null}"#,
            #"{"action":""}"#,
            #"{"action":"connect","device":"d-1"}"#,
            #"{"action":"publish","device":"d-1","topic":"tenants\/acme\/devices\/d-1\/t"}"#,
            #"{"action":"publish","device":"d-1","topic":"\/\/x\/"}"#,
            #"{"action":"connect","device":"d-1","x\/y":"z"}"#,
        ])
    func readerAgrees(body: String) throws {
        let fields = try #require(DecisionJSON.flatObject(ByteBuffer(string: body)), "the fast path takes \(body)")
        let fast = try #require(MQTTDecisionRequest(fields: fields))
        let slow = try JSONDecoder().decode(MQTTDecisionRequest.self, from: Data(body.utf8))
        #expect(Self.fields(fast) == Self.fields(slow))
    }

    @Test(
        "the fast reader steps aside for every other shape, and JSONDecoder decides",
        arguments: [
            "", "{", "}", "[]", "null", #""action""#, "{}x", #"{"action":"connect"} {}"#,
            #"{"action":"connect","device":"d\u002d1"}"#,
            #"{"action":"connect","device":"d\"1"}"#,
            #"{"action":"connect","device":"d\\1"}"#,
            #"{"action":"connect","device":"d\n1"}"#,
            #"{"action":"connect","device":"d\/"#,
            #"{"action":"connect","device":"d\"}"#,
            #"{"action":"connect","device":"d-1","device":"d-2"}"#,
            #"{"action":"connect","device":null,"device":"d-2"}"#,
            #"{"action":"connect","device":"d-2","device":null}"#,
            #"{"action":"connect","n":1}"#,
            #"{"action":"connect","b":true}"#,
            #"{"action":"connect","o":{}}"#,
            #"{"action":"connect","a":[]}"#,
            #"{"action":"connect",}"#,
            #"{"action":"connect" "device":"d"}"#,
            #"{action:"connect"}"#,
            #"{"action":nul}"#,
            #"{"action":nullx}"#,
            "{\"action\":\"con\nnect\"}",
        ])
    func readerStepsAside(body: String) {
        #expect(DecisionJSON.flatObject(ByteBuffer(string: body)) == nil, "\(body)")
    }

    @Test("invalid UTF-8 steps aside")
    func invalidUTF8() {
        var buffer = ByteBuffer(string: #"{"action":""#)
        buffer.writeBytes([0xff, 0xfe])
        buffer.writeString(#""}"#)
        #expect(DecisionJSON.flatObject(buffer) == nil)
    }

    @Test("a body without the required member is left to JSONDecoder (and its 400)")
    func missingRequired() throws {
        let fields = try #require(DecisionJSON.flatObject(ByteBuffer(string: #"{"device":"d-1","action":null}"#)))
        #expect(MQTTDecisionRequest(fields: fields) == nil)
        #expect(HTTPDecisionRequest(fields: ["device": "d-1"]) == nil)
        #expect(HTTPDecisionRequest(fields: ["device": "d-1", "scope": "a:b"])?.scope == "a:b")
    }

    static let odd = [
        "plain", "with/slash", #"quote""#, #"back\slash"#, "tab\there", "new\nline", "cr\rlf", "\u{8}\u{c}",
        "\u{0}\u{1}\u{1f}", "\u{7f}", "ünïcödé ✓", "😀", "",
    ]

    @Test("the writer gives JSONEncoder's bytes (sorted keys, escapes)", arguments: odd)
    func writerAgrees(text: String) throws {
        var response = DecisionResponse(
            AuthzDecision(allowed: true, reason: .ok, device: nil, tenant: nil, serial: nil))
        #expect(try Self.written(response) == Self.encoded(response))
        response.device = text
        response.tenant = text
        response.serial = text
        response.reason = text
        response.result = text
        #expect(try Self.written(response) == Self.encoded(response), "\(text.debugDescription)")
    }

    @Test("a denial without a device omits the absent members, as JSONEncoder does")
    func writerOmitsNil() throws {
        let response = DecisionResponse(.deny(.unknownCertificate))
        #expect(try Self.written(response) == Self.encoded(response))
        #expect(try Self.written(response) == #"{"reason":"unknown_certificate","result":"deny"}"#)
    }

    static func written(_ response: DecisionResponse) throws -> String {
        #expect(DecisionJSON.response(response).headers[.contentType] == "application/json; charset=utf-8")
        return String(buffer: DecisionJSON.body(response))
    }

    static func encoded(_ response: DecisionResponse) throws -> String {
        String(decoding: try DevIDJSON.encoder.encode(response), as: UTF8.self)
    }

    @Test("token digests: the presented secret and the stored hex agree; nothing else matches")
    func digests() {
        let secret = "devid_authz_" + String(repeating: "a7", count: 20)
        let stored = AdminTokens.hash(secret)
        let fromHex = TokenDigest(hex: stored)
        #expect(fromHex != nil)
        #expect(fromHex?.matches(TokenDigest(secret: secret)) == true)
        #expect(TokenDigest(hex: stored.uppercased())?.matches(TokenDigest(secret: secret)) == true)
        #expect(fromHex?.matches(TokenDigest(secret: secret + "x")) == false)
        #expect(fromHex?.matches(TokenDigest(secret: "")) == false)
        #expect(TokenDigest(hex: String(stored.dropLast(2))) == nil, "31 bytes")
        #expect(TokenDigest(hex: stored + "00") == nil, "33 bytes")
        #expect(TokenDigest(hex: "zz" + stored.dropFirst(2)) == nil, "not hex")
        #expect(AuthzToken(hash: stored).digest.matches(TokenDigest(secret: secret)))
    }

    @Test(
        "the plain bearer parser agrees with the general one wherever it answers",
        arguments: [
            "Bearer abc", "bearer abc", "BEARER abc", "BeArEr devid_authz_x7", "Bearer  abc", "Bearer abc ",
            "Bearer\tabc", "Basic abc", "Bearer", "Bearer ", "Bearerabc", "Bearer ab c", "Bearer tökén",
            "Bearer a\u{7f}", "Bearerx abc", "Bearer abc\u{a0}", " Bearer abc",
        ])
    func bearer(header: String) {
        let plain = AuthzAuthMiddleware.plainBearerToken(header)
        let general = AdminAuthMiddleware.bearerToken(header)
        if let plain { #expect(plain == general, "\(header.debugDescription)") }
        #expect((plain ?? general) == general)
    }
}
