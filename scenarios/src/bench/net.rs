//! Bench networks: the test harness's real processes, with the agents' production
//! timings instead of the harness's short test intervals.

use super::jetstream::{self, JsSync};
use super::Args;
use crate::harness::{agent_binary, NatsServer, TestNet};
use anyhow::Context;
use serde_json::{json, Value};

/// Settings the harness shortens for tests; a bench puts the agent's own defaults
/// (from `rmds-agent --generate-config`) back.
const HARNESS_OVERRIDES: &[(&str, &str)] = &[
    ("nats", "ping_interval"),
    ("nats", "reconnect_max_delay"),
    ("discovery", "keepalive_interval"),
    ("discovery", "node_offline_timeout"),
    ("delivery", "ack_timeout"),
    ("delivery", "retry_initial"),
    ("delivery", "retry_max"),
    ("delivery", "sweep_interval"),
    ("groups", "ack_wait"),
];

/// Most undelivered messages per receiver and channel in a bench (far above any
/// phase's backlog, so nothing meets back-pressure by configuration).
pub const MAX_PER_RECEIVER: i64 = 100_000_000;

/// Everything a phase needs: the flags and the settings of every bench agent.
pub struct Ctx {
    /// The flags.
    pub args: Args,
    /// `(section, key, value)` set on every agent.
    pub settings: Vec<(String, String, toml::Value)>,
    /// `nats-server --version`.
    pub nats_version: String,
    /// What `--js-sync` means on this server, in words.
    pub js_sync: String,
}

/// The agent's defaults for the keys in [`HARNESS_OVERRIDES`].
pub fn production_settings() -> anyhow::Result<Vec<(String, String, toml::Value)>> {
    let bin = agent_binary()?;
    let out = std::process::Command::new(&bin)
        .arg("--generate-config")
        .output()
        .with_context(|| format!("running {} --generate-config", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} --generate-config failed",
        bin.display()
    );
    let t: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout))
        .context("parsing the generated config")?;
    let mut v = Vec::new();
    for (section, key) in HARNESS_OVERRIDES {
        let found = t
            .get(*section)
            .and_then(|s| s.get(*key))
            .or_else(|| t.get(*key))
            .cloned();
        match found {
            Some(val) => v.push((section.to_string(), key.to_string(), val)),
            None => eprintln!(
                "warning: {section}.{key} not in the generated config; the harness value stays"
            ),
        }
    }
    Ok(v)
}

/// `section.key=value` (the value as TOML, else as a string) from `--agent-set`.
fn parse_agent_set(kv: &str) -> anyhow::Result<(String, String, toml::Value)> {
    let (path, value) = kv
        .split_once('=')
        .with_context(|| format!("--agent-set {kv:?}: expected SECTION.KEY=VALUE"))?;
    let (section, key) = path
        .rsplit_once('.')
        .with_context(|| format!("--agent-set {kv:?}: expected SECTION.KEY=VALUE"))?;
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((section.to_string(), key.to_string(), value))
}

impl Ctx {
    /// Reads the agent's defaults and checks the JetStream options against the server.
    pub async fn new(args: Args) -> anyhow::Result<Ctx> {
        let mut settings = if args.harness_timings {
            Vec::new()
        } else {
            production_settings()?
        };
        let mut set = |s: &str, k: &str, v: toml::Value| settings.push((s.into(), k.into(), v));
        set("store", "synchronous", args.synchronous.as_str().into());
        set("groups", "receipts", args.receipts.into());
        set(
            "delivery",
            "max_messages_per_receiver",
            MAX_PER_RECEIVER.into(),
        );
        set("log", "level", "warn".into());
        for kv in &args.agent_set {
            let (s, k, v) = parse_agent_set(kv)?;
            settings.push((s, k, v));
        }
        let nats_version = NatsServer::version()
            .context("nats-server not found (install the nats-server package)")?;
        let js_sync = jetstream::check_sync(args.js_sync, &nats_version)?;
        Ok(Ctx {
            args,
            settings,
            nats_version,
            js_sync,
        })
    }

    /// A fresh network: nats-server (stopped when `nats_up` is false) and these agents,
    /// each `(node id, ["channel:role", …])`.
    pub async fn net(
        &self,
        agents: &[(String, Vec<String>)],
        nats_up: bool,
    ) -> anyhow::Result<TestNet> {
        let mut b = TestNet::builder();
        for (s, k, v) in &self.settings {
            b = b.set(s, k, v.clone());
        }
        if !nats_up {
            b = b.nats_down();
        }
        for (id, joins) in agents {
            let joins: Vec<&str> = joins.iter().map(String::as_str).collect();
            b = b.agent(id, &joins);
        }
        b.start()
            .await
            .context("starting nats-server and agents (is rmds-agent built in release?)")
    }

    /// The usual pair: alice writes `bench`, bob reads it; waits until alice knows bob.
    pub async fn pair(&self) -> anyhow::Result<TestNet> {
        let net = self
            .net(
                &[
                    spec("alice", super::rmds::CHANNEL, "writer"),
                    spec("bob", super::rmds::CHANNEL, "reader"),
                ],
                true,
            )
            .await?;
        net.wait_discovered("alice", super::rmds::CHANNEL, &["bob"])
            .await?;
        Ok(net)
    }

    /// The run's conditions, for the report.
    pub fn meta(&self) -> Value {
        let settings: serde_json::Map<String, Value> = self
            .settings
            .iter()
            .map(|(s, k, v)| {
                let v = serde_json::to_value(v).unwrap_or_else(|_| json!(v.to_string()));
                (format!("{s}.{k}"), v)
            })
            .collect();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        json!({
            "unix_time": unix,
            "git": git_head(),
            "agent_binary": agent_binary().map(|p| p.display().to_string()).unwrap_or_default(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "mem_total_kb": super::procfs::meminfo_kb("MemTotal"),
            "nats_server": self.nats_version,
            "js_sync": self.js_sync,
            "agent_settings": settings,
            "args": format!("{:?}", self.args),
        })
    }

    /// One line about the conditions.
    pub fn describe(&self) -> String {
        format!(
            "rmds-bench: {} B payloads, agents with synchronous={} receipts={} and {} timings, {}, {} cores; every phase on fresh processes on 127.0.0.1",
            self.args.size,
            self.args.synchronous,
            self.args.receipts,
            if self.args.harness_timings { "the test harness's short" } else { "production" },
            self.nats_version,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        )
    }
}

/// `git describe`-like state of the working directory: the commit, `+dirty` when
/// there are uncommitted changes (empty outside a git checkout).
fn git_head() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{head}{}", if dirty { "+dirty" } else { "" })
        }
        None => String::new(),
    }
}

/// `(id, ["channel:role"])`.
pub fn spec(id: &str, channel: &str, role: &str) -> (String, Vec<String>) {
    (id.to_string(), vec![format!("{channel}:{role}")])
}

/// What a `--js-sync` value means, in words, for [`Ctx::js_sync`] and the binaries.
pub fn js_sync_words(sync: JsSync, version: &str) -> String {
    match sync {
        JsSync::Default => format!(
            "default ({version}: JetStream fsyncs its files on an interval, 2 min by default, and acknowledges publishes from the page cache)"
        ),
        JsSync::Always => {
            format!("always ({version}: sync_interval: always, an fsync before every publish ack)")
        }
    }
}
