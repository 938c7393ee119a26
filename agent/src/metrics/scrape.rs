//! Gauges read at scrape time rather than counted: per-stream backlog, messages in
//! flight and oldest-message age (labelled by receiver and channel, at most
//! `stats.max_stream_series` streams, the busiest first), per-peer liveness, and
//! the process's resources. The `/metrics` handler reads them from the store and
//! `/proc`, stores a snapshot here, then renders; nothing on a message's path
//! touches this.

use crate::stats::resources::Resources;
use crate::store::outbox::StreamGauge;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::Mutex;

/// What the last scrape read.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Streams shown with labels.
    pub streams: Vec<StreamGauge>,
    /// Streams left out by the series bound.
    pub omitted: u64,
    /// When the snapshot was taken (ms), for oldest-message ages.
    pub now_ms: i64,
    /// (peer, online).
    pub peers: Vec<(String, bool)>,
    /// This process's resources.
    pub resources: Resources,
}

/// The collector registered with the agent's registry.
#[derive(Debug, Default)]
pub struct ScrapeGauges {
    snapshot: Mutex<Snapshot>,
}

impl ScrapeGauges {
    /// Replaces the snapshot. `streams` are cut to the `max` busiest (largest
    /// backlog, then oldest message).
    pub fn set(&self, mut snapshot: Snapshot, max: usize) {
        if snapshot.streams.len() > max {
            snapshot.streams.sort_by(|a, b| {
                b.backlog
                    .cmp(&a.backlog)
                    .then(a.oldest_queued_at.cmp(&b.oldest_queued_at))
            });
            snapshot.omitted = (snapshot.streams.len() - max) as u64;
            snapshot.streams.truncate(max);
            snapshot
                .streams
                .sort_by(|a, b| (&a.receiver, &a.channel).cmp(&(&b.receiver, &b.channel)));
        }
        if let Ok(mut s) = self.snapshot.lock() {
            *s = snapshot;
        }
    }
}

type Labels<'a> = [(&'static str, &'a str); 2];

fn stream_family<V: EncodeGaugeValue + std::fmt::Debug + Send + Sync + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    s: &Snapshot,
    value: impl Fn(&StreamGauge) -> V,
) -> Result<(), std::fmt::Error> {
    if s.streams.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for g in &s.streams {
        let labels: Labels = [("receiver", &g.receiver), ("channel", &g.channel)];
        ConstGauge::new(value(g)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V: EncodeGaugeValue + std::fmt::Debug + Send + Sync + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: Option<V>,
) -> Result<(), std::fmt::Error> {
    match v {
        Some(v) => ConstGauge::new(v).encode(encoder.encode_descriptor(
            name,
            help,
            None,
            MetricType::Gauge,
        )?),
        None => Ok(()),
    }
}

impl Collector for ScrapeGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = match self.snapshot.lock() {
            Ok(s) => s.clone(),
            Err(_) => return Ok(()),
        };
        let e = &mut encoder;
        stream_family(
            e,
            "stream_backlog_messages",
            "Undelivered messages (queued or sent, not acknowledged) per receiver and channel",
            &s,
            |g| g.backlog as i64,
        )?;
        stream_family(
            e,
            "stream_in_flight_messages",
            "Messages sent and not yet acknowledged per receiver and channel",
            &s,
            |g| g.in_flight as i64,
        )?;
        let now = s.now_ms;
        stream_family(
            e,
            "stream_oldest_age_seconds",
            "Age of the oldest undelivered message per receiver and channel (0 when none)",
            &s,
            |g| {
                g.oldest_queued_at
                    .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0)
            },
        )?;
        gauge(
            e,
            "stream_series_omitted",
            "Streams left out of the per-stream series by stats.max_stream_series",
            Some(s.omitted as i64),
        )?;
        if !s.peers.is_empty() {
            let mut family = e.encode_descriptor(
                "peer_up",
                "1 while a known peer is online (heard from within node_offline_timeout), else 0",
                None,
                MetricType::Gauge,
            )?;
            for (peer, online) in &s.peers {
                let labels = [("peer", peer.as_str())];
                ConstGauge::new(*online as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let r = &s.resources;
        if let Some(cpu) = r.cpu_seconds {
            ConstCounter::new(cpu).encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time used by the agent, in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        let f = |v: Option<u64>| v.map(|v| v.min(i64::MAX as u64) as i64);
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory of the agent in bytes",
            f(r.rss_bytes),
        )?;
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors of the agent",
            f(r.open_files),
        )?;
        gauge(
            e,
            "process_max_fds",
            "The agent's limit on open file descriptors",
            f(r.max_open_files),
        )?;
        gauge(e, "process_threads", "Threads of the agent", f(r.threads))?;
        gauge(
            e,
            "store_db_bytes",
            "Size of the SQLite database file in bytes",
            f(r.db_bytes),
        )?;
        gauge(
            e,
            "store_wal_bytes",
            "Size of the SQLite write-ahead log in bytes",
            f(r.wal_bytes),
        )?;
        gauge(
            e,
            "disk_free_bytes",
            "Bytes available to the agent on the data directory's file system",
            f(r.disk_free_bytes),
        )?;
        gauge(
            e,
            "disk_total_bytes",
            "Size of the data directory's file system in bytes",
            f(r.disk_total_bytes),
        )?;
        Ok(())
    }
}
