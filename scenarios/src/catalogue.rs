//! The named outage scenarios. Roles everywhere: alice (writer), bob (rw), lisa and
//! andy (readers) on channel `chat`.

use crate::compose::ComposeNet;
use crate::harness::TestNet;
use crate::scenario::{Backend, Cluster, Ctx, Outcome};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A scenario of the catalogue.
pub struct Scenario {
    /// Name used on the command line.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Whether the compose backend can run it.
    pub compose: bool,
}

/// Every scenario, in the order `run all` runs them.
pub const CATALOGUE: &[Scenario] = &[
    Scenario { name: "normal", about: "alice sends three messages; bob, lisa and andy get each once, in order", compose: true },
    Scenario { name: "nats-outage", about: "NATS stops after a first delivery; alice and bob keep publishing; NATS returns; everything arrives once, in order", compose: true },
    Scenario { name: "start-without-nats-warm", about: "agents that knew each other restart while NATS is down; alice publishes; NATS starts", compose: false },
    Scenario { name: "start-without-nats-cold", about: "fresh agents start with NATS down; alice publishes before ever seeing a reader; NATS starts", compose: false },
    Scenario { name: "thousand-in-order", about: "1000 numbered messages back to back reach each reader as exactly 1..1000", compose: true },
    Scenario { name: "reader-partitioned", about: "lisa is cut off NATS while bob and andy keep receiving; she gets everything when the link returns", compose: true },
    Scenario { name: "sender-killed", about: "alice is killed with kill -9 mid-stream and restarted", compose: true },
    Scenario { name: "receiver-killed", about: "lisa is killed with kill -9 mid-stream and restarted", compose: true },
    Scenario { name: "nats-flapping", about: "NATS is killed and restarted 10 times under load", compose: true },
    Scenario { name: "nats-cluster-node-lost", about: "a 3-server NATS cluster loses one server under load", compose: false },
    Scenario { name: "nats-cluster-each-server-lost", about: "each server of a 3-server NATS cluster in turn is killed while alice and bob publish, then restarted", compose: false },
    Scenario { name: "nats-cluster-rolling-restart", about: "a rolling restart of all three servers of a NATS cluster, with traffic before, during and after each restart", compose: false },
    Scenario { name: "leaf-link-cut", about: "two leaf-node servers on a 3-server hub cluster (alice and lisa on one, bob and andy on the other); the second leaf's link to the hub is cut: each leaf keeps delivering inside, cross-leaf messages wait and arrive once, in order, when the link returns", compose: false },
    Scenario { name: "long-outage", about: "NATS is down for 300 keepalive periods; short-TTL messages expire (counted as expired, not lost), the rest arrive", compose: false },
    Scenario { name: "receiver-paused", about: "lisa is frozen with SIGSTOP past the offline timeout, then resumed", compose: true },
];

const READERS: [&str; 3] = ["bob", "lisa", "andy"];

async fn processes(name: &str) -> anyhow::Result<Cluster> {
    let mut b = TestNet::builder()
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .agent("lisa", &["chat:reader"])
        .agent("andy", &["chat:reader"]);
    match name {
        "start-without-nats-cold" => b = b.nats_down(),
        "reader-partitioned" => b = b.proxied("lisa"),
        "nats-cluster-node-lost"
        | "nats-cluster-each-server-lost"
        | "nats-cluster-rolling-restart" => b = b.nats_cluster(3),
        "leaf-link-cut" => {
            b = b
                .nats_cluster(3)
                .nats_leaves(2, &[("alice", 0), ("lisa", 0), ("bob", 1), ("andy", 1)])
        }
        "long-outage" => {
            b = b.set("discovery", "keepalive_interval", "50ms").set(
                "discovery",
                "node_offline_timeout",
                "300ms",
            )
        }
        _ => {}
    }
    Ok(Cluster::Processes(Box::new(b.start().await?)))
}

