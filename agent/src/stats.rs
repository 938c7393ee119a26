//! Sampled history: the counters, backlogs and resources over time.
//!
//! The sampler (`sampler.rs`, one task) takes a [`Sample`] every
//! `stats.sample_interval` and appends it to a ring in SQLite (`stats_samples`),
//! deleting what is older than `stats.retention`. `GET /v1/stats?period=` reads the
//! ring back and sorts it into buckets (`buckets.rs`, pure); `GET /v1/resources/…`
//! reads the resources (`resources.rs`). What a caller may ask for is checked in
//! `query.rs` (pure).

pub mod buckets;
pub mod query;
pub mod resources;
mod sampler;

pub use sampler::run;

use crate::config::StatsConfig;
use crate::metrics::Metrics;
use crate::store::samples::SampleRow;
use resources::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The counters a series shows, with the metric each one reads.
pub const COUNTERS: &[&str] = &[
    "published",
    "delivered",
    "acked",
    "resent",
    "dead_lettered",
    "expired",
    "dropped",
    "processed",
];

/// The current value of every counter in [`COUNTERS`]:
/// `published` messages accepted from local applications, `delivered` deliveries
/// acknowledged by their receiver, `acked` messages acknowledged by a consumer group
/// on this node, `resent` envelopes sent again, `dead_lettered`, `expired` and
/// `dropped` deliveries, `processed` messages received from peers.
pub fn counter_values(m: &Metrics) -> BTreeMap<String, u64> {
    let values = [
        m.published.get(),
        m.delivered.get(),
        m.group_acks.get(),
        m.resent_messages.get(),
        m.dead_lettered.get(),
        m.expired.get(),
        m.dropped.get(),
        m.processed.get(),
    ];
    COUNTERS
        .iter()
        .zip(values)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// One receiver's backlog in a sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverGauge {
    /// Undelivered messages for it, all channels.
    pub backlog: u64,
    /// Age of its oldest undelivered message (ms), 0 when none.
    pub oldest_age_ms: u64,
}

/// Backlogs in a sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauges {
    /// Undelivered messages, all receivers.
    pub backlog: u64,
    /// Messages waiting for a reader to be discovered.
    pub unrouted: u64,
    /// Per receiver.
    pub receivers: BTreeMap<String, ReceiverGauge>,
}

/// One sample, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// When (ms since the Unix epoch).
    pub at: i64,
    /// The boot of the process that took it.
    pub boot: u64,
    /// Each counter's increase since the previous sample of the same boot.
    pub deltas: BTreeMap<String, u64>,
    /// Each counter's value since that boot.
    pub totals: BTreeMap<String, u64>,
    /// Backlogs.
    pub gauges: Gauges,
}

impl Sample {
    /// Decodes a stored row; fields that do not parse read as empty (a sample is
    /// an observation, not a record anyone depends on).
    pub fn from_row(row: &SampleRow) -> Sample {
        Sample {
            at: row.at,
            boot: row.boot,
            deltas: serde_json::from_str(&row.deltas).unwrap_or_default(),
            totals: serde_json::from_str(&row.totals).unwrap_or_default(),
            gauges: serde_json::from_str(&row.gauges).unwrap_or_default(),
        }
    }
}

/// The resources of a stored row.
pub fn resources_of(row: &SampleRow) -> Resources {
    serde_json::from_str(&row.resources).unwrap_or_default()
}

/// The sampler's shared side: settings and the last CPU reading (for the CPU
/// percentage of `/v1/resources/current`). Cheap to clone.
#[derive(Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

struct Inner {
    config: StatsConfig,
    data_dir: PathBuf,
    /// (when, CPU seconds, percent over the interval before it).
    last_cpu: Mutex<Option<(Instant, f64, Option<f64>)>>,
}

impl Stats {
    /// The handle for an agent whose database lives in `data_dir`.
    pub fn new(config: StatsConfig, data_dir: &Path) -> Stats {
        Stats {
            inner: Arc::new(Inner {
                config,
                data_dir: data_dir.to_path_buf(),
                last_cpu: Mutex::new(None),
            }),
        }
    }

    /// Settings.
    pub fn config(&self) -> &StatsConfig {
        &self.inner.config
    }

    /// What a query may ask for.
    pub fn limits(&self) -> query::Limits {
        query::Limits {
            sample_interval: self.inner.config.sample_interval,
            retention: self.inner.config.retention,
        }
    }

    /// Reads the resources now (blocking). The CPU percentage covers the time
    /// since the last reading; with `advance` this reading becomes the last one
    /// (the sampler), otherwise a reading too close to the last one reports the
    /// last percentage.
    pub fn read_resources(&self, advance: bool) -> Resources {
        let mut r = resources::read(&self.inner.data_dir);
        let now = Instant::now();
        let Ok(mut last) = self.inner.last_cpu.lock() else {
            return r;
        };
        if let Some(cpu) = r.cpu_seconds {
            let pct = match *last {
                Some((at, before, prev)) => resources::cpu_percent(before, cpu, now - at)
                    .or(if advance { None } else { prev }),
                None => None,
            };
            r.cpu_percent = pct;
            if advance || last.is_none() {
                *last = Some((now, cpu, pct));
            }
        }
        r
    }
}
