//! Channel policies: per channel, inheriting the channel's domain's, then the
//! configuration file's. Every field is optional at each level; the effective policy
//! takes the most specific value given.
//!
//! Durations are bounded (`durations.rs`): [`Policy::validate`] refuses larger ones,
//! and [`Policy::resolve`] caps them again, so that a policy stored before the bounds
//! existed cannot overflow a timer either.

use crate::config::{DeliveryConfig, Overflow};
use crate::durations::{self, MAX_LIFETIME, MAX_TIMER};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What happens to a message published while no reader of its channel is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unrouted {
    /// Keep it and deliver it to every reader discovered before it expires (default).
    #[default]
    Keep,
    /// Refuse the publish with 409 `no_readers`; nothing is stored.
    Reject,
}

/// Retry settings of a policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Rounds to an online receiver before the message is dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Backoff added after the first unanswered round.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub initial_delay: Option<Duration>,
    /// Backoff growth per round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Largest backoff.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay: Option<Duration>,
}

/// Circuit breaker settings of a policy (per receiver of the channel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Off by default; a policy that names any breaker setting turns it on unless
    /// this says false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Failed share of the recent rounds (0..1) that opens the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<f64>,
    /// Rounds to look at before the share counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// Successful probes in half-open state that close the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// How long an open circuit stays open before probing (half-open).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_timeout: Option<Duration>,
}

/// A channel policy as declared (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Default time to live of a message.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// Most undelivered messages per receiver before the overflow policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages_per_receiver: Option<u64>,
    /// `reject` or `drop_oldest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker per receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerPolicy>,
    /// Snappy compression of payloads above the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<bool>,
    /// Messages published while no reader is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrouted: Option<Unrouted>,
}

/// The circuit breaker as it applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Breaker {
    /// Failed share that opens the circuit.
    pub error_threshold: f64,
    /// Rounds looked at before opening.
    pub min_requests: u32,
    /// Probes that close it again.
    pub success_threshold: u32,
    /// Open time before a probe.
    #[serde(with = "humantime_serde")]
    pub open_timeout: Duration,
}

/// The policy in force for a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    /// Default TTL.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Backlog limit per receiver.
    pub max_messages_per_receiver: u64,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Rounds before dead-lettering.
    pub max_attempts: u32,
    /// First backoff.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Backoff growth.
    pub retry_factor: f64,
    /// Largest backoff.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Circuit breaker, when on.
    pub circuit_breaker: Option<Breaker>,
    /// Compression.
    pub compression: bool,
    /// Unrouted handling.
    pub unrouted: Unrouted,
}

