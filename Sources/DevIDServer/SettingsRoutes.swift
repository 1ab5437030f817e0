import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The live settings as the admin API shows them: every key DevID keeps in the registry, its value in effect, and
/// where that value comes from.
struct SettingsView: ResponseCodable {
    struct Setting: Codable {
        var key: String
        var value: String
        /// `registry` (set with `devid settings set`) or `configuration` (file, environment, default).
        var source: String
    }
    var settings: [Setting]
}

/// `GET|PUT /v1/admin/settings`: the rotation policy, rate limits and anomaly thresholds kept in the registry,
/// which every server applies at its next decision (the change stream carries them) and which win over each
/// server's file and environment.
///
/// PUT takes `{"settings":{"ldevid.lifetime.days":"7","limits.device.burst":null}}` (null removes a key: the
/// file's value applies again). The whole change is checked against the configuration it would make; an unknown
/// key or a bad value is refused 400 with a one-line reason and nothing is stored. Audited (`settings.update`).
enum SettingsRoutes {
    static let maximumBody = 64 * 1024

    struct Update: Decodable {
        var settings: [String: Value]
    }

    /// A setting's new value: text, a number or a boolean as JSON writes them; null removes the setting.
    struct Value: Decodable {
        var text: String?

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                text = nil
            } else if let bool = try? container.decode(Bool.self) {
                text = bool ? "true" : "false"
            } else if let number = try? container.decode(Double.self) {
                text = number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
            } else {
                text = try container.decode(String.self).trimmingCharacters(in: .whitespaces)
            }
        }
    }

    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.get("/settings") { _, _ -> SettingsView in
            view(state)
        }

        admin.put("/settings") { request, context -> SettingsView in
            let buffer = try await request.body.collect(upTo: maximumBody)
            let update: Update
            do {
                update = try JSONDecoder().decode(Update.self, from: Data(buffer.readableBytesView))
            } catch {
                let reason = #"body must be {"settings":{"KEY":"VALUE" or null, ...}}"#
                await refuse(state, context, reason)
                throw HTTPError(.badRequest, message: reason)
            }
            guard !update.settings.isEmpty else {
                await refuse(state, context, "no setting given")
                throw HTTPError(.badRequest, message: "no setting given")
            }
            let current = try await state.store.settings()
            var next = current
            for (key, value) in update.settings {
                next[key] = value.text
            }
            do {
                // The configuration these settings would make, over this server's file: refused as a whole.
                let probe = LiveConfiguration(state.live.started)
                try probe.reload(base: state.live.base)
                try probe.apply(registry: next)
            } catch {
                // Names only keys and values the caller sent; bounded all the same.
                let reason = String("\(error)".prefix(300))
                await refuse(state, context, reason)
                throw HTTPError(.badRequest, message: reason)
            }
            let summary = update.settings.keys.sorted().map { key in
                "\(key)=\(update.settings[key]?.text ?? "(removed)")"
            }.joined(separator: " ")
            try await state.store.updateSettings(
                update.settings.mapValues(\.text),
                audit: state.auditor.event(
                    actor: context.actor, action: "settings.update", outcome: .success, reason: summary))
            // The change stream applied them before updateSettings returned.
            return view(state)
        }
    }

    static func view(_ state: ServerState) -> SettingsView {
        let configuration = state.configuration
        let registry = state.live.registrySettings
        return SettingsView(
            settings: LiveConfiguration.settingKeys.sorted().map { key in
                .init(
                    key: key, value: LiveConfiguration.value(of: key, in: configuration),
                    source: registry[key] == nil ? "configuration" : "registry")
            })
    }

    static func refuse(_ state: ServerState, _ context: OpsRequestContext, _ reason: String) async {
        await state.auditor.record(actor: context.actor, action: "settings.update", outcome: .denied, reason: reason)
    }
}
