//! The in-memory view of peers: pure state, no I/O, unit-tested.
//!
//! Announces are applied only when fresh (see [`super::freshness`]); memberships
//! change only through a full list at least as new as the announced digest, so a
//! membership disappears only by a fresh, signed leave, never by what an old or
//! replayed announce said.
//!
//! Liveness is followed only where it is heard: a node that writes a channel hears
//! every peer's keepalives, a node that writes none hears only the peers that write
//! (reader-only nodes' keepalives go to writers alone). A peer this node does not
//! follow is never timed out: it is online from its hello or change announcement to
//! its bye.

use super::freshness::{Freshness, Scope};
use super::state;
use crate::names::{Channel, NodeId, Role};
use crate::store::PeerRow;
use crate::wire::{Announce, Digest, Stamp};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A peer's liveness as the delivery side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Liveness {
    /// Heard from within `node_offline_timeout` (local clock).
    pub online: bool,
    /// Incremented every time the peer comes (back) online: senders resend at once.
    pub generation: u64,
}

/// A peer as shown by the API.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSnapshot {
    /// Node id.
    pub node_id: String,
    /// Online now.
    pub online: bool,
    /// Whether this node follows its keepalives (and so times it out); an untracked
    /// peer is online from its hello to its bye.
    pub tracked: bool,
    /// Database epoch.
    pub epoch: u64,
    /// API address it advertises.
    pub api: String,
    /// Last seen (ms since the Unix epoch, local clock).
    pub last_seen: i64,
    /// Seconds since last seen.
    pub last_seen_ago_seconds: Option<u64>,
    /// What it reported as pending.
    pub pending: u64,
    /// channel -> role.
    pub memberships: BTreeMap<String, Role>,
}

#[derive(Debug)]
struct Peer {
    epoch: u64,
    /// Which stamped frames of this peer are still fresh (holds its highest boot).
    fresh: Freshness,
    /// Version of `memberships` (the digest version they were fetched at).
    version: Stamp,
    /// Hash of `memberships`.
    hash: u64,
    /// Newest digest version announced: a fetch is due while it is ahead of `version`.
    announced: Stamp,
    api: String,
    online: bool,
    last_seen: Option<Instant>,
    last_seen_wall: i64,
    persisted_wall: i64,
    pending: u64,
    memberships: BTreeMap<Channel, Role>,
}

/// What applying an announcement changed.
#[derive(Debug, Default)]
pub struct Change {
    /// The peer was offline or unknown before.
    pub came_online: bool,
    /// Its memberships differ from what was stored.
    pub memberships_changed: bool,
    /// Worth writing to the database.
    pub persist: bool,
    /// Channels it reads now and did not read before.
    pub new_reader_channels: Vec<Channel>,
    /// Its membership list is unknown at this version or newer: fetch it.
    pub fetch: Option<Stamp>,
    /// What to persist: its highest boot and membership version.
    pub boot: u64,
    /// Membership version to persist.
    pub version: Stamp,
    /// The memberships to persist when `memberships_changed`.
    pub memberships: Vec<(Channel, Role)>,
}

/// Own memberships plus every peer.
#[derive(Debug, Default)]
pub struct View {
    /// This node's memberships.
    pub own: BTreeMap<Channel, Role>,
    /// Their digest (version = the stamp of the last change, or this boot's start).
    pub own_digest: Digest,
    peers: BTreeMap<NodeId, Peer>,
    liveness: HashMap<NodeId, watch::Sender<Liveness>>,
    /// When this node last started to write a channel: the peers it starts to follow
    /// then get a full timeout from that moment.
    tracking_since: Option<Instant>,
}

impl Peer {
    fn writes(&self) -> bool {
        self.memberships.values().any(|r| r.writes())
    }
}

/// How often last-seen is written for a peer that stays online.
const PERSIST_EVERY_MS: i64 = 60_000;

impl View {
    /// Builds the view from persisted rows; every peer starts offline. `start` is the
    /// version of this node's own memberships as loaded.
    pub fn load(
        me: &NodeId,
        start: Stamp,
        own: Vec<(String, String)>,
        peers: Vec<PeerRow>,
    ) -> View {
        let parse = |rows: &[(String, String)]| -> BTreeMap<Channel, Role> {
            rows.iter()
                .filter_map(|(c, r)| Some((Channel::new(c.clone()).ok()?, r.parse().ok()?)))
                .collect()
        };
        let own = parse(&own);
        let mut view = View {
            own_digest: state::digest(start, &own),
            own,
            ..View::default()
        };
        for p in peers {
            let Ok(id) = NodeId::new(p.node_id.clone()) else {
                continue;
            };
            if &id == me {
                continue;
            }
            let memberships = parse(&p.memberships);
            view.peers.insert(
                id,
                Peer {
                    epoch: p.epoch,
                    fresh: Freshness::new(p.boot),
                    version: p.version,
                    hash: state::hash(&memberships),
                    announced: p.version,
                    api: p.api,
                    online: false,
                    last_seen: None,
                    last_seen_wall: p.last_seen,
                    persisted_wall: p.last_seen,
                    pending: 0,
                    memberships,
                },
            );
        }
        view
    }

