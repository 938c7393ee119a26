//! Pure checks of what a caller may ask for: `period` and `granularity` of
//! `/v1/stats`, `limit` of `/v1/resources/history`. Every refusal says what was
//! wrong and what would work; the handler turns it into a 400.

use std::time::Duration;

/// Most buckets one answer may hold (a day at one minute).
pub const MAX_BUCKETS: u64 = 1440;

/// Buckets a period gets when no granularity is given (when the sample interval
/// allows as many).
pub const DEFAULT_BUCKETS: u64 = 60;

/// Most samples `/v1/resources/history` returns at once.
pub const MAX_HISTORY: u64 = 10_000;

/// Samples `/v1/resources/history` returns without `limit`.
pub const DEFAULT_HISTORY: u64 = 60;

/// What the sampler makes possible.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `stats.sample_interval`: finer buckets would mostly be empty.
    pub sample_interval: Duration,
    /// `stats.retention`: older samples are gone.
    pub retention: Duration,
}

/// A checked series query, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesQuery {
    /// Length of the period (ms).
    pub period: i64,
    /// Bucket width (ms).
    pub granularity: i64,
}

fn parse(name: &str, value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        format!("{name}: cannot read {value:?} as a duration ({e}); write it like 1h, 15m or 30s")
    })?;
    if d.as_millis() == 0 {
        return Err(format!("{name} must be at least 1ms (got {value:?})"));
    }
    Ok(d)
}

fn show(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// Checks `period` and `granularity`. `Ok(None)` when neither is given (the plain
/// counters); a granularity alone is refused.
pub fn series(
    period: Option<&str>,
    granularity: Option<&str>,
    limits: &Limits,
) -> Result<Option<SeriesQuery>, String> {
    let period = match (period, granularity) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(
                "granularity needs a period, e.g. /v1/stats?period=1h&granularity=1m".into(),
            )
        }
        (Some(p), _) => parse("period", p)?,
    };
    if period > limits.retention {
        return Err(format!(
            "period {} is longer than stats.retention ({}): older samples are not kept",
            show(period),
            show(limits.retention)
        ));
    }
    let interval = limits.sample_interval;
    let granularity = match granularity {
        Some(g) => parse("granularity", g)?,
        None => default_granularity(period, interval),
    };
    if granularity > period {
        return Err(format!(
            "granularity {} is longer than the period {}",
            show(granularity),
            show(period)
        ));
    }
    if granularity < interval {
        return Err(format!(
            "granularity {} is finer than stats.sample_interval ({}): most buckets would be empty",
            show(granularity),
            show(interval)
        ));
    }
    let (p, g) = (period.as_millis() as i64, granularity.as_millis() as i64);
    let buckets = (p as u64).div_ceil(g as u64);
    if buckets > MAX_BUCKETS {
        return Err(format!(
            "{} at {} is {buckets} buckets; at most {MAX_BUCKETS}: choose a coarser granularity",
            show(period),
            show(granularity)
        ));
    }
    Ok(Some(SeriesQuery {
        period: p,
        granularity: g,
    }))
}

/// `period / 60`, rounded up to whole seconds, and never finer than the sample
/// interval.
fn default_granularity(period: Duration, interval: Duration) -> Duration {
    let mut ms = (period.as_millis() as u64).div_ceil(DEFAULT_BUCKETS);
    if ms >= 1000 {
        ms = ms.div_ceil(1000) * 1000;
    }
    Duration::from_millis(ms).max(interval).min(period)
}

/// Checks `limit` of the resource history.
pub fn history_limit(limit: Option<&str>) -> Result<u64, String> {
    let Some(v) = limit else {
        return Ok(DEFAULT_HISTORY);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_HISTORY).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit must be a whole number from 1 to {MAX_HISTORY} (got {v:?})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        sample_interval: Duration::from_secs(10),
        retention: Duration::from_secs(24 * 3600),
    };

    fn q(p: Option<&str>, g: Option<&str>) -> Result<Option<SeriesQuery>, String> {
        series(p, g, &LIMITS)
    }

    #[test]
    fn given_no_parameters_then_no_series() {
        assert_eq!(q(None, None), Ok(None));
    }

    #[test]
    fn given_good_parameters_then_milliseconds() {
        assert_eq!(
            q(Some("1h"), Some("1m")),
            Ok(Some(SeriesQuery {
                period: 3_600_000,
                granularity: 60_000
            }))
        );
        // Without granularity: about 60 buckets, in whole seconds.
        assert_eq!(q(Some("1h"), None).unwrap().unwrap().granularity, 60_000);
        assert_eq!(q(Some("25m"), None).unwrap().unwrap().granularity, 25_000);
        // ... but never finer than the sample interval.
        assert_eq!(q(Some("1m"), None).unwrap().unwrap().granularity, 10_000);
        assert_eq!(q(Some("10s"), None).unwrap().unwrap().granularity, 10_000);
        assert!(q(Some(" 2h "), Some("10m")).unwrap().is_some());
    }

    #[test]
    fn given_bad_parameters_then_the_message_says_what_is_wrong() {
        let cases = [
            (None, Some("1m"), "needs a period"),
            (Some("soon"), None, "period: cannot read \"soon\""),
            (Some("60"), None, "period: cannot read"),
            (Some("1h"), Some("1 fortnight"), "granularity: cannot read"),
            (Some("0s"), None, "period must be at least"),
            (Some("1h"), Some("0s"), "granularity must be at least"),
            (Some("1m"), Some("1h"), "longer than the period"),
            (Some("1h"), Some("1s"), "finer than stats.sample_interval"),
            (Some("2days"), Some("1h"), "longer than stats.retention"),
            (Some("1day"), Some("30s"), "2880 buckets; at most 1440"),
            (Some("99999999999years"), None, "period"),
        ];
        for (p, g, want) in cases {
            let e = q(p, g).unwrap_err();
            assert!(e.contains(want), "{p:?} {g:?}: {e}");
        }
    }

    #[test]
    fn given_history_limits_then_only_1_to_max_pass() {
        assert_eq!(history_limit(None), Ok(DEFAULT_HISTORY));
        assert_eq!(history_limit(Some("5")), Ok(5));
        assert_eq!(history_limit(Some("10000")), Ok(10_000));
        for bad in ["0", "-1", "x", "10001", "1.5", ""] {
            assert!(history_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
