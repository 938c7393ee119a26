//! `jetstream-bench`: the same workload as `rmds-bench`'s batch phase, on NATS
//! JetStream, for comparison. A real nats-server with JetStream (file storage) on a
//! loopback port; publishers wait for each publish ack (up to `--in-flight`
//! outstanding per publisher); a durable pull consumer acknowledges every message.
//! Prints numbers; asserts nothing.
//!
//! ```text
//! cargo run --release -p rmds-scenarios --bin jetstream-bench -- --messages 100000
//! ```

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use rmds_scenarios::harness::NatsServer;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "NATS JetStream end-to-end benchmark (comparison for rmds-bench)")]
struct Args {
    /// Messages.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 16)]
    publishers: u64,
    /// Publish acks outstanding per publisher.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::Builder::new()
        .prefix("rmds-js-bench-")
        .tempdir()?;
    let mut server = NatsServer::new(dir.path(), "nats-js").jetstream(dir.path().join("js"));
    server.start().await?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("BENCH")
        .await?
        .create_consumer(pull::Config {
            durable_name: Some("app".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    println!(
        "jetstream-bench: {} messages of {} B, {} publishers x {} acks in flight, file storage, nats-server {} on 127.0.0.1",
        args.messages,
        args.size,
        args.publishers,
        args.in_flight,
        client.server_info().version
    );
    let n = args.messages;
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        let mut msgs = consumer.messages().await?;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
                Ok(Some(Ok(m))) => {
                    m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                    got += 1;
                }
                Ok(Some(Err(e))) => anyhow::bail!("consume: {e}"),
                Ok(None) | Err(_) => anyhow::bail!("consumer stalled after {got} messages"),
            }
        }
        Ok::<_, anyhow::Error>(Instant::now())
    });
    let mut tasks = Vec::new();
    for p in 0..args.publishers {
        let js = js.clone();
        let payload = bytes_of(args.size);
        let share = n / args.publishers + u64::from(p < n % args.publishers);
        let window = args.in_flight;
        tasks.push(tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            for _ in 0..share {
                if pending.len() >= window {
                    if let Some(r) = pending.next().await {
                        r?;
                    }
                }
                let ack = js.publish("bench", payload.clone()).await?;
                pending.push(std::future::IntoFuture::into_future(ack));
            }
            while let Some(r) = pending.next().await {
                r?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let published = start.elapsed();
    let done = reader.await??;
    let e2e = done - start;
    println!(
        "jetstream: published {n} in {:.2}s ({:.0} msg/s acknowledged by the server); consumed and acknowledged after {:.2}s ({:.0} msg/s end to end)",
        published.as_secs_f64(),
        n as f64 / published.as_secs_f64(),
        e2e.as_secs_f64(),
        n as f64 / e2e.as_secs_f64()
    );
    server.stop().await?;
    Ok(())
}

fn bytes_of(size: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; size])
}
