//! `rmds-scenarios chaos`: a seeded nemesis against a live net, Jepsen-style.
//!
//! ```text
//! cli       the subcommand's options, re-exec under unshare -n, the run
//! schedule  seed → the list of faults, printed before the run (pure, unit-tested)
//! netns     the private network namespace; the only way to run iptables
//! bus       a NATS client that captures, replays and forges frames on rmds.>
//! faults    the nemesis: carries out and heals each fault on the TestNet
//! traffic   numbered publishers and recording consumers, and their ledger
//! check     which missing messages a policy explains; order and duplicates
//! report    the verdict per stream, as text, Markdown and JSON
//! ```
//!
//! A run: start NATS and four agents (alice writer, bob rw, lisa and andy readers) on
//! five channels with mixed policies, start traffic, carry out the schedule, heal
//! everything, let delivery settle, judge every stream.

pub mod bus;
pub mod check;
pub mod cli;
pub mod faults;
pub mod netns;
pub mod report;
pub mod schedule;
pub mod traffic;

use crate::harness::TestNet;
use check::{ChannelDef, Kind, StoreFull};
use rand::rngs::StdRng;
use rand::SeedableRng;
use report::ChaosReport;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writers.
pub const WRITERS: [&str; 2] = ["alice", "bob"];
/// Readers (bob reads and writes).
pub const READERS: [&str; 3] = ["bob", "lisa", "andy"];
/// Every agent.
pub const NODES: [&str; 4] = ["alice", "bob", "lisa", "andy"];

/// The channels and the policies they exercise.
pub const CHANNELS: [ChannelDef; 5] = [
    ChannelDef {
        name: "orders",
        kind: Kind::Reject,
        about: "reject, 300 per receiver",
    },
    ChannelDef {
        name: "ticks",
        kind: Kind::DropOldest,
        about: "drop_oldest, 20 per receiver",
    },
    ChannelDef {
        name: "flash",
        kind: Kind::ShortTtl,
        about: "ttl 2s",
    },
    ChannelDef {
        name: "jobs",
        kind: Kind::Poison,
        about: "group max_deliveries 3, every 10th nacked",
    },
    ChannelDef {
        name: "late",
        kind: Kind::Late,
        about: "default, readers join after the start",
    },
];

/// The channel whose big messages fill a receiver's store (store-full fault); its
/// reader joins it only for the fault, and no checker looks at it.
pub const BALLAST: &str = "ballast";
/// Who publishes the ballast.
pub const BALLAST_WRITER: &str = "alice";

/// TTL of the short-lived channel's messages.
const SHORT_TTL: Duration = Duration::from_secs(2);

/// How to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seed of the schedule.
    pub seed: u64,
    /// Length of the fault phase.
    pub minutes: f64,
    /// Sign frames with a shared `cluster_key`.
    pub cluster_key: bool,
    /// Messages per second per (writer, channel).
    pub rate: u32,
    /// Longest wait for delivery to settle after healing.
    pub settle: Duration,
    /// The command line, for the report.
    pub command: String,
    /// The channels of the run (all of [`CHANNELS`] unless some are skipped).
    pub channels: Vec<ChannelDef>,
}

fn group_of(ch: &ChannelDef) -> &'static str {
    if ch.kind == Kind::Poison {
        "workers"
    } else {
        "chaos"
    }
}

fn channel_table() -> toml::Value {
    let t = |name: &str, policy: &str| -> toml::Value {
        toml::from_str::<toml::Table>(&format!("name = \"{name}\"\npolicy = {policy}"))
            .map(toml::Value::Table)
            .unwrap_or(toml::Value::Boolean(false))
    };
    toml::Value::Array(vec![
        t(
            "orders",
            "{ overflow = \"reject\", max_messages_per_receiver = 300 }",
        ),
        t(
            "ticks",
            "{ overflow = \"drop_oldest\", max_messages_per_receiver = 20 }",
        ),
        t("flash", "{ ttl = \"2s\" }"),
        t("jobs", "{ }"),
    ])
}

