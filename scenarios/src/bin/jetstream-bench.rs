//! `jetstream-bench`: the same workload as `rmds-bench`'s batch phase, on NATS
//! JetStream, for comparison. A real nats-server with JetStream (file storage) on a
//! loopback port; publishers wait for each publish ack (up to `--in-flight`
//! outstanding per publisher); a durable pull consumer acknowledges every message.
//! Prints numbers; asserts nothing. `rmds-bench --phases compare` runs this workload
//! alternated with rmds's (`rmds_scenarios::bench::jetstream`).
//!
//! ```text
//! cargo run --release -p rmds-scenarios --bin jetstream-bench -- --messages 100000
//! ```

use clap::Parser;
use rmds_scenarios::bench::jetstream::{check_sync, run_batch, BatchOpts, JsSync};
use rmds_scenarios::bench::rate;
use rmds_scenarios::harness::NatsServer;

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
    /// fsync: `default` (the server's interval) or `always` (nats-server 2.10+).
    #[arg(long, value_enum, default_value_t = JsSync::Default)]
    js_sync: JsSync,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let version = NatsServer::version()?;
    let sync = check_sync(args.js_sync, &version)?;
    println!(
        "jetstream-bench: {} messages of {} B, {} publishers x {} acks in flight, file storage, fsync {sync}, on 127.0.0.1",
        args.messages, args.size, args.publishers, args.in_flight,
    );
    let n = args.messages;
    let r = run_batch(BatchOpts {
        messages: n,
        size: args.size,
        publishers: args.publishers,
        in_flight: args.in_flight,
        sync: args.js_sync,
    })
    .await?;
    println!(
        "jetstream: published {n} in {:.2}s ({:.0} msg/s acknowledged by the server); consumed and acknowledged after {:.2}s ({:.0} msg/s end to end)",
        r.published.as_secs_f64(),
        rate(n, r.published),
        r.e2e.as_secs_f64(),
        rate(n, r.e2e)
    );
    Ok(())
}
