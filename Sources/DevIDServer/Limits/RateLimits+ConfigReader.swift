public import Configuration

extension RateLimits {
    /// Reads the back-pressure keys (JSON file key → environment variable); see docs/configuration.md.
    ///
    /// - `limits.source.per.second`, `limits.source.burst` → `DEVID_LIMITS_SOURCE_PER_SECOND`, `…_BURST`
    ///   (default 50, 500; each IP address, on EST, the check-in and the admin API)
    /// - `limits.device.per.second`, `limits.device.burst` (default 2, 30; each device, on EST and the check-in)
    /// - `limits.claim.token.per.second`, `limits.claim.token.burst` (default 2, 30; each claim token, on EST)
    /// - `limits.tenant.per.second`, `limits.tenant.burst` (default 100, 2000; each tenant, on EST and the check-in)
    /// - `limits.global.per.second`, `limits.global.burst` (default 300, 5000; all of EST, all check-ins)
    /// - `limits.enrollments.in.flight` → `DEVID_LIMITS_ENROLLMENTS_IN_FLIGHT` (default 64; 0 = no cap)
    /// - `limits.renewal.reserve` → `DEVID_LIMITS_RENEWAL_RESERVE` (default 16)
    /// - `limits.overload.retry.after.seconds` → `DEVID_LIMITS_OVERLOAD_RETRY_AFTER_SECONDS` (default 5)
    ///
    /// A `per.second` of 0 turns that bucket off.
    public init(reader: ConfigReader) {
        self.init()
        func rate(_ perSecondKey: ConfigKey, _ burstKey: ConfigKey, _ current: Rate) -> Rate {
            Rate(
                perSecond: reader.double(forKey: perSecondKey, default: current.perSecond),
                burst: reader.double(forKey: burstKey, default: current.burst))
        }
        perSource = rate("limits.source.per.second", "limits.source.burst", perSource)
        perDevice = rate("limits.device.per.second", "limits.device.burst", perDevice)
        perClaimToken = rate("limits.claim.token.per.second", "limits.claim.token.burst", perClaimToken)
        perTenant = rate("limits.tenant.per.second", "limits.tenant.burst", perTenant)
        global = rate("limits.global.per.second", "limits.global.burst", global)
        maxEnrollmentsInFlight = reader.int(forKey: "limits.enrollments.in.flight", default: maxEnrollmentsInFlight)
        renewalReserve = reader.int(forKey: "limits.renewal.reserve", default: renewalReserve)
        overloadRetryAfterSeconds = reader.int(
            forKey: "limits.overload.retry.after.seconds", default: overloadRetryAfterSeconds)
    }
}
