//! Peers and memberships: hello, keepalive, bye, offline detection, persistence.
//!
//! The view (own memberships and every peer's) lives behind a `RwLock` that is only
//! held for map lookups, never across an await, so the publish path can ask "who
//! reads this channel?" without a round trip. One actor task does the I/O: it
//! announces this node (hello at start and after every reconnect, keepalive every
//! `keepalive_interval`, bye at shutdown), answers hellos, applies what peers say,
//! persists it, and marks peers offline by the local clock. Offline peers keep their
//! memberships: a reader stays a reader until it leaves, is kicked, or expires.
//!
//! Keepalives stay small whatever the number of channels: they carry a digest of the
//! memberships; a peer that sees a newer digest with a hash it does not know fetches
//! the list in pages (`{p}.node.{id}.state`, request/reply), in a task of its own.
//! Every hello, keepalive and bye is stamped; one that is not fresh is dropped and
//! counted (`replayed_frames`), and a membership only disappears through a list newer
//! than the one known, i.e. by a fresh leave.

mod freshness;
mod kick;
pub mod state;
mod sync;
mod view;

pub use view::{Liveness, PeerSnapshot};

use crate::config::DiscoveryConfig;
use crate::events::EventKind;
use crate::metrics::Metrics;
use crate::names::{Channel, NodeId, Role};
use crate::store::{self, now_ms, Store};
use crate::transport::Transport;
use crate::wire::{Announce, Bye, Digest, Packet, Stamp};
use futures::StreamExt;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use view::{Change, View};

/// What a fetch task hands back: the node and its list, or why not.
type Fetched = (
    NodeId,
    Result<(Digest, BTreeMap<Channel, Role>), sync::FetchError>,
);

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
    /// `node` came online (first heard, or heard again after being offline).
    Online(NodeId),
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
    /// Stamps membership versions.
    transport: Transport,
    /// Subscriptions are in place and this node's hello went out on the current NATS
    /// connection (peers have been asked to answer): what `/readyz` calls discovery
    /// done.
    announced: Arc<std::sync::atomic::AtomicBool>,
}

/// The actor half, consumed by [`DiscoveryTask::run`].
pub struct DiscoveryTask {
    handle: Discovery,
    config: DiscoveryConfig,
    transport: Transport,
    metrics: Arc<Metrics>,
    api: String,
    announce_rx: mpsc::Receiver<()>,
    /// Membership list fetches under way (at most one per peer).
    fetches: JoinSet<Fetched>,
    fetching: HashSet<NodeId>,
    /// This node's list in pages, for peers that ask.
    pages: sync::Pages,
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
        let start = Stamp {
            boot: transport.boot(),
            counter: 0,
        };
        let view = View::load(&me, start, own, peers);
        let (events, _) = broadcast::channel(1024);
        let (announce, announce_rx) = mpsc::channel(16);
        let handle = Discovery {
            me,
            view: Arc::new(RwLock::new(view)),
            store,
            events,
            announce,
            transport: transport.clone(),
            announced: Arc::default(),
        };
        let task = DiscoveryTask {
            handle: handle.clone(),
            config,
            transport,
            metrics,
            api,
            announce_rx,
            fetches: JoinSet::new(),
            fetching: HashSet::new(),
            pages: sync::Pages::default(),
        };
        Ok((handle, task))
    }

    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// Whether this node has announced itself on the current NATS connection, with
    /// its subscriptions in place.
    pub fn announced(&self) -> bool {
        self.announced.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Whether a negative acknowledgement from `node` is fresh (not a replay); a fresh
    /// one is remembered, so the same frame is refused next time.
    pub fn fresh_nack(&self, node: &NodeId, stamp: Stamp) -> bool {
        self.write(|v| v.fresh_nack(node, stamp))
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
        self.write(|v| {
            let mut own = v.own.clone();
            own.insert(channel, role);
            v.set_own(own, self.transport.stamp());
        });
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
        self.write(|v| {
            let mut own = v.own.clone();
            own.remove(channel);
            v.set_own(own, self.transport.stamp());
        });
        let _ = self.announce.try_send(());
        Ok(true)
    }
}

