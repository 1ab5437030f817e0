public import DevIDCore
public import Foundation

/// How the agent waits after a refused or failed request, as a public API so that a load generator simulating
/// devices (`devid-bench storm`) behaves exactly like the agent instead of re-implementing its rules.
public enum RetryAfter {
    /// `Retry-After` as seconds, read as the agent reads it: delay-seconds as given, or an HTTP date relative to the
    /// response's `Date` header (so a skewed device clock does not matter). Nil if absent or unreadable.
    public static func seconds(_ value: String?, dateHeader: String?) -> Int? {
        HTTPDate.retryAfterSeconds(value, serverDate: dateHeader.flatMap(HTTPDate.parse))
    }

    /// The wait before the next try after `failures` consecutive failed steps (0 for the first retry): the
    /// agent's ``Backoff`` with the server's `Retry-After` as a floor (plus up to a fifth of it as jitter).
    public static func delay(
        backoff: Backoff, failures: Int, retryAfter: Int?, using generator: inout some RandomNumberGenerator
    ) -> TimeInterval {
        backoff.delay(attempt: failures, retryAfter: retryAfter.map(TimeInterval.init), using: &generator)
    }
}
