//! Open-loop latency: messages are scheduled at a fixed rate by their *intended* send
//! time and latency is measured from that time, so a slow answer delays the
//! measurement of every message queued behind it instead of hiding it (no coordinated
//! omission). Each payload carries its intended send time (microseconds since the
//! run's epoch); the consuming application computes receipt − intended on arrival and
//! records it in an HdrHistogram (the scheduler releases each message within tens
//! of microseconds of its intended time). Single-message publishes (one HTTP request per
//! message on keep-alive connections for rmds; one publish with ack wait for
//! JetStream), spread over `--latency-publishers` tasks.

use super::jetstream::{consume_loop, publish_acked, JsNet};
use super::net::Ctx;
use super::rmds::{publish_stamped, pull_loop, read_stamp, stamped, ws_loop};
use super::{hist_json, hist_line, new_hist};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Which consuming application is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// rmds, long-poll pull + ack (acks pipelined).
    Pull,
    /// rmds, WebSocket push (`/v1/ws`, credit, batched acks).
    Ws,
    /// NATS JetStream, publish with ack wait, pull consumer + ack.
    Jetstream,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Pull => "rmds pull",
            Mode::Ws => "rmds WebSocket",
            Mode::Jetstream => "JetStream",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Pull => "pull",
            Mode::Ws => "ws",
            Mode::Jetstream => "jetstream",
        }
    }
}

/// The consumer's side of the measurement.
struct Meter {
    epoch: Instant,
    e2e: Mutex<Histogram<u64>>,
    received: AtomicU64,
    warm: AtomicU64,
}

