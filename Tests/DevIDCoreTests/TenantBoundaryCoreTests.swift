import DevIDCore
import Foundation
import Testing

/// Issue #12, findings 4 and 7, in the domain: no rule may carry a control character (it would become a line of its
/// own in a broker file), and no new id may carry a dot (RabbitMQ makes `.` a level separator).
@Suite("Tenant boundary: control characters and dotted ids")
struct TenantBoundaryCoreTests {
    /// Every character that can end or corrupt a line in a broker file.
    static let controlCharacters: [(String, String)] = [
        ("\u{0}", "U+0000"), ("\u{1}", "U+0001"), ("\t", "U+0009"), ("\n", "U+000A"), ("\u{B}", "U+000B"),
        ("\u{C}", "U+000C"), ("\r", "U+000D"), ("\u{1B}", "U+001B"), ("\u{1F}", "U+001F"), ("\u{7F}", "U+007F"),
        ("\u{85}", "U+0085"), ("\u{2028}", "U+2028"), ("\u{2029}", "U+2029"),
    ]

    @Test("the rule of the report is refused, naming the rule by position")
    func reportedInjection() {
        let policy = TopicPolicy(rules: [
            TopicRule(.subscribe, "tenants/{tenant}/broadcast"),
            TopicRule(.publish, "tenants/{tenant}/x\ntopic readwrite tenants/+/#"),
        ])
        do {
            try policy.validate()
            Issue.record("a rule with a newline was accepted")
        } catch {
            #expect(error.code == .invalidPolicy)
            #expect(error.reason == "rule 2: control character U+000A not allowed")
        }
        #expect(throws: DevIDCoreError.self) { try CompiledTopicPolicy(policy) }
    }

    @Test("every control character is refused wherever it stands in the rule", arguments: controlCharacters)
    func controlCharacterInRule(character: String, name: String) {
        for topic in [
            "tenants/{tenant}/a\(character)b", "tenants/{tenant}/\(character)", "tenants/{tenant}/x/\(character)#",
            "tenants/{tenant}\(character)/x", "tenants/{tenant}/x\(character)",
        ] {
            let policy = TopicPolicy(rules: [TopicRule(.all, topic)])
            do {
                try policy.validate()
                Issue.record("\(name) accepted in \(topic.debugDescription)")
            } catch {
                #expect(error.reason == "rule 1: control character \(name) not allowed", "\(topic.debugDescription)")
            }
        }
    }

    @Test("ids never hold a control character (or a space)", arguments: controlCharacters)
    func controlCharacterInIdentifier(character: String, name: String) {
        #expect(TenantID(rawValue: "acme\(character)") == nil)
        #expect(DeviceID(rawValue: "d\(character)1") == nil)
        #expect(LotID(rawValue: "\(character)L1") == nil)
        #expect(!TopicPolicy.isValidScope("telemetry\(character)write"))
        #expect(!DeviceID(derivedFromHardwareSerial: "SN\(character)1").rawValue.unicodeScalars.contains {
            $0.value < 0x20 || $0.value == 0x7F
        })
    }

    @Test("printable characters are still allowed in rules (MQTT topics may hold spaces and any Unicode)")
    func printableRulesStillValid() throws {
        try TopicPolicy(rules: [
            TopicRule(.publish, "tenants/{tenant}/with space/ünïcödé/€/x.y")
        ]).validate()
    }

    @Test("a hardware serial with a dot gives a device id without one")
    func derivedIDsHaveNoDot() {
        #expect(DeviceID(derivedFromHardwareSerial: "SN.2024.001").rawValue == "SN_2024_001")
        #expect(DeviceID(derivedFromHardwareSerial: ".hidden").rawValue == "_hidden")
        #expect(DeviceID(derivedFromHardwareSerial: "A-1_b").rawValue == "A-1_b")
        #expect(!DeviceID(derivedFromHardwareSerial: "a.b.c").rawValue.contains("."))
    }
}
