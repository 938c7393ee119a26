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
use rmds_scenarios::chaos::{self, netns::Netns};
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
    /// A seeded nemesis against four agents on five channels (see docs/chaos.md).
    Chaos(chaos::cli::ChaosArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Before any thread or process starts: maybe re-executed in a network namespace
    // of its own, which is then proven (the only way to reach iptables).
    let ns = match &args.cmd {
        Cmd::Chaos(c) => c.prepare()?,
        _ => None,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, ns))
}

async fn run(args: Args, ns: Option<Netns>) -> anyhow::Result<()> {
    match args.cmd {
        Cmd::Chaos(c) => c.run(ns).await,
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
