//! `rmds-bench`: end-to-end throughput and post-outage drain rate on this machine.
//!
//! Starts a real nats-server and two real agents (alice writes, bob reads), publishes
//! through alice's HTTP API with concurrent publishers, and counts what bob's
//! application has pulled and acknowledged. Durable commits on both sides (SQLite
//! `synchronous = full`). Prints numbers; asserts nothing about speed.
//!
//! ```text
//! cargo run --release -p rmds-scenarios --bin rmds-bench -- --messages 100000
//! ```

use anyhow::Context;
use clap::Parser;
use rmds_scenarios::harness::TestNet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "rmds end-to-end benchmark")]
struct Args {
    /// Messages in the throughput phase.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Concurrent HTTP publishers.
    #[arg(long, default_value_t = 64)]
    publishers: u64,
    /// Messages published during the NATS outage (0 skips the phase).
    #[arg(long, default_value_t = 50_000)]
    outage_messages: u64,
    /// Messages per HTTP request in the batch phases (JSON array to `messages:batch`).
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Run the single-message phase too (one HTTP request per message).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    single: bool,
    /// Long-poll wake-up latency samples (0 skips the phase).
    #[arg(long, default_value_t = 100)]
    latency_samples: usize,
    /// Consumption receipts (groups.receipts) on both agents.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    receipts: bool,
    /// SQLite synchronous mode for both agents: full or normal.
    #[arg(long, default_value = "full")]
    synchronous: String,
}

