import DevIDPKI
import Foundation
import Logging
import Synchronization
import X509

/// The root's pre-signed CRLs (``RootCRLs``) as the server serves them at `/crl/root.crl`: read from
/// `DATA/ca/root-crl/` at most once a minute, so CRLs a root ceremony signs while the server runs
/// (`devid ca root-crl`) are served without a restart. A directory that cannot be read keeps what was loaded.
final class RootCRLCache: Sendable {
    static let reloadInterval: Duration = .seconds(60)

    private let directory: String
    private let root: Certificate
    private let logger: Logger
    private let state = Mutex<(loadedAt: ContinuousClock.Instant?, crls: RootCRLs)>((nil, RootCRLs(crls: [])))

    init(directory: String, root: Certificate, logger: Logger) {
        self.directory = directory
        self.root = root
        self.logger = logger
    }

    /// Reads the directory again at the next request (a ceremony on this machine just signed new CRLs).
    func reloadNow() {
        state.withLock { $0.loadedAt = nil }
    }

    /// Every pre-signed CRL, reloaded when the last read is over a minute old.
    var crls: RootCRLs {
        let now = ContinuousClock.now
        let cached = state.withLock { $0 }
        if let loadedAt = cached.loadedAt, now - loadedAt < Self.reloadInterval { return cached.crls }
        do {
            let loaded = try RootCRLs.load(directory: directory, root: root)
            state.withLock { $0 = (now, loaded) }
            return loaded
        } catch {
            logger.error("root CRLs not readable; serving the ones loaded before", metadata: ["error": "\(error)"])
            state.withLock { $0.loadedAt = now }
            return cached.crls
        }
    }
}
