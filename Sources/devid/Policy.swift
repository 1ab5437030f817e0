import ArgumentParser
import DevIDCore
import DevIDServer
import Foundation

/// `devid policy show|set|reset`: a tenant's MQTT topic rules and API scopes.
struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "A tenant's MQTT topic rules and API scopes (what policy decisions allow).",
        discussion: """
            Rules are topic-filter templates with the variables {tenant}, {device} and {lot}; every rule begins \
            with tenants/{tenant}/, so no device can be granted another tenant's topics. A tenant without rules of \
            its own gets the default: publish tenants/{tenant}/devices/{device}/telemetry/#, subscribe \
            tenants/{tenant}/devices/{device}/commands/# and tenants/{tenant}/broadcast. See docs/policy.md.
            """,
        subcommands: [Show.self, SetRules.self, Reset.self])

    struct View: Codable {
        var tenant: String
        var `default`: Bool
        var rules: [TopicRule]
        var scopes: [String]

        func print() {
            Swift.print("tenant \(tenant): \(self.default ? "default policy" : "own policy")")
            for rule in rules {
                Swift.print("  \(rule.action.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(rule.topic)")
            }
            if rules.isEmpty { Swift.print("  (no topic rules: every topic is denied)") }
            if !scopes.isEmpty { Swift.print("  scopes: \(scopes.joined(separator: " "))") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the rules in force for a tenant.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Tenant id.") var tenant: String

        func run() async throws {
            let view = try await AdminClient(options: global).get(
                "/v1/admin/tenants/\(tenant)/topic-policy", as: View.self)
            if global.json { return try Output.json(view) }
            view.print()
        }
    }

    struct SetRules: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Replace a tenant's rules with those in a JSON file.",
            discussion: """
                The file: {"rules": [{"action": "publish|subscribe|all", "topic": "tenants/{tenant}/..."}], \
                "scopes": ["telemetry:write"]}. It is checked here and again by the server; a bad rule changes nothing.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Tenant id.") var tenant: String
        @Option(name: .long, help: "JSON file with the rules.") var file: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
            let policy: TopicPolicy
            do {
                policy = try JSONDecoder().decode(TopicPolicy.self, from: data)
            } catch {
                throw CLIError(
                    #"\#(file) is not a topic policy: {"rules":[{"action":"publish|subscribe|all","topic":"..."}],"scopes":[...]}"#
                )
            }
            do {
                try policy.validate()
            } catch {
                // `validate()` throws only `DevIDCoreError`, whose reason names the bad rule.
                throw CLIError("\(file): \(error.reason)")
            }
            let view = try await AdminClient(options: global).send(
                "PUT", "/v1/admin/tenants/\(tenant)/topic-policy", json: policy, as: View.self)
            if global.json { return try Output.json(view) }
            view.print()
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Return a tenant to the default rules.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Tenant id.") var tenant: String

        func run() async throws {
            let view = try await AdminClient(options: global).send(
                "DELETE", "/v1/admin/tenants/\(tenant)/topic-policy", json: [String: String](), as: View.self)
            if global.json { return try Output.json(view) }
            view.print()
        }
    }
}
