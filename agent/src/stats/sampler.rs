//! The sampler task: every `stats.sample_interval`, one row with the counters'
//! increase since the last stored sample, the backlogs and the resources; then the
//! ring is swept. A sample that cannot be stored (full disk) is counted in
//! `rmds_stats_sample_failures_total` and its increase is carried into the next
//! one, so sums over a period stay equal to the counters' differences. A last
//! sample is taken at shutdown, so a clean stop loses no counts.

use super::{counter_values, Gauges, ReceiverGauge, Stats};
use crate::metrics::Metrics;
use crate::store::{self, now_ms, samples::SampleRow, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs until `stop`, then takes a final sample.
pub async fn run(stats: Stats, store: Store, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(stats.config().sample_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Counters start at 0 with the process: the first sample carries everything
    // counted since the start.
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        sample(&stats, &store, &metrics, &mut stored).await;
    }
    let last = sample(&stats, &store, &metrics, &mut stored);
    if tokio::time::timeout(Duration::from_secs(2), last)
        .await
        .is_err()
    {
        tracing::debug!("final stats sample timed out");
    }
}

/// Per-receiver backlog and oldest-message age from the per-stream gauges: every
/// receiver this node has a stream to, 0 when nothing waits for it.
fn receivers(streams: &[store::outbox::StreamGauge], now: i64) -> BTreeMap<String, ReceiverGauge> {
    let mut out: BTreeMap<String, ReceiverGauge> = BTreeMap::new();
    for s in streams {
        let r = out.entry(s.receiver.clone()).or_default();
        r.backlog += s.backlog;
        if let Some(t) = s.oldest_queued_at {
            r.oldest_age_ms = r.oldest_age_ms.max((now - t).max(0) as u64);
        }
    }
    out
}

async fn sample(
    stats: &Stats,
    store: &Store,
    metrics: &Arc<Metrics>,
    stored: &mut BTreeMap<String, u64>,
) {
    let totals = counter_values(metrics);
    let gauges = store
        .reads
        .read(|c| {
            Ok((
                store::outbox::stream_gauges(c)?,
                store::outbox::unrouted_count(c)?,
            ))
        })
        .await;
    let now = now_ms();
    let gauges = match gauges {
        Ok((streams, unrouted)) => Gauges {
            backlog: streams.iter().map(|s| s.backlog).sum(),
            unrouted,
            receivers: receivers(&streams, now),
        },
        Err(e) => {
            tracing::debug!(error = %e, "cannot read backlogs for a stats sample");
            Gauges::default()
        }
    };
    let s = stats.clone();
    let resources = tokio::task::spawn_blocking(move || s.read_resources(true))
        .await
        .unwrap_or_default();
    let deltas: BTreeMap<String, u64> = totals
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(stored.get(k).copied().unwrap_or(0)),
            )
        })
        .collect();
    let row = SampleRow {
        at: now,
        boot: store.boot,
        deltas: json(&nonzero(&deltas)),
        totals: json(&nonzero(&totals)),
        gauges: json(&gauges),
        resources: json(&resources),
    };
    let retention_ms = stats.config().retention.as_millis().min(i64::MAX as u128) as i64;
    let keep = stats.config().max_samples();
    let r = store
        .writer
        .run(move |c| {
            store::samples::insert(c, &row)?;
            store::samples::sweep(c, now.saturating_sub(retention_ms), keep)
        })
        .await;
    match r {
        Ok(_) => *stored = totals,
        Err(e) => {
            metrics.stats_sample_failures.inc();
            tracing::debug!(error = %e, "cannot store a stats sample; its counts go into the next");
        }
    }
}

/// Only the counters that are not 0 (a missing counter reads as 0), so that an
/// idle agent's samples stay small.
fn nonzero(m: &BTreeMap<String, u64>) -> BTreeMap<&str, u64> {
    m.iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// JSON text of a sample field (`{}` if it cannot be written, which these types
/// never fail to be).
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}