impl Meter {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A payload reached the application.
    fn on(&self, payload: &[u8]) {
        match read_stamp(payload) {
            Some(Some(t)) => {
                let d = self.now_us().saturating_sub(t).max(1);
                if let Ok(mut h) = self.e2e.lock() {
                    h.saturating_record(d);
                }
                self.received.fetch_add(1, Ordering::Relaxed);
            }
            Some(None) => {
                self.warm.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// Runs every `--latency-modes` × `--latency-rates` combination, each on fresh
/// processes.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let a = &ctx.args;
    println!(
        "latency: open loop, {} s per run, {} publisher tasks, {} B; latency from the *intended* send time (no coordinated omission) to the consuming application's receipt; JetStream fsync {}",
        a.latency_seconds, a.latency_publishers, a.size, ctx.js_sync
    );
    let mut runs = Vec::new();
    for &rate in &a.latency_rates {
        for &mode in &a.latency_modes {
            runs.push(one(ctx, mode, rate).await?);
        }
    }
    Ok(json!({
        "seconds": a.latency_seconds,
        "publishers": a.latency_publishers,
        "size": a.size,
        "ws_credit": a.ws_credit,
        "method": "open loop; latency from intended send time to application receipt",
        "runs": runs,
    }))
}

async fn one(ctx: &Ctx, mode: Mode, rate: u64) -> anyhow::Result<Value> {
    let meter = Arc::new(Meter {
        epoch: Instant::now(),
        e2e: Mutex::new(new_hist()),
        received: AtomicU64::new(0),
        warm: AtomicU64::new(0),
    });
    let done = Arc::new(AtomicBool::new(false));
    let on = {
        let m = meter.clone();
        move |p: &[u8]| m.on(p)
    };
    let mut v = match mode {
        Mode::Pull | Mode::Ws => {
            let mut net = ctx.pair().await?;
            let bob = net.client("bob");
            let d = done.clone();
            let consumer: JoinHandle<anyhow::Result<u64>> = if mode == Mode::Pull {
                tokio::spawn(pull_loop(bob, d, on))
            } else {
                let (base, credit) = (bob.base().to_string(), ctx.args.ws_credit);
                tokio::spawn(async move { ws_loop(&base, credit, d, on).await })
            };
            let alice = net.client("alice");
            let send = move |p: Vec<u8>| {
                let c = alice.clone();
                async move { publish_stamped(&c, p).await }
            };
            let v = drive(ctx, mode, rate, meter, done, consumer, send).await?;
            net.assert_healthy()?;
            v
        }
        Mode::Jetstream => {
            let js = JsNet::start(ctx.args.js_sync).await?;
            let consumer = tokio::spawn(consume_loop(js.consumer().await?, done.clone(), on));
            let context = js.js.clone();
            let send = move |p: Vec<u8>| {
                let j = context.clone();
                async move { publish_acked(&j, p.into()).await }
            };
            let v = drive(ctx, mode, rate, meter, done, consumer, send).await?;
            js.stop().await?;
            v
        }
    };
    v["mode"] = json!(mode.name());
    Ok(v)
}

/// Warms up, publishes on schedule, waits for the consumer, reports.
async fn drive<S, F>(
    ctx: &Ctx,
    mode: Mode,
    rate: u64,
    meter: Arc<Meter>,
    done: Arc<AtomicBool>,
    consumer: JoinHandle<anyhow::Result<u64>>,
    send: S,
) -> anyhow::Result<Value>
where
    S: Fn(Vec<u8>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let size = ctx.args.size;
    let workers = ctx.args.latency_publishers.max(1);
    // Warm-up: one message per publisher task at once opens every keep-alive
    // connection; not measured.
    let warm: Vec<_> = (0..workers).map(|_| send(stamped(None, size))).collect();
    for r in futures::future::join_all(warm).await {
        r?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while meter.warm.load(Ordering::Relaxed) < workers as u64 {
        anyhow::ensure!(Instant::now() < deadline, "warm-up messages did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let total = ((rate as f64) * ctx.args.latency_seconds).round().max(1.0) as u64;
    let t0 = meter.now_us() + 1000;
    let intended = move |i: u64| t0 + (i as u128 * 1_000_000 / rate.max(1) as u128) as u64;
    let accept = Arc::new(Mutex::new(new_hist()));
    let last = Arc::new(AtomicU64::new(t0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (rx, send, accept, last, meter) = (
            rx.clone(),
            send.clone(),
            accept.clone(),
            last.clone(),
            meter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(t) = next else { break };
                send(stamped(Some(t), size)).await?;
                let now = meter.now_us();
                if let Ok(mut h) = accept.lock() {
                    h.saturating_record(now.saturating_sub(t).max(1));
                }
                last.fetch_max(now, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    // The schedule, on a blocking thread (tokio's timer has a 1 ms resolution, which
    // would delay every release by up to a millisecond): sleep until the next
    // intended time, then release every message whose time has come; a late wake-up
    // releases everything due (nothing is skipped, as MissedTickBehavior::Burst).
    let epoch = meter.epoch;
    let schedule = tokio::task::spawn_blocking(move || {
        let mut lag = new_hist();
        let mut i = 0u64;
        while i < total {
            let now = epoch.elapsed().as_micros() as u64;
            let next = intended(i);
            if next > now {
                std::thread::sleep(Duration::from_micros(next - now));
                continue;
            }
            while i < total && intended(i) <= now {
                let _ = tx.send(intended(i));
                lag.saturating_record((now - intended(i)).max(1));
                i += 1;
            }
        }
        lag
    });
    let lag = schedule.await?;
    for t in tasks {
        t.await??;
    }
    let sent_span = Duration::from_micros(last.load(Ordering::Relaxed).saturating_sub(t0));
    let deadline = Instant::now() + Duration::from_secs(60);
    while meter.received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done.store(true, Ordering::Relaxed);
    consumer.await??;
    let received = meter.received.load(Ordering::Relaxed);
    let achieved = super::rate(total, sent_span);
    let e2e = meter
        .e2e
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| new_hist());
    let acc = accept
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| new_hist());
    println!(
        "{} @ {rate} msg/s: {total} published (achieved {achieved:.0} msg/s), {received} received{}; scheduler released messages p99 {} µs / max {} µs after their intended time\n    publish -> application: {}\n    publish call (intended send -> accepted): {}",
        mode.label(),
        if received < total { format!(" ({} missing after 60 s)", total - received) } else { String::new() },
        lag.value_at_quantile(0.99),
        lag.max(),
        hist_line(&e2e),
        hist_line(&acc),
    );
    Ok(json!({
        "system": mode.label(),
        "target_per_s": rate,
        "published": total,
        "achieved_per_s": achieved,
        "received": received,
        "e2e": hist_json(&e2e),
        "accept": hist_json(&acc),
        "schedule_lag": hist_json(&lag),
    }))
}