/// The repository's docker-compose.yml (RMDS_COMPOSE_FILE overrides it).
pub fn compose_file() -> PathBuf {
    if let Ok(f) = std::env::var("RMDS_COMPOSE_FILE") {
        return PathBuf::from(f);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docker-compose.yml")
}

/// Runs one scenario on a backend and reports; never panics on a failure.
pub async fn run(name: &str, backend: Backend, faulty: bool) -> Outcome {
    let started = Instant::now();
    let cluster = match backend {
        Backend::Processes => processes(name).await,
        Backend::Compose => ComposeNet::up(compose_file(), "rmdsscenarios")
            .await
            .map(Cluster::Compose),
    };
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                scenario: name.into(),
                backend,
                passed: false,
                error: Some(format!("setup: {e:#}")),
                duration_ms: started.elapsed().as_millis() as u64,
                streams: Vec::new(),
                expired: 0,
                recoveries: Vec::new(),
                peak_backlog: 0,
            }
        }
    };
    let mut ctx = Ctx::new(cluster, "chat");
    ctx.faulty = faulty;
    let result =
        tokio::time::timeout(Duration::from_secs(300), body(name, backend, &mut ctx)).await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some("timed out after 300 s".into()),
    };
    ctx.finish(name, backend, started, error)
}

/// How long an agent must be silent before peers call it offline, per backend.
fn offline_wait(backend: Backend) -> Duration {
    match backend {
        Backend::Processes => Duration::from_millis(2500),
        Backend::Compose => Duration::from_secs(7),
    }
}

async fn verify_all(ctx: &mut Ctx) -> anyhow::Result<()> {
    for r in READERS {
        ctx.verify(r, Duration::from_secs(90)).await?;
    }
    Ok(())
}