impl DiscoveryTask {
    fn announce(&self) -> Announce {
        Announce {
            node: self.handle.me.clone(),
            epoch: self.handle.store.epoch,
            stamp: self.transport.stamp(),
            digest: self.handle.read(|v| v.own_digest),
            pending: self.metrics.pending_messages.get().max(0) as u64,
            api: self.api.clone(),
        }
    }

    async fn send(&self, subject: String, packet: Packet) -> bool {
        match self.transport.publish(subject, &packet).await {
            Ok(()) => {
                self.metrics.sent_keepalives.inc();
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "announcement not sent");
                false
            }
        }
    }

    /// Sends this node's hello; a hello that went out makes discovery done.
    async fn hello(&self) {
        let t = &self.transport;
        let sent = self
            .send(t.hello_subject(), Packet::Hello(self.announce()))
            .await;
        if sent {
            self.handle
                .announced
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Runs until cancelled, then says bye.
    pub async fn run(mut self, cancel: CancellationToken) {
        let t = self.transport.clone();
        // Subscriptions are retried until they work: discovery never stops for good
        // because NATS refused a subscribe once.
        let subjects = [
            t.hello_subject(),
            t.keepalive_subject(),
            t.bye_subject(),
            t.state_subject(&self.handle.me),
        ];
        let mut subs = Vec::with_capacity(subjects.len());
        for subject in subjects {
            match t.subscribe_until(subject, &cancel).await {
                Some(s) => subs.push(s),
                None => return,
            }
        }
        let Some((mut hello, mut keepalive, mut bye, mut state)) = ({
            let mut it = subs.into_iter();
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some(a), Some(b), Some(c), Some(d)) => Some((a, b, c, d)),
                _ => None,
            }
        }) else {
            return;
        };
        let mut nats = self.transport.watch_state();
        let mut tick = tokio::time::interval(self.config.keepalive_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let check_every = (self.config.node_offline_timeout / 10).max(Duration::from_millis(100));
        let mut check = tokio::time::interval(check_every);
        let mut expiry_check = tokio::time::interval(Duration::from_secs(60));
        self.hello().await;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = nats.changed() => {
                    if changed.is_err() { break; }
                    if *nats.borrow_and_update() {
                        // Reconnected: ask every peer to answer at once.
                        self.hello().await;
                    } else {
                        self.handle.announced.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Some(()) = self.announce_rx.recv() => {
                    self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                }
                Some(msg) = hello.next() => {
                    if let Ok(Packet::Hello(a)) = t.decode(&msg.payload) {
                        if a.node != self.handle.me {
                            let node = a.node.clone();
                            if self.apply(a).await {
                                self.handle.write(|v| v.reannounced(&node));
                                self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                            }
                        } else if a.stamp.boot != t.boot() {
                            tracing::error!(node = %a.node, "another agent announces this node id");
                        }
                    }
                }
                Some(msg) = state.next() => self.serve_page(msg).await,
                Some(done) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    if let Ok((node, result)) = done {
                        self.fetched(node, result).await;
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
                        let offline = self.handle.write(|v| v.bye(&b.node, b.stamp));
                        if offline.is_none() {
                            self.metrics.replayed_frames.inc();
                            tracing::debug!(peer = %b.node, "stale or replayed bye dropped");
                        }
                        if offline == Some(true) {
                            tracing::info!(peer = %b.node, "peer said bye");
                            self.metrics.events.emit(EventKind::PeerDown, None, None, Some(b.node.as_str()), serde_json::json!({"reason": "bye"}));
                        }
                        self.update_gauges();
                    }
                }
                _ = tick.tick() => {
                    if self.handle.announced() {
                        self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                    } else {
                        // The hello after the last connect did not go out: say hello
                        // again, so peers answer and discovery completes.
                        self.hello().await;
                    }
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
        self.fetches.shutdown().await;
        let bye = Packet::Bye(Bye {
            node: self.handle.me.clone(),
            stamp: t.stamp(),
        });
        self.send(t.bye_subject(), bye).await;
        self.transport.flush().await;
    }

    fn update_gauges(&self) {
        let (online, known) = self.handle.read(|v| v.counts());
        self.metrics.peers_online.set(online as i64);
        self.metrics.peers_known.set(known as i64);
    }

    /// Applies a peer's hello or keepalive; false when it was not fresh (dropped).
    async fn apply(&mut self, a: Announce) -> bool {
        let now = now_ms();
        let Some(change) = self.handle.write(|v| v.apply(&a, Instant::now(), now)) else {
            self.metrics.replayed_frames.inc();
            tracing::debug!(peer = %a.node, "stale or replayed announce dropped");
            return false;
        };
        self.metrics.received_keepalives.inc();
        if change.came_online {
            tracing::info!(peer = %a.node, "peer online");
            let _ = self
                .handle
                .events
                .send(DiscoveryEvent::Online(a.node.clone()));
            self.metrics.events.emit(
                EventKind::PeerUp,
                None,
                None,
                Some(a.node.as_str()),
                serde_json::Value::Null,
            );
        }
        self.update_gauges();
        self.record(&a.node, a.epoch, a.api.clone(), change).await;
        true
    }

    /// Persists and reports what applying an announce or a list changed, and starts
    /// the fetch it asks for.
    async fn record(&mut self, node: &NodeId, epoch: u64, api: String, change: Change) {
        if change.persist {
            let id = node.to_string();
            let seen = store::PeerSeen {
                epoch,
                boot: change.boot,
                version: change.version,
                api,
            };
            let ms: Option<Vec<(String, String)>> = change.memberships_changed.then(|| {
                change
                    .memberships
                    .iter()
                    .map(|(c, r)| (c.to_string(), r.as_str().to_string()))
                    .collect()
            });
            let now = now_ms();
            let r = self
                .handle
                .store
                .writer
                .run(move |c| store::peers::upsert_peer(c, &id, &seen, now, ms.as_deref()))
                .await;
            if let Err(e) = r {
                self.metrics.store_errors.inc();
                tracing::warn!(peer = %node, error = %e, "cannot persist peer");
            }
        }
        for channel in change.new_reader_channels {
            let _ = self.handle.events.send(DiscoveryEvent::NewReader {
                node: node.clone(),
                channel,
            });
        }
        if let Some(want) = change.fetch {
            self.start_fetch(node.clone(), want);
        }
    }

    fn start_fetch(&mut self, node: NodeId, want: Stamp) {
        if !self.fetching.insert(node.clone()) {
            // One fetch per peer at a time; a newer digest is fetched when it lands.
            return;
        }
        let (t, me) = (self.transport.clone(), self.handle.me.clone());
        self.fetches.spawn(async move {
            let r = sync::fetch(t, me, node.clone(), want).await;
            (node, r)
        });
    }

    async fn fetched(
        &mut self,
        node: NodeId,
        result: Result<(Digest, BTreeMap<Channel, Role>), sync::FetchError>,
    ) {
        self.fetching.remove(&node);
        match result {
            Ok((digest, list)) => {
                self.metrics.state_fetches.inc();
                let Some(change) = self.handle.write(|v| v.apply_state(&node, digest, list)) else {
                    return;
                };
                let (epoch, api) = self.handle.read(|v| v.identity(&node)).unwrap_or_default();
                self.record(&node, epoch, api, change).await;
            }
            Err(e) => {
                self.metrics.state_fetch_failures.inc();
                tracing::debug!(peer = %node, error = %e, "cannot fetch memberships; retrying at the next keepalive");
            }
        }
    }

    /// Answers a peer's request for one page of this node's memberships.
    async fn serve_page(&mut self, msg: async_nats::Message) {
        let t = self.transport.clone();
        let req = match t.decode(&msg.payload) {
            Ok(Packet::StateRequest(req)) => req,
            Ok(_) => {
                self.metrics.misrouted_frames.inc();
                return;
            }
            // Counted by the transport.
            Err(_) => return,
        };
        let Some(reply) = msg.reply else {
            self.metrics.misrouted_frames.inc();
            return;
        };
        if req.node != self.handle.me {
            self.metrics.misrouted_frames.inc();
            return;
        }
        let current = self.handle.read(|v| v.own_digest);
        let handle = &self.handle;
        let load = || handle.read(|v| (v.own_digest, v.own.clone()));
        let page = self
            .pages
            .page(&handle.me, current, load, t.max_payload(), req.page);
        if let Some(p) = page {
            match t.publish(reply.to_string(), &Packet::State(p)).await {
                Ok(()) => {
                    self.metrics.state_pages_served.inc();
                }
                Err(e) => {
                    tracing::debug!(peer = %req.asker, error = %e, "membership page not sent")
                }
            }
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
