//! `rmds-scale`: many real agents on one NATS, measured (see docs/scale.md).
//!
//! ```text
//! rmds-scale --agents 50 --kill 10 --report target/scale-50.md
//! ```

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "rmds at scale: convergence, idle cost, discovery traffic, fan-out, failure detection"
)]
struct Args {
    #[command(flatten)]
    scale: rmds_scenarios::scale::ScaleArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(rmds_scenarios::scale::run(args.scale))
}