async fn start_net(cfg: &ChaosConfig) -> anyhow::Result<TestNet> {
    // Only alice is on `late` at start; the others join in `setup`.
    let joins = |role: &str| -> Vec<String> {
        CHANNELS
            .iter()
            .filter(|c| c.kind != Kind::Late || role == "writer")
            .map(|c| format!("{}:{role}", c.name))
            .collect()
    };
    let mut b = TestNet::builder();
    for (node, role) in [
        ("alice", "writer"),
        ("bob", "rw"),
        ("lisa", "reader"),
        ("andy", "reader"),
    ] {
        let mut j = joins(role);
        if node == BALLAST_WRITER {
            j.push(format!("{BALLAST}:writer"));
        }
        let j: Vec<&str> = j.iter().map(String::as_str).collect();
        b = b.agent(node, &j).proxied(node);
    }
    b = b
        .set("delivery", "window", 16)
        .set("delivery", "ack_timeout", "700ms")
        .set("delivery", "max_retry_attempts", 4)
        .set("delivery", "retry_max", "500ms")
        .set("groups", "ack_wait", "3s")
        .set("", "channels", channel_table());
    if cfg.cluster_key {
        b = b.set("nats", "cluster_key", format!("chaos-key-{}", cfg.seed));
    }
    b.start().await
}

/// Time the bus client gets to capture announcements from before the late joins.
const LATE_JOIN_AFTER: Duration = Duration::from_secs(3);

async fn setup(net: &TestNet, channels: &[ChannelDef]) -> anyhow::Result<()> {
    if channels.iter().any(|c| c.kind == Kind::Late) {
        tokio::time::sleep(LATE_JOIN_AFTER).await;
        for r in READERS {
            let role = if WRITERS.contains(&r) {
                rmds::Role::Rw
            } else {
                rmds::Role::Reader
            };
            for ch in channels.iter().filter(|c| c.kind == Kind::Late) {
                net.client(r).join(ch.name, role).await?;
            }
        }
    }
    for r in READERS {
        let c = net.client(r);
        for &ch in channels {
            let opts = rmds::GroupOptions {
                max_deliveries: (ch.kind == Kind::Poison).then_some(3),
                ..Default::default()
            };
            c.ensure_group(ch.name, group_of(&ch), &opts).await?;
        }
    }
    for w in WRITERS {
        for ch in channels {
            let readers: Vec<&str> = READERS.iter().copied().filter(|r| *r != w).collect();
            net.wait_discovered(w, ch.name, &readers).await?;
        }
    }
    Ok(())
}

/// The schedule of a run: `seed`, a fault phase of `minutes`, with or without
/// iptables faults.
pub fn plan(seed: u64, minutes: f64, network: bool) -> Vec<schedule::Step> {
    schedule::schedule(
        seed,
        &schedule::Options {
            duration_ms: (minutes * 60_000.0) as u64,
            nodes: NODES.iter().map(|s| s.to_string()).collect(),
            readers: READERS.iter().map(|s| s.to_string()).collect(),
            network,
        },
    )
}

