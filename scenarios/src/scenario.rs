//! The scenario API: one cluster handle over either backend, traffic drivers that
//! publish numbered messages and consume through consumer groups, and the checks.

use crate::checker::{check_stream, StreamReport};
use crate::compose::ComposeNet;
use crate::harness::{drain, eventually, TestNet};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// nats-server and rmds-agent processes on loopback ports.
    Processes,
    /// The docker-compose.yml services.
    Compose,
}

/// The cluster under test.
pub enum Cluster {
    /// Local processes.
    Processes(Box<TestNet>),
    /// docker-compose services.
    Compose(ComposeNet),
}

impl Cluster {
    /// A client for a node's API.
    pub fn client(&self, node: &str) -> rmds::Client {
        match self {
            Cluster::Processes(n) => n.client(node),
            Cluster::Compose(c) => c.client(node),
        }
    }

    /// Node ids.
    pub fn nodes(&self) -> Vec<String> {
        match self {
            Cluster::Processes(n) => n.nodes(),
            Cluster::Compose(c) => c.nodes(),
        }
    }

    /// Stops NATS gracefully.
    pub async fn stop_nats(&mut self) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.stop_nats().await,
            Cluster::Compose(c) => c.stop("nats"),
        }
    }

    /// Kills NATS (SIGKILL).
    pub async fn kill_nats(&mut self) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.kill_nats().await,
            Cluster::Compose(c) => c.kill("nats"),
        }
    }

    /// Starts NATS again.
    pub async fn start_nats(&mut self) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.start_nats().await,
            Cluster::Compose(c) => c.start("nats"),
        }
    }

    /// `kill -9` an agent.
    pub async fn kill_agent(&mut self, node: &str) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.node(node).kill().await,
            Cluster::Compose(c) => c.kill(node),
        }
    }

    /// Starts an agent again (same data).
    pub async fn start_agent(&mut self, node: &str) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.node(node).start().await,
            Cluster::Compose(c) => {
                c.start(node)?;
                let cl = c.client(node);
                eventually(Duration::from_secs(60), "the agent to answer", || {
                    let cl = cl.clone();
                    async move { cl.health().await.ok().map(|_| ()) }
                })
                .await
            }
        }
    }

    /// Freezes an agent (SIGSTOP / docker pause).
    pub async fn pause_agent(&mut self, node: &str) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.node(node).pause(),
            Cluster::Compose(c) => c.pause(node),
        }
    }

    /// Thaws an agent.
    pub async fn resume_agent(&mut self, node: &str) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.node(node).resume(),
            Cluster::Compose(c) => c.unpause(node),
        }
    }

    /// Cuts one agent off NATS while the others keep it.
    pub async fn partition(&mut self, node: &str) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.partition(node),
            Cluster::Compose(c) => c.disconnect(node),
        }
    }

    /// Reconnects a partitioned agent.
    pub async fn heal(&mut self, node: &str) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.heal(node),
            Cluster::Compose(c) => c.connect(node),
        }
    }

    /// Waits until `node` sees each reader of `channel` online.
    pub async fn wait_discovered(
        &self,
        node: &str,
        channel: &str,
        readers: &[&str],
    ) -> anyhow::Result<()> {
        let c = self.client(node);
        crate::harness::wait_readers(&c, node, channel, readers, Duration::from_secs(60)).await
    }

    /// Panics or unexpected exits of agents (processes backend).
    pub fn check_healthy(&mut self) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(n) => n.assert_healthy(),
            Cluster::Compose(_) => Ok(()),
        }
    }
}

/// A fault and how long the cluster took to recover from it.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The fault.
    pub fault: String,
    /// From the fault's repair until every sender had nothing pending (ms).
    pub recovery_ms: u64,
}

/// A scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub scenario: String,
    /// Backend.
    pub backend: Backend,
    /// Every check passed.
    pub passed: bool,
    /// Why it failed (setup or invariant), if it did.
    pub error: Option<String>,
    /// Wall time (ms).
    pub duration_ms: u64,
    /// Per (sender, reader, channel).
    pub streams: Vec<StreamReport>,
    /// Messages that expired by TTL before reaching a reader (not lost).
    pub expired: u64,
    /// Recovery after each fault.
    pub recoveries: Vec<Recovery>,
    /// Highest number of undelivered messages seen at any sender.
    pub peak_backlog: u64,
}

