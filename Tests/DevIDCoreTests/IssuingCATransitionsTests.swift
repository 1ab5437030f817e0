import DevIDCore
import Foundation
import Testing

/// The issuing CA state rules, without I/O: every move and every refusal.
@Suite("Issuing CA transitions")
struct IssuingCATransitionsTests {
    static func ca(_ id: Int, _ state: IssuingCAState) -> IssuingCA {
        IssuingCA(
            id: id, subject: "CN=CA \(id)", sha256: "\(id)", serial: "\(id)", notBefore: .distantPast,
            notAfter: .distantFuture, state: state, createdAt: .distantPast, stateChangedAt: .distantPast)
    }

    @Test("activate moves the target to active and the active CA to retiring")
    func activate() {
        let cas = [Self.ca(1, .active), Self.ca(2, .prepared), Self.ca(3, .retiring)]
        #expect(
            IssuingCATransitions.activate(2, in: cas)
                == .apply([.init(id: 2, from: .prepared, to: .active), .init(id: 1, from: .active, to: .retiring)]))
        // A retiring CA may sign again (a rollback before anything was tainted).
        #expect(
            IssuingCATransitions.activate(3, in: cas)
                == .apply([.init(id: 3, from: .retiring, to: .active), .init(id: 1, from: .active, to: .retiring)]))
    }

    @Test(
        "activate refuses the active, a tainted, a revoked or an unknown CA",
        arguments: [
            (1, "issuing CA 1 is already active"),
            (2, "issuing CA 2 is tainted: it never signs again; prepare a new one"),
            (3, "issuing CA 3 is revoked: it never signs again; prepare a new one"),
            (9, "no issuing CA 9"),
        ])
    func activateRefusals(id: Int, reason: String) {
        let cas = [Self.ca(1, .active), Self.ca(2, .tainted), Self.ca(3, .revoked)]
        #expect(IssuingCATransitions.activate(id, in: cas) == .refuse(reason: reason))
    }

    @Test("taint: a prepared or retiring CA; never the active one, never twice")
    func taint() {
        let cas = [Self.ca(1, .retiring), Self.ca(2, .active), Self.ca(3, .tainted), Self.ca(4, .prepared)]
        #expect(IssuingCATransitions.taint(1, in: cas) == .apply([.init(id: 1, from: .retiring, to: .tainted)]))
        #expect(IssuingCATransitions.taint(4, in: cas) == .apply([.init(id: 4, from: .prepared, to: .tainted)]))
        #expect(
            IssuingCATransitions.taint(2, in: cas)
                == .refuse(reason: "issuing CA 2 is the active CA: activate another one first (devid ca issuing activate)"))
        #expect(IssuingCATransitions.taint(3, in: cas) == .refuse(reason: "issuing CA 3 is already tainted"))
    }

    @Test("revoke: refused for the active CA, twice, or while online devices hold its LDevIDs without force")
    func revoke() {
        let cas = [Self.ca(1, .tainted), Self.ca(2, .active), Self.ca(3, .revoked)]
        #expect(
            IssuingCATransitions.revoke(1, in: cas, onlineHolders: 0, force: false)
                == .apply([.init(id: 1, from: .tainted, to: .revoked)]))
        #expect(
            IssuingCATransitions.revoke(1, in: cas, onlineHolders: 4, force: false)
                == .refuse(
                    reason: "4 online device(s) still hold LDevIDs of issuing CA 1: taint it and wait for them to "
                        + "rotate (devid rotate status), or revoke with --force"))
        #expect(
            IssuingCATransitions.revoke(1, in: cas, onlineHolders: 4, force: true)
                == .apply([.init(id: 1, from: .tainted, to: .revoked)]))
        #expect(
            IssuingCATransitions.revoke(2, in: cas, onlineHolders: 0, force: true)
                == .refuse(reason: "issuing CA 2 is the active CA: activate another one and taint this one first"))
        #expect(
            IssuingCATransitions.revoke(3, in: cas, onlineHolders: 0, force: true)
                == .refuse(reason: "issuing CA 3 is already revoked"))
    }
}
