//! A backlog queued with NATS down: alice (writer) and K receivers on one channel,
//! every receiver known and online, NATS stopped, `--memory-messages` published
//! through the batch endpoint. Reports alice's peak RSS (VmHWM), current RSS, her
//! database files against the payload bytes, the accept rate and, with
//! `--memory-drain true`, the drain to every receiver once NATS is back.

use super::net::Ctx;
use super::procfs::{files, status_kb};
use super::rmds::{consume_count, publish_all, reconnect_watch, wait_count, Form, CHANNEL};
use super::{mb, rate, secs};
use serde_json::{json, Value};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// Runs one measurement per `--memory-receivers` entry, each on a fresh network.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for &k in &ctx.args.memory_receivers {
        runs.push(one(ctx, k.max(1)).await?);
    }
    Ok(json!({ "runs": runs }))
}

async fn one(ctx: &Ctx, k: usize) -> anyhow::Result<Value> {
    let a = &ctx.args;
    let n = a.memory_messages;
    let receivers: Vec<String> = (1..=k).map(|i| format!("r{i}")).collect();
    let mut agents = vec![super::net::spec("alice", CHANNEL, "writer")];
    agents.extend(
        receivers
            .iter()
            .map(|r| super::net::spec(r, CHANNEL, "reader")),
    );
    let mut net = ctx.net(&agents, true).await?;
    let names: Vec<&str> = receivers.iter().map(String::as_str).collect();
    net.wait_discovered("alice", CHANNEL, &names).await?;
    let pid = net
        .pid("alice")
        .ok_or_else(|| anyhow::anyhow!("alice has no pid"))?;
    let rss_before = status_kb(pid, "VmRSS").unwrap_or(0);
    net.stop_nats().await?;
    let form = Form::Batch(a.batch);
    let t = publish_all(net.client("alice"), n, a.batch_publishers, a.size, form).await?;
    // Let the writer settle (checkpoints, caches) before reading the numbers.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let hwm = status_kb(pid, "VmHWM").unwrap_or(0);
    let rss = status_kb(pid, "VmRSS").unwrap_or(0);
    let data = net.agent("alice").data_dir();
    let db_files = files(&data);
    let db: u64 = db_files.iter().map(|(_, s)| s).sum();
    let payload = n * a.size as u64;
    let listing: Vec<String> = db_files
        .iter()
        .map(|(f, s)| format!("{f} {:.1}", mb(*s)))
        .collect();
    println!(
        "memory, {k} receiver(s), NATS down: {n} x {} B published in {:.2}s ({:.0} msg/s accepted durably)\n    alice: peak RSS (VmHWM) {:.1} MB, RSS now {:.1} MB (before publishing {:.1} MB)\n    alice's database: {:.1} MB [{}] = {:.2}x the payload x receivers ({:.1} MB), {:.2}x the payload once ({:.1} MB)",
        a.size,
        t.as_secs_f64(),
        rate(n, t),
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        mb(db),
        listing.join(", "),
        db as f64 / (payload * k as u64) as f64,
        mb(payload * k as u64),
        db as f64 / payload as f64,
        mb(payload),
    );
    let mut v = json!({
        "receivers": k,
        "messages": n,
        "size": a.size,
        "published_s": secs(t),
        "accepted_per_s": rate(n, t),
        "peak_rss_kb": hwm,
        "rss_kb": rss,
        "rss_before_kb": rss_before,
        "db_bytes": db,
        "db_files": db_files.iter().map(|(f, s)| json!({"file": f, "bytes": s})).collect::<Vec<_>>(),
        "payload_bytes": payload,
        "payload_x_receivers_bytes": payload * k as u64,
        "db_over_payload_x_receivers": db as f64 / (payload * k as u64) as f64,
        "db_over_payload": db as f64 / payload as f64,
    });
    if a.memory_drain {
        let mut counts = Vec::new();
        let mut consumers = Vec::new();
        for r in &receivers {
            let c = Arc::new(AtomicU64::new(0));
            consumers.push(tokio::spawn(consume_count(net.client(r), n, c.clone())));
            counts.push(c);
        }
        let start = Instant::now();
        net.start_nats().await?;
        let clients = std::iter::once("alice")
            .chain(names.iter().copied())
            .map(|id| net.client(id))
            .collect();
        let reconnect = reconnect_watch(clients, start);
        for c in &counts {
            wait_count(c, n).await;
        }
        let drain = start.elapsed();
        for c in consumers {
            c.await??;
        }
        let reconnect = reconnect.await?;
        let peak_after = status_kb(pid, "VmHWM").unwrap_or(0);
        net.wait_drained("alice", std::time::Duration::from_secs(60))
            .await?;
        let counters = super::throughput::counters(&net, &names).await?;
        println!(
            "    drain: {} deliveries acknowledged by every receiver's application {:.2}s after NATS came back ({:.0} deliveries/s, {:.0} msg/s per receiver); every agent reconnected after {}, deliveries {}; alice's peak RSS now {:.1} MB [{counters}]",
            n * k as u64,
            drain.as_secs_f64(),
            rate(n * k as u64, drain),
            rate(n, drain),
            reconnect.map_or("?".into(), |d| format!("{:.2}s", d.as_secs_f64())),
            super::throughput::after_reconnect(n * k as u64, drain, reconnect),
            peak_after as f64 / 1024.0
        );
        v["drain_s"] = secs(drain);
        v["reconnect_s"] = json!(reconnect.map(|d| d.as_secs_f64()));
        v["drain_after_reconnect_deliveries_per_s"] =
            json!(reconnect.map(|r| rate(n * k as u64, drain.saturating_sub(r))));
        v["counters"] = counters;
        v["drain_deliveries_per_s"] = json!(rate(n * k as u64, drain));
        v["peak_rss_after_drain_kb"] = json!(peak_after);
    }
    net.assert_healthy()?;
    Ok(v)
}
