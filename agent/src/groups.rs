//! Consumer groups over the local channel log: positions, leases, ack / nack / term.
//!
//! Every group sees every message of its channel; consumers in one group compete.
//! A pull leases each message it returns for `ack_wait`; an unacknowledged message
//! comes back when its lease runs out. Acknowledgements are committed to SQLite before
//! the caller hears success, so an acknowledged message is never delivered again, even
//! after a crash. Leases live in memory: after a restart every unacknowledged message is
//! simply available again.

use crate::config::GroupsConfig;
use crate::inbox::LogHeads;
use crate::metrics::Metrics;
use crate::names::{Channel, GroupName};
use crate::store::{self, now_ms, LogEntry, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;

/// A group operation failure.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The log entry.
    pub entry: LogEntry,
    /// How many times it has been handed out, this time included.
    pub deliveries: u32,
}

/// What an ack/nack/term call did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AckResult {
    /// Ids applied.
    pub applied: Vec<String>,
    /// Ids not currently leased by this group (unknown, or already acknowledged).
    pub not_found: Vec<String>,
}

/// How to settle leased messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Processed: never deliver again.
    Ack,
    /// Not processed: deliver again after the delay.
    Nack(Duration),
    /// Never deliver again (poison); counted apart from acks.
    Term,
}

struct Lease {
    id: String,
    until: Instant,
    deliveries: u32,
}

struct GroupState {
    floor: u64,
    acked: BTreeSet<u64>,
    next: u64,
    leases: BTreeMap<u64, Lease>,
    by_id: HashMap<String, u64>,
    ack_wait: Duration,
}

type Key = (Channel, GroupName);

/// Handle to the consumer groups. Cheap to clone.
#[derive(Clone)]
pub struct Groups {
    store: Store,
    heads: LogHeads,
    metrics: Arc<Metrics>,
    config: GroupsConfig,
    groups: Arc<Mutex<HashMap<Key, Arc<AsyncMutex<GroupState>>>>>,
}

