//! Upper bounds on every duration a person can set (configuration file, channel and
//! domain policies, consumer groups, per-message `?ttl=`, nack delays).
//!
//! Timers are `Instant + duration`, which panics when the sum does not fit; an
//! unbounded setting such as `retry.max_delay = "100000000000years"` would take down
//! the task that arms it. Bounding the values where they enter keeps every such sum
//! far from overflow. This module owns the limits and the one check; it does not own
//! the timers.

use std::time::Duration;

/// Longest lifetime: message TTLs, retention, idle TTLs, peer expiry (10 years).
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Longest timer between two attempts: ack timeouts, retry and backoff delays, leases,
/// breaker open time, discovery and NATS intervals (1 day).
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// Longest nack delay (7 days): a message given back waits at most this long.
pub const MAX_NACK_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Checks `value` against `max`; the error names `key` and both values.
///
/// # Examples
///
/// ```
/// use rmds_agent::durations::{check, MAX_TIMER};
/// use std::time::Duration;
/// assert!(check("retry.max_delay", Duration::from_secs(60), MAX_TIMER).is_ok());
/// let e = check("retry.max_delay", Duration::from_secs(2 * 86_400), MAX_TIMER).unwrap_err();
/// assert!(e.contains("retry.max_delay"));
/// ```
pub fn check(key: &str, value: Duration, max: Duration) -> Result<(), String> {
    if value > max {
        return Err(format!(
            "{key} must be at most {} (got {})",
            humantime::format_duration(max),
            humantime::format_duration(value)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn given_values_at_and_past_a_bound_when_checked_then_only_larger_ones_fail() {
        assert!(check("ttl", MAX_LIFETIME, MAX_LIFETIME).is_ok());
        let e = check("ttl", MAX_LIFETIME + Duration::from_secs(1), MAX_LIFETIME).unwrap_err();
        assert!(e.starts_with("ttl must be at most"), "{e}");
        let huge = humantime::parse_duration("500000000000years").unwrap();
        assert!(check("retry_max", huge, MAX_TIMER).is_err());
    }

    #[test]
    fn given_the_largest_bound_when_added_to_now_then_no_overflow() {
        let now = Instant::now();
        assert!(now.checked_add(MAX_LIFETIME).is_some());
        // What the bound prevents: an unbounded setting does overflow.
        let huge = humantime::parse_duration("500000000000years").unwrap();
        assert!(now.checked_add(huge).is_none());
    }
}