/// Runs the whole thing; `ns` is the run's own network namespace when network
/// faults are on.
pub async fn run(cfg: ChaosConfig, ns: Option<netns::Netns>) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let duration_ms = (cfg.minutes * 60_000.0) as u64;
    let plan = plan(cfg.seed, cfg.minutes, ns.is_some());
    eprintln!(
        "chaos seed {} — schedule ({} faults):",
        cfg.seed,
        plan.len()
    );
    for s in &plan {
        eprintln!("  {s}");
    }
    let netns_id = ns.as_ref().map(|n| n.id().to_string());
    let net = start_net(&cfg).await?;
    eprintln!("net in {}", net.dir().display());
    let bus = bus::Bus::start(&net.nats.url(), "rmds", cfg.cluster_key)
        .await
        .ok();
    setup(&net, &cfg.channels).await?;
    let clients: BTreeMap<String, rmds::Client> = NODES
        .iter()
        .map(|n| (n.to_string(), net.client(n)))
        .collect();
    let ledger = traffic::Shared::default();
    let (stop_pub, stop_con) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut consumers = Vec::new();
    for r in READERS {
        for &ch in &cfg.channels {
            consumers.push(traffic::spawn_consumer(
                clients[r].clone(),
                r.into(),
                ch.name.into(),
                group_of(&ch).into(),
                ch.kind == Kind::Poison,
                ledger.clone(),
                stop_con.clone(),
            ));
        }
    }
    let interval = Duration::from_millis(1000 / u64::from(cfg.rate.max(1)));
    let mut publishers = Vec::new();
    for w in WRITERS {
        for ch in &cfg.channels {
            publishers.push(traffic::spawn_publisher(
                clients[w].clone(),
                w.into(),
                ch.name.into(),
                (ch.kind == Kind::ShortTtl).then_some(SHORT_TTL),
                interval,
                ledger.clone(),
                stop_pub.clone(),
            ));
        }
    }
    let mut nemesis = faults::Nemesis::new(net, ns, bus, StdRng::seed_from_u64(cfg.seed ^ 0x5eed));
    nemesis.start_clock();
    let t0 = Instant::now();
    let epoch0 = now_ms();
    for step in &plan {
        tokio::time::sleep_until((t0 + Duration::from_millis(step.at_ms)).into()).await;
        nemesis.run_step(step).await;
    }
    tokio::time::sleep_until((t0 + Duration::from_millis(duration_ms)).into()).await;
    let mut findings: Vec<String> = nemesis.heal_all().await;
    eprintln!("healed at {:.1}s; settling", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_pub.store(true, Ordering::Relaxed);
    for p in publishers {
        let _ = p.await;
    }
    let mut notes = Vec::new();
    match settle(&clients, &cfg.channels, cfg.settle).await {
        Ok(Settled::Empty) => {}
        Ok(Settled::Strangers(v)) => {
            for (w, p, who) in v {
                notes.push(format!(
                    "{w} keeps {p} messages pending for peers the run never started \
                     ({who:?}): forged announcements accepted as members"
                ));
            }
        }
        Err(e) => findings.push(format!("delivery did not settle: {e:#}")),
    }
    stop_con.store(true, Ordering::Relaxed);
    for c in consumers {
        let _ = c.await;
    }
    if let Err(e) = nemesis.net.assert_healthy() {
        findings.push(format!("{e:#}"));
    }
    let store_full: Vec<StoreFull> = nemesis
        .history
        .iter()
        .filter_map(|a| match &a.step.fault {
            schedule::Fault::StoreFull { node } => Some(StoreFull {
                node: node.clone(),
                from_ms: epoch0 + a.started_ms as i64 - 1_000,
                to_ms: epoch0 + a.healed_ms as i64 + 15_000,
            }),
            _ => None,
        })
        .collect();
    let l = traffic::snapshot(&ledger);
    let streams = check::streams(
        &clients,
        &l,
        &WRITERS,
        &READERS,
        &cfg.channels,
        group_of,
        &store_full,
    )
    .await;
    let mut fault_counts = BTreeMap::new();
    for a in &nemesis.history {
        *fault_counts
            .entry(a.step.fault.kind().to_string())
            .or_default() += 1;
    }
    let passed = findings.is_empty() && streams.iter().all(|s| s.ok()) && !streams.is_empty();
    Ok(ChaosReport {
        command: cfg.command.clone(),
        seed: cfg.seed,
        minutes: cfg.minutes,
        cluster_key: cfg.cluster_key,
        netns: netns_id,
        schedule: plan,
        frames_captured: nemesis.captured(),
        history: nemesis.history.clone(),
        fault_counts,
        streams,
        findings,
        notes,
        refused: l
            .refused
            .iter()
            .map(|((w, c), v)| (format!("{w}/{c}"), v.clone()))
            .collect(),
        duration_s: started.elapsed().as_secs_f64(),
        passed,
    })
}

