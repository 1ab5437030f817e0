import Foundation
import NIOCore
import Synchronization

/// The answers to `GET /ocsp/<request>` without a nonce, by the request as it appears in the path, ready to send:
/// a hit takes one lock and copies no bytes, without entering the ``RevocationPublisher`` actor, parsing the
/// request or encoding the answer again.
///
/// It holds only what the publisher's own cache holds, for no longer (`cacheUntil`, half the answer's validity),
/// and ``RevocationPublisher/invalidate()`` empties both at once: a revocation is answered `revoked` from the next
/// request on. An answer computed while an invalidation happened is not stored (``epoch``).
final class OCSPGetCache: Sendable {
    struct Entry: Sendable {
        /// The DER OCSP response.
        let body: ByteBuffer
        let nextUpdate: Date
        /// `Expires` (IMF-fixdate of `nextUpdate`).
        let expires: String
        let cacheUntil: Date
    }

    /// At most this many paths; the table is emptied when full (as the publisher's own cache is).
    static let maximumEntries = 10_000

    private struct State {
        var entries: [String: Entry] = [:]
        var epoch: UInt64 = 0
        /// `Last-Modified` for the current second.
        var stamp: (second: Int, text: String)?
    }

    private let state = Mutex(State())

    init() {}

    /// Read before computing an answer; pass it to ``store(_:for:epoch:)``.
    var epoch: UInt64 { state.withLock { $0.epoch } }

    func entry(for path: String, now: Date) -> Entry? {
        state.withLock { state in
            guard let entry = state.entries[path] else { return nil }
            guard entry.cacheUntil > now else {
                state.entries[path] = nil
                return nil
            }
            return entry
        }
    }

    func store(_ entry: Entry, for path: String, epoch: UInt64) {
        state.withLock { state in
            guard state.epoch == epoch else { return }
            if state.entries.count >= Self.maximumEntries { state.entries.removeAll(keepingCapacity: true) }
            state.entries[path] = entry
        }
    }

    func removeAll() {
        state.withLock { state in
            state.epoch &+= 1
            state.entries.removeAll(keepingCapacity: true)
        }
    }

    var count: Int { state.withLock { $0.entries.count } }

    /// The IMF-fixdate of `now`, rebuilt once a second.
    func httpDate(_ now: Date) -> String {
        let second = Int(now.timeIntervalSince1970.rounded(.down))
        return state.withLock { state in
            if let stamp = state.stamp, stamp.second == second { return stamp.text }
            let text = IMFFixdate.string(from: now)
            state.stamp = (second, text)
            return text
        }
    }
}
