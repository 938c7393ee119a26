//! The `chaos` subcommand's arguments and its two steps: [`ChaosArgs::prepare`] before
//! any thread exists (re-execute inside a network namespace, or prove being in one),
//! then [`ChaosArgs::run`].

use super::netns::{self, Netns};
use super::ChaosConfig;

/// `rmds-scenarios chaos` options.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Seed of the fault schedule (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Length of the fault phase.
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Writes the report here: `.json` for JSON, anything else for Markdown.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// `on`, `off`, or `seed` (odd seeds on).
    #[arg(long, default_value = "seed")]
    pub cluster_key: String,
    /// Messages per second per (writer, channel).
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
    /// Longest wait for delivery to settle after healing (seconds).
    #[arg(long, default_value_t = 120)]
    pub settle_secs: u64,
    /// Leaves a channel out (orders, ticks, flash, jobs, late); repeatable.
    #[arg(long)]
    pub skip: Vec<String>,
    /// No private network namespace: skips packet loss and blackholes (no root needed).
    #[arg(long)]
    pub no_netns: bool,
    /// Prints the schedule for the seed and exits (nothing is started).
    #[arg(long)]
    pub schedule_only: bool,
    /// Internal: set by the re-executed child inside `unshare -n`.
    #[arg(long, hide = true)]
    pub in_netns: bool,
}

impl ChaosArgs {
    /// Prints the schedule (`--schedule-only`) and exits, or re-executes this command
    /// inside a new network namespace and exits with its code, or (in the child)
    /// proves the namespace and returns it. Call before starting any thread.
    pub fn prepare(&self) -> anyhow::Result<Option<Netns>> {
        if self.schedule_only {
            for s in super::plan(self.seed.unwrap_or(0), self.minutes, !self.no_netns) {
                println!("{s}");
            }
            std::process::exit(0);
        }
        if self.in_netns {
            return Ok(Some(Netns::enter()?));
        }
        if !self.no_netns {
            std::process::exit(netns::reexec()?);
        }
        Ok(None)
    }

    /// Runs the chaos command (after [`ChaosArgs::prepare`]); exits 1 when it failed.
    pub async fn run(self, ns: Option<Netns>) -> anyhow::Result<()> {
        let c = self;
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
            if !super::CHANNELS.iter().any(|ch| ch.name == s) {
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
            channels: super::CHANNELS
                .into_iter()
                .filter(|ch| !c.skip.iter().any(|s| s == ch.name))
                .collect(),
        };
        let report = super::run(cfg, ns).await?;
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
}
