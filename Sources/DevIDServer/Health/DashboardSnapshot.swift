public import DevIDCore
import DevIDPKI
public import DevIDStore
import Foundation
import Logging

/// The dashboard without a server: the page `/dashboard` shows an auditor of every tenant, rendered by the same
/// model and page code from a ``ServerState`` at its clock's time. `devid simulate` writes one at chosen moments of
/// a simulated year, so its history reads like a live fleet's.
public enum DashboardSnapshot {
    /// The dashboard's one style sheet (what `/dashboard/style.css` serves).
    public static var styleSheet: String { DashboardPage.styleSheet }

    /// The dashboard page at `state.clock.now()`, its style sheet linked at `stylesheet` (a relative path when the
    /// page is a file). Its links into the live dashboard (tenants, devices) lead nowhere in a file.
    public static func page(state: ServerState, stylesheet: String) async throws -> String {
        let token = AdminToken(
            id: "snapshot", name: "snapshot", secretHash: "-", role: .auditor, createdAt: state.clock.now())
        let model = try await DashboardModel.load(state: state, token: token, tenant: nil)
        return DashboardPage.dashboard(model).replacingOccurrences(
            of: "href=\"/dashboard/style.css\"", with: "href=\"\(DashboardCharts.escape(stylesheet))\"")
    }

    /// A server state over `store` that no listener serves: a CA hierarchy made in `directory` (which it creates;
    /// the caller removes it), the issuing CA registered in `store`, and `clock`. Logs nothing.
    public static func state(store: any Store, directory: String, clock: any WallClock) async throws -> ServerState {
        var configuration = ServerConfiguration.development(dataDirectory: directory)
        configuration.keyEncryptionRounds = 1_000
        let logger = Logger(label: "devid.snapshot", factory: { _ in SwiftLogNoOpLogHandler() })
        let prepared = try await DataDirectory.prepare(configuration: configuration, clock: clock, logger: logger)
        let records = try await IssuingAuthorities.register(
            prepared.hierarchy.issuingAuthorities, store: store,
            auditor: Auditor(store: store, clock: clock, logger: logger), now: clock.now(), actor: "system")
        let issuers = try IssuingAuthorities(
            authorities: prepared.hierarchy.issuingAuthorities, records: records, roots: prepared.hierarchy.roots,
            manufacturers: prepared.hierarchy.trustedManufacturers)
        return ServerState(
            configuration: configuration, hierarchy: prepared.hierarchy, issuers: issuers, store: store, clock: clock,
            logger: logger)
    }
}