async fn body(name: &str, backend: Backend, ctx: &mut Ctx) -> anyhow::Result<()> {
    let long = Duration::from_secs(120);
    if name != "start-without-nats-cold" {
        ctx.cluster
            .wait_discovered("alice", "chat", &READERS)
            .await?;
        ctx.cluster
            .wait_discovered("bob", "chat", &["lisa", "andy"])
            .await?;
    }
    match name {
        "normal" => {
            ctx.publish("alice", 3).await?;
            ctx.recovered("none", long).await?;
        }
        "nats-outage" => {
            ctx.publish("alice", 1).await?;
            ctx.recovered("none", long).await?;
            ctx.cluster.stop_nats().await?;
            ctx.publish("alice", 2).await?;
            ctx.publish("bob", 2).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            ctx.cluster.start_nats().await?;
            ctx.recovered("nats outage", long).await?;
        }
        "start-without-nats-warm" => {
            ctx.cluster.stop_nats().await?;
            for n in ["alice", "bob", "lisa", "andy"] {
                if let Cluster::Processes(net) = &mut ctx.cluster {
                    net.node(n).stop().await?;
                    net.node(n).start().await?;
                }
            }
            ctx.publish("alice", 3).await?;
            ctx.cluster.start_nats().await?;
            ctx.recovered("start without nats (warm)", long).await?;
        }
        "start-without-nats-cold" => {
            ctx.publish("alice", 3).await?;
            ctx.cluster.start_nats().await?;
            ctx.cluster
                .wait_discovered("alice", "chat", &READERS)
                .await?;
            ctx.recovered("start without nats (cold)", long).await?;
        }
        "thousand-in-order" => {
            ctx.publish("alice", 1000).await?;
            ctx.recovered("none", long).await?;
        }
        "reader-partitioned" => {
            ctx.publish("alice", 50).await?;
            ctx.cluster.partition("lisa").await?;
            tokio::time::sleep(offline_wait(backend)).await;
            ctx.publish("alice", 100).await?;
            ctx.publish("bob", 20).await?;
            // The others keep receiving while lisa is away.
            ctx.verify("andy", long).await?;
            ctx.cluster.heal("lisa").await?;
            ctx.recovered("lisa partitioned", long).await?;
            ctx.verify("bob", long).await?;
            ctx.verify("lisa", long).await?;
            return Ok(());
        }
        "sender-killed" => {
            ctx.publish("alice", 1000).await?;
            ctx.cluster.kill_agent("alice").await?;
            ctx.cluster.start_agent("alice").await?;
            ctx.publish("alice", 1000).await?;
            ctx.recovered("alice killed", long).await?;
        }
        "receiver-killed" => {
            ctx.publish("alice", 500).await?;
            ctx.cluster.kill_agent("lisa").await?;
            ctx.publish("alice", 500).await?;
            ctx.cluster.start_agent("lisa").await?;
            ctx.recovered("lisa killed", long).await?;
        }
        "nats-flapping" => {
            for _ in 0..10 {
                ctx.publish("alice", 50).await?;
                ctx.cluster.kill_nats().await?;
                ctx.publish("alice", 20).await?;
                ctx.publish("bob", 5).await?;
                ctx.cluster.start_nats().await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            ctx.recovered("nats killed 10 times", long).await?;
        }
        "nats-cluster-node-lost" => {
            ctx.publish("alice", 100).await?;
            if let Cluster::Processes(net) = &mut ctx.cluster {
                net.nats.kill().await?;
            }
            ctx.publish("alice", 200).await?;
            ctx.publish("bob", 50).await?;
            ctx.recovered("one of three nats servers killed", long)
                .await?;
        }
        "nats-cluster-each-server-lost" | "nats-cluster-rolling-restart" => {
            let kill = name == "nats-cluster-each-server-lost";
            ctx.publish("alice", 50).await?;
            for i in 0..3 {
                if let Cluster::Processes(net) = &mut ctx.cluster {
                    if kill {
                        net.nats_server(i).kill().await?;
                    } else {
                        net.nats_server(i).stop().await?;
                    }
                }
                // Traffic while server i is away: the agents on it move to the others.
                ctx.publish("alice", 100).await?;
                ctx.publish("bob", 30).await?;
                if let Cluster::Processes(net) = &mut ctx.cluster {
                    net.nats_server(i).start().await?;
                }
                ctx.publish("alice", 50).await?;
                // The cluster routes settle before the next server goes.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            ctx.recovered(
                if kill {
                    "each nats server killed in turn"
                } else {
                    "rolling restart of the nats cluster"
                },
                long,
            )
            .await?;
        }
        "leaf-link-cut" => leaf_link_cut(ctx).await?,
        "long-outage" => {
            ctx.cluster.stop_nats().await?;
            ctx.publish_with("alice", 100, Some(Duration::from_secs(3)))
                .await?;
            ctx.publish("alice", 100).await?;
            // 300 keepalive periods of 50 ms.
            tokio::time::sleep(Duration::from_secs(15)).await;
            ctx.cluster.start_nats().await?;
            ctx.recovered("15 s NATS outage", long).await?;
        }
        "receiver-paused" => {
            ctx.publish("alice", 50).await?;
            ctx.cluster.pause_agent("lisa").await?;
            tokio::time::sleep(offline_wait(backend)).await;
            ctx.publish("alice", 100).await?;
            ctx.cluster.resume_agent("lisa").await?;
            ctx.recovered("lisa paused", long).await?;
        }
        other => anyhow::bail!("no scenario {other}"),
    }
    verify_all(ctx).await
}

/// Leaf 0 holds alice (writer) and lisa (reader), leaf 1 bob (rw) and andy (reader).
/// With leaf 1's link to the hub cut, alice → lisa and bob → andy still flow (each
/// inside its leaf); alice → bob, alice → andy and bob → lisa wait in the senders'
/// outboxes and arrive once the link is back.
async fn leaf_link_cut(ctx: &mut Ctx) -> anyhow::Result<()> {
    let long = Duration::from_secs(120);
    ctx.publish("alice", 20).await?;
    ctx.publish("bob", 20).await?;
    ctx.recovered("nothing (warm-up across the leaves)", long)
        .await?;
    let Cluster::Processes(net) = &mut ctx.cluster else {
        anyhow::bail!("leaf-link-cut runs on local processes only");
    };
    net.cut_leaf(1)?;
    // Past the offline timeout: each side calls the other offline.
    tokio::time::sleep(offline_wait(Backend::Processes)).await;
    let (alice_from, bob_from) = (ctx.published("alice"), ctx.published("bob"));
    ctx.publish("alice", 100).await?;
    ctx.publish("bob", 40).await?;
    // Inside each leaf, delivery goes on during the cut.
    ctx.wait_delivered_since("alice", alice_from, "lisa", Duration::from_secs(30))
        .await?;
    ctx.wait_delivered_since("bob", bob_from, "andy", Duration::from_secs(30))
        .await?;
    // Across the cut, nothing can have arrived.
    for (sender, from, reader) in [
        ("alice", alice_from, "bob"),
        ("alice", alice_from, "andy"),
        ("bob", bob_from, "lisa"),
    ] {
        let n = ctx.delivered_since(sender, from, reader).await?;
        anyhow::ensure!(
            n == 0,
            "{n} of {sender}'s messages reached {reader} across a cut leaf link"
        );
    }
    let Cluster::Processes(net) = &mut ctx.cluster else {
        anyhow::bail!("leaf-link-cut runs on local processes only");
    };
    net.restore_leaf(1)?;
    ctx.publish("alice", 20).await?;
    ctx.publish("bob", 20).await?;
    ctx.recovered("leaf link to the hub cut", long).await
}
