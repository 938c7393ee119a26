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
//! Liveness is heard where it is needed: a node that writes a channel sends its
//! keepalives to everyone (`{p}.keepalive`) and listens to everyone's; a node that
//! writes none sends them to the writers only (`{p}.keepalive.reader`) and listens
//! to the writers'. Hellos, byes and membership changes still reach every node, and
//! a hello is answered on the hello-er's own subject (`{p}.node.{id}.announce`), so
//! a newcomer learns every peer without every peer hearing every answer.
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
mod task;
mod view;

pub use view::{Liveness, PeerSnapshot};

use crate::config::DiscoveryConfig;
use crate::metrics::Metrics;
use crate::names::{Channel, NodeId, Role};
use crate::store::{self, now_ms, Store};
use crate::transport::Transport;
use crate::wire::{Digest, Stamp};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use view::View;

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
            v.set_own(own, self.transport.stamp(), Instant::now());
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
            v.set_own(own, self.transport.stamp(), Instant::now());
        });
        let _ = self.announce.try_send(());
        Ok(true)
    }
}
