import DevIDAgent
import DevIDCore
import Foundation
import Testing

/// What fuzzing found (docs/fuzzing.md, "Findings"), each pinned by a test that fails on the code before the fix.
@Suite("Fuzz findings")
struct FuzzFindingsTests {
    static let binding = TopicBinding(
        tenant: TenantID(rawValue: "acme")!, device: DeviceID(rawValue: "dev-1")!, lot: nil)

    /// mqtt-topic: topics were split into levels by Character, so a `/` followed by a combining mark (U+0301) did not
    /// separate levels for DevID while every broker, which splits bytes, sees two levels there.
    @Test("a / followed by a combining mark still separates levels, as brokers split them")
    func slashBeforeCombiningMark() {
        #expect(MQTTTopic.split("a/\u{301}b").count == 2)
        #expect(MQTTTopic.split("a/x/\u{301}y") == ["a", "x", "\u{301}y"])
        // `+` is one level: the broker sees three levels here, so a/+ must not match.
        #expect(!MQTTTopic.matches(filter: "a/+", name: "a/x/\u{301}y"))
        #expect(MQTTTopic.matches(filter: "a/+/+", name: "a/x/\u{301}y"))
    }

    @Test("a one-level rule does not grant a deeper topic hidden behind a combining mark")
    func policyLevelsAreBytes() throws {
        let rule = TopicRule(.publish, "tenants/{tenant}/devices/{device}/+")
        let policy = try CompiledTopicPolicy(TopicPolicy(rules: [rule]))
        #expect(policy.check(.publish, topic: "tenants/acme/devices/dev-1/x", binding: Self.binding) == .allowed)
        let deeper = "tenants/acme/devices/dev-1/x/\u{301}y"
        #expect(policy.check(.publish, topic: deeper, binding: Self.binding) != .allowed)
    }

    /// Literal levels compared as Strings equated canonically equivalent spellings; brokers compare bytes.
    @Test("a literal level matches its own bytes only, not another Unicode spelling of them")
    func literalsCompareBytes() throws {
        #expect(!MQTTTopic.matches(filter: "caf\u{E9}", name: "cafe\u{301}"))
        #expect(MQTTTopic.matches(filter: "caf\u{E9}", name: "caf\u{E9}"))
        let policy = try CompiledTopicPolicy(TopicPolicy(rules: [TopicRule(.all, "tenants/{tenant}/caf\u{E9}")]))
        #expect(policy.check(.publish, topic: "tenants/acme/cafe\u{301}", binding: Self.binding) != .allowed)
        #expect(policy.check(.publish, topic: "tenants/acme/caf\u{E9}", binding: Self.binding) == .allowed)
    }

    @Test("a shared subscription's name and filter are read as bytes")
    func sharedSubscriptionBytes() {
        // A `+` followed by a combining mark is still a wildcard byte in the share name: refused.
        guard case .failure? = SharedSubscription.parse("$share/g+\u{301}/a/#") else {
            Issue.record("a share name holding + was accepted")
            return
        }
        guard case .success(let shared)? = SharedSubscription.parse("$share/g/\u{301}a/#") else {
            Issue.record("a shared subscription was not recognised")
            return
        }
        #expect(shared.shareName == "g")
        #expect(Array(shared.filter.utf8) == Array("\u{301}a/#".utf8))
    }
}

/// http-date: the `Date` and `Retry-After` parser handed any run of digits to the calendar, which wraps.
@Suite("Fuzz findings: HTTP dates")
struct HTTPDateFindingsTests {
    static let serverDate = HTTPDate.parse("Sat, 06 Dec 2025 00:00:00 GMT")!

    @Test(
        "an HTTP date with numbers the grammar does not allow is refused, not wrapped or rolled over",
        arguments: [
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",  // the calendar wrapped this to a date in year 2
            "Sun, 06 Nov 19940 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sat, 31 Feb 2026 08:49:37 GMT",  // rolled over to 3 March
            "Sun, 06 Nov 1994 08:49: GMT",
        ])
    func refused(_ text: String) {
        #expect(HTTPDate.parse(text) == nil)
        // A Retry-After that is not a date is ignored (the agent's own backoff applies), not read as "now".
        #expect(HTTPDate.retryAfterSeconds(text, serverDate: Self.serverDate) == nil)
    }

    @Test("IMF-fixdates still parse, a leap second included")
    func accepted() {
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT")?.timeIntervalSince1970 == 784_111_777)
        #expect(HTTPDate.parse("Sat, 29 Feb 2020 00:00:00 GMT") != nil)
        #expect(HTTPDate.parse("Wed, 31 Dec 2025 23:59:60 GMT")?.timeIntervalSince1970 == 1_767_225_600)
        #expect(HTTPDate.retryAfterSeconds("Sat, 06 Dec 2025 00:02:00 GMT", serverDate: Self.serverDate) == 120)
    }
}
