//! The nemesis: carries out a scheduled [`Fault`] on the running net and heals it,
//! keeping the history of what was done and when. iptables only through [`Netns`].

use super::bus::Bus;
use super::netns::Netns;
use super::schedule::{Fault, Step};
use crate::harness::{signal, TestNet};
use anyhow::Context;
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// libfaketime, as Debian's `faketime` package installs it.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Ballast messages published per store-full fault.
const BALLAST_MESSAGES: usize = 12;
/// Size of one ballast message (12 × 128 KiB is past the 1 MB limit).
const BALLAST_BYTES: usize = 128 * 1024;

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The scheduled step.
    pub step: Step,
    /// When it started, from the start of the fault phase (ms).
    pub started_ms: u64,
    /// When it was healed (ms).
    pub healed_ms: u64,
    /// What went wrong carrying it out or healing it, if anything.
    pub error: Option<String>,
    /// What the fault did, when it can be told: frames sent by a replay or forgery,
    /// batches a full store refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The nemesis over a started net.
pub struct Nemesis {
    /// The net under test.
    pub net: TestNet,
    netns: Option<Netns>,
    bus: Option<Bus>,
    rng: StdRng,
    configs: BTreeMap<String, String>,
    paused: BTreeSet<String>,
    nats_paused: bool,
    faketime: bool,
    t0: Instant,
    /// Every fault carried out, in order.
    pub history: Vec<Applied>,
}

impl Nemesis {
    /// A nemesis over `net`; `rng` shapes forged frames; `bus` captures frames.
    pub fn new(mut net: TestNet, netns: Option<Netns>, bus: Option<Bus>, rng: StdRng) -> Nemesis {
        let mut configs = BTreeMap::new();
        for id in net.nodes() {
            let text = std::fs::read_to_string(net.node(&id).config_path()).unwrap_or_default();
            configs.insert(id, text);
        }
        Nemesis {
            net,
            netns,
            bus,
            rng,
            configs,
            paused: BTreeSet::new(),
            nats_paused: false,
            faketime: std::path::Path::new(FAKETIME_LIB).is_file(),
            t0: Instant::now(),
            history: Vec::new(),
        }
    }

    /// Marks the start of the fault phase (times in the history count from here).
    pub fn start_clock(&mut self) {
        self.t0 = Instant::now();
    }

    /// Milliseconds since the start of the fault phase.
    pub fn elapsed_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Carries out `step`, holds it, heals it, and records it.
    pub async fn run_step(&mut self, step: &Step) {
        let started_ms = self.elapsed_ms();
        let hold = Duration::from_millis(step.hold_ms);
        let until = Instant::now() + hold;
        let mut note = None;
        let mut error = match self.apply(&step.fault, hold, &mut note).await {
            Ok(()) => None,
            Err(e) => Some(format!("{e:#}")),
        };
        tokio::time::sleep_until(until.into()).await;
        if let Fault::StoreFull { node } = &step.fault {
            note = Some(self.refusals(node).await);
        }
        if let Err(e) = self.heal(&step.fault).await {
            let msg = format!("heal: {e:#}");
            error = Some(error.map_or(msg.clone(), |p| format!("{p}; {msg}")));
        }
        let a = Applied {
            step: step.clone(),
            started_ms,
            healed_ms: self.elapsed_ms(),
            error,
            note,
        };
        eprintln!(
            "  [{:>6.1}s] {}{}{}",
            started_ms as f64 / 1000.0,
            step.fault,
            a.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            a.error
                .as_deref()
                .map(|e| format!("  (error: {e})"))
                .unwrap_or_default()
        );
        self.history.push(a);
    }

    fn nats_port(&self) -> String {
        self.net.nats.port().to_string()
    }

    fn netns(&self) -> anyhow::Result<&Netns> {
        self.netns
            .as_ref()
            .context("iptables faults need the run's own network namespace")
    }

