//! End-to-end throughput (single and batch publish), the backlog drain after a NATS
//! outage, and the closed-loop long-poll wake-up latency. A message counts when
//! bob's application has pulled it and its ack was answered.

use super::net::Ctx;
use super::procfs::{cpu_json, cpu_line, CpuMeter};
use super::rmds::{consume_count, publish_all, reconnect_watch, wait_count, Form, CHANNEL, GROUP};
use super::{rate, secs};
use serde_json::{json, Value};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one rmds throughput run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Messages.
    pub n: u64,
    /// Until the last publish was answered 201 (accepted durably at alice).
    pub published: Duration,
    /// Until bob's application had acknowledged the last one.
    pub e2e: Duration,
    /// Counters at the end: alice's sent/resent/batches, bob's duplicates/out of order.
    pub counters: Value,
    /// CPU microseconds per message of alice, bob, nats-server and the load generator.
    pub cpu: Vec<(String, f64)>,
}

impl RunResult {
    /// Accepted msg/s.
    pub fn accepted_rate(&self) -> f64 {
        rate(self.n, self.published)
    }

    /// End-to-end msg/s.
    pub fn e2e_rate(&self) -> f64 {
        rate(self.n, self.e2e)
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({
            "messages": self.n,
            "published_s": secs(self.published),
            "e2e_s": secs(self.e2e),
            "accepted_per_s": self.accepted_rate(),
            "e2e_per_s": self.e2e_rate(),
            "counters": self.counters,
            "cpu_us_per_msg": cpu_json(&self.cpu),
        })
    }
}

/// One run on a fresh alice→bob network: publish `n` in `form` with `publishers`
/// tasks, and wait until bob's application has acknowledged all of them.
pub async fn rmds_run(ctx: &Ctx, form: Form, n: u64, publishers: u64) -> anyhow::Result<RunResult> {
    let mut net = ctx.pair().await?;
    let count = Arc::new(AtomicU64::new(0));
    let meter = CpuMeter::start(&[
        ("alice", net.pid("alice")),
        ("bob", net.pid("bob")),
        ("nats-server", net.nats.pid()),
    ]);
    let consumer = tokio::spawn(consume_count(net.client("bob"), n, count.clone()));
    let start = Instant::now();
    let published = publish_all(net.client("alice"), n, publishers, ctx.args.size, form).await?;
    wait_count(&count, n).await;
    let e2e = start.elapsed();
    let cpu = meter.per_message(n);
    consumer.await??;
    net.wait_drained("alice", Duration::from_secs(60)).await?;
    let counters = counters(&net, &["bob"]).await?;
    net.assert_healthy()?;
    Ok(RunResult {
        n,
        published,
        e2e,
        counters,
        cpu,
    })
}

/// alice's sent/resent/batches counters and each receiver's duplicates and out of
/// order, as `{"alice_sent_messages": …, "bob_duplicates": …}`.
pub(super) async fn counters(
    net: &crate::harness::TestNet,
    receivers: &[&str],
) -> anyhow::Result<Value> {
    let a = net.client("alice").stats().await?;
    let mut v = json!({
        "alice_sent_messages": a["sent_messages"],
        "alice_resent_messages": a["resent_messages"],
        "alice_sent_batches": a["sent_batches"],
    });
    for r in receivers {
        let b = net.client(r).stats().await?;
        v[format!("{r}_duplicates")] = b["duplicates"].clone();
        v[format!("{r}_out_of_order")] = b["out_of_order"].clone();
    }
    Ok(v)
}

fn print_run(label: &str, r: &RunResult) {
    println!(
        "{label}: published {} in {:.2}s ({:.0} msg/s accepted durably); acknowledged by the application on bob after {:.2}s ({:.0} msg/s end to end) [{}]\n  {}",
        r.n,
        r.published.as_secs_f64(),
        r.accepted_rate(),
        r.e2e.as_secs_f64(),
        r.e2e_rate(),
        r.counters,
        cpu_line(&r.cpu)
    );
}

/// One HTTP request per message, `--publishers` concurrent keep-alive clients.
pub async fn single(ctx: &Ctx) -> anyhow::Result<Value> {
    let a = &ctx.args;
    let r = rmds_run(ctx, Form::Single, a.messages, a.publishers).await?;
    print_run(&format!("single ({} publishers)", a.publishers), &r);
    let mut v = r.json();
    v["publishers"] = json!(a.publishers);
    Ok(v)
}

/// `--batch` messages per request, `--batch-publishers` concurrent clients.
pub async fn batch(ctx: &Ctx) -> anyhow::Result<Value> {
    let a = &ctx.args;
    let form = Form::Batch(a.batch);
    let r = rmds_run(ctx, form, a.messages, a.batch_publishers).await?;
    print_run(
        &format!("{} ({} publishers)", form.label(), a.batch_publishers),
        &r,
    );
    let mut v = r.json();
    v["publishers"] = json!(a.batch_publishers);
    v["batch"] = json!(a.batch);
    Ok(v)
}

