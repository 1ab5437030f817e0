import DevIDCore
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
