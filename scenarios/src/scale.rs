//! `rmds-scale`: many real agents on one NATS, measured (docs/scale.md).
//!
//! Phase 1 starts `agents` agents: `writers` of them `rw` on every channel, the rest
//! readers of one channel each. It measures the time until every agent sees every
//! other online, then, over an idle window, each agent's CPU (from /proc) and RSS and
//! the discovery traffic on the bus (every hello, keepalive, bye and state request,
//! decoded to attribute it to its node); then one message fanned out to every reader
//! of a channel (each must get it once), then `kill` readers killed with kill -9 and
//! the time until a writer sees them all offline.
//! Phase 2 compares what an agent with 1 channel and one with 200 publish.

use crate::harness::{eventually, TestNet};
use anyhow::Context;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// Agents in phase 1.
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
    /// Writers among them (rw on every channel).
    #[arg(long, default_value_t = 5)]
    pub writers: usize,
    /// Channels.
    #[arg(long, default_value_t = 5)]
    pub channels: usize,
    /// keepalive_interval of every agent.
    #[arg(long, default_value = "1s")]
    pub interval: humantime::Duration,
    /// node_offline_timeout of every agent.
    #[arg(long, default_value = "3s")]
    pub offline_timeout: humantime::Duration,
    /// Idle window for CPU, RSS and traffic.
    #[arg(long, default_value = "30s")]
    pub idle: humantime::Duration,
    /// Readers killed at the end.
    #[arg(long, default_value_t = 10)]
    pub kill: usize,
    /// Messages the first writer publishes to every reader of ch0 for the per-peer
    /// memory measure (its RSS with that many busy streams, then after they are idle
    /// for `--stream-idle-release`).
    #[arg(long, default_value_t = 100)]
    pub burst: u64,
    /// Bursts (each followed by the streams' release): memory per peer is bounded when
    /// a later round does not raise the RSS a former one reached.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// `delivery.stream_idle_release` of every agent.
    #[arg(long, default_value = "5s")]
    pub stream_idle_release: humantime::Duration,
    /// Writes the Markdown report here too.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

/// Discovery bytes seen on the bus, per node and kind.
#[derive(Default)]
struct Traffic {
    by_node: BTreeMap<String, u64>,
    by_kind: BTreeMap<&'static str, u64>,
}

async fn monitor(url: &str) -> anyhow::Result<Arc<Mutex<Traffic>>> {
    let nc = async_nats::connect(url).await?;
    let t = Arc::new(Mutex::new(Traffic::default()));
    for subject in [
        "rmds.hello",
        "rmds.keepalive",
        "rmds.keepalive.reader",
        "rmds.bye",
        "rmds.node.*.state",
        "rmds.node.*.announce",
    ] {
        let mut sub = nc.subscribe(subject.to_string()).await?;
        let t = t.clone();
        tokio::spawn(async move {
            let codec = rmds::agent::wire::Codec::new(None);
            while let Some(m) = sub.next().await {
                let kind: &'static str = if m.subject.ends_with(".state") {
                    "state requests"
                } else if m.subject.ends_with(".announce") {
                    "answers to hellos"
                } else if m.subject.as_str() == "rmds.keepalive" {
                    "keepalive (to everyone)"
                } else if m.subject.as_str() == "rmds.keepalive.reader" {
                    "keepalive (reader-only nodes, to writers)"
                } else if m.subject.as_str() == "rmds.hello" {
                    "hello"
                } else {
                    "bye"
                };
                let node = match codec.decode(&m.payload) {
                    Ok(rmds::agent::wire::Packet::Keepalive(a))
                    | Ok(rmds::agent::wire::Packet::Hello(a)) => a.node.to_string(),
                    _ => "?".into(),
                };
                let len = m.payload.len() as u64 + m.subject.len() as u64;
                if let Ok(mut t) = t.lock() {
                    *t.by_node.entry(node).or_default() += len;
                    *t.by_kind.entry(kind).or_default() += len;
                }
            }
        });
    }
    // Keep the connection alive with the subscriptions.
    std::mem::forget(nc);
    Ok(t)
}

fn snapshot(t: &Arc<Mutex<Traffic>>) -> (BTreeMap<String, u64>, BTreeMap<&'static str, u64>) {
    let t = t.lock().expect("traffic");
    (t.by_node.clone(), t.by_kind.clone())
}