/// NATS stopped, `--outage-messages` published (batch form), NATS started again:
/// the time until bob's application has acknowledged the whole backlog.
pub async fn outage(ctx: &Ctx) -> anyhow::Result<Value> {
    let a = &ctx.args;
    let n = a.outage_messages;
    let mut net = ctx.pair().await?;
    net.stop_nats().await?;
    let form = Form::Batch(a.batch);
    let t = publish_all(net.client("alice"), n, a.batch_publishers, a.size, form).await?;
    println!(
        "outage: published {n} with NATS down in {:.2}s ({:.0} msg/s accepted durably)",
        t.as_secs_f64(),
        rate(n, t)
    );
    let count = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume_count(net.client("bob"), n, count.clone()));
    let start = Instant::now();
    net.start_nats().await?;
    let meter = CpuMeter::start(&[
        ("alice", net.pid("alice")),
        ("bob", net.pid("bob")),
        ("nats-server", net.nats.pid()),
    ]);
    let reconnect = reconnect_watch(vec![net.client("alice"), net.client("bob")], start);
    wait_count(&count, n).await;
    let drain = start.elapsed();
    let cpu = meter.per_message(n);
    consumer.await??;
    let reconnect = reconnect.await?;
    println!(
        "drain: backlog of {n} acknowledged by the application on bob {:.2}s after NATS came back ({:.0} msg/s); both agents reconnected after {}, {}",
        drain.as_secs_f64(),
        rate(n, drain),
        reconnect.map_or("?".into(), |d| format!("{:.2}s", d.as_secs_f64())),
        after_reconnect(n, drain, reconnect),
    );
    println!("  {}", cpu_line(&cpu));
    net.wait_drained("alice", Duration::from_secs(60)).await?;
    let counters = counters(&net, &["bob"]).await?;
    println!("  counters: {counters}");
    net.assert_healthy()?;
    Ok(json!({
        "messages": n,
        "published_s": secs(t),
        "accepted_per_s": rate(n, t),
        "drain_s": secs(drain),
        "drain_per_s": rate(n, drain),
        "drain_cpu_us_per_msg": cpu_json(&cpu),
        "reconnect_s": reconnect.map(|d| d.as_secs_f64()),
        "drain_after_reconnect_per_s": reconnect.map(|r| rate(n, drain.saturating_sub(r))),
        "counters": counters,
    }))
}

/// `"0.52s (190,000 msg/s) from then"`: the drain without the reconnect wait.
pub(super) fn after_reconnect(n: u64, drain: Duration, reconnect: Option<Duration>) -> String {
    match reconnect {
        Some(r) => {
            let d = drain.saturating_sub(r);
            format!(
                "{:.2}s ({:.0} msg/s) from then",
                d.as_secs_f64(),
                rate(n, d)
            )
        }
        None => "unknown".into(),
    }
}

/// Closed loop: bob long-polls for one message, alice publishes it; from alice's 201
/// to bob's poll returning, `--latency-samples` times (the earlier latency phase).
pub async fn wakeup(ctx: &Ctx) -> anyhow::Result<Value> {
    let net = ctx.pair().await?;
    let (alice, bob) = (net.client("alice"), net.client("bob"));
    let mut samples = Vec::with_capacity(ctx.args.latency_samples);
    for i in 0..ctx.args.latency_samples {
        let b = bob.clone();
        let poll = tokio::spawn(async move {
            let m = b.pull(CHANNEL, GROUP, 1, Duration::from_secs(10)).await?;
            let done = Instant::now();
            if let Some(m) = m.first() {
                b.ack(CHANNEL, GROUP, std::slice::from_ref(&m.id)).await?;
            }
            Ok::<_, anyhow::Error>((m.len(), done))
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = Instant::now();
        alice
            .publish_bytes(CHANNEL, format!("{i}").into_bytes(), "text/plain", None)
            .await?;
        let (n, done) = poll.await??;
        anyhow::ensure!(n == 1, "long poll returned {n} messages");
        samples.push(done.saturating_duration_since(sent));
    }
    anyhow::ensure!(!samples.is_empty(), "--latency-samples is 0");
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "wake-up (closed loop): alice's 201 to bob's long poll returning, {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(samples[samples.len() - 1])
    );
    Ok(json!({
        "samples": samples.len(),
        "p50_ms": ms(pick(0.5)),
        "p99_ms": ms(pick(0.99)),
        "max_ms": ms(samples[samples.len() - 1]),
    }))
}