/// What a scenario works with.
pub struct Ctx {
    /// The cluster.
    pub cluster: Cluster,
    /// The channel.
    pub channel: String,
    /// Published: sender → (number, message id), in publish order.
    sent: BTreeMap<String, Vec<(u64, String)>>,
    next: BTreeMap<String, u64>,
    recoveries: Vec<Recovery>,
    peak: Arc<AtomicU64>,
    sampler: Option<tokio::task::JoinHandle<()>>,
    streams: Vec<StreamReport>,
    expired: u64,
    short_ttl: bool,
    /// Self-test: the recorder drops, repeats and swaps messages on purpose.
    pub faulty: bool,
}

impl Ctx {
    /// A context over a started cluster; samples every sender's backlog.
    pub fn new(cluster: Cluster, channel: &str) -> Ctx {
        let peak = Arc::new(AtomicU64::new(0));
        let clients: Vec<rmds::Client> =
            cluster.nodes().iter().map(|n| cluster.client(n)).collect();
        let p = peak.clone();
        let sampler = tokio::spawn(async move {
            loop {
                for c in &clients {
                    // A frozen agent must not stall the sampling of the others.
                    let r = tokio::time::timeout(Duration::from_millis(500), c.stats()).await;
                    if let Ok(Ok(s)) = r {
                        let pending = s["pending_messages"].as_u64().unwrap_or(0);
                        p.fetch_max(pending, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ctx {
            cluster,
            channel: channel.into(),
            sent: BTreeMap::new(),
            next: BTreeMap::new(),
            recoveries: Vec::new(),
            peak,
            sampler: Some(sampler),
            streams: Vec::new(),
            expired: 0,
            short_ttl: false,
            faulty: false,
        }
    }

    /// Publishes `count` numbered messages from `sender` (numbers continue per
    /// sender), retrying a publish the agent could not answer (same idempotency key).
    pub async fn publish(&mut self, sender: &str, count: u64) -> anyhow::Result<()> {
        self.publish_with(sender, count, None).await
    }

    /// Like [`Ctx::publish`] with a time to live.
    pub async fn publish_with(
        &mut self,
        sender: &str,
        count: u64,
        ttl: Option<Duration>,
    ) -> anyhow::Result<()> {
        let c = self.cluster.client(sender);
        self.short_ttl |= ttl.is_some();
        for _ in 0..count {
            let n = {
                let e = self.next.entry(sender.to_string()).or_insert(0);
                *e += 1;
                *e
            };
            let opts = rmds::PublishOptions {
                content_type: "application/json".into(),
                ttl,
                idempotency_key: Some(format!("{sender}-{n}")),
                ..Default::default()
            };
            let body = json!({"sender": sender, "n": n}).to_string().into_bytes();
            let id = loop {
                match c.publish_with(&self.channel, body.clone(), &opts).await {
                    Ok(r) => break r.id,
                    Err(e)
                        if matches!(
                            e.kind,
                            rmds::ErrorKind::Connect | rmds::ErrorKind::Backpressure
                        ) =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => anyhow::bail!("publish {n} from {sender}: {e}"),
                }
            };
            self.sent
                .entry(sender.to_string())
                .or_default()
                .push((n, id));
        }
        Ok(())
    }

    /// How many messages `sender` has published so far.
    pub fn published(&self, sender: &str) -> usize {
        self.sent.get(sender).map_or(0, Vec::len)
    }

    /// How many of `sender`'s messages after its first `from` are delivered to
    /// `reader`, by the sender's own per-receiver status.
    pub async fn delivered_since(
        &self,
        sender: &str,
        from: usize,
        reader: &str,
    ) -> anyhow::Result<usize> {
        let c = self.cluster.client(sender);
        let mut n = 0;
        for (_, id) in self.sent.get(sender).into_iter().flatten().skip(from) {
            let st = c.status(id).await?;
            let delivered = st["receivers"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["receiver"] == reader
                        && (r["state"] == "delivered" || r["state"] == "consumed")
                })
            });
            n += usize::from(delivered);
        }
        Ok(n)
    }

    /// Waits until every message `sender` published after its first `from` is
    /// delivered to `reader`.
    pub async fn wait_delivered_since(
        &self,
        sender: &str,
        from: usize,
        reader: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let want = self.published(sender).saturating_sub(from);
        eventually(
            timeout,
            &format!("{sender}'s last {want} messages to be delivered to {reader}"),
            || async move {
                let n = self.delivered_since(sender, from, reader).await.ok()?;
                (n == want).then_some(())
            },
        )
        .await
    }

    /// Waits until every sender has nothing pending, recording the time as the
    /// recovery from `fault`.
    pub async fn recovered(&mut self, fault: &str, timeout: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        for s in self.sent.keys().cloned().collect::<Vec<_>>() {
            let c = self.cluster.client(&s);
            eventually(
                timeout,
                &format!("{s} to deliver its backlog after {fault}"),
                || {
                    let c = c.clone();
                    async move {
                        let st = c.stats().await.ok()?;
                        (st["pending_messages"].as_u64()? == 0).then_some(())
                    }
                },
            )
            .await?;
        }
        self.recoveries.push(Recovery {
            fault: fault.into(),
            recovery_ms: t0.elapsed().as_millis() as u64,
        });
        Ok(())
    }

    /// Drains `reader`'s application (consumer group `scenario`) and checks every
    /// sender's stream to it. Messages the sender reports expired for this reader are
    /// counted as expired, not lost.
    pub async fn verify(&mut self, reader: &str, timeout: Duration) -> anyhow::Result<()> {
        let c = self.cluster.client(reader);
        c.ensure_group(&self.channel, "scenario", &rmds::GroupOptions::default())
            .await?;
        // Messages with a short TTL may have expired on the way: the sender says which.
        let mut expired_before = std::collections::BTreeSet::new();
        if self.short_ttl {
            for (sender, sent) in &self.sent {
                if sender != reader {
                    for (_, id) in sent {
                        if self.expired_for(sender, id, reader).await {
                            expired_before.insert(id.clone());
                        }
                    }
                }
            }
        }
        let expected: usize = self
            .sent
            .iter()
            .filter(|(s, _)| s.as_str() != reader)
            .map(|(_, v)| {
                v.iter()
                    .filter(|(_, id)| !expired_before.contains(id))
                    .count()
            })
            .sum();
        let got = drain(
            &c,
            &self.channel,
            "scenario",
            expected,
            timeout,
            Duration::from_millis(500),
        )
        .await?;
        for (sender, sent) in self.sent.clone() {
            if sender == reader {
                continue;
            }
            let mut received = got.numbers_from(&sender);
            if self.faulty {
                sabotage(&mut received);
            }
            // Expired messages are not expected.
            let mut expect = Vec::with_capacity(sent.len());
            let have: std::collections::BTreeSet<u64> = received.iter().copied().collect();
            for (n, id) in &sent {
                if !have.contains(n) && self.expired_for(&sender, id, reader).await {
                    self.expired += 1;
                    continue;
                }
                expect.push(*n);
            }
            self.streams.push(check_stream(
                &sender,
                reader,
                &self.channel,
                &expect,
                &received,
            ));
        }
        Ok(())
    }

    async fn expired_for(&self, sender: &str, id: &str, reader: &str) -> bool {
        let Ok(st) = self.cluster.client(sender).status(id).await else {
            return false;
        };
        st["receivers"].as_array().is_some_and(|rs| {
            rs.iter()
                .any(|r| r["receiver"] == reader && r["state"] == "expired")
        }) || (st["unrouted"] == true && st["expires_at"].as_i64().unwrap_or(i64::MAX) <= now_ms())
    }

    /// The scenario's result.
    pub fn finish(
        mut self,
        name: &str,
        backend: Backend,
        started: Instant,
        error: Option<String>,
    ) -> Outcome {
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
        let error = error.or_else(|| self.cluster.check_healthy().err().map(|e| e.to_string()));
        let passed = error.is_none()
            && self.streams.iter().all(StreamReport::ok)
            && !self.streams.is_empty();
        Outcome {
            scenario: name.into(),
            backend,
            passed,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
            streams: self.streams,
            expired: self.expired,
            recoveries: self.recoveries,
            peak_backlog: self.peak.load(Ordering::Relaxed),
        }
    }
}

/// What a broken application would do: lose the first message, process the second
/// twice, and handle the last two in the wrong order.
fn sabotage(received: &mut Vec<u64>) {
    if received.len() >= 2 {
        let second = received[1];
        received.remove(0);
        received.insert(1, second);
    }
    let n = received.len();
    if n >= 4 {
        received.swap(n - 1, n - 2);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
