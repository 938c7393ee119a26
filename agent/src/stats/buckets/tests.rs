use super::*;
use crate::stats::ReceiverGauge;

fn sample(at: i64, published: u64, backlog: u64) -> Sample {
    Sample {
        at,
        boot: 1,
        deltas: [("published".to_string(), published)].into_iter().collect(),
        totals: BTreeMap::new(),
        gauges: Gauges {
            backlog,
            unrouted: 0,
            receivers: [(
                "bob".to_string(),
                ReceiverGauge {
                    backlog,
                    oldest_age_ms: backlog * 100,
                },
            )]
            .into_iter()
            .collect(),
        },
    }
}

#[test]
fn given_a_period_and_granularity_then_there_are_ceil_period_over_granularity_aligned_buckets() {
    let p = Plan::new(3_725_500, 3_600_000, 60_000);
    assert_eq!(p.buckets, 60);
    assert_eq!(p.start % 60_000, 0);
    // The last bucket holds now.
    assert_eq!(p.index(3_725_500), Some(59));
    assert_eq!(p.end(), 3_780_000);
    assert_eq!(p.start, 3_780_000 - 60 * 60_000);
    assert_eq!(p.index(p.start - 1), None);
    assert_eq!(p.index(p.end()), None);
    // Not a multiple: rounded up.
    assert_eq!(Plan::new(10_000, 90_000, 60_000).buckets, 2);
    // Granularity equal to the period: one bucket.
    assert_eq!(Plan::new(10_000, 60_000, 60_000).buckets, 1);
}

#[test]
fn given_samples_then_each_bucket_sums_its_increases_and_the_totals_match() {
    let plan = Plan::new(10_999, 10_000, 1_000);
    assert_eq!(plan.start, 1_000);
    let samples = vec![
        sample(500, 100, 0), // before the period: ignored
        sample(1_200, 2, 1),
        sample(1_700, 3, 4),
        sample(1_900, 0, 2),
        sample(5_000, 7, 0),
        sample(10_500, 1, 9),
        sample(11_000, 50, 0), // after the period: ignored
    ];
    let b = bucketize(&plan, &["published", "delivered"], &samples);
    assert_eq!(b.len(), 10);
    assert_eq!(b[0].start, 1_000);
    assert_eq!(b[0].samples, 3);
    assert_eq!(b[0].counters["published"], 5);
    assert_eq!(b[0].counters["delivered"], 0);
    assert_eq!(b[0].backlog, Some(2));
    assert_eq!(b[0].backlog_max, Some(4));
    assert_eq!(
        b[0].receivers["bob"],
        ReceiverBucket {
            backlog: 2,
            backlog_max: 4,
            oldest_age_ms_max: 400
        }
    );
    assert_eq!(b[1].samples, 0);
    assert_eq!(b[1].backlog, None);
    assert_eq!(b[1].counters["published"], 0);
    assert_eq!(b[4].counters["published"], 7);
    assert_eq!(b[9].counters["published"], 1);
    let t = totals(&b);
    assert_eq!(t["published"], 13);
    assert_eq!(t["delivered"], 0);
}

#[test]
fn given_any_granularity_then_the_totals_do_not_depend_on_it() {
    let samples: Vec<Sample> = (0..100)
        .map(|i| sample(1_000 + i * 370, i as u64 % 7, 0))
        .collect();
    let expected: u64 = samples.iter().map(|s| s.deltas["published"]).sum();
    for g in [370, 1_000, 3_333, 10_000, 40_000] {
        let plan = Plan::new(1_000 + 99 * 370, 40_000, g);
        let b = bucketize(&plan, &["published"], &samples);
        assert_eq!(b.len(), plan.buckets);
        assert_eq!(totals(&b)["published"], expected, "granularity {g}");
    }
}

#[test]
fn given_times_before_the_epoch_or_huge_values_then_no_overflow() {
    let p = Plan::new(-5_000, 10_000, 3_000);
    assert_eq!(p.buckets, 4);
    assert!(p.index(-5_000).is_some());
    let p = Plan::new(i64::MAX, i64::MAX, 1);
    assert!(p.end() >= p.start);
}
