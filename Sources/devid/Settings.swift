import ArgumentParser
import DevIDServer
import Foundation

/// `devid settings show|set|unset`: the rotation policy, rate limits and anomaly thresholds kept in the registry.
struct SettingsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settings",
        abstract: "Settings every server applies without a restart (rotation policy, rate limits, thresholds).",
        discussion: """
            A setting kept in the registry wins over each server's configuration file and environment, and takes \
            effect on every server at its next decision. Keys are those of the configuration file \
            (docs/configuration.md). `unset` returns a key to the file's value.
            """,
        subcommands: [Show.self, Set.self, Unset.self])

    struct View: Codable {
        struct Setting: Codable {
            var key: String
            var value: String
            var source: String
        }
        var settings: [Setting]

        /// Every setting, or only `keys`.
        func print(only keys: Swift.Set<String>? = nil) {
            let shown = settings.filter { keys?.contains($0.key) ?? true }
            let width = shown.map(\.key.count).max() ?? 0
            for setting in shown {
                let marker = setting.source == "registry" ? "   (registry)" : ""
                Swift.print("\(setting.key.padding(toLength: width, withPad: " ", startingAt: 0))  \(setting.value)\(marker)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every live setting, its value and its source.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let view = try await AdminClient(options: global).get("/v1/admin/settings", as: View.self)
            if global.json { return try Output.json(view) }
            view.print()
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set KEY=VALUE pairs in the registry (checked together; a bad one changes nothing).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "KEY=VALUE, e.g. ldevid.lifetime.days=7.") var pairs: [String]

        func run() async throws {
            var settings: [String: String?] = [:]
            for pair in pairs {
                guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                    throw CLIError("\(pair): KEY=VALUE expected")
                }
                settings[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            try await SettingsCommand.update(settings, global: global)
        }
    }

    struct Unset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove keys from the registry: the file's value applies again.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Keys, e.g. ldevid.lifetime.days.") var keys: [String]

        func run() async throws {
            try await SettingsCommand.update(Dictionary(uniqueKeysWithValues: keys.map { ($0, String?.none) }), global: global)
        }
    }

    static func update(_ settings: [String: String?], global: GlobalOptions) async throws {
        struct Body: Encodable {
            var settings: [String: String?]
        }
        let view = try await AdminClient(options: global).send(
            "PUT", "/v1/admin/settings", json: Body(settings: settings), as: View.self)
        if global.json { return try Output.json(view) }
        // What changed: the keys given, with the value each has now.
        view.print(only: Swift.Set(settings.keys))
    }
}