    async fn apply(
        &mut self,
        fault: &Fault,
        hold: Duration,
        note: &mut Option<String>,
    ) -> anyhow::Result<()> {
        match fault {
            Fault::KillRestart { node } => self.net.node(node).kill().await,
            Fault::Pause { node } => {
                self.net.node(node).pause()?;
                self.paused.insert(node.clone());
                Ok(())
            }
            Fault::CleanRestart { node } => {
                let a = self.net.node(node);
                a.stop().await?;
                a.start().await
            }
            Fault::NatsKill => self.net.kill_nats().await,
            Fault::NatsPause => {
                let pid = self.net.nats.pid().context("nats-server not running")?;
                signal(pid, Signal::SIGSTOP)?;
                self.nats_paused = true;
                Ok(())
            }
            Fault::Partition { node } => self.net.partition(node),
            Fault::Blackhole => {
                let port = self.nats_port();
                self.netns()?
                    .iptables(&["-A", "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"])
            }
            Fault::PacketLoss { permille } => {
                let port = self.nats_port();
                let p = format!("{:.3}", *permille as f64 / 1000.0);
                self.netns()?.iptables(&[
                    "-A",
                    "INPUT",
                    "-p",
                    "tcp",
                    "--dport",
                    &port,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ])
            }
            Fault::StoreFull { node } => {
                let base = self.configs.get(node).cloned().unwrap_or_default();
                let mut t: toml::Table = toml::from_str(&base)?;
                let store = t
                    .entry("store")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(s) = store {
                    s.insert("max_size_mb".into(), toml::Value::Integer(1));
                }
                self.restart_with(node, &toml::to_string(&t)?, Vec::new())
                    .await?;
                self.ballast(node).await
            }
            Fault::ClockSkew { node, offset_s } => {
                if !self.faketime {
                    anyhow::bail!("{FAKETIME_LIB} missing (apt-get install faketime)");
                }
                let env = vec![
                    ("LD_PRELOAD".to_string(), FAKETIME_LIB.to_string()),
                    ("FAKETIME".to_string(), format!("{offset_s:+}")),
                    ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
                    ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
                ];
                let base = self.configs.get(node).cloned().unwrap_or_default();
                self.restart_with(node, &base, env).await
            }
            Fault::Replay { frames: n } => {
                let bus = self.bus.as_ref().context("no bus client")?;
                let sent = bus.replay(&mut self.rng, *n, hold).await;
                *note = Some(format!("{sent} frames sent"));
                Ok(())
            }
            Fault::Forge { frames: n } => {
                let bus = self.bus.as_ref().context("no bus client")?;
                let sent = bus.forge(&mut self.rng, *n, hold).await;
                *note = Some(format!("{sent} frames sent"));
                Ok(())
            }
        }
    }

    /// Fills `node`'s store past its limit with incompressible messages on the
    /// ballast channel (which no checker looks at), published by alice.
    async fn ballast(&mut self, node: &str) -> anyhow::Result<()> {
        self.net
            .client(node)
            .join(super::BALLAST, rmds::Role::Reader)
            .await?;
        let w = self.net.client(super::BALLAST_WRITER);
        for _ in 0..BALLAST_MESSAGES {
            let payload: Vec<u8> = (0..BALLAST_BYTES).map(|_| self.rng.random()).collect();
            w.publish_bytes(super::BALLAST, payload, "application/octet-stream", None)
                .await?;
        }
        Ok(())
    }

    /// How often a (full) receiver refused to store since its last start.
    async fn refusals(&mut self, node: &str) -> String {
        let c = self.net.client(node);
        match tokio::time::timeout(Duration::from_secs(5), c.stats()).await {
            Ok(Ok(s)) => format!(
                "store errors {}, nacks sent {}",
                s["store_errors"], s["sent_nacks"]
            ),
            _ => "stats unavailable".into(),
        }
    }

    async fn restart_with(
        &mut self,
        node: &str,
        config: &str,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let a = self.net.node(node);
        a.kill().await?;
        std::fs::write(a.config_path(), config)?;
        a.set_env(env);
        a.start().await
    }

    async fn heal(&mut self, fault: &Fault) -> anyhow::Result<()> {
        match fault {
            Fault::KillRestart { node } => self.net.node(node).start().await,
            Fault::Pause { node } => {
                self.paused.remove(node);
                self.net.node(node).resume()
            }
            Fault::CleanRestart { .. } | Fault::Replay { .. } | Fault::Forge { .. } => Ok(()),
            Fault::NatsKill => self.net.start_nats().await,
            Fault::NatsPause => {
                self.nats_paused = false;
                let pid = self.net.nats.pid().context("nats-server not running")?;
                signal(pid, Signal::SIGCONT)
            }
            Fault::Partition { node } => self.net.heal(node),
            Fault::Blackhole | Fault::PacketLoss { .. } => self.netns()?.flush(),
            Fault::StoreFull { node } | Fault::ClockSkew { node, .. } => {
                let base = self.configs.get(node).cloned().unwrap_or_default();
                self.restart_with(node, &base, Vec::new()).await
            }
        }
    }

    /// Undoes everything: NATS resumed and running, no iptables rule, every proxy
    /// restored, every agent resumed and running with its own config and clock.
    /// Returns the agents found dead on their own (a finding).
    pub async fn heal_all(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        if let Some(ns) = &self.netns {
            let _ = ns.flush();
        }
        if self.nats_paused {
            if let Some(pid) = self.net.nats.pid() {
                let _ = signal(pid, Signal::SIGCONT);
            }
            self.nats_paused = false;
        }
        let _ = self.net.start_nats().await;
        for id in self.net.nodes() {
            let _ = self.net.heal(&id);
            if self.paused.remove(&id) {
                let _ = self.net.node(&id).resume();
            }
            let a = self.net.node(&id);
            if let Ok(Some(status)) = a.exited() {
                dead.push(format!("{id} exited on its own ({status})"));
                let _ = a.kill().await;
            }
            if !a.running() {
                let _ = a.start().await;
            }
        }
        dead
    }

    /// Frames the bus client captured.
    pub fn captured(&self) -> u64 {
        self.bus.as_ref().map(Bus::captured).unwrap_or(0)
    }
}