impl Groups {
    /// Creates the handle; groups are loaded lazily from the store.
    pub fn new(
        store: Store,
        heads: LogHeads,
        metrics: Arc<Metrics>,
        config: GroupsConfig,
    ) -> Groups {
        Groups {
            store,
            heads,
            metrics,
            config,
            groups: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The longest wait a pull may ask for.
    pub fn max_wait(&self) -> Duration {
        self.config.max_wait
    }

    /// The most messages one pull may return.
    pub fn max_batch(&self) -> usize {
        self.config.max_batch
    }

    async fn group(
        &self,
        channel: &Channel,
        name: &GroupName,
    ) -> Result<Arc<AsyncMutex<GroupState>>, GroupError> {
        let key = (channel.clone(), name.clone());
        let existing = match self.groups.lock() {
            Ok(m) => m.get(&key).cloned(),
            Err(p) => p.into_inner().get(&key).cloned(),
        };
        if let Some(g) = existing {
            return Ok(g);
        }
        let (c, n) = (channel.to_string(), name.to_string());
        let wait = self.config.ack_wait.as_millis() as u64;
        let row = self
            .store
            .writer
            .run(move |conn| store::groups::ensure_group(conn, &c, &n, 0, wait, now_ms()))
            .await?;
        let state = GroupState {
            floor: row.ack_floor,
            acked: row.acked.iter().copied().collect(),
            next: row.ack_floor + 1,
            leases: BTreeMap::new(),
            by_id: HashMap::new(),
            ack_wait: Duration::from_millis(row.ack_wait_ms),
        };
        let mut map = match self.groups.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        Ok(map
            .entry(key)
            .or_insert_with(|| Arc::new(AsyncMutex::new(state)))
            .clone())
    }

    /// Pulls up to `max` messages for `group`, waiting up to `wait` for the first one.
    /// Returns as soon as anything is available; an empty answer means the wait ran out.
    pub async fn pull(
        &self,
        channel: &Channel,
        group: &GroupName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Leased>, GroupError> {
        let deadline = Instant::now() + wait.min(self.config.max_wait);
        let max = max.clamp(1, self.config.max_batch);
        let g = self.group(channel, group).await?;
        let mut head = self.heads.watch(channel);
        loop {
            head.borrow_and_update();
            let (out, next_expiry) = self.take(channel, group, &g, max).await?;
            if !out.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_expiry.map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                changed = head.changed() => { if changed.is_err() { return Ok(Vec::new()); } }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    async fn take(
        &self,
        channel: &Channel,
        group: &GroupName,
        g: &Arc<AsyncMutex<GroupState>>,
        max: usize,
    ) -> Result<(Vec<Leased>, Option<Instant>), GroupError> {
        let mut st = g.lock().await;
        let now = Instant::now();
        // Expired leases first, oldest offset first.
        let due: Vec<u64> = st
            .leases
            .iter()
            .filter(|(_, l)| l.until <= now)
            .map(|(o, _)| *o)
            .take(max)
            .collect();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        if !due.is_empty() {
            let c = channel.to_string();
            let offsets = due.clone();
            let entries = self
                .store
                .reads
                .read(move |conn| store::groups::read_offsets(conn, &c, &offsets))
                .await?;
            let found: BTreeSet<u64> = entries.iter().map(|e| e.offset).collect();
            for o in &due {
                if !found.contains(o) {
                    // Gone from the log (TTL): nothing left to deliver.
                    if let Some(l) = st.leases.remove(o) {
                        st.by_id.remove(&l.id);
                    }
                    gone.push(*o);
                }
            }
            let ack_wait = st.ack_wait;
            for e in entries {
                if let Some(l) = st.leases.get_mut(&e.offset) {
                    l.until = now + ack_wait;
                    l.deliveries += 1;
                    out.push(Leased {
                        deliveries: l.deliveries,
                        entry: e,
                    });
                }
            }
        }
        // Offsets that will never be delivered: expired, or gone from the log.
        let mut skipped: Vec<(u64, u64)> = gone.into_iter().map(|o| (o, o)).collect();
        while out.len() < max {
            let c = channel.to_string();
            let from = st.next;
            let want = (max - out.len()) + 64;
            let entries = self
                .store
                .reads
                .read(move |conn| store::groups::read_log(conn, &c, from, want))
                .await?;
            let Some(last) = entries.last() else { break };
            let last_offset = last.offset;
            let wall = now_ms();
            for e in entries {
                if out.len() >= max {
                    break;
                }
                if e.offset > st.next {
                    // Deleted from the log (TTL sweep) before this group read it.
                    skipped.push((st.next, e.offset - 1));
                }
                st.next = e.offset + 1;
                if e.offset <= st.floor || st.acked.contains(&e.offset) {
                    continue;
                }
                if e.expires_at <= wall {
                    skipped.push((e.offset, e.offset));
                    continue;
                }
                let until = now + st.ack_wait;
                st.by_id.insert(e.id.clone(), e.offset);
                st.leases.insert(
                    e.offset,
                    Lease {
                        id: e.id.clone(),
                        until,
                        deliveries: 1,
                    },
                );
                out.push(Leased {
                    deliveries: 1,
                    entry: e,
                });
            }
            if st.next <= last_offset {
                break; // filled up mid-read
            }
        }
        if !skipped.is_empty() {
            self.commit_settled(channel, group, &mut st, &skipped)
                .await?;
            let n: u64 = skipped.iter().map(|(a, b)| b - a + 1).sum();
            self.metrics.group_skipped.inc_by(n);
        }
        let next_expiry = st.leases.values().map(|l| l.until).min();
        Ok((out, next_expiry))
    }

    /// Settles leased messages by id. Acks and terms are committed before returning.
    pub async fn settle(
        &self,
        channel: &Channel,
        group: &GroupName,
        ids: &[String],
        how: Settle,
    ) -> Result<AckResult, GroupError> {
        let g = self.group(channel, group).await?;
        let mut st = g.lock().await;
        let mut res = AckResult::default();
        let mut offsets = Vec::new();
        let mut unleased = Vec::new();
        for id in ids {
            match st.by_id.get(id).copied() {
                Some(o) => {
                    offsets.push(o);
                    res.applied.push(id.clone());
                }
                None => {
                    res.not_found.push(id.clone());
                    unleased.push(id.clone());
                }
            }
        }
        match how {
            Settle::Nack(delay) => {
                let until = Instant::now() + delay;
                for o in offsets {
                    if let Some(l) = st.leases.get_mut(&o) {
                        l.until = until;
                    }
                }
            }
            Settle::Ack | Settle::Term => {
                if !unleased.is_empty() {
                    // Not leased here (for example after a restart): still settle it
                    // when it is in the log and not yet acknowledged.
                    let c = channel.to_string();
                    let ids = unleased.clone();
                    let found = self
                        .store
                        .reads
                        .read(move |conn| store::groups::offsets_of(conn, &c, &ids))
                        .await?;
                    for (id, o) in found {
                        if o > st.floor && !st.acked.contains(&o) {
                            offsets.push(o);
                            res.not_found.retain(|x| x != &id);
                            res.applied.push(id);
                        }
                    }
                }
                if !offsets.is_empty() {
                    let ranges: Vec<(u64, u64)> = offsets.iter().map(|&o| (o, o)).collect();
                    self.commit_settled(channel, group, &mut st, &ranges)
                        .await?;
                    let n = offsets.len() as u64;
                    match how {
                        Settle::Term => self.metrics.group_terms.inc_by(n),
                        _ => self.metrics.group_acks.inc_by(n),
                    };
                    for o in offsets {
                        if let Some(l) = st.leases.remove(&o) {
                            st.by_id.remove(&l.id);
                        }
                    }
                }
            }
        }
        drop(st);
        Ok(res)
    }

    /// Marks offset ranges as done for the group: works out the new floor and the
    /// acknowledged offsets above it, commits them, and only then adopts them.
    async fn commit_settled(
        &self,
        channel: &Channel,
        group: &GroupName,
        st: &mut GroupState,
        ranges: &[(u64, u64)],
    ) -> Result<(), GroupError> {
        let old_floor = st.floor;
        let mut floor = old_floor;
        let mut acked = st.acked.clone();
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        let mut new_above = Vec::new();
        for (a, b) in sorted {
            if b <= floor {
                continue;
            }
            if a <= floor + 1 {
                floor = b; // contiguous with the floor: no per-offset rows
            } else {
                for o in a..=b {
                    if acked.insert(o) {
                        new_above.push(o);
                    }
                }
            }
            while acked.remove(&(floor + 1)) {
                floor += 1;
            }
        }
        acked = acked.split_off(&(floor + 1));
        new_above.retain(|&o| o > floor);
        if floor == old_floor && new_above.is_empty() {
            return Ok(());
        }
        let (c, n) = (channel.to_string(), group.to_string());
        self.store
            .writer
            .run(move |conn| {
                store::groups::save_acks(conn, &c, &n, old_floor, floor, &new_above, now_ms())
            })
            .await?;
        st.floor = floor;
        st.acked = acked;
        st.next = st.next.max(floor + 1);
        Ok(())
    }
}
