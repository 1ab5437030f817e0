import DevIDCore
import DevIDServer
import Foundation

/// Targets for the domain's parsers: lot manifests, topic policies, MQTT topics and filters.
enum CoreTargets {
    /// `devid device import` and `POST /v1/admin/devices/import`.
    static let lotManifest = FuzzTarget(
        name: "lot-manifest", maximumLength: 16_384,
        summary: "lot manifest JSON: decode as the server does, the import route's checks, encode/decode round trip"
    ) { bytes throws(FuzzFailure) in
        _ = try? AdminRequestBody.lotManifest.check(bytes)
        guard let manifest = try? DevIDJSON.decoder.decode(LotManifest.self, from: Data(bytes)) else { return }
        let encoded: Data
        do { encoded = try DevIDJSON.encoder.encode(manifest) } catch {
            throw FuzzFailure("lot-manifest", "a decoded manifest does not encode")
        }
        let again: LotManifest
        do { again = try DevIDJSON.decoder.decode(LotManifest.self, from: encoded) } catch {
            throw FuzzFailure("lot-manifest", "an encoded manifest does not decode")
        }
        try require(again == manifest, "lot-manifest", "a manifest changed in a round trip")
    }

    static let binding = TopicBinding(
        tenant: TenantID(rawValue: "acme")!, device: DeviceID(rawValue: "dev-1")!, lot: LotID(rawValue: "lot-7")!)
    static let otherBinding = TopicBinding(
        tenant: TenantID(rawValue: "other")!, device: DeviceID(rawValue: "dev-1")!, lot: LotID(rawValue: "lot-7")!)

    /// Topics no policy of tenant `acme` may grant, whatever its rules.
    static let foreignTopics = [
        "#", "+", "+/#", "/#", "tenants", "tenants/#", "tenants/+", "tenants/+/#", "tenants/+/devices/dev-1/x",
        "tenants/other/devices/dev-1/telemetry/x", "tenants/acme2/x", "tenants//x", "$SYS/#", "$share/g/#",
        "$share/g/tenants/+/x", "$share/g/tenants/other/x", "Tenants/acme/x",
    ]

    /// `PUT /v1/admin/tenants/:id/topic-policy`, then decisions with the compiled policy.
    static let topicPolicy = FuzzTarget(
        name: "topic-policy", maximumLength: 4_096,
        summary: "topic policy JSON: validate, compile; every grant stays in the tenant, every rule grants itself"
    ) { bytes throws(FuzzFailure) in
        guard let policy = try? JSONDecoder().decode(TopicPolicy.self, from: Data(bytes)) else { return }
        guard let compiled = try? CompiledTopicPolicy(policy) else { return }
        let none = DottedIdentifiers()
        // Containment: no grant outside tenants/acme, however the rules are written.
        var probes = foreignTopics
        probes += compiled.expanded(for: otherBinding).map(\.topic).filter { !$0.hasPrefix("tenants/acme/") }
        for topic in probes {
            for action in [TopicAction.publish, .subscribe] {
                try require(
                    compiled.check(action, topic: topic, binding: binding) != .allowed, "topic-policy",
                    "\(action) \(topic) granted to tenant acme")
                try require(
                    compiled.checkRoutingKey(action, topic: topic, binding: binding, dotted: none) != .allowed,
                    "topic-policy", "routing key \(action) \(topic) granted to tenant acme")
            }
        }
        // Completeness: each expanded rule grants the topics it names, and only inside the tenant.
        for rule in compiled.expanded(for: binding) {
            let levels = MQTTTopic.split(rule.topic)
            try require(
                levels.count >= 2 && levels[0] == "tenants" && levels[1] == "acme", "topic-policy",
                "rule expands outside the tenant")
            if rule.action.permits(.subscribe) {
                try require(
                    compiled.check(.subscribe, topic: rule.topic, binding: binding) == .allowed, "topic-policy",
                    "a rule does not grant its own filter")
            }
            if rule.action.permits(.publish) {
                let name = levels.map { $0 == "+" || $0 == "#" ? "x" : String($0) }.joined(separator: "/")
                try require(
                    compiled.check(.publish, topic: name, binding: binding) == .allowed, "topic-policy",
                    "a rule does not grant a topic it matches")
            }
        }
    }

    /// MQTT topic names and filters: the matching rules brokers' decisions rest on. The input is up to three
    /// strings separated by 0xFF (a byte UTF-8 never holds): filter a, filter b, topic name.
    static let mqttTopic = FuzzTarget(
        name: "mqtt-topic", maximumLength: 1_024,
        summary: "MQTT filters and names: match, subset and overlap agree; wildcards never reach $ topics"
    ) { bytes throws(FuzzFailure) in
        let parts = bytes.split(separator: 0xFF, maxSplits: 2, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        let a = parts[0]
        let b = parts.count > 1 ? parts[1] : a
        let name = parts.count > 2 ? parts[2] : a
        _ = SharedSubscription.parse(a)
        let t = "mqtt-topic"
        // Levels are bytes between `/` bytes, as a broker splits them.
        let levels = MQTTTopic.split(a)
        try require(levels.count == a.utf8.count(where: { $0 == UInt8(ascii: "/") }) + 1, t, "levels not split at /")
        try require(Array(levels.joined(separator: "/").utf8) == Array(a.utf8), t, "levels do not rejoin")
        let aMatches = MQTTTopic.matches(filter: a, name: name)
        let bMatches = MQTTTopic.matches(filter: b, name: name)
        if aMatches {
            try require(MQTTTopic.isValidFilter(a) && MQTTTopic.isValidName(name), t, "matched an invalid topic")
            let first = MQTTTopic.split(a)[0]
            if name.utf8.first == UInt8(ascii: "$") {
                try require(first != "+" && first != "#", t, "a leading wildcard matched a $ topic")
            }
        }
        if MQTTTopic.isSubset(a, of: b) {
            try require(!aMatches || bMatches, t, "a subset filter matched a name its superset does not")
        }
        if aMatches && bMatches {
            try require(
                MQTTTopic.overlaps(MQTTTopic.filterLevels(a), MQTTTopic.filterLevels(b)), t,
                "two filters match one name but do not overlap")
        }
        if MQTTTopic.isValidName(name) {
            try require(MQTTTopic.matches(filter: name, name: name), t, "a name does not match itself")
        }
        if MQTTTopic.isValidFilter(a) {
            try require(MQTTTopic.isSubset(a, of: a), t, "a filter is not a subset of itself")
            try require(
                MQTTTopic.isSubset(a, of: "#") || a.utf8.first == UInt8(ascii: "$"), t, "# does not cover a filter")
        }
    }
}
