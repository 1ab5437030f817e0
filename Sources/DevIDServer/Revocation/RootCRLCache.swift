import DevIDPKI
import Foundation
import Logging
import Synchronization
import X509

/// The root's pre-signed CRLs (``RootCRLs``) as the server serves them at `/crl/root.crl`: read from
/// `DATA/ca/root-crl/` at most once a minute, so CRLs a root ceremony signs while the server runs
/// (`devid ca root-crl`) are served without a restart. A directory that cannot be read keeps what was loaded.
final class RootCRLCache: Sendable {
    /// The caches of the roots after the first (`/crl/root<id>.crl`), made when first asked for.
    final class Others: Sendable {
        private let caches = Mutex<[Int: RootCRLCache]>([:])
        private let layout: CALayout
        private let logger: Logger

        init(layout: CALayout, logger: Logger) {
            self.layout = layout
            self.logger = logger
        }

        /// The cache of root `id` of `roots`; nil for an unknown root.
        func cache(id: Int, roots: Roots) -> RootCRLCache? {
            guard id > 1, let root = roots.certificates[id] else { return nil }
            return caches.withLock { caches in
                if let cache = caches[id] { return cache }
                let cache = RootCRLCache(directory: layout.rootCRLDirectory(id: id), root: root, logger: logger)
                caches[id] = cache
                return cache
            }
        }

        func reloadNow() {
            caches.withLock { for cache in $0.values { cache.reloadNow() } }
        }
    }

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
