//! Management across nodes: kick a node (from every channel or one), purge outboxes
//! (this node, one node, every node), and the audit log of what each node applied.
//!
//! A command is issued on one node's API, applied there first when it concerns that
//! node, and sent as a NATS request (signed like every frame when a cluster key is
//! set) on `{p}.mgmt` for every node or `{p}.node.{id}.mgmt` for one. Every node it
//! concerns applies it once per command id (the audit log remembers ids), records it,
//! and answers; the issuer reports who applied it, who refused, and who did not
//! answer within the wait.
//!
//! A node that is offline when a command is issued does not apply it: it is reported
//! under `not_answered`, and re-issuing the same command later is safe (commands are
//! idempotent). The issuer also keeps unanswered commands and sends them again to a
//! node that comes back online, while the issuer runs, for up to the commands'
//! freshness limit ([`command::MAX_AGE_MS`]); a copy older than that is refused as a
//! replay.

mod apply;
pub mod command;

use crate::delivery::Delivery;
use crate::discovery::{Discovery, DiscoveryEvent};
use crate::metrics::Metrics;
use crate::names::NodeId;
use crate::store::{now_ms, Store};
use crate::transport::Transport;
use crate::wire::Packet;
use command::{Command, Issued, Reply};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Handle to management. Cheap to clone.
#[derive(Clone)]
pub struct Mgmt {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    transport: Transport,
    discovery: Discovery,
    delivery: Delivery,
    store: Store,
    metrics: Arc<Metrics>,
    /// Commands this node issued that some node has not answered: sent again when it
    /// comes back online.
    unanswered: Mutex<BTreeMap<NodeId, Vec<Issued>>>,
}

/// One node's answer, as the issuer reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The node.
    pub node: String,
    /// What it did, or why not.
    pub detail: String,
}

/// A node that did not answer in time.
#[derive(Debug, Clone, Serialize)]
pub struct Silent {
    /// The node.
    pub node: String,
    /// Whether this node considered it online.
    pub online: bool,
}

