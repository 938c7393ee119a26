//! Peers and memberships: hello, keepalive, bye, offline detection, persistence.
//!
//! The view (own memberships and every peer's) lives behind a `RwLock` that is only
//! held for map lookups, never across an await, so the publish path can ask "who
//! reads this channel?" without a round trip. One actor task does the I/O: it
//! announces this node (hello at start and after every reconnect, keepalive every
//! `keepalive_interval`, bye at shutdown), answers hellos, applies what peers say,
//! persists it, and marks peers offline by the local clock. Offline peers keep their
//! memberships: a reader stays a reader until it leaves, is kicked, or expires.

mod view;

pub use view::{Liveness, PeerSnapshot};

use crate::config::DiscoveryConfig;
use crate::events::EventKind;
use crate::metrics::Metrics;
use crate::names::{Channel, NodeId, Role};
use crate::store::{self, now_ms, Store};
use crate::transport::Transport;
use crate::wire::{Announce, Bye, Packet};
use futures::StreamExt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use view::View;

/// Something delivery must react to.
#[derive(Debug, Clone)]
pub enum DiscoveryEvent {
    /// `node` now reads `channel` (newly discovered, or newly joined).
    NewReader {
        /// The reader.
        node: NodeId,
        /// The channel.
        channel: Channel,
    },
}

/// Why a membership change failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The change could not be persisted.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Handle to discovery. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    me: NodeId,
    view: Arc<RwLock<View>>,
    store: Store,
    events: broadcast::Sender<DiscoveryEvent>,
    announce: mpsc::Sender<()>,
}

/// The actor half, consumed by [`DiscoveryTask::run`].
pub struct DiscoveryTask {
    handle: Discovery,
    config: DiscoveryConfig,
    transport: Transport,
    metrics: Arc<Metrics>,
    incarnation: u64,
    api: String,
    announce_rx: mpsc::Receiver<()>,
}