async fn consume(client: rmds::Client, target: u64, count: Arc<AtomicU64>) -> anyhow::Result<()> {
    while count.load(Ordering::Relaxed) < target {
        let batch = client
            .pull("bench", "default", 1000, Duration::from_secs(1))
            .await?;
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        client.ack("bench", "default", &ids).await?;
        count.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Publishes `n` messages of `size` bytes with `publishers` concurrent tasks, either one
/// HTTP request per message (`batch == 1`) or `batch` messages per request.
async fn publish(
    client: rmds::Client,
    n: u64,
    publishers: u64,
    size: usize,
    batch: u64,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let payload = vec![b'x'; size];
    // A JSON string of exactly `size` bytes once encoded, for the batch endpoint.
    let item = serde_json::Value::String("x".repeat(size.saturating_sub(2)));
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let c = client.clone();
        let payload = payload.clone();
        let item = item.clone();
        let share = n / publishers + u64::from(p < n % publishers);
        tasks.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 {
                let k = left.min(batch.max(1));
                let r = if batch <= 1 {
                    c.publish_bytes("bench", payload.clone(), "application/octet-stream", None)
                        .await
                        .map(|_| 1)
                } else {
                    let items = vec![item.clone(); k as usize];
                    c.publish_batch("bench", &items)
                        .await
                        .map(|v| v["accepted"].as_u64().unwrap_or(0))
                };
                match r {
                    Ok(accepted) => {
                        left -= accepted.min(left);
                        if accepted < k {
                            // Part of the batch met back-pressure: give the receiver time.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Err(e) if e.kind == rmds::ErrorKind::Backpressure => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => return Err(anyhow::anyhow!("publish: {e}")),
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// One throughput phase: publish everything and wait until bob's application has it.
async fn phase(
    net: &TestNet,
    label: &str,
    n: u64,
    publishers: u64,
    size: usize,
    batch: u64,
) -> anyhow::Result<()> {
    let alice = net.client("alice");
    let count = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume(net.client("bob"), n, count.clone()));
    let start = Instant::now();
    let publish_time = publish(alice, n, publishers, size, batch).await?;
    wait_count(&count, n).await;
    let e2e = start.elapsed();
    consumer.await??;
    net.wait_drained("alice", Duration::from_secs(60)).await?;
    println!(
        "{label}: published {n} in {:.2}s ({:.0} msg/s accepted durably); delivered and acknowledged by the application on bob after {:.2}s ({:.0} msg/s end to end)",
        publish_time.as_secs_f64(),
        rate(n, publish_time),
        e2e.as_secs_f64(),
        rate(n, e2e)
    );
    Ok(())
}

async fn wait_count(count: &AtomicU64, target: u64) {
    while count.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut net = TestNet::builder()
        .set("store", "synchronous", args.synchronous.as_str())
        .set("groups", "receipts", args.receipts)
        // Production sweep period (the test harness sweeps every 300 ms).
        .set("delivery", "sweep_interval", "5s")
        .set("delivery", "max_messages_per_receiver", 1_000_000)
        .set("discovery", "keepalive_interval", "1s")
        .set("discovery", "node_offline_timeout", "5s")
        .set("log", "level", "warn")
        .agent("alice", &["bench:writer"])
        .agent("bob", &["bench:reader"])
        .start()
        .await
        .context("starting nats-server and agents (is nats-server installed? is rmds-agent built in release?)")?;
    net.wait_discovered("alice", "bench", &["bob"]).await?;
    let alice = net.client("alice");
    let bob = net.client("bob");
    println!(
        "rmds-bench: {} messages of {} B, {} HTTP publishers, synchronous={}, receipts={}, 2 agents + nats-server on 127.0.0.1",
        args.messages, args.size, args.publishers, args.synchronous, args.receipts
    );

    // Phase 1: end-to-end throughput, one HTTP request per message, then batched.
    if args.single {
        phase(&net, "single", args.messages, args.publishers, args.size, 1).await?;
    }
    if args.batch > 1 {
        let label = format!("batch of {}", args.batch);
        phase(
            &net,
            &label,
            args.messages,
            args.publishers.min(16),
            args.size,
            args.batch,
        )
        .await?;
    }

    // Latency: a long poll on bob waiting for one message published on alice; from
    // alice's 201 to bob's poll returning (delivery, commit, wake-up).
    if args.latency_samples > 0 {
        let mut samples = Vec::with_capacity(args.latency_samples);
        for i in 0..args.latency_samples {
            let b = bob.clone();
            let poll = tokio::spawn(async move {
                let m = b
                    .pull("bench", "default", 1, Duration::from_secs(10))
                    .await?;
                let done = Instant::now();
                if let Some(m) = m.first() {
                    b.ack("bench", "default", std::slice::from_ref(&m.id))
                        .await?;
                }
                Ok::<_, anyhow::Error>((m.len(), done))
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sent = Instant::now();
            alice
                .publish_bytes("bench", format!("{i}").into_bytes(), "text/plain", None)
                .await?;
            let (n, done) = poll.await??;
            anyhow::ensure!(n == 1, "long poll returned {n} messages");
            samples.push(done.saturating_duration_since(sent));
        }
        samples.sort();
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "latency: publish on alice to long-poll return on bob, {} samples: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            samples.len(),
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            samples[samples.len() - 1].as_secs_f64() * 1e3
        );
    }

    // Phase 2: backlog built during a NATS outage, then drained.
    if args.outage_messages > 0 {
        net.stop_nats().await?;
        let t = publish(
            alice.clone(),
            args.outage_messages,
            args.publishers.min(16),
            args.size,
            args.batch,
        )
        .await?;
        println!(
            "outage: published {} with NATS down in {:.2}s ({:.0} msg/s)",
            args.outage_messages,
            t.as_secs_f64(),
            rate(args.outage_messages, t)
        );
        let count = Arc::new(AtomicU64::new(0));
        let consumer = tokio::spawn(consume(bob.clone(), args.outage_messages, count.clone()));
        let start = Instant::now();
        net.start_nats().await?;
        wait_count(&count, args.outage_messages).await;
        let drain = start.elapsed();
        consumer.await??;
        println!(
            "drain: backlog of {} delivered and acknowledged {:.2}s after NATS came back ({:.0} msg/s)",
            args.outage_messages,
            drain.as_secs_f64(),
            rate(args.outage_messages, drain)
        );
    }
    let s = alice.stats().await?;
    println!(
        "alice: sent_messages={} resent={} batches={} delivered={} | bob: duplicates={} out_of_order={}",
        s["sent_messages"],
        s["resent_messages"],
        s["sent_batches"],
        s["delivered"],
        bob.stats().await?["duplicates"],
        bob.stats().await?["out_of_order"]
    );
    net.assert_healthy()?;
    Ok(())
}