    /// Peers reading `channel`.
    pub fn readers(&self, channel: &Channel) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.memberships.get(channel).is_some_and(|r| r.reads()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A known peer's epoch and API address.
    pub fn identity(&self, node: &NodeId) -> Option<(u64, String)> {
        self.peers.get(node).map(|p| (p.epoch, p.api.clone()))
    }

    /// Whether this node writes a channel (and so follows every peer's keepalives).
    pub fn writes(&self) -> bool {
        self.own.values().any(|r| r.writes())
    }

    /// Whether this node follows `node`'s keepalives (see the module notes).
    pub fn tracks(&self, node: &NodeId) -> bool {
        self.writes() || self.peers.get(node).is_some_and(Peer::writes)
    }

    /// Whether `node` is known and online here.
    pub fn online(&self, node: &NodeId) -> bool {
        self.peers.get(node).is_some_and(|p| p.online)
    }

    /// (online, known).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.peers.values().filter(|p| p.online).count(),
            self.peers.len(),
        )
    }

    /// A liveness watch for `node`.
    pub fn liveness(&mut self, node: &NodeId) -> watch::Receiver<Liveness> {
        let online = self.peers.get(node).is_some_and(|p| p.online);
        self.liveness
            .entry(node.clone())
            .or_insert_with(|| {
                watch::channel(Liveness {
                    online,
                    generation: 0,
                })
                .0
            })
            .subscribe()
    }

    /// The peer said hello (it started or reconnected, with its subscriptions in
    /// place): senders with a round in flight to it resend now rather than after
    /// their ACK timeout (a round sent while it was reconnecting was lost).
    pub fn reannounced(&mut self, node: &NodeId) {
        if let Some(tx) = self.liveness.get(node) {
            tx.send_if_modified(|l| {
                l.generation += u64::from(l.online);
                l.online
            });
        }
    }

    fn set_online(&mut self, node: &NodeId, online: bool) {
        if let Some(tx) = self.liveness.get(node) {
            // Only a real transition notifies: senders restart their round on it.
            tx.send_if_modified(|l| {
                if l.online == online {
                    return false;
                }
                if online {
                    l.generation += 1;
                }
                l.online = online;
                true
            });
        }
    }

    /// Sets this node's memberships, changed at `version` (at `now`, local clock).
    pub fn set_own(&mut self, own: BTreeMap<Channel, Role>, version: Stamp, now: Instant) {
        let wrote = self.writes();
        self.own_digest = state::digest(version, &own);
        self.own = own;
        if self.writes() && !wrote {
            self.tracking_since = Some(now);
        }
    }

    /// Applies a hello or keepalive received at `now` (local clock); `None` when the
    /// frame is not fresh (replayed, or from an older run), which changes nothing.
    pub fn apply(&mut self, a: &Announce, now: Instant, wall: i64) -> Option<Change> {
        let mut change = Change::default();
        let peer = self.peers.entry(a.node.clone()).or_insert_with(|| {
            change.persist = true;
            let empty = BTreeMap::new();
            Peer {
                epoch: a.epoch,
                fresh: Freshness::new(0),
                version: Stamp::default(),
                hash: state::hash(&empty),
                announced: Stamp::default(),
                api: a.api.clone(),
                online: false,
                last_seen: None,
                last_seen_wall: wall,
                persisted_wall: 0,
                pending: 0,
                memberships: empty,
            }
        });
        let boot = peer.fresh.boot();
        if !peer.fresh.accept(Scope::Announce, a.stamp) {
            return None;
        }
        change.came_online = !peer.online;
        if peer.fresh.boot() != boot || peer.epoch != a.epoch || peer.api != a.api {
            change.persist = true;
        }
        let d = a.digest;
        if d.version > peer.version {
            if d.hash == peer.hash && d.count as usize == peer.memberships.len() {
                // Same list at a newer version (e.g. the peer restarted): nothing to fetch.
                peer.version = d.version;
                change.persist = true;
            } else {
                peer.announced = peer.announced.max(d.version);
                change.fetch = Some(d.version);
            }
        }
        if change.came_online || wall - peer.persisted_wall > PERSIST_EVERY_MS {
            change.persist = true;
        }
        peer.epoch = a.epoch;
        peer.api = a.api.clone();
        peer.online = true;
        peer.last_seen = Some(now);
        peer.last_seen_wall = wall;
        peer.pending = a.pending;
        if change.persist {
            peer.persisted_wall = wall;
        }
        change.boot = peer.fresh.boot();
        change.version = peer.version;
        let node = a.node.clone();
        self.set_online(&node, true);
        Some(change)
    }

    /// Applies a peer's full membership list, fetched at `digest`; `None` when it is
    /// not newer than what is known (nothing changes). This is the only place a
    /// peer's membership can disappear.
    pub fn apply_state(
        &mut self,
        node: &NodeId,
        digest: Digest,
        list: BTreeMap<Channel, Role>,
    ) -> Option<Change> {
        let peer = self.peers.get_mut(node)?;
        if digest.version <= peer.version {
            return None;
        }
        let mut change = Change {
            persist: true,
            ..Change::default()
        };
        for (ch, role) in &list {
            let was_reader = peer.memberships.get(ch).is_some_and(|r| r.reads());
            if role.reads() && !was_reader {
                change.new_reader_channels.push(ch.clone());
            }
        }
        change.memberships_changed = peer.memberships != list;
        change.memberships = list.iter().map(|(c, r)| (c.clone(), *r)).collect();
        peer.memberships = list;
        peer.version = digest.version;
        peer.hash = digest.hash;
        // Announced again while this list was fetched: fetch the newer one.
        change.fetch = (peer.announced > peer.version).then_some(peer.announced);
        change.boot = peer.fresh.boot();
        change.version = peer.version;
        Some(change)
    }

    /// A management kick: `node` leaves `channel` (or every channel) in this view,
    /// at the version it has now, so that its announces of that version (or older)
    /// do not bring the memberships back; a newer list (it joined again) does.
    /// `None` when nothing changed.
    pub fn kick(&mut self, node: &NodeId, channel: Option<&Channel>) -> Option<Change> {
        let peer = self.peers.get_mut(node)?;
        let before = peer.memberships.len();
        match channel {
            Some(c) => {
                peer.memberships.remove(c);
            }
            None => peer.memberships.clear(),
        }
        if peer.memberships.len() == before {
            return None;
        }
        peer.hash = state::hash(&peer.memberships);
        Some(Change {
            persist: true,
            memberships_changed: true,
            memberships: peer
                .memberships
                .iter()
                .map(|(c, r)| (c.clone(), *r))
                .collect(),
            boot: peer.fresh.boot(),
            version: peer.version,
            ..Change::default()
        })
    }

    /// A peer said bye: `Some(true)` if it was online and is now offline, `None` if the
    /// bye is not fresh (replayed, or from an older run) and was ignored.
    pub fn bye(&mut self, node: &NodeId, stamp: Stamp) -> Option<bool> {
        let Some(p) = self.peers.get_mut(node) else {
            return Some(false);
        };
        if !p.fresh.accept(Scope::Announce, stamp) {
            return None;
        }
        if !p.online {
            return Some(false);
        }
        p.online = false;
        self.set_online(node, false);
        Some(true)
    }

    /// Whether a negative acknowledgement from `node` stamped `stamp` is fresh. A node
    /// not known at all has nothing to replay against.
    pub fn fresh_nack(&mut self, node: &NodeId, stamp: Stamp) -> bool {
        match self.peers.get_mut(node) {
            Some(p) => p.fresh.accept(Scope::Nack, stamp),
            None => true,
        }
    }

    /// Marks the peers this node follows that it has not heard from within `timeout`
    /// offline; returns them.
    pub fn mark_offline(&mut self, now: Instant, timeout: Duration) -> Vec<NodeId> {
        let (all, since) = (self.writes(), self.tracking_since);
        let gone: Vec<NodeId> = self
            .peers
            .iter_mut()
            .filter(|(_, p)| {
                let heard = match (p.last_seen, since) {
                    (Some(t), Some(s)) => Some(t.max(s)),
                    (t, s) => t.or(s),
                };
                p.online
                    && (all || p.writes())
                    && heard.is_none_or(|t| now.saturating_duration_since(t) > timeout)
            })
            .map(|(id, p)| {
                p.online = false;
                id.clone()
            })
            .collect();
        for id in &gone {
            self.set_online(id, false);
        }
        gone
    }

    /// Forgets offline peers not seen for `expiry_ms` (wall clock); returns them.
    pub fn expire(&mut self, wall: i64, expiry_ms: i64) -> Vec<NodeId> {
        let gone: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.online && wall - p.last_seen_wall > expiry_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.peers.remove(id);
        }
        // Liveness watches of peers that are gone and that no stream watches any more.
        let peers = &self.peers;
        self.liveness
            .retain(|id, tx| tx.receiver_count() > 0 || peers.contains_key(id));
        gone
    }

    /// Every peer for the API.
    pub fn snapshot(&self) -> Vec<PeerSnapshot> {
        let now = Instant::now();
        let all = self.writes();
        self.peers
            .iter()
            .map(|(id, p)| PeerSnapshot {
                node_id: id.to_string(),
                online: p.online,
                tracked: all || p.writes(),
                epoch: p.epoch,
                api: p.api.clone(),
                last_seen: p.last_seen_wall,
                last_seen_ago_seconds: p.last_seen.map(|t| now.duration_since(t).as_secs()),
                pending: p.pending,
                memberships: p
                    .memberships
                    .iter()
                    .map(|(c, r)| (c.to_string(), *r))
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
