//! Pure bucketing of samples into a time series: which buckets a period has, and
//! what each holds.
//!
//! Buckets are aligned to multiples of the granularity since the Unix epoch (so
//! two queries a few seconds apart show the same minutes); the last one holds
//! `now` and is still filling. A period of `p` at granularity `g` has
//! `ceil(p / g)` buckets.
//!
//! Each sample carries every counter's increase since the previous sample of the
//! same process (the first sample after a start carries the counts since that
//! start), so a bucket's value is the sum of its samples' increases and the sum
//! over all buckets equals the counter's difference between the last sample
//! before the period and the last one in it. Gauges (backlogs, ages) are shown as
//! the last value in the bucket and its maximum.

use super::{Gauges, Sample};
use std::collections::BTreeMap;

/// Which buckets a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Start of the first bucket (ms since the Unix epoch).
    pub start: i64,
    /// Bucket width (ms), at least 1.
    pub granularity: i64,
    /// How many buckets.
    pub buckets: usize,
}

impl Plan {
    /// The buckets of `period` ms at `granularity` ms ending with the one that
    /// holds `now` (ms).
    pub fn new(now: i64, period: i64, granularity: i64) -> Plan {
        let g = granularity.max(1);
        let buckets = (period.max(1).saturating_add(g - 1) / g).max(1);
        let last = now.div_euclid(g) * g;
        Plan {
            start: last.saturating_sub((buckets - 1).saturating_mul(g)),
            granularity: g,
            buckets: buckets as usize,
        }
    }

    /// End of the last bucket (exclusive).
    pub fn end(&self) -> i64 {
        self.start
            .saturating_add(self.granularity.saturating_mul(self.buckets as i64))
    }

    /// The bucket holding `at`, if the plan covers it.
    pub fn index(&self, at: i64) -> Option<usize> {
        if at < self.start || at >= self.end() {
            return None;
        }
        Some(((at - self.start) / self.granularity) as usize)
    }
}

/// One receiver within a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverBucket {
    /// Its backlog at the bucket's last sample that had it.
    pub backlog: u64,
    /// Its largest backlog in the bucket.
    pub backlog_max: u64,
    /// The largest age of its oldest undelivered message in the bucket (ms).
    pub oldest_age_ms_max: u64,
}

/// One bucket of the series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Start (ms since the Unix epoch).
    pub start: i64,
    /// Samples that fell in it.
    pub samples: u64,
    /// Each counter's increase within the bucket (every counter asked for, 0 when
    /// nothing happened).
    pub counters: BTreeMap<String, u64>,
    /// Total backlog at the bucket's last sample; `None` without samples.
    pub backlog: Option<u64>,
    /// Largest total backlog in the bucket.
    pub backlog_max: Option<u64>,
    /// Unrouted messages at the bucket's last sample.
    pub unrouted: Option<u64>,
    /// Per-receiver backlog and oldest-message age.
    pub receivers: BTreeMap<String, ReceiverBucket>,
}

/// Sorts `samples` into the buckets of `plan`; samples outside it are ignored.
/// Every bucket lists every counter in `counters`; counters a sample does not
/// carry count as 0.
pub fn bucketize(plan: &Plan, counters: &[&str], samples: &[Sample]) -> Vec<Bucket> {
    let zero: BTreeMap<String, u64> = counters.iter().map(|c| (c.to_string(), 0)).collect();
    let mut out: Vec<Bucket> = (0..plan.buckets)
        .map(|i| Bucket {
            start: plan.start + i as i64 * plan.granularity,
            counters: zero.clone(),
            ..Bucket::default()
        })
        .collect();
    for s in samples {
        let Some(b) = plan.index(s.at).and_then(|i| out.get_mut(i)) else {
            continue;
        };
        b.samples += 1;
        for (name, v) in b.counters.iter_mut() {
            *v = v.saturating_add(s.deltas.get(name).copied().unwrap_or(0));
        }
        add_gauges(b, &s.gauges);
    }
    out
}

fn add_gauges(b: &mut Bucket, g: &Gauges) {
    b.backlog = Some(g.backlog);
    b.backlog_max = Some(b.backlog_max.unwrap_or(0).max(g.backlog));
    b.unrouted = Some(g.unrouted);
    for (node, r) in &g.receivers {
        let e = b.receivers.entry(node.clone()).or_default();
        e.backlog = r.backlog;
        e.backlog_max = e.backlog_max.max(r.backlog);
        e.oldest_age_ms_max = e.oldest_age_ms_max.max(r.oldest_age_ms);
    }
}

/// Each counter's sum over the buckets.
pub fn totals(buckets: &[Bucket]) -> BTreeMap<String, u64> {
    let mut t: BTreeMap<String, u64> = BTreeMap::new();
    for b in buckets {
        for (name, v) in &b.counters {
            let e = t.entry(name.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }
    t
}

#[cfg(test)]
mod tests;
