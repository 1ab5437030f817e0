import DevIDServer

/// Targets for the operations listener's request bodies.
enum ServerTargets {
    /// Every admin and decision API JSON body: the first byte picks the route, the rest is the body.
    static let adminJSON = FuzzTarget(
        name: "admin-json", maximumLength: 4_096,
        summary: "admin and decision API JSON bodies (first byte picks the route): decode and the route's checks"
    ) { bytes throws(FuzzFailure) in
        guard let selector = bytes.first else { return }
        let kinds = AdminRequestBody.allCases
        let kind = kinds[Int(selector) % kinds.count]
        _ = try? kind.check(Array(bytes.dropFirst()))
    }
}
