import Crypto
import DevIDCore
import Foundation

/// The audit trail's hash chain, shared by every backend so that they all chain and verify alike.
///
/// `hash = lowercase hex SHA-256(UTF-8(previousHash + "|" + canonicalContent))`, where `canonicalContent` is
/// computed after the store has assigned the sequence. The first entry's `previousHash` is ``genesis``.
public enum AuditChain {
    /// The `previousHash` of the first entry: 64 zeros.
    public static let genesis = String(repeating: "0", count: 64)

    /// The chain hash of an entry whose predecessor's hash is `previous`.
    public static func hash(previous: String, content: String) -> String {
        let digest = SHA256.hash(data: Data((previous + "|" + content).utf8))
        return Hex.encode(digest)
    }

    /// Fills in `event`'s sequence and hashes so that it follows an entry with `previousSequence` and
    /// `previousHash` (nil for the first entry). The event's time is rounded to milliseconds, the precision
    /// stores keep, so the returned event equals the one read back later.
    static func chained(_ event: AuditEvent, afterSequence previousSequence: Int64?, hash previousHash: String?)
        -> AuditEvent
    {
        var event = event
        event.time = StoreTime.normalized(event.time)
        event.sequence = (previousSequence ?? 0) + 1
        event.previousHash = previousHash ?? genesis
        event.hash = hash(previous: event.previousHash, content: event.canonicalContent)
        return event
    }

    /// Walks the trail in ascending sequence order and reports the first entry that does not match.
    struct Verifier {
        private var expectedSequence: Int64 = 1
        private var previousHash = AuditChain.genesis

        /// Checks the next entry; returns false if it is out of place, points at the wrong predecessor or
        /// does not hash to what it says.
        mutating func accept(_ event: AuditEvent) -> Bool {
            guard event.sequence == expectedSequence, event.previousHash == previousHash,
                event.hash == AuditChain.hash(previous: event.previousHash, content: event.canonicalContent)
            else { return false }
            expectedSequence += 1
            previousHash = event.hash
            return true
        }
    }
}
