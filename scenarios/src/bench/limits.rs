//! This machine's limits, so the other figures can be read against them: the cost
//! of one fsync on the disk the bench databases live on, and the core NATS pub/sub
//! rate (one publisher, one subscriber, no persistence).

use super::net::Ctx;
use super::{hist_json, hist_line, new_hist, rate};
use crate::harness::NatsServer;
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

/// Runs both measurements.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let n = ctx.args.limits_fsyncs.max(1);
    let fsync = tokio::task::spawn_blocking(move || fsyncs(n)).await??;
    let nats = nats_pubsub(ctx.args.limits_nats_messages.max(1), ctx.args.size).await?;
    Ok(json!({ "fsync": fsync, "nats": nats }))
}

/// Times `n` × (write 4 KiB + fdatasync) in place and `n` × (append 4 KiB + fsync)
/// in the temp directory, where every bench network keeps its databases.
fn fsyncs(n: usize) -> anyhow::Result<Value> {
    let dir = tempfile::Builder::new().prefix("rmds-fsync-").tempdir()?;
    let block = vec![0x5au8; 4096];
    let mut out = serde_json::Map::new();
    out.insert(
        "dir".into(),
        json!(std::env::temp_dir().display().to_string()),
    );
    for (name, append) in [("overwrite_fdatasync", false), ("append_fsync", true)] {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join(name))?;
        f.write_all(&block)?;
        f.sync_all()?;
        let mut h = new_hist();
        for _ in 0..n {
            let t = Instant::now();
            if append {
                f.seek(SeekFrom::End(0))?;
                f.write_all(&block)?;
                f.sync_all()?;
            } else {
                f.seek(SeekFrom::Start(0))?;
                f.write_all(&block)?;
                f.sync_data()?;
            }
            h.saturating_record((t.elapsed().as_micros() as u64).max(1));
        }
        let us = |q: f64| h.value_at_quantile(q);
        println!(
            "fsync: {n} x {} in {}: median {} µs, p99 {} µs ({})",
            if append {
                "append 4 KiB + fsync (File::sync_all)"
            } else {
                "overwrite 4 KiB + fdatasync (File::sync_data)"
            },
            std::env::temp_dir().display(),
            us(0.5),
            us(0.99),
            hist_line(&h)
        );
        out.insert(name.into(), hist_json(&h));
    }
    Ok(Value::Object(out))
}

/// One publisher and one subscriber on separate connections to a fresh nats-server:
/// `n` messages of `size` bytes, from the first publish to the last receipt.
async fn nats_pubsub(n: u64, size: usize) -> anyhow::Result<Value> {
    let dir = tempfile::Builder::new()
        .prefix("rmds-nats-limit-")
        .tempdir()?;
    let mut server = NatsServer::new(dir.path(), "nats-limit");
    server.start().await?;
    let sub_client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(server.url())
        .await?;
    let pub_client = async_nats::connect(server.url()).await?;
    let mut sub = sub_client.subscribe("limit").await?;
    sub_client.flush().await?;
    let reader = tokio::spawn(async move {
        let (mut got, mut last) = (0u64, Instant::now());
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(_)) => {
                    got += 1;
                    last = Instant::now();
                }
                Ok(None) | Err(_) => break,
            }
        }
        (got, last)
    });
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    for _ in 0..n {
        pub_client.publish("limit", payload.clone()).await?;
    }
    pub_client.flush().await?;
    let published = start.elapsed();
    let (got, last) = reader.await?;
    let span = last.saturating_duration_since(start);
    server.stop().await?;
    println!(
        "core NATS: 1 publisher, 1 subscriber, {n} x {size} B: published in {:.2}s ({:.0} msg/s), {got} received in {:.2}s ({:.0} msg/s){}",
        published.as_secs_f64(),
        rate(n, published),
        span.as_secs_f64(),
        rate(got, span),
        if got < n { " — the subscriber fell behind and the server dropped messages (slow consumer)" } else { "" }
    );
    Ok(json!({
        "messages": n,
        "size": size,
        "published_s": published.as_secs_f64(),
        "publish_per_s": rate(n, published),
        "received": got,
        "received_s": span.as_secs_f64(),
        "pubsub_per_s": rate(got, span),
    }))
}
