//! A lock-free histogram for the hot paths (publish commits, ACKs): one atomic
//! counter per bucket and an atomic sum, so observing takes no lock. The exporter's
//! own histogram takes a write lock per observation.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) for the time a publish waits for its commit: group commit
/// with `synchronous = full` costs an fsync, from well under a millisecond to a
/// slow disk's hundreds.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) from a send to its ACK: a round trip plus the receiver's
/// commit, up to ACK timeouts and outages.
pub const ACK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A histogram of seconds. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One counter per bound, plus one for +Inf (not cumulative).
    counts: Vec<AtomicU64>,
    /// Sum of observations in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Records `n` observations of `d`.
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        let i = self
            .inner
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.inner.bounds.len());
        self.inner.counts[i].fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// (sum in seconds, count, per-bucket counts with `f64::MAX` for +Inf). The
    /// count is the sum of the buckets, so a scrape never sees them disagree.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_observations_then_each_lands_in_its_first_bucket_and_the_sum_adds_up() {
        let h = Histogram::new(&[0.01, 0.1, 1.0]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(10));
        h.observe_n(Duration::from_millis(50), 3);
        h.observe(Duration::from_secs(5));
        h.observe_n(Duration::from_secs(1), 0);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 6);
        let counts: Vec<u64> = buckets.iter().map(|(_, c)| *c).collect();
        assert_eq!(counts, vec![2, 3, 0, 1]);
        assert_eq!(buckets.last().unwrap().0, f64::MAX);
        assert!((sum - 5.165).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn given_the_bucket_lists_then_they_ascend() {
        for b in [COMMIT_BUCKETS, ACK_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
