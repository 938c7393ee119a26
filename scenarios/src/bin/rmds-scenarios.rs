//! `rmds-scenarios`: runs named outage scenarios against real NATS servers and agents
//! (local processes, or the docker-compose services) and reports the delivery
//! invariants per stream.
//!
//! ```text
//! rmds-scenarios list
//! rmds-scenarios run all --report docs/scenarios.md
//! rmds-scenarios run nats-outage --backend compose
//! rmds-scenarios chaos --seed 7 --minutes 2 --report chaos.md
//! ```

use clap::{Parser, Subcommand};
use rmds_scenarios::catalogue::{self, CATALOGUE};
use rmds_scenarios::chaos::{self, netns::Netns, ChaosConfig};
use rmds_scenarios::report;
use rmds_scenarios::scenario::Backend;

#[derive(Parser, Debug)]
#[command(about = "rmds outage scenarios")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Lists the scenarios.
    List,
    /// Runs a scenario, or `all`.
    Run {
        /// Scenario name or `all`.
        name: String,
        /// Where to run.
        #[arg(long, value_enum, default_value = "processes")]
        backend: Backend,
        /// Writes the report here: `.json` for JSON, anything else for Markdown.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
        /// Self-test of the checker: the recorder loses, repeats and swaps messages on
        /// purpose, so every scenario must fail and name them.
        #[arg(long)]
        faulty_consumer: bool,
    },
    /// A seeded nemesis against four agents on four channels (see docs/chaos.md).
    Chaos(ChaosArgs),
}

#[derive(clap::Args, Debug)]
struct ChaosArgs {
    /// Seed of the fault schedule (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the fault phase.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Writes the report here: `.json` for JSON, anything else for Markdown.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// `on`, `off`, or `seed` (odd seeds on).
    #[arg(long, default_value = "seed")]
    cluster_key: String,
    /// Messages per second per (writer, channel).
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Longest wait for delivery to settle after healing (seconds).
    #[arg(long, default_value_t = 120)]
    settle_secs: u64,
    /// Leaves a channel out (orders, ticks, flash, jobs); repeatable.
    #[arg(long)]
    skip: Vec<String>,
    /// No private network namespace: skips packet loss and blackholes (no root needed).
    #[arg(long)]
    no_netns: bool,
    /// Prints the schedule for the seed and exits (nothing is started).
    #[arg(long)]
    schedule_only: bool,
    /// Internal: set by the re-executed child inside `unshare -n`.
    #[arg(long, hide = true)]
    in_netns: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Cmd::Chaos(c) = &args.cmd {
        if c.schedule_only {
            let seed = c.seed.unwrap_or(0);
            for s in chaos::plan(seed, c.minutes, !c.no_netns) {
                println!("{s}");
            }
            return Ok(());
        }
        if !c.no_netns && !c.in_netns {
            // Network faults: run again inside a network namespace of our own.
            let code = chaos::netns::reexec()?;
            std::process::exit(code);
        }
    }
    // Proven before any thread or process starts; the only way to reach iptables.
    let ns = match &args.cmd {
        Cmd::Chaos(c) if c.in_netns => Some(Netns::enter()?),
        _ => None,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, ns))
}

async fn run_chaos(c: ChaosArgs, ns: Option<Netns>) -> anyhow::Result<()> {
    let seed = c.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 100_000)
            .unwrap_or(1)
    });
    let cluster_key = match c.cluster_key.as_str() {
        "on" => true,
        "off" => false,
        "seed" => seed % 2 == 1,
        other => anyhow::bail!("--cluster-key {other:?}: use on, off or seed"),
    };
    let mut command = format!(
        "rmds-scenarios chaos --seed {seed} --minutes {} --cluster-key {}",
        c.minutes,
        if cluster_key { "on" } else { "off" }
    );
    if c.no_netns {
        command += " --no-netns";
    }
    for s in &c.skip {
        if !chaos::CHANNELS.iter().any(|ch| ch.name == s) {
            anyhow::bail!("--skip {s:?}: no such channel");
        }
        command += &format!(" --skip {s}");
    }
    let cfg = ChaosConfig {
        seed,
        minutes: c.minutes,
        cluster_key,
        rate: c.rate,
        settle: std::time::Duration::from_secs(c.settle_secs),
        command,
        channels: chaos::CHANNELS
            .into_iter()
            .filter(|ch| !c.skip.iter().any(|s| s == ch.name))
            .collect(),
    };
    let report = chaos::run(cfg, ns).await?;
    println!("{}", report.text());
    if let Some(p) = c.report {
        let text = if p.extension().is_some_and(|e| e == "json") {
            serde_json::to_string_pretty(&report)?
        } else {
            report.markdown()
        };
        std::fs::write(&p, text)?;
        eprintln!("report written to {}", p.display());
    }
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(args: Args, ns: Option<Netns>) -> anyhow::Result<()> {
    match args.cmd {
        Cmd::Chaos(c) => run_chaos(c, ns).await,
        Cmd::List => {
            for s in CATALOGUE {
                let backends = if s.compose {
                    "processes, compose"
                } else {
                    "processes"
                };
                println!("{:<26} {}  [{}]", s.name, s.about, backends);
            }
            Ok(())
        }
        Cmd::Run {
            name,
            backend,
            report: path,
            faulty_consumer,
        } => {
            let names: Vec<&str> = if name == "all" {
                CATALOGUE
                    .iter()
                    .filter(|s| backend == Backend::Processes || s.compose)
                    .map(|s| s.name)
                    .collect()
            } else {
                let s = CATALOGUE.iter().find(|s| s.name == name).ok_or_else(|| {
                    anyhow::anyhow!("no scenario {name:?}; `rmds-scenarios list` shows them")
                })?;
                if backend == Backend::Compose && !s.compose {
                    anyhow::bail!("scenario {name} runs on the processes backend only");
                }
                vec![s.name]
            };
            let mut outcomes = Vec::new();
            for n in names {
                eprintln!("running {n} ({backend:?})...");
                let o = catalogue::run(n, backend, faulty_consumer).await;
                eprintln!(
                    "  {} in {:.1}s",
                    if o.passed { "passed" } else { "FAILED" },
                    o.duration_ms as f64 / 1000.0
                );
                outcomes.push(o);
            }
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            println!("{}", report::table(&outcomes));
            for line in report::failures(&outcomes) {
                println!("{line}");
            }
            if let Some(p) = path {
                let text = if p.extension().is_some_and(|e| e == "json") {
                    serde_json::to_string_pretty(&outcomes)?
                } else {
                    report::markdown(&outcomes, &command)
                };
                std::fs::write(&p, text)?;
                eprintln!("report written to {}", p.display());
            }
            if outcomes.iter().all(|o| o.passed) {
                Ok(())
            } else {
                std::process::exit(1);
            }
        }
    }
}
