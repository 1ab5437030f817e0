import DevIDCore
import DevIDServer
import DevIDStore
import Foundation

/// DevID's health metrics and dashboard for the `devid` world: the simulated server counts enrollments, refusals
/// and failed authentications through the server's own ``ServerMetrics`` (which keeps the registry's hourly health
/// history), and the dashboard is rendered from that registry by the server's own page code
/// (``DashboardSnapshot``) at chosen moments.
final class SimulatedHealth {
    let state: ServerState
    private let clock: ManualWallClock
    private let directory: URL
    private(set) var pages: [(name: String, html: String)] = []

    init(store: any Store, start: Date) async throws {
        clock = ManualWallClock(start)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("devid-simulate-\(UUID().uuidString)")
        state = try await DashboardSnapshot.state(store: store, directory: directory.path, clock: clock)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    var metrics: ServerMetrics { state.metrics }

    /// The time the next counts belong to.
    func at(_ date: Date) { clock.set(date) }

    /// Writes the hour counts gathered so far into the registry.
    func flush(at date: Date) async {
        clock.set(date)
        await state.metrics.history?.flush()
    }

    /// The dashboard as an auditor would have seen it at `date`.
    func snapshot(_ name: String, at date: Date) async throws {
        await flush(at: date)
        pages.append((name, try await DashboardSnapshot.page(state: state, stylesheet: "style.css")))
    }
}