impl Policy {
    /// `self` with the fields it leaves open taken from `base`.
    pub fn over(&self, base: &Policy) -> Policy {
        let retry = match (&self.retry, &base.retry) {
            (Some(a), Some(b)) => Some(RetryPolicy {
                max_attempts: a.max_attempts.or(b.max_attempts),
                initial_delay: a.initial_delay.or(b.initial_delay),
                factor: a.factor.or(b.factor),
                max_delay: a.max_delay.or(b.max_delay),
            }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let circuit_breaker = match (&self.circuit_breaker, &base.circuit_breaker) {
            (Some(a), Some(b)) => Some(BreakerPolicy {
                enabled: a.enabled.or(b.enabled),
                error_threshold: a.error_threshold.or(b.error_threshold),
                min_requests: a.min_requests.or(b.min_requests),
                success_threshold: a.success_threshold.or(b.success_threshold),
                open_timeout: a.open_timeout.or(b.open_timeout),
            }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Policy {
            ttl: self.ttl.or(base.ttl),
            max_messages_per_receiver: self
                .max_messages_per_receiver
                .or(base.max_messages_per_receiver),
            overflow: self.overflow.or(base.overflow),
            retry,
            circuit_breaker,
            compression: self.compression.or(base.compression),
            unrouted: self.unrouted.or(base.unrouted),
        }
    }

    /// Every duration with its key and upper bound.
    fn durations(&self) -> Vec<(&'static str, Option<Duration>, Duration)> {
        let (r, b) = (self.retry.as_ref(), self.circuit_breaker.as_ref());
        vec![
            ("ttl", self.ttl, MAX_LIFETIME),
            (
                "retry.initial_delay",
                r.and_then(|r| r.initial_delay),
                MAX_TIMER,
            ),
            ("retry.max_delay", r.and_then(|r| r.max_delay), MAX_TIMER),
            (
                "circuit_breaker.open_timeout",
                b.and_then(|b| b.open_timeout),
                MAX_TIMER,
            ),
        ]
    }

    /// Checks values a person could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl.is_some_and(|t| t.is_zero()) {
            return Err("ttl must be greater than zero".into());
        }
        for (key, d, max) in self.durations() {
            if let Some(d) = d {
                durations::check(key, d, max)?;
            }
        }
        if self.max_messages_per_receiver == Some(0) {
            return Err("max_messages_per_receiver must be at least 1".into());
        }
        if let Some(r) = &self.retry {
            if r.max_attempts == Some(0) {
                return Err("retry.max_attempts must be at least 1".into());
            }
            if r.factor.is_some_and(|f| !(1.0..=100.0).contains(&f)) {
                return Err("retry.factor must be between 1 and 100".into());
            }
            if r.max_delay.is_some_and(|d| d.is_zero()) {
                return Err("retry.max_delay must be greater than zero".into());
            }
        }
        if let Some(b) = &self.circuit_breaker {
            if b.error_threshold.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
                return Err("circuit_breaker.error_threshold must be in (0, 1]".into());
            }
            if b.min_requests == Some(0) || b.success_threshold == Some(0) {
                return Err(
                    "circuit_breaker.min_requests and success_threshold must be at least 1".into(),
                );
            }
            if b.open_timeout.is_some_and(|d| d.is_zero()) {
                return Err("circuit_breaker.open_timeout must be greater than zero".into());
            }
        }
        Ok(())
    }

    /// The effective policy: this one over the configuration file's delivery settings.
    pub fn resolve(&self, d: &DeliveryConfig) -> Effective {
        let r = self.retry.clone().unwrap_or_default();
        let circuit_breaker = self.circuit_breaker.as_ref().and_then(|b| {
            (b.enabled != Some(false)).then(|| Breaker {
                error_threshold: b.error_threshold.unwrap_or(0.5),
                min_requests: b.min_requests.unwrap_or(5),
                success_threshold: b.success_threshold.unwrap_or(1),
                open_timeout: b
                    .open_timeout
                    .unwrap_or(Duration::from_secs(30))
                    .min(MAX_TIMER),
            })
        });
        Effective {
            ttl: self.ttl.unwrap_or(d.message_expiry).min(MAX_LIFETIME),
            max_messages_per_receiver: self
                .max_messages_per_receiver
                .unwrap_or(d.max_messages_per_receiver),
            overflow: self.overflow.unwrap_or(d.overflow),
            max_attempts: r.max_attempts.unwrap_or(d.max_retry_attempts),
            retry_initial: r.initial_delay.unwrap_or(d.retry_initial).min(MAX_TIMER),
            retry_factor: r.factor.unwrap_or(d.retry_factor),
            retry_max: r.max_delay.unwrap_or(d.retry_max).min(MAX_TIMER),
            circuit_breaker,
            compression: self.compression.unwrap_or(d.enable_compression),
            unrouted: self.unrouted.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_three_levels_then_the_most_specific_value_wins_field_by_field() {
        let config = DeliveryConfig::default();
        let domain = Policy {
            ttl: Some(Duration::from_secs(60)),
            retry: Some(RetryPolicy {
                max_attempts: Some(3),
                factor: Some(3.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let channel = Policy {
            retry: Some(RetryPolicy {
                max_attempts: Some(7),
                ..Default::default()
            }),
            overflow: Some(Overflow::DropOldest),
            ..Default::default()
        };
        let e = channel.over(&domain).resolve(&config);
        assert_eq!(e.ttl, Duration::from_secs(60));
        assert_eq!(e.max_attempts, 7);
        assert_eq!(e.retry_factor, 3.0);
        assert_eq!(e.retry_max, config.retry_max);
        assert_eq!(e.overflow, Overflow::DropOldest);
        assert!(e.circuit_breaker.is_none());
        let on = Policy {
            circuit_breaker: Some(BreakerPolicy {
                min_requests: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let b = on.resolve(&config).circuit_breaker.unwrap();
        assert_eq!(b.min_requests, 2);
        assert_eq!(b.error_threshold, 0.5);
    }

    #[test]
    fn given_bad_values_then_validation_names_them() {
        let p = Policy {
            retry: Some(RetryPolicy {
                factor: Some(0.5),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("retry.factor"));
        let p = Policy {
            circuit_breaker: Some(BreakerPolicy {
                error_threshold: Some(1.5),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("error_threshold"));
    }

    #[test]
    fn given_durations_past_their_bounds_when_validating_then_the_key_is_named() {
        let huge = humantime::parse_duration("100000000years").unwrap();
        let cases = [
            (
                "ttl",
                Policy {
                    ttl: Some(huge),
                    ..Default::default()
                },
            ),
            (
                "retry.max_delay",
                Policy {
                    retry: Some(RetryPolicy {
                        max_delay: Some(huge),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            (
                "retry.initial_delay",
                Policy {
                    retry: Some(RetryPolicy {
                        initial_delay: Some(Duration::from_secs(2 * 86_400)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            (
                "circuit_breaker.open_timeout",
                Policy {
                    circuit_breaker: Some(BreakerPolicy {
                        open_timeout: Some(huge),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
        ];
        for (key, p) in cases {
            let err = p.validate().unwrap_err();
            assert!(err.starts_with(key), "{key}: {err}");
        }
        let fine = Policy {
            ttl: Some(Duration::from_secs(5 * 365 * 86_400)),
            ..Default::default()
        };
        fine.validate().unwrap();
    }

    #[test]
    fn given_an_unvalidated_stored_policy_when_resolved_then_its_durations_are_capped() {
        let huge = humantime::parse_duration("500000000000years").unwrap();
        let stored = Policy {
            ttl: Some(huge),
            retry: Some(RetryPolicy {
                initial_delay: Some(huge),
                max_delay: Some(huge),
                ..Default::default()
            }),
            circuit_breaker: Some(BreakerPolicy {
                open_timeout: Some(huge),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = stored.resolve(&DeliveryConfig::default());
        assert_eq!(e.ttl, MAX_LIFETIME);
        assert_eq!((e.retry_initial, e.retry_max), (MAX_TIMER, MAX_TIMER));
        assert_eq!(e.circuit_breaker.unwrap().open_timeout, MAX_TIMER);
        assert!(std::time::Instant::now()
            .checked_add(e.retry_max + e.ttl)
            .is_some());
    }
}