/// Each agent's `discovery_bytes_received` counter (0 when it cannot be read).
async fn discovery_received(clients: &[rmds::Client]) -> Vec<u64> {
    let mut out = Vec::with_capacity(clients.len());
    for c in clients {
        let v = c.stats().await.ok();
        out.push(
            v.and_then(|v| v["discovery_bytes_received"].as_u64())
                .unwrap_or(0),
        );
    }
    out
}

/// CPU ticks (user + system) and RSS (kB) of a process.
fn proc_stat(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let avg = v.iter().sum::<f64>() / n;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, avg, max)
}

async fn online_peers(c: &rmds::Client) -> Option<usize> {
    let v = c.get_json("/v1/nodes").await.ok()?;
    Some(
        v["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["self"] == false && n["online"] == true)
            .count(),
    )
}

/// Runs both phases and prints the report.
/// The first writer's memory with a stream to each of `readers` receivers: its RSS
/// idle, after `--burst` messages to all of them (every stream busy), and once the
/// streams have been idle for `stream_idle_release` (their tasks released).
async fn per_peer_memory(
    a: &ScaleArgs,
    net: &TestNet,
    writer: &rmds::Client,
    readers: usize,
    line: &mut impl FnMut(String),
) -> anyhow::Result<()> {
    let pid = net.pid("n000").context("n000 is not running")?;
    let rss = || proc_stat(pid).map_or(0.0, |(_, kib)| kib as f64 / 1024.0);
    let peak = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0)
    };
    let released = |v: &serde_json::Value| v["streams_released"].as_u64().unwrap_or(0);
    let before = rss();
    line(format!(
        "| n000's RSS with streams to {readers} readers, idle before any burst | {before:.1} MiB |"
    ));
    for round in 1..=a.rounds.max(1) {
        let released0 = released(&writer.stats().await?);
        let payloads: Vec<String> = (0..a.burst)
            .map(|i| format!("round {round} burst {i}"))
            .collect();
        for chunk in payloads.chunks(100) {
            writer.publish_batch("ch0", chunk).await?;
        }
        // Delivered to every reader: nothing pending at n000.
        net.wait_drained("n000", Duration::from_secs(120)).await?;
        let busy = rss();
        let idle_release: Duration = a.stream_idle_release.into();
        let w = writer.clone();
        let want = released0 + readers as u64;
        let waited = eventually(
            idle_release * 4 + Duration::from_secs(30),
            "the idle streams released",
            || {
                let w = w.clone();
                async move {
                    let n = released(&w.stats().await.ok()?);
                    (n >= want).then_some(n)
                }
            },
        )
        .await;
        let after = rss();
        let freed = match waited {
            Ok(n) => format!("{} streams released", n - released0),
            Err(e) => format!("not all streams released: {e}"),
        };
        line(format!(
            "| round {round}: n000's RSS after {} messages to each reader (peak so far) / streams idle for {} ({freed}) | {busy:.1} ({:.1}) / {after:.1} MiB |",
            a.burst, a.stream_idle_release, peak()
        ));
    }
    // What the RSS is made of: anonymous memory (heap) or mapped files (SQLite's -shm).
    let parts = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("RssAnon:") || l.starts_with("RssFile:") || l.starts_with("RssShmem:")
        })
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ");
    line(format!(
        "| n000's RSS once released, by kind (KiB) | {parts} |"
    ));
    Ok(())
}

