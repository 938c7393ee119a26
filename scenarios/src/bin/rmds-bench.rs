//! `rmds-bench`: rmds benchmarks on this machine (see `docs/benchmarks.md`).
//!
//! Every phase starts a real nats-server and real agents on 127.0.0.1 (production
//! timings, SQLite `synchronous = full` by default) and prints numbers; it asserts
//! nothing about speed. The phases live in `rmds_scenarios::bench`.
//!
//! ```text
//! cargo build --release --workspace --bins
//! ./target/release/rmds-bench                          # every phase but wakeup
//! ./target/release/rmds-bench --phases compare --compare 3
//! ./target/release/rmds-bench --phases latency --latency-rates 1000,10000 --latency-seconds 20
//! ./target/release/rmds-bench --phases memory --memory-messages 1000000 --memory-receivers 1,3
//! ./target/release/rmds-bench --phases limits,idle --json target/bench.json
//! ```

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rmds_scenarios::bench::run(rmds_scenarios::bench::Args::parse()).await
}
