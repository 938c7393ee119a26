//! The benchmarks behind `rmds-bench` and `jetstream-bench`.
//!
//! ```text
//! cli         flags and the phase list
//! net         a bench network: nats-server + agents with production settings
//! rmds        the rmds publish and consume paths (the one place to add a new form)
//! jetstream   the same workloads on NATS JetStream
//! throughput  single / batch / outage+drain / wake-up phases
//! compare     rmds batch vs JetStream, alternated, ratio of medians
//! latency     open-loop latency at fixed rates (HdrHistogram)
//! memory      a backlog queued with NATS down: peak RSS and database size
//! limits      this machine: one fsync, core NATS pub/sub rate
//! idle        CPU of an idle agent with peers
//! ```
//!
//! Every phase prints readable lines and returns a JSON value; [`run`] collects them
//! into `--json FILE` (rewritten after every phase, so a failed run keeps what it has).

pub mod cli;
pub mod compare;
pub mod idle;
pub mod jetstream;
pub mod latency;
pub mod limits;
pub mod memory;
pub mod net;
pub mod procfs;
pub mod rmds;
pub mod throughput;

pub use cli::{Args, Phase};

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Collects every phase's numbers; writes them to the `--json` file after each phase.
pub struct Report {
    path: Option<PathBuf>,
    root: serde_json::Map<String, Value>,
}

impl Report {
    /// A report written to `path` (nothing is written without one).
    pub fn new(path: Option<PathBuf>) -> Report {
        Report {
            path,
            root: serde_json::Map::new(),
        }
    }

    /// Sets `key` and rewrites the file.
    pub fn put(&mut self, key: &str, v: Value) -> anyhow::Result<()> {
        self.root.insert(key.into(), v);
        if let Some(p) = &self.path {
            let text = serde_json::to_string_pretty(&Value::Object(self.root.clone()))?;
            std::fs::write(p, text + "\n")?;
        }
        Ok(())
    }
}

/// Runs the selected phases in order.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let ctx = net::Ctx::new(args).await?;
    let args = &ctx.args;
    let mut report = Report::new(args.json.clone());
    report.put("meta", ctx.meta())?;
    println!("{}", ctx.describe());
    for phase in args.phase_list() {
        println!("\n== {} ==", phase.name());
        let v = match phase {
            Phase::Limits => limits::run(&ctx).await?,
            Phase::Single => throughput::single(&ctx).await?,
            Phase::Batch => throughput::batch(&ctx).await?,
            Phase::Compare => compare::run(&ctx).await?,
            Phase::Latency => latency::run(&ctx).await?,
            Phase::Wakeup => throughput::wakeup(&ctx).await?,
            Phase::Outage => throughput::outage(&ctx).await?,
            Phase::Memory => memory::run(&ctx).await?,
            Phase::Idle => idle::run(&ctx).await?,
        };
        report.put(phase.name(), v)?;
    }
    if let Some(p) = &args.json {
        println!("\nnumbers written to {}", p.display());
    }
    Ok(())
}

/// Messages per second.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// The median of `v` (the mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Megabytes (10^6 bytes).
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A duration as JSON seconds.
pub fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

/// Percentiles of an HdrHistogram in microseconds, as JSON.
pub fn hist_json(h: &hdrhistogram::Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "mean_us": h.mean(),
    })
}

/// `p50 1.23 ms, p99 …, p99.9 …, max …` of a histogram in microseconds.
pub fn hist_line(h: &hdrhistogram::Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1e3;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

/// An empty latency histogram: 1 µs to 10 minutes, 3 significant digits.
pub fn new_hist() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| hdrhistogram::Histogram::new(3).expect("histogram"))
}
