//! The in-memory view of peers: pure state, no I/O, unit-tested.

use crate::names::{Channel, NodeId, Role};
use crate::store::PeerRow;
use crate::wire::Announce;
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
    incarnation: u64,
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
}

/// Own memberships plus every peer.
#[derive(Debug, Default)]
pub struct View {
    /// This node's memberships.
    pub own: BTreeMap<Channel, Role>,
    peers: BTreeMap<NodeId, Peer>,
    liveness: HashMap<NodeId, watch::Sender<Liveness>>,
}

/// How often last-seen is written for a peer that stays online.
const PERSIST_EVERY_MS: i64 = 60_000;

impl View {
    /// Builds the view from persisted rows; every peer starts offline.
    pub fn load(me: &NodeId, own: Vec<(String, String)>, peers: Vec<PeerRow>) -> View {
        let parse = |rows: &[(String, String)]| -> BTreeMap<Channel, Role> {
            rows.iter()
                .filter_map(|(c, r)| Some((Channel::new(c.clone()).ok()?, r.parse().ok()?)))
                .collect()
        };
        let mut view = View {
            own: parse(&own),
            ..View::default()
        };
        for p in peers {
            let Ok(id) = NodeId::new(p.node_id.clone()) else {
                continue;
            };
            if &id == me {
                continue;
            }
            view.peers.insert(
                id,
                Peer {
                    epoch: p.epoch,
                    incarnation: 0,
                    api: p.api,
                    online: false,
                    last_seen: None,
                    last_seen_wall: p.last_seen,
                    persisted_wall: p.last_seen,
                    pending: 0,
                    memberships: parse(&p.memberships),
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

    /// Applies a hello or keepalive received at `now` (local clock).
    pub fn apply(&mut self, a: &Announce, now: Instant, wall: i64) -> Change {
        let new: BTreeMap<Channel, Role> = a.memberships.iter().cloned().collect();
        let mut change = Change::default();
        let peer = self.peers.entry(a.node.clone()).or_insert_with(|| {
            change.persist = true;
            change.memberships_changed = true;
            Peer {
                epoch: a.epoch,
                incarnation: a.incarnation,
                api: a.api.clone(),
                online: false,
                last_seen: None,
                last_seen_wall: wall,
                persisted_wall: 0,
                pending: 0,
                memberships: BTreeMap::new(),
            }
        });
        change.came_online = !peer.online;
        for (ch, role) in &new {
            let was_reader = peer.memberships.get(ch).is_some_and(|r| r.reads());
            if role.reads() && !was_reader {
                change.new_reader_channels.push(ch.clone());
            }
        }
        if peer.memberships != new {
            change.memberships_changed = true;
            change.persist = true;
        }
        if peer.epoch != a.epoch || peer.api != a.api {
            change.persist = true;
        }
        if change.came_online || wall - peer.persisted_wall > PERSIST_EVERY_MS {
            change.persist = true;
        }
        peer.memberships = new;
        peer.epoch = a.epoch;
        peer.incarnation = a.incarnation;
        peer.api = a.api.clone();
        peer.online = true;
        peer.last_seen = Some(now);
        peer.last_seen_wall = wall;
        peer.pending = a.pending;
        if change.persist {
            peer.persisted_wall = wall;
        }
        let node = a.node.clone();
        self.set_online(&node, true);
        change
    }

    /// A peer said bye; true if it was online. A bye from an older incarnation is ignored.
    pub fn bye(&mut self, node: &NodeId, incarnation: u64) -> bool {
        let Some(p) = self.peers.get_mut(node) else {
            return false;
        };
        if p.incarnation != incarnation || !p.online {
            return false;
        }
        p.online = false;
        self.set_online(node, false);
        true
    }

    /// Marks peers not heard from within `timeout` offline; returns them.
    pub fn mark_offline(&mut self, now: Instant, timeout: Duration) -> Vec<NodeId> {
        let gone: Vec<NodeId> = self
            .peers
            .iter_mut()
            .filter(|(_, p)| {
                p.online
                    && p.last_seen
                        .is_none_or(|t| now.saturating_duration_since(t) > timeout)
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
        gone
    }

    /// Every peer for the API.
    pub fn snapshot(&self) -> Vec<PeerSnapshot> {
        let now = Instant::now();
        self.peers
            .iter()
            .map(|(id, p)| PeerSnapshot {
                node_id: id.to_string(),
                online: p.online,
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
mod tests {
    use super::*;

    fn ann(node: &str, ms: &[(&str, Role)]) -> Announce {
        Announce {
            node: NodeId::new(node).unwrap(),
            epoch: 1,
            incarnation: 9,
            memberships: ms
                .iter()
                .map(|(c, r)| (Channel::new(*c).unwrap(), *r))
                .collect(),
            pending: 0,
            api: String::new(),
        }
    }

    #[test]
    fn given_new_reader_when_announced_then_reported_once_and_online() {
        let me = NodeId::new("me").unwrap();
        let mut v = View::load(&me, vec![], vec![]);
        let lisa = NodeId::new("lisa").unwrap();
        let mut live = v.liveness(&lisa);
        let t0 = Instant::now();
        let c = v.apply(&ann("lisa", &[("chat", Role::Reader)]), t0, 0);
        assert!(c.came_online);
        assert_eq!(c.new_reader_channels.len(), 1);
        assert!(live.has_changed().unwrap());
        assert_eq!(
            *live.borrow_and_update(),
            Liveness {
                online: true,
                generation: 1
            }
        );
        let c = v.apply(&ann("lisa", &[("chat", Role::Reader)]), t0, 1);
        assert!(c.new_reader_channels.is_empty());
        assert!(
            !live.has_changed().unwrap(),
            "a keepalive from an online peer must not look like a comeback"
        );
        assert_eq!(
            v.readers(&Channel::new("chat").unwrap()),
            vec![lisa.clone()]
        );
    }

    #[test]
    fn given_silence_when_timeout_passes_then_offline_but_still_reader() {
        let me = NodeId::new("me").unwrap();
        let mut v = View::load(&me, vec![], vec![]);
        let t0 = Instant::now();
        v.apply(&ann("bob", &[("chat", Role::Rw)]), t0, 0);
        assert!(v
            .mark_offline(t0 + Duration::from_secs(5), Duration::from_secs(30))
            .is_empty());
        let gone = v.mark_offline(t0 + Duration::from_secs(31), Duration::from_secs(30));
        assert_eq!(gone.len(), 1);
        assert_eq!(v.counts(), (0, 1));
        assert_eq!(v.readers(&Channel::new("chat").unwrap()).len(), 1);
        // Back online: generation moves so senders resend at once.
        let mut live = v.liveness(&NodeId::new("bob").unwrap());
        v.apply(
            &ann("bob", &[("chat", Role::Rw)]),
            t0 + Duration::from_secs(40),
            40_000,
        );
        assert!(live.borrow_and_update().online);
        // Expiry only for long-offline peers.
        assert!(v.expire(50_000, 1_000).is_empty());
        v.mark_offline(t0 + Duration::from_secs(100), Duration::from_secs(30));
        assert_eq!(v.expire(50_000, 1_000).len(), 1);
    }

    #[test]
    fn given_stale_bye_when_received_then_ignored() {
        let me = NodeId::new("me").unwrap();
        let mut v = View::load(&me, vec![], vec![]);
        v.apply(&ann("bob", &[]), Instant::now(), 0);
        let bob = NodeId::new("bob").unwrap();
        assert!(!v.bye(&bob, 1));
        assert!(v.bye(&bob, 9));
        assert_eq!(v.counts(), (0, 1));
    }
}
