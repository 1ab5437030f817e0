import DevIDServer
import Foundation

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

    /// The decision API's fast body reader against `JSONDecoder`: wherever the fast reader answers, `JSONDecoder`
    /// must read the same members (its `null`s left out), or the fast path would decide on a body the router reads
    /// differently.
    static let decisionJSON = FuzzTarget(
        name: "decision-json", maximumLength: 1_024,
        summary: "decision bodies: the fast flat-object reader agrees with JSONDecoder wherever it answers"
    ) { bytes throws(FuzzFailure) in
        guard let fast = DecisionBodyReader.fastMembers(bytes) else { return }
        let decoded: [String: String?]
        do {
            decoded = try JSONDecoder().decode([String: String?].self, from: Data(bytes))
        } catch {
            throw FuzzFailure("decision-json", "the fast reader read \(fast.count) members where JSONDecoder fails")
        }
        try require(
            decoded.compactMapValues { $0 } == fast, "decision-json", "the fast reader and JSONDecoder disagree")
    }
}