/// What became of an issued command.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The command id (in every node's audit log).
    pub id: String,
    /// The command.
    pub command: Command,
    /// Nodes that applied it.
    pub applied: Vec<Answer>,
    /// Nodes that refused or failed.
    pub failed: Vec<Answer>,
    /// Nodes that did not answer (offline, partitioned, or too slow).
    pub not_answered: Vec<Silent>,
    /// Set when the command could not travel (NATS down): only this node applied it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Mgmt {
    /// A management handle; [`Mgmt::run`] serves commands from other nodes.
    pub fn new(
        me: NodeId,
        transport: Transport,
        discovery: Discovery,
        delivery: Delivery,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Mgmt {
        Mgmt {
            inner: Arc::new(Inner {
                me,
                transport,
                discovery,
                delivery,
                store,
                metrics,
                unanswered: Mutex::default(),
            }),
        }
    }

    /// Issues `command` from this node and gathers the answers for up to `wait`.
    pub async fn issue(&self, command: Command, wait: Duration) -> Outcome {
        let s = &self.inner;
        s.metrics.mgmt_issued.inc();
        let issued = Issued {
            id: ulid::Ulid::new().to_string(),
            issuer: s.me.clone(),
            issued_at: now_ms(),
            command,
        };
        let mut out = Outcome {
            id: issued.id.clone(),
            command: issued.command.clone(),
            applied: Vec::new(),
            failed: Vec::new(),
            not_answered: Vec::new(),
            note: None,
        };
        if issued.command.concerns(&s.me, &s.me) {
            match self.apply(&issued).await {
                Ok(detail) => out.applied.push(Answer {
                    node: s.me.to_string(),
                    detail,
                }),
                Err(detail) => out.failed.push(Answer {
                    node: s.me.to_string(),
                    detail,
                }),
            }
        }
        let target = issued.command.single_target().cloned();
        if !issued.command.travels() || target.as_ref() == Some(&s.me) {
            return out;
        }
        let peers = s.discovery.peers();
        let expected: BTreeMap<String, bool> = peers
            .iter()
            .filter(|p| target.as_ref().is_none_or(|t| t.as_str() == p.node_id))
            .map(|p| (p.node_id.clone(), p.online))
            .collect();
        let mut expected = expected;
        if let Some(t) = &target {
            expected.entry(t.to_string()).or_insert(false);
        }
        let online: BTreeSet<String> = expected
            .iter()
            .filter(|(_, on)| **on)
            .map(|(n, _)| n.clone())
            .collect();
        let subject = match &target {
            Some(t) => s.transport.node_mgmt_subject(t),
            None => s.transport.mgmt_subject(),
        };
        let packet = Packet::Mgmt(issued.clone());
        let answers = s
            .transport
            .gather(subject, &packet, wait, |got| {
                let seen: BTreeSet<&str> = got
                    .iter()
                    .filter_map(|p| match p {
                        Packet::MgmtReply(r) => Some(r.node.as_str()),
                        _ => None,
                    })
                    .collect();
                online.iter().all(|n| seen.contains(n.as_str()))
            })
            .await;
        let answers = match answers {
            Ok(a) => a,
            Err(e) => {
                out.note = Some(format!(
                    "the command could not be sent to other nodes ({e}); only this node applied it"
                ));
                Vec::new()
            }
        };
        let mut answered = BTreeSet::new();
        for p in answers {
            let Packet::MgmtReply(r) = p else { continue };
            if r.id != issued.id || !expected.contains_key(r.node.as_str()) {
                continue;
            }
            if !answered.insert(r.node.to_string()) {
                continue;
            }
            let a = Answer {
                node: r.node.to_string(),
                detail: r.detail,
            };
            if r.applied {
                out.applied.push(a);
            } else {
                out.failed.push(a);
            }
        }
        let mut later = s.unanswered.lock().unwrap_or_else(|p| p.into_inner());
        for (node, on) in expected {
            if answered.contains(&node) {
                continue;
            }
            if let Ok(n) = NodeId::new(node.clone()) {
                later.entry(n).or_default().push(issued.clone());
            }
            out.not_answered.push(Silent { node, online: on });
        }
        out
    }

    /// Serves commands from other nodes until cancelled; sends unanswered commands
    /// again to nodes that come back.
    pub async fn run(self, cancel: CancellationToken) {
        let s = self.inner.clone();
        let t = &s.transport;
        let Some(mut all) = t.subscribe_until(t.mgmt_subject(), &cancel).await else {
            return;
        };
        let Some(mut mine) = t.subscribe_until(t.node_mgmt_subject(&s.me), &cancel).await else {
            return;
        };
        let mut events = s.discovery.subscribe();
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => break,
                m = all.next() => m,
                m = mine.next() => m,
                e = events.recv() => {
                    if let Ok(DiscoveryEvent::Online(node)) = e {
                        self.resend(node).await;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else {
                // The subscription ended: subscribe again.
                if let Some(a) = t.subscribe_until(t.mgmt_subject(), &cancel).await {
                    all = a;
                }
                if let Some(m) = t.subscribe_until(t.node_mgmt_subject(&s.me), &cancel).await {
                    mine = m;
                }
                continue;
            };
            let Ok(Packet::Mgmt(issued)) = t.decode(&msg.payload) else {
                continue;
            };
            if issued.issuer == s.me || !issued.command.concerns(&s.me, &issued.issuer) {
                continue;
            }
            let reply = match command::fresh(issued.issued_at, now_ms()) {
                Err(_) => {
                    s.metrics.mgmt_refused.inc();
                    tracing::warn!(id = %issued.id, by = %issued.issuer, "stale management command refused (replay or clock skew)");
                    Reply {
                        id: issued.id.clone(),
                        node: s.me.clone(),
                        applied: false,
                        detail: "refused: issued more than 10 minutes ago (a replay, or clocks far apart)".into(),
                    }
                }
                Ok(()) => {
                    let r = self.apply(&issued).await;
                    if r.is_err() {
                        s.metrics.mgmt_refused.inc();
                    }
                    Reply {
                        id: issued.id.clone(),
                        node: s.me.clone(),
                        applied: r.is_ok(),
                        detail: r.unwrap_or_else(|e| e),
                    }
                }
            };
            if let Some(to) = msg.reply {
                if let Err(e) = t.answer(to.to_string(), &Packet::MgmtReply(reply)).await {
                    tracing::debug!(error = %e, "management answer not sent");
                }
            }
        }
    }

    /// Sends the commands `node` did not answer to it again (fresh ones only).
    async fn resend(&self, node: NodeId) {
        let s = &self.inner;
        let pending = {
            let mut later = s.unanswered.lock().unwrap_or_else(|p| p.into_inner());
            later.remove(&node).unwrap_or_default()
        };
        for issued in pending {
            if command::fresh(issued.issued_at, now_ms()).is_err() {
                continue;
            }
            let subject = s.transport.node_mgmt_subject(&node);
            let packet = Packet::Mgmt(issued.clone());
            let got = s
                .transport
                .gather(subject, &packet, Duration::from_secs(3), |a| !a.is_empty())
                .await;
            let applied = matches!(got.as_deref(), Ok([Packet::MgmtReply(r), ..]) if r.applied);
            tracing::info!(peer = %node, id = %issued.id, applied, "unanswered management command sent again");
            if !applied {
                let mut later = s.unanswered.lock().unwrap_or_else(|p| p.into_inner());
                later.entry(node.clone()).or_default().push(issued);
            }
        }
    }
}