pub async fn run(a: ScaleArgs) -> anyhow::Result<()> {
    let interval: Duration = a.interval.into();
    let offline: Duration = a.offline_timeout.into();
    let mut out = String::new();
    let mut line = |s: String| {
        println!("{s}");
        out.push_str(&s);
        out.push('\n');
    };
    let name = |i: usize| format!("n{i:03}");
    let joins: Vec<Vec<String>> = (0..a.agents)
        .map(|i| {
            if i < a.writers {
                (0..a.channels).map(|c| format!("ch{c}:rw")).collect()
            } else {
                vec![format!("ch{}:reader", i % a.channels)]
            }
        })
        .collect();
    let mut b = TestNet::builder()
        .set("discovery", "keepalive_interval", a.interval.to_string())
        .set(
            "discovery",
            "node_offline_timeout",
            a.offline_timeout.to_string(),
        )
        .set(
            "delivery",
            "stream_idle_release",
            a.stream_idle_release.to_string(),
        )
        .set("log", "level", "warn");
    for (i, j) in joins.iter().enumerate() {
        let j: Vec<&str> = j.iter().map(String::as_str).collect();
        b = b.agent(&name(i), &j);
    }
    let started = Instant::now();
    let mut net = b.start().await?;
    let all_started = Instant::now();
    let traffic = monitor(&net.nats.url()).await?;
    let clients: Vec<rmds::Client> = (0..a.agents).map(|i| net.client(&name(i))).collect();
    let want = a.agents - 1;
    eventually(Duration::from_secs(120), "everyone sees everyone", || {
        let clients = clients.clone();
        async move {
            for c in &clients {
                if online_peers(c).await? < want {
                    return None;
                }
            }
            Some(())
        }
    })
    .await?;
    let converged = all_started.elapsed();
    line(format!("## {} agents ({} writers rw on {} channels, the rest readers of one), keepalive_interval {}, node_offline_timeout {}\n", a.agents, a.writers, a.channels, a.interval, a.offline_timeout));
    line("| measure | value |".into());
    line("|---|---|".into());
    line(format!(
        "| start of all agents (one after the other) | {:.1} s |",
        (all_started - started).as_secs_f64()
    ));
    line(format!(
        "| everyone sees everyone, after the last start | {:.2} s ({:.1} × keepalive_interval) |",
        converged.as_secs_f64(),
        converged.as_secs_f64() / interval.as_secs_f64()
    ));

    // Idle window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids: Vec<u32> = (0..a.agents).filter_map(|i| net.pid(&name(i))).collect();
    let before: Vec<(u64, u64)> = pids.iter().filter_map(|p| proc_stat(*p)).collect();
    let (t0_nodes, t0_kinds) = snapshot(&traffic);
    let r0 = discovery_received(&clients).await;
    let w = Instant::now();
    tokio::time::sleep(a.idle.into()).await;
    let secs = w.elapsed().as_secs_f64();
    let after: Vec<(u64, u64)> = pids.iter().filter_map(|p| proc_stat(*p)).collect();
    let (t1_nodes, t1_kinds) = snapshot(&traffic);
    let r1 = discovery_received(&clients).await;
    let tick = 100.0; // USER_HZ
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0) as f64 / tick / secs * 100.0)
        .collect();
    let rss: Vec<f64> = after.iter().map(|(_, r)| *r as f64 / 1024.0).collect();
    let (cmin, cavg, cmax) = stats(&cpu);
    let (rmin, ravg, rmax) = stats(&rss);
    line(format!(
        "| idle CPU per agent (min / avg / max, % of a core) | {cmin:.2} / {cavg:.2} / {cmax:.2} |"
    ));
    line(format!(
        "| RSS per agent (min / avg / max) | {rmin:.1} / {ravg:.1} / {rmax:.1} MiB |"
    ));
    let per_node: Vec<f64> = (0..a.agents)
        .map(|i| {
            let n = name(i);
            (t1_nodes.get(&n).copied().unwrap_or(0) - t0_nodes.get(&n).copied().unwrap_or(0)) as f64
                / secs
        })
        .collect();
    let (pmin, pavg, pmax) = stats(&per_node);
    let published: f64 = per_node.iter().sum();
    line(format!("| discovery bytes published per agent (min / avg / max) | {pmin:.0} / {pavg:.0} / {pmax:.0} B/s |"));
    line(format!(
        "| discovery bytes published, all agents | {published:.0} B/s |"
    ));
    for (k, v) in &t1_kinds {
        let d = (*v - t0_kinds.get(k).copied().unwrap_or(0)) as f64 / secs;
        line(format!("| … of which {k} | {d:.0} B/s |"));
    }
    // What each agent received, by its own counter (`discovery_bytes_received`).
    let rate = |i: usize| (r1[i].saturating_sub(r0[i])) as f64 / secs;
    let (writers, readers): (Vec<usize>, Vec<usize>) =
        (0..a.agents).partition(|i| joins[*i].iter().any(|j| !j.ends_with(":reader")));
    let of = |set: &[usize]| stats(&set.iter().map(|i| rate(*i)).collect::<Vec<_>>());
    let (wmin, wavg, wmax) = of(&writers);
    line(format!("| discovery bytes received per writer (min / avg / max) | {wmin:.0} / {wavg:.0} / {wmax:.0} B/s |"));
    if !readers.is_empty() {
        let (rmin, ravg, rmax) = of(&readers);
        line(format!("| discovery bytes received per reader-only agent (min / avg / max) | {rmin:.0} / {ravg:.0} / {rmax:.0} B/s |"));
    }
    let sent: f64 = (0..a.agents).map(rate).sum();
    line(format!(
        "| bytes the server sends for discovery (all agents received) | {sent:.0} B/s |"
    ));

    // Fan-out: one message to every reader of ch0.
    let readers: Vec<usize> = (0..a.agents)
        .filter(|i| joins[*i].iter().any(|j| j.starts_with("ch0:")))
        .filter(|i| *i != 0)
        .collect();
    let id = clients[0].publish_text("ch0", "fan-out").await?.id;
    let mut once = 0;
    for &r in &readers {
        let got = eventually(Duration::from_secs(30), "the fan-out message", || {
            let c = clients[r].clone();
            async move {
                let m = c
                    .pull("ch0", "default", 10, Duration::from_millis(500))
                    .await
                    .ok()?;
                (!m.is_empty()).then_some(m)
            }
        })
        .await?;
        let n = got.iter().filter(|m| m.id == id).count();
        for m in &got {
            m.ack().await?;
        }
        if n == 1 {
            once += 1;
        }
    }
    line(format!("| fan-out: one message from n000 on ch0 to its {} other readers | {} got it exactly once |", readers.len(), once));
    per_peer_memory(&a, &net, &clients[0], readers.len(), &mut line).await?;

    // Kill readers; the first writer must see them offline.
    let victims: Vec<String> = (a.writers..a.agents).rev().take(a.kill).map(name).collect();
    let t = Instant::now();
    for v in &victims {
        net.node(v).kill().await?;
    }
    let w0 = clients[0].clone();
    let victims2 = victims.clone();
    eventually(
        offline * 4 + Duration::from_secs(30),
        "the killed agents offline",
        || {
            let w0 = w0.clone();
            let victims = victims2.clone();
            async move {
                let v = w0.get_json("/v1/nodes").await.ok()?;
                let nodes = v["nodes"].as_array()?;
                victims
                    .iter()
                    .all(|k| {
                        nodes
                            .iter()
                            .any(|n| n["node_id"] == k.as_str() && n["online"] == false)
                    })
                    .then_some(())
            }
        },
    )
    .await?;
    let detected = t.elapsed();
    line(format!("| {} readers killed (kill -9): all offline at a writer after | {:.2} s (bound: node_offline_timeout + interval = {:.1} s) |", victims.len(), detected.as_secs_f64(), (offline + interval).as_secs_f64()));
    drop(net);

    // Phase 2: 1 channel against 200.
    let net = TestNet::builder()
        .set("discovery", "keepalive_interval", a.interval.to_string())
        .set(
            "discovery",
            "node_offline_timeout",
            a.offline_timeout.to_string(),
        )
        .agent("narrow", &["c0:reader"])
        .agent("wide", &[])
        .start()
        .await?;
    let wide = net.client("wide");
    for c in 0..200 {
        wide.join(&format!("c{c}"), rmds::Role::Reader).await?;
    }
    let traffic = monitor(&net.nats.url()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (b0, _) = snapshot(&traffic);
    let w = Instant::now();
    tokio::time::sleep(a.idle.into()).await;
    let secs = w.elapsed().as_secs_f64();
    let (b1, _) = snapshot(&traffic);
    let rate =
        |n: &str| (b1.get(n).copied().unwrap_or(0) - b0.get(n).copied().unwrap_or(0)) as f64 / secs;
    let (narrow, wide_rate) = (rate("narrow"), rate("wide"));
    line(String::new());
    line("## One channel against 200 (idle, after the joins)\n".into());
    line("| agent | channels | discovery bytes published |".into());
    line("|---|---|---|".into());
    line(format!("| narrow | 1 | {narrow:.0} B/s |"));
    line(format!(
        "| wide | 200 | {wide_rate:.0} B/s ({:.2}× narrow) |",
        wide_rate / narrow.max(1.0)
    ));
    if let Some(p) = &a.report {
        std::fs::write(p, &out)?;
    }
    Ok(())
}
