import DevIDCore
import DevIDTesting
import Foundation
import Testing

@Suite("MQTT topic names and filters (MQTT 3.1.1 / 5.0 §4.7)")
struct MQTTTopicTests {
    // The examples of MQTT 3.1.1 §4.7.1.2, §4.7.1.3 and §4.7.2 (the same in MQTT 5.0 §4.7).
    @Test(arguments: [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("+/tennis/#", "sport/tennis", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("a", "A", false),
        ("a/b", "a/b/", false),
        // Topics beginning with $ are not matched by a leading wildcard.
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("a/#", "a/$b", true),
    ])
    func matching(filter: String, name: String, expected: Bool) {
        #expect(MQTTTopic.matches(filter: filter, name: name) == expected)
        #expect(MQTTTopic.isSubset(name, of: filter) == expected, "a name is a filter without wildcards")
    }

    @Test(arguments: ["#", "+", "+/tennis/#", "sport/+/player1", "/", "//", "a//b", "$SYS/#", "sport/tennis/#", "+/+"])
    func validFilters(filter: String) {
        #expect(MQTTTopic.filterProblem(filter) == nil)
    }

    @Test(arguments: [
        ("sport/tennis#", "the wildcard # must fill a whole level"),
        ("sport/tennis/#/ranking", "the wildcard # must be the last level"),
        ("sport+", "the wildcard + must fill a whole level"),
        ("#/a", "the wildcard # must be the last level"),
        ("a/++", "the wildcard + must fill a whole level"),
        ("", "a topic must not be empty"),
        ("a\u{0}b", "a topic may not contain U+0000"),
    ])
    func invalidFilters(filter: String, reason: String) {
        #expect(MQTTTopic.filterProblem(filter) == reason)
        #expect(!MQTTTopic.matches(filter: filter, name: "a"))
    }

    @Test func names() {
        #expect(MQTTTopic.nameProblem("a/b/c") == nil)
        #expect(MQTTTopic.nameProblem("/") == nil)
        #expect(MQTTTopic.nameProblem("a/+") == "a topic name may not contain the wildcards + or #")
        #expect(MQTTTopic.nameProblem("a/#") == "a topic name may not contain the wildcards + or #")
        #expect(MQTTTopic.nameProblem("") == "a topic must not be empty")
        #expect(MQTTTopic.nameProblem(String(repeating: "a", count: 65_535)) == nil)
        #expect(MQTTTopic.nameProblem(String(repeating: "a", count: 65_536)) == "a topic may be at most 65535 bytes")
        // Bytes, not characters: 21,845 three-byte characters are 65,535 bytes; one more is too many.
        #expect(MQTTTopic.nameProblem(String(repeating: "€", count: 21_845)) == nil)
        #expect(MQTTTopic.nameProblem(String(repeating: "€", count: 21_846)) != nil)
        #expect(!MQTTTopic.matches(filter: "#", name: "a/+"), "an invalid name never matches")
    }

    @Test(arguments: [
        ("tenants/t/devices/d/commands/+", "tenants/t/devices/d/commands/#", true),
        ("tenants/t/devices/d/commands/#", "tenants/t/devices/d/commands/#", true),
        ("tenants/t/devices/d/commands", "tenants/t/devices/d/commands/#", true),
        ("tenants/t/devices/d/commands/a/+/b", "tenants/t/devices/d/commands/#", true),
        ("tenants/t/devices/d/#", "tenants/t/devices/d/commands/#", false),
        ("tenants/t/devices/+/commands/#", "tenants/t/devices/d/commands/#", false),
        ("#", "tenants/t/devices/d/commands/#", false),
        ("+/#", "tenants/#", false),
        ("a/+", "a/+", true),
        ("a/b", "a/+", true),
        ("a/+", "a/b", false),
        ("a/#", "a/+/#", false),
        ("a/+/#", "a/#", true),
        ("a/+", "a/#", true),
        ("a", "a/+", false),
        ("a/+/c", "a/+/+", true),
        ("a/+/+", "a/+/c", false),
        ("$SYS/x", "#", false),
        ("$SYS/x", "+/x", false),
        ("+/x", "+/x", true),
        ("#", "#", true),
        ("+", "#", true),
        ("#", "+/#", true),
        ("#", "+/+/#", false),
        ("a/#", "a/+/#", false),
        ("$SYS/#", "$SYS/#", true),
    ])
    func subsets(requested: String, allowed: String, expected: Bool) {
        #expect(MQTTTopic.isSubset(requested, of: allowed) == expected)
    }

    @Test func sharedSubscriptions() throws {
        let shared = try #require(try SharedSubscription.parse("$share/group/a/b/#")?.get())
        #expect(shared.shareName == "group")
        #expect(shared.filter == "a/b/#")
        #expect(SharedSubscription.parse("a/b") == nil)
        for bad in ["$share/", "$share//a", "$share/group", "$share/group/", "$share/g+/a", "$share/#/a"] {
            #expect(throws: SharedSubscriptionError.self) { try SharedSubscription.parse(bad)?.get() }
        }
    }

    /// Property: `isSubset(F, A)` holds exactly when every name of a universe that F matches is matched by A; and
    /// matching agrees with a plain reference implementation. The universe's names are one level deeper than the
    /// filters and use a level ("z") no filter names, so it distinguishes every pair.
    @Test func subsetAgreesWithMatchingOverAUniverse() {
        var random = SplitMix64(seed: 0xDEF1D)
        let filterLevels = ["a", "b", "$x", "", "+", "#"]
        let nameLevels = ["a", "b", "$x", "", "z"]
        var names: [String] = []
        var frontier = [[String]]()
        for level in nameLevels { frontier.append([level]) }
        for _ in 1...4 {
            names += frontier.map { $0.joined(separator: "/") }
            frontier = frontier.flatMap { prefix in nameLevels.map { prefix + [$0] } }
        }
        names = names.filter(MQTTTopic.isValidName)  // "" (one empty level) is not a topic
        #expect(names.count == 780 - 1)
        func randomFilter() -> String {
            var levels: [String] = []
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                levels.append(filterLevels.randomElement(using: &random)!)
            }
            if let hash = levels.firstIndex(of: "#") { levels = Array(levels[...hash]) }
            return levels.joined(separator: "/")
        }
        for _ in 0..<1_500 {
            let requested = randomFilter()
            let allowed = randomFilter()
            // An empty topic (a single empty level) is not a filter at all.
            guard MQTTTopic.isValidFilter(requested), MQTTTopic.isValidFilter(allowed) else { continue }
            var semantic = true
            for name in names {
                let r = MQTTTopic.matches(filter: requested, name: name)
                #expect(r == Self.referenceMatch(requested, name), "\(requested) vs \(name)")
                if r && !MQTTTopic.matches(filter: allowed, name: name) {
                    semantic = false
                    break
                }
            }
            #expect(MQTTTopic.isSubset(requested, of: allowed) == semantic, "\(requested) ⊆ \(allowed)")
        }
    }