impl Discovery {
    /// Loads persisted peers and memberships; returns the handle and the actor to run.
    pub fn new(
        me: NodeId,
        store: Store,
        transport: Transport,
        metrics: Arc<Metrics>,
        config: DiscoveryConfig,
        api: String,
    ) -> Result<(Discovery, DiscoveryTask), store::Error> {
        let own = store
            .reads
            .read_now(|c| store::peers::memberships(c, me.as_str()))?;
        let peers = store.reads.read_now(store::peers::load_peers)?;
        let view = View::load(&me, own, peers);
        let (events, _) = broadcast::channel(1024);
        let (announce, announce_rx) = mpsc::channel(16);
        let handle = Discovery {
            me,
            view: Arc::new(RwLock::new(view)),
            store,
            events,
            announce,
        };
        let task = DiscoveryTask {
            handle: handle.clone(),
            config,
            transport,
            metrics,
            incarnation: rand::random(),
            api,
            announce_rx,
        };
        Ok((handle, task))
    }

    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    fn read<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        match self.view.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut View) -> T) -> T {
        match self.view.write() {
            Ok(mut v) => f(&mut v),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Peers that read `channel` (never this node), online or not.
    pub fn readers(&self, channel: &Channel) -> Vec<NodeId> {
        self.read(|v| v.readers(channel))
    }

    /// This node's role in `channel`.
    pub fn own_role(&self, channel: &Channel) -> Option<Role> {
        self.read(|v| v.own.get(channel).copied())
    }

    /// This node's memberships.
    pub fn own_memberships(&self) -> Vec<(Channel, Role)> {
        self.read(|v| v.own.iter().map(|(c, r)| (c.clone(), *r)).collect())
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.read(|v| v.snapshot())
    }

    /// Watches a peer's liveness (created on first use, offline until heard from).
    pub fn liveness(&self, node: &NodeId) -> watch::Receiver<Liveness> {
        self.write(|v| v.liveness(node))
    }

    /// Events for delivery.
    pub fn subscribe(&self) -> broadcast::Receiver<DiscoveryEvent> {
        self.events.subscribe()
    }

    /// Joins (or changes role in) a channel: persisted, then announced at once.
    pub async fn join(&self, channel: Channel, role: Role) -> Result<bool, MembershipError> {
        if self.own_role(&channel) == Some(role) {
            return Ok(false);
        }
        let (me, ch) = (self.me.to_string(), channel.to_string());
        let mut all: Vec<(String, String)> = self
            .own_memberships()
            .into_iter()
            .filter(|(c, _)| c != &channel)
            .map(|(c, r)| (c.to_string(), r.as_str().to_string()))
            .collect();
        all.push((ch, role.as_str().to_string()));
        self.store
            .writer
            .run(move |c| store::peers::set_memberships(c, &me, &all, now_ms()))
            .await?;
        self.write(|v| v.own.insert(channel, role));
        let _ = self.announce.try_send(());
        Ok(true)
    }

    /// Leaves a channel; returns false when this node was not a member.
    pub async fn leave(&self, channel: &Channel) -> Result<bool, MembershipError> {
        if self.own_role(channel).is_none() {
            return Ok(false);
        }
        let me = self.me.to_string();
        let all: Vec<(String, String)> = self
            .own_memberships()
            .into_iter()
            .filter(|(c, _)| c != channel)
            .map(|(c, r)| (c.to_string(), r.as_str().to_string()))
            .collect();
        self.store
            .writer
            .run(move |c| store::peers::set_memberships(c, &me, &all, now_ms()))
            .await?;
        self.write(|v| v.own.remove(channel));
        let _ = self.announce.try_send(());
        Ok(true)
    }
}

impl DiscoveryTask {
    fn announce(&self) -> Announce {
        Announce {
            node: self.handle.me.clone(),
            epoch: self.handle.store.epoch,
            incarnation: self.incarnation,
            memberships: self.handle.own_memberships(),
            pending: self.metrics.pending_messages.get().max(0) as u64,
            api: self.api.clone(),
        }
    }

    async fn send(&self, subject: String, packet: Packet) {
        match self.transport.publish(subject, &packet).await {
            Ok(()) => {
                self.metrics.sent_keepalives.inc();
            }
            Err(e) => tracing::debug!(error = %e, "announcement not sent"),
        }
    }

    /// Runs until cancelled, then says bye.
    pub async fn run(mut self, cancel: CancellationToken) {
        let t = self.transport.clone();
        let (mut hello, mut keepalive, mut bye) = match (
            t.subscribe(t.hello_subject()).await,
            t.subscribe(t.keepalive_subject()).await,
            t.subscribe(t.bye_subject()).await,
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => {
                tracing::error!("discovery cannot subscribe; stopping");
                return;
            }
        };
        let mut nats = self.transport.watch_state();
        let mut tick = tokio::time::interval(self.config.keepalive_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let check_every = (self.config.node_offline_timeout / 10).max(Duration::from_millis(100));
        let mut check = tokio::time::interval(check_every);
        let mut expiry_check = tokio::time::interval(Duration::from_secs(60));
        self.send(t.hello_subject(), Packet::Hello(self.announce()))
            .await;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = nats.changed() => {
                    if changed.is_err() { break; }
                    if *nats.borrow_and_update() {
                        // Reconnected: ask every peer to answer at once.
                        self.send(t.hello_subject(), Packet::Hello(self.announce())).await;
                    }
                }
                Some(()) = self.announce_rx.recv() => {
                    self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                }
                Some(msg) = hello.next() => {
                    if let Ok(Packet::Hello(a)) = t.decode(&msg.payload) {
                        if a.node != self.handle.me {
                            self.apply(a).await;
                            self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                        } else if a.incarnation != self.incarnation {
                            tracing::error!(node = %a.node, "another agent announces this node id");
                        }
                    }
                }
                Some(msg) = keepalive.next() => {
                    if let Ok(Packet::Keepalive(a)) = t.decode(&msg.payload) {
                        if a.node != self.handle.me {
                            self.apply(a).await;
                        }
                    }
                }
                Some(msg) = bye.next() => {
                    if let Ok(Packet::Bye(b)) = t.decode(&msg.payload) {
                        let offline = self.handle.write(|v| v.bye(&b.node, b.incarnation));
                        if offline {
                            tracing::info!(peer = %b.node, "peer said bye");
                            self.metrics.events.emit(EventKind::PeerDown, None, None, Some(b.node.as_str()), serde_json::json!({"reason": "bye"}));
                        }
                        self.update_gauges();
                    }
                }
                _ = tick.tick() => {
                    self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                }
                _ = check.tick() => {
                    let gone = self.handle.write(|v| v.mark_offline(Instant::now(), self.config.node_offline_timeout));
                    for node in gone {
                        tracing::info!(peer = %node, "peer offline (no keepalive)");
                        self.metrics.events.emit(EventKind::PeerDown, None, None, Some(node.as_str()), serde_json::json!({"reason": "no keepalive"}));
                    }
                    self.update_gauges();
                }
                _ = expiry_check.tick() => self.expire_nodes().await,
            }
        }
        let bye = Packet::Bye(Bye {
            node: self.handle.me.clone(),
            incarnation: self.incarnation,
        });
        self.send(t.bye_subject(), bye).await;
        self.transport.flush().await;
    }

    fn update_gauges(&self) {
        let (online, known) = self.handle.read(|v| v.counts());
        self.metrics.peers_online.set(online as i64);
        self.metrics.peers_known.set(known as i64);
    }

    async fn apply(&self, a: Announce) {
        self.metrics.received_keepalives.inc();
        let now = now_ms();
        let change = self.handle.write(|v| v.apply(&a, Instant::now(), now));
        if change.came_online {
            tracing::info!(peer = %a.node, "peer online");
            self.metrics.events.emit(
                EventKind::PeerUp,
                None,
                None,
                Some(a.node.as_str()),
                serde_json::Value::Null,
            );
        }
        self.update_gauges();
        if change.persist {
            let node = a.node.to_string();
            let api = a.api.clone();
            let epoch = a.epoch;
            let ms: Vec<(String, String)> = a
                .memberships
                .iter()
                .map(|(c, r)| (c.to_string(), r.as_str().to_string()))
                .collect();
            let memberships_changed = change.memberships_changed;
            let r = self
                .handle
                .store
                .writer
                .run(move |c| {
                    store::peers::upsert_peer(
                        c,
                        &node,
                        epoch,
                        &api,
                        now,
                        memberships_changed.then_some(&ms[..]),
                    )
                })
                .await;
            if let Err(e) = r {
                self.metrics.store_errors.inc();
                tracing::warn!(peer = %a.node, error = %e, "cannot persist peer");
            }
        }
        for channel in change.new_reader_channels {
            let _ = self.handle.events.send(DiscoveryEvent::NewReader {
                node: a.node.clone(),
                channel,
            });
        }
    }

    async fn expire_nodes(&self) {
        let expiry = self.config.node_expiry.as_millis() as i64;
        let gone = self.handle.write(|v| v.expire(now_ms(), expiry));
        for node in gone {
            tracing::info!(peer = %node, "peer expired; forgetting it");
            let id = node.to_string();
            if let Err(e) = self
                .handle
                .store
                .writer
                .run(move |c| store::peers::delete_peer(c, &id))
                .await
            {
                tracing::warn!(error = %e, "cannot delete expired peer");
            }
        }
        self.update_gauges();
    }
}
