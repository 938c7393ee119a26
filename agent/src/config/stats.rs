//! `[stats]`: the sampled history behind `GET /v1/stats?period=…&granularity=…` and
//! `GET /v1/resources/history`, and the bound on labelled series in `/metrics`.
//! The sampler itself lives in `stats/`; this file owns the keys and their checks.

use super::{invalid, ConfigError};
use crate::durations::{MAX_LIFETIME, MAX_TIMER};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Shortest sample interval: a sample costs a few reads and one small write.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Most samples the ring may hold (`retention / sample_interval`).
pub const MAX_SAMPLES: u64 = 1_000_000;

/// Sampled history settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// How often the counters, backlogs and resources are sampled into SQLite (one
    /// row per interval).
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// How long samples are kept; older rows are deleted at every sample, so the ring
    /// holds at most `retention / sample_interval` rows. The longest `period` a
    /// query may ask for.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Most (receiver, channel) streams shown with labels in `/metrics` (the busiest
    /// first); the rest are counted in `rmds_stream_series_omitted`.
    pub max_stream_series: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            sample_interval: Duration::from_secs(10),
            retention: Duration::from_secs(24 * 3600),
            max_stream_series: 500,
        }
    }
}

impl StatsConfig {
    /// Rows the ring keeps at most.
    pub fn max_samples(&self) -> u64 {
        let interval = self.sample_interval.as_millis().max(1);
        (self.retention.as_millis() / interval) as u64 + 1
    }

    /// Checks every key; the error names it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sample_interval < MIN_SAMPLE_INTERVAL {
            return Err(invalid(
                "stats.sample_interval",
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_SAMPLE_INTERVAL)
                ),
            ));
        }
        crate::durations::check("stats.sample_interval", self.sample_interval, MAX_TIMER)
            .map_err(|e| invalid("stats.sample_interval", e))?;
        crate::durations::check("stats.retention", self.retention, MAX_LIFETIME)
            .map_err(|e| invalid("stats.retention", e))?;
        if self.retention < self.sample_interval {
            return Err(invalid(
                "stats.retention",
                "must be at least stats.sample_interval",
            ));
        }
        if self.max_samples() > MAX_SAMPLES {
            return Err(invalid(
                "stats.retention",
                format!(
                    "keeps {} samples at this sample_interval; at most {MAX_SAMPLES} (sample less often or keep less)",
                    self.max_samples()
                ),
            ));
        }
        if self.max_stream_series > 100_000 {
            return Err(invalid("stats.max_stream_series", "must be at most 100000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_defaults_then_valid_and_the_ring_is_a_day_of_ten_second_samples() {
        let c = StatsConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_samples(), 8641);
    }

    #[test]
    fn given_bad_values_then_the_key_is_named() {
        let bad = [
            StatsConfig {
                sample_interval: Duration::from_millis(10),
                ..StatsConfig::default()
            },
            StatsConfig {
                retention: Duration::from_secs(1),
                ..StatsConfig::default()
            },
            StatsConfig {
                sample_interval: Duration::from_secs(1),
                retention: Duration::from_secs(365 * 24 * 3600),
                ..StatsConfig::default()
            },
            StatsConfig {
                sample_interval: Duration::from_secs(2 * 24 * 3600),
                ..StatsConfig::default()
            },
        ];
        for c in bad {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("stats."), "{e}");
        }
    }
}