/// How settling ended.
enum Settled {
    /// Every backlog and group empty.
    Empty,
    /// Groups empty, but writers keep a stable backlog for peers that are not part
    /// of the run (forged announcements without `cluster_key`): (writer, pending,
    /// strangers).
    Strangers(Vec<(String, u64, Vec<String>)>),
}

/// Polls needed in a row (500 ms apart) for a verdict.
const QUIET_POLLS: u32 = 3;
/// Polls a non-zero backlog must stay unchanged to be put down to strangers.
const STABLE_POLLS: u32 = 20;

/// Waits until every reader group is empty and every writer has nothing pending (or,
/// if peers the run never started exist, a backlog that no longer moves).
async fn settle(
    clients: &BTreeMap<String, rmds::Client>,
    channels: &[ChannelDef],
    timeout: Duration,
) -> anyhow::Result<Settled> {
    let deadline = Instant::now() + timeout;
    let (mut quiet, mut stable) = (0, 0);
    let mut last = String::new();
    let mut prev: Vec<u64> = Vec::new();
    while Instant::now() < deadline {
        match busy(clients, channels).await {
            Ok(pending) if pending.iter().all(|&p| p == 0) => {
                quiet += 1;
                if quiet >= QUIET_POLLS {
                    return Ok(Settled::Empty);
                }
            }
            Ok(pending) => {
                quiet = 0;
                stable = if pending == prev { stable + 1 } else { 0 };
                last = format!("writers' pending {pending:?}");
                if stable >= STABLE_POLLS {
                    let strangers = strangers(clients).await;
                    if !strangers.is_empty() {
                        let v = WRITERS
                            .iter()
                            .zip(&pending)
                            .filter(|(_, &p)| p > 0)
                            .map(|(w, &p)| (w.to_string(), p, strangers.clone()))
                            .collect();
                        return Ok(Settled::Strangers(v));
                    }
                }
                prev = pending;
            }
            Err(what) => {
                quiet = 0;
                stable = 0;
                last = what;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("still busy after {timeout:?}: {last}")
}

/// Peers some agent knows that the run did not start.
async fn strangers(clients: &BTreeMap<String, rmds::Client>) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for c in clients.values() {
        let t = Duration::from_secs(5);
        if let Ok(Ok(v)) = tokio::time::timeout(t, c.get_json("/v1/nodes")).await {
            let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
            for n in nodes {
                let id = n["node_id"].as_str().or_else(|| n["id"].as_str());
                if let Some(id) = id.filter(|id| !NODES.contains(id)) {
                    out.insert(id.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Each writer's pending messages once every reader group is empty, or what still
/// has work.
async fn busy(
    clients: &BTreeMap<String, rmds::Client>,
    channels: &[ChannelDef],
) -> Result<Vec<u64>, String> {
    let t = Duration::from_secs(5);
    for r in READERS {
        for ch in channels {
            let g = tokio::time::timeout(t, clients[r].group(ch.name, group_of(ch))).await;
            match g.ok().and_then(|r| r.ok()) {
                Some(g) if g["pending"].as_u64() == Some(0) => {}
                Some(g) => {
                    return Err(format!(
                        "{r}'s group on {} has {} pending",
                        ch.name, g["pending"]
                    ))
                }
                None => return Err(format!("{r} does not answer")),
            }
        }
    }
    let mut pending = Vec::new();
    for w in WRITERS {
        let s = tokio::time::timeout(t, clients[w].stats()).await;
        match s.ok().and_then(|r| r.ok()) {
            Some(s) => pending.push(s["pending_messages"].as_u64().unwrap_or(u64::MAX)),
            None => return Err(format!("{w} does not answer")),
        }
    }
    Ok(pending)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