    /// MQTT matching written the obvious, recursive way, to check the iterative one.
    static func referenceMatch(_ filter: String, _ name: String) -> Bool {
        let f = filter.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let n = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if name.hasPrefix("$"), f[0] == "+" || f[0] == "#" { return false }
        func go(_ i: Int, _ j: Int) -> Bool {
            if i == f.count { return j == n.count }
            if f[i] == "#" { return true }
            if j == n.count { return false }
            if f[i] == "+" || f[i] == n[j] { return go(i + 1, j + 1) }
            return false
        }
        return go(0, 0)
    }
}

@Suite("Topic policies")
struct TopicPolicyTests {
    let t = TenantID(rawValue: "acme")!
    let d = DeviceID(rawValue: "dev-1")!
    var binding: TopicBinding { TopicBinding(tenant: t, device: d, lot: LotID(rawValue: "L7")) }

    @Test func defaultPolicyIsExactlyTheDocumentedOne() throws {
        #expect(
            TopicPolicy.default.rules == [
                TopicRule(.publish, "tenants/{tenant}/devices/{device}/telemetry/#"),
                TopicRule(.subscribe, "tenants/{tenant}/devices/{device}/commands/#"),
                TopicRule(.subscribe, "tenants/{tenant}/broadcast"),
            ])
        #expect(TopicPolicy.default.scopes == [])
        try TopicPolicy.default.validate()
        #expect(TenantPolicy().effectiveTopics == .default)
    }

    @Test(arguments: [
        (TopicAction.publish, "tenants/acme/devices/dev-1/telemetry/temp", TopicVerdict.allowed),
        (.publish, "tenants/acme/devices/dev-1/telemetry", .allowed),
        (.publish, "tenants/acme/devices/dev-1/telemetry/a/b/c", .allowed),
        (.publish, "tenants/acme/devices/dev-2/telemetry/temp", .notAllowed),
        (.publish, "tenants/acme/devices/dev-1/commands/x", .notAllowed),
        (.publish, "tenants/acme/broadcast", .notAllowed),
        (.publish, "tenants/globex/devices/dev-1/telemetry/temp", .wrongTenant),
        (.publish, "$SYS/broker/load", .notAllowed),
        (
            .publish, "tenants/acme/devices/dev-1/telemetry/+",
            .invalid("a topic name may not contain the wildcards + or #")
        ),
        (.publish, "", .invalid("a topic must not be empty")),
        (.subscribe, "tenants/acme/devices/dev-1/commands/#", .allowed),
        (.subscribe, "tenants/acme/devices/dev-1/commands/+", .allowed),
        (.subscribe, "tenants/acme/devices/dev-1/commands", .allowed),
        (.subscribe, "tenants/acme/broadcast", .allowed),
        (.subscribe, "$share/workers/tenants/acme/broadcast", .allowed),
        (.subscribe, "tenants/acme/broadcast/#", .notAllowed),
        (.subscribe, "tenants/acme/devices/+/commands/#", .notAllowed),
        (.subscribe, "tenants/acme/#", .notAllowed),
        (.subscribe, "tenants/+/broadcast", .notAllowed),
        (.subscribe, "#", .notAllowed),
        (.subscribe, "+/+/+", .notAllowed),
        (.subscribe, "tenants/globex/broadcast", .wrongTenant),
        (.subscribe, "tenants/acme/devices/dev-1/telemetry/#", .notAllowed),
        (.subscribe, "tenants/acme/devices/dev-1/commands/#/x", .invalid("the wildcard # must be the last level")),
        (.subscribe, "$share//tenants/acme/broadcast", .invalid(SharedSubscriptionError().reason)),
    ])
    func defaultPolicyDecisions(action: TopicAction, topic: String, expected: TopicVerdict) throws {
        let policy = try CompiledTopicPolicy(.default)
        #expect(policy.check(action, topic: topic, binding: binding) == expected)
    }

    @Test func lotAndAllRules() throws {
        let policy = try CompiledTopicPolicy(
            TopicPolicy(
                rules: [
                    TopicRule(.all, "tenants/{tenant}/lots/{lot}/+"),
                    TopicRule(.subscribe, "tenants/{tenant}/#"),
                ], scopes: ["telemetry:write"]))
        #expect(policy.check(.publish, topic: "tenants/acme/lots/L7/x", binding: binding) == .allowed)
        #expect(policy.check(.subscribe, topic: "tenants/acme/lots/L7/+", binding: binding) == .allowed)
        #expect(policy.check(.publish, topic: "tenants/acme/lots/L8/x", binding: binding) == .notAllowed)
        var lotless = binding
        lotless.lot = nil
        #expect(policy.check(.publish, topic: "tenants/acme/lots/L7/x", binding: lotless) == .notAllowed)
        #expect(policy.check(.subscribe, topic: "tenants/acme/anything/#", binding: lotless) == .allowed)
        #expect(policy.check(.subscribe, topic: "#", binding: lotless) == .notAllowed, "the whole tenant, no more")
        #expect(policy.grants(scope: "telemetry:write"))
        #expect(!policy.grants(scope: "telemetry:read"))
        #expect(
            policy.expanded(for: binding) == [
                TopicRule(.all, "tenants/acme/lots/L7/+"), TopicRule(.subscribe, "tenants/acme/#"),
            ])
        #expect(policy.expanded(for: lotless) == [TopicRule(.subscribe, "tenants/acme/#")])
    }

    @Test(arguments: [
        ("#", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("+/x", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("tenants/+/x", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("tenants/#", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("tenants/other/x", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("tenants/{device}/x", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("tenants", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("{tenant}/tenants", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("/tenants/{tenant}", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("$SYS/#", "rule 1: a rule must begin with the levels tenants/{tenant}, so it stays in the tenant"),
        ("tenants/{tenant}x/a", "rule 1: a variable must fill a whole level"),
        ("tenants/{tenant}/dev-{device}", "rule 1: a variable must fill a whole level"),
        ("tenants/{tenant}/{user}", "rule 1: unknown variable (use {tenant}, {device} or {lot})"),
        ("tenants/{tenant}/{tenant}", "rule 1: {tenant} may appear only as the second level"),
        ("tenants/{tenant}/a/#/b", "rule 1: the wildcard # must be the last level"),
        ("tenants/{tenant}/a+", "rule 1: the wildcard + must fill a whole level"),
        ("", "rule 1: a topic must not be empty"),
    ])
    func rejectedRules(topic: String, reason: String) {
        let policy = TopicPolicy(rules: [TopicRule(.publish, topic)])
        #expect(throws: DevIDCoreError.self) { try policy.validate() }
        do {
            try policy.validate()
        } catch {
            #expect(error.code == .invalidPolicy)
            #expect(error.reason == reason)
        }
    }

    @Test func rejectedPoliciesNameTheRuleAndScope() {
        let second = TopicPolicy(rules: [TopicRule(.publish, "tenants/{tenant}/a"), TopicRule(.subscribe, "#")])
        #expect(throws: DevIDCoreError(code: .invalidPolicy, reason: "")) { try second.validate() }
        do { try second.validate() } catch {
            #expect(error.reason.hasPrefix("rule 2: "))
        }

        for scope in ["", "has space", String(repeating: "s", count: 129), "ünï"] {
            let policy = TopicPolicy(rules: [], scopes: ["ok:scope", scope])
            do {
                try policy.validate()
                Issue.record("scope \(scope) accepted")
            } catch {
                #expect(error.reason.hasPrefix("scope 2: "))
            }
        }
        let many = TopicPolicy(rules: Array(repeating: TopicRule(.publish, "tenants/{tenant}/a"), count: 257))
        #expect(throws: DevIDCoreError.self) { try many.validate() }
        #expect(throws: Never.self) { try TopicPolicy(rules: []).validate() }
    }

    @Test func policyJSON() throws {
        let json = #"{"rules":[{"action":"all","topic":"tenants/{tenant}/x"}]}"#
        let policy = try JSONDecoder().decode(TopicPolicy.self, from: Data(json.utf8))
        #expect(policy == TopicPolicy(rules: [TopicRule(.all, "tenants/{tenant}/x")], scopes: []))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(TopicPolicy.self, from: Data(#"{"rules":[{"action":"read","topic":"x"}]}"#.utf8))
        }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(TopicPolicy.self, from: Data("{}".utf8)) }

        // A tenant policy written before topic policies existed decodes to "no own policy".
        let old = try JSONDecoder().decode(TenantPolicy.self, from: Data(#"{"autoRegister":true}"#.utf8))
        #expect(old.topics == nil)
        #expect(old.effectiveTopics == .default)
        let own = TenantPolicy(autoRegister: false, manualApproval: true, topics: policy)
        #expect(try JSONDecoder().decode(TenantPolicy.self, from: JSONEncoder().encode(own)) == own)
    }

    /// Property: whatever valid policy a tenant writes, a device is never allowed a topic (or filter) outside
    /// `tenants/<its tenant>`.
    @Test func noPolicyReachesAnotherTenant() throws {
        var random = SplitMix64(seed: 42)
        let templateLevels = ["{device}", "{lot}", "+", "a", "b", "devices", "#", "acme", "globex"]
        let topicLevels = ["tenants", "acme", "globex", "dev-1", "L7", "a", "b", "+", "#", "$SYS", ""]
        var checked = 0
        for _ in 0..<300 {
            var rules: [TopicRule] = []
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                var levels = ["tenants", "{tenant}"]
                for _ in 0..<Int.random(in: 0...3, using: &random) {
                    levels.append(templateLevels.randomElement(using: &random)!)
                }
                if let hash = levels.firstIndex(of: "#") { levels = Array(levels[...hash]) }
                rules.append(
                    TopicRule(TopicAction.allCases.randomElement(using: &random)!, levels.joined(separator: "/")))
            }
            let policy = try CompiledTopicPolicy(TopicPolicy(rules: rules))
            for _ in 0..<50 {
                // Half the topics start inside one of the two tenants, so some are allowed.
                var levels: [String] =
                    Bool.random(using: &random) ? ["tenants", ["acme", "globex"].randomElement(using: &random)!] : []
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    levels.append(topicLevels.randomElement(using: &random)!)
                }
                let topic = levels.joined(separator: "/")
                for action in [TopicAction.publish, .subscribe]
                where policy.check(action, topic: topic, binding: binding) == .allowed {
                    checked += 1
                    #expect(
                        levels.count >= 2 && levels[0] == "tenants" && levels[1] == "acme", "\(rules) allowed \(topic)")
                }
            }
        }
        #expect(checked > 100, "the generator must produce allowed topics too")
    }
}

@Suite("Identity checks of a decision")
struct IdentityCheckTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var device: DeviceSnapshot {
        DeviceSnapshot(id: DeviceID(rawValue: "d")!, tenant: TenantID(rawValue: "t")!, lot: nil, state: .active)
    }

    func credential(
        _ status: CredentialStatus, notBefore: TimeInterval = -100, notAfter: TimeInterval = 100,
        deadline: TimeInterval? = nil, kind: CredentialKind = .ldevid, serial: String = "01"
    ) -> CredentialSnapshot {
        CredentialSnapshot(
            serial: SerialNumber(rawValue: serial)!, kind: kind, status: status, notBefore: now + notBefore,
            notAfter: now + notAfter, overlapDeadline: deadline.map { now + $0 })
    }

    @Test func credentialReasons() {
        #expect(IdentityCheck.check(credential(.active), of: device, at: now) == .ok)
        #expect(IdentityCheck.check(credential(.revoked), of: device, at: now) == .revoked)
        #expect(IdentityCheck.check(credential(.active, notBefore: 10), of: device, at: now) == .notYetValid)
        #expect(IdentityCheck.check(credential(.active, notAfter: 0), of: device, at: now) == .expired)
        #expect(IdentityCheck.check(credential(.expired), of: device, at: now) == .expired)
        #expect(IdentityCheck.check(credential(.superseded, deadline: 10), of: device, at: now) == .ok)
        #expect(IdentityCheck.check(credential(.superseded, deadline: 0), of: device, at: now) == .superseded)
        #expect(IdentityCheck.check(credential(.superseded), of: device, at: now) == .superseded)
        #expect(IdentityCheck.check(credential(.active, kind: .idevid), of: device, at: now) == .unknownCertificate)
    }

    @Test func deviceReasonsComeBeforeTiming() {
        var held = device
        for (state, reason) in [
            (DeviceState.suspended, AuthzReason.suspended), (.revoked, .revoked), (.manufactured, .deviceNotActive),
            (.pendingApproval, .deviceNotActive), (.decommissioned, .deviceNotActive),
        ] {
            held.state = state
            #expect(IdentityCheck.check(credential(.active, notAfter: 0), of: held, at: now) == reason)
        }
        held.state = .suspended
        #expect(IdentityCheck.check(credential(.revoked), of: held, at: now) == .revoked, "revoked credential first")
    }

    @Test func byDeviceIdentity() {
        let old = credential(.superseded, notBefore: -200, deadline: 10, serial: "01")
        let new = credential(.active, notBefore: -100, serial: "02")
        #expect(
            IdentityCheck.check(device: device, credentials: [old, new], at: now).credential?.serial.rawValue == "02")
        let late = credential(.superseded, notBefore: -200, deadline: -1, serial: "01")
        let result = IdentityCheck.check(device: device, credentials: [late], at: now)
        #expect(result.reason == .superseded)
        #expect(IdentityCheck.check(device: device, credentials: [], at: now).reason == .unknownCertificate)
        #expect(
            IdentityCheck.check(device: device, credentials: [credential(.active, kind: .idevid)], at: now).reason
                == .unknownCertificate)
        var suspended = device
        suspended.state = .suspended
        #expect(IdentityCheck.check(device: suspended, credentials: [new], at: now).reason == .suspended)
    }
}
