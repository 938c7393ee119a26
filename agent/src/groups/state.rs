//! The state of one consumer group as a pure state machine: no I/O, no clock of its
//! own (callers pass `now` for leases and `wall`, ms since the epoch, for records).
//!
//! It plans what the actor reads ([`GroupState::plan_take`]), leases what was read
//! ([`GroupState::lease_reread`], [`GroupState::lease_fresh`]), works out what a
//! settlement commits ([`GroupState::plan_commit`]) and adopts it only once the store
//! has it ([`GroupState::apply_commit`]).
//!
//! Rules: a lease runs `ack_wait`; when it runs out the entry is due again after the
//! group's backoff for that delivery; a nack makes it due after its delay; a due entry
//! delivered `max_deliveries` times goes to the dead-letter queue instead (counts
//! survive restarts: the actor persists them); `max_in_flight` counts every entry
//! handed out and not settled; redriven dead letters are delivered once more, counting
//! from one; the floor only moves over settled (acked, termed, dead, skipped) offsets.

use super::{Leased, MAX_DELAY};
use crate::store::groups::{GroupDeadRow, GroupRow, GroupSpec};
use crate::store::LogEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Most consumers remembered per group (the oldest are forgotten first).
pub const MAX_CONSUMERS: usize = 1000;
/// A consumer not seen for this long (or the ack wait, if longer) is forgotten.
pub const CONSUMER_TTL_MS: i64 = 60_000;

pub use super::plans::{Commit, Fresh, Lease, TakePlan};

/// A group's position, leases and counts.
#[derive(Debug, Clone)]
pub struct GroupState {
    floor: u64,
    acked: BTreeSet<u64>,
    next: u64,
    leases: BTreeMap<u64, Lease>,
    by_id: HashMap<String, u64>,
    /// Dead letters being delivered again, not leased right now.
    redriven: BTreeSet<u64>,
    /// Every redriven offset (leased or not) until settled.
    redriven_all: BTreeSet<u64>,
    /// Deliveries of unsettled entries not leased now (persisted before a restart).
    counts: BTreeMap<u64, u32>,
    /// Settings.
    pub spec: GroupSpec,
    /// Created (ms).
    pub created_at: i64,
    /// Last pull or ack (ms).
    pub last_active: i64,
    persisted_active: i64,
    consumers: HashMap<String, i64>,
    /// Skipped offsets whose commit failed, retried on the next pull.
    unsettled_skips: Vec<(u64, u64)>,
    /// Dead letters whose commit failed, retried on the next pull.
    unsettled_dead: Vec<GroupDeadRow>,
}

fn backoff(spec: &GroupSpec, deliveries: u32) -> Duration {
    let b = &spec.backoff_ms;
    match b.len() {
        0 => Duration::ZERO,
        n => Duration::from_millis(b[(deliveries.max(1) as usize - 1).min(n - 1)]),
    }
}

impl GroupState {
    /// The state of a group as the store has it (no leases: after a restart every
    /// unacknowledged entry is available again, with its delivery count).
    pub fn from_row(row: GroupRow) -> GroupState {
        let floor = row.ack_floor;
        GroupState {
            floor,
            acked: row.acked.iter().copied().filter(|&o| o > floor).collect(),
            next: floor.saturating_add(1),
            leases: BTreeMap::new(),
            by_id: HashMap::new(),
            redriven: row.redriven.iter().copied().collect(),
            redriven_all: row.redriven.iter().copied().collect(),
            counts: row.deliveries.iter().copied().collect(),
            spec: row.spec,
            created_at: row.created_at,
            last_active: row.last_active,
            persisted_active: row.last_active,
            consumers: HashMap::new(),
            unsettled_skips: Vec::new(),
            unsettled_dead: Vec::new(),
        }
    }

    /// Every offset at or below this is settled.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The next offset never read yet.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Settled offsets above the floor.
    pub fn acked_above(&self) -> usize {
        self.acked.len()
    }

    /// The lease an entry gets.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.spec.ack_wait_ms)
    }

    /// Leases not yet run out.
    pub fn in_flight(&self, now: Instant) -> usize {
        self.leases.values().filter(|l| l.until > now).count()
    }

    /// Every handed-out, unsettled entry (leases run out included).
    pub fn leased(&self) -> usize {
        self.leases.len()
    }

    /// Records activity (a pull names its consumer).
    pub fn touch(&mut self, consumer: Option<&str>, wall: i64) {
        self.last_active = wall;
        let Some(c) = consumer else { return };
        if !self.consumers.contains_key(c) && self.consumers.len() >= MAX_CONSUMERS {
            self.prune_consumers(wall);
            if self.consumers.len() >= MAX_CONSUMERS {
                // Still full of recent ones: forget the one seen longest ago.
                if let Some(old) = self
                    .consumers
                    .iter()
                    .min_by_key(|(_, &at)| at)
                    .map(|(k, _)| k.clone())
                {
                    self.consumers.remove(&old);
                }
            }
        }
        self.consumers.insert(c.to_string(), wall);
    }

    fn consumer_cutoff(&self, wall: i64) -> i64 {
        wall - (self.spec.ack_wait_ms.min(i64::MAX as u64) as i64).max(CONSUMER_TTL_MS)
    }

    /// Forgets consumers not seen recently.
    pub fn prune_consumers(&mut self, wall: i64) {
        let cutoff = self.consumer_cutoff(wall);
        self.consumers.retain(|_, at| *at >= cutoff);
    }

    /// Consumers seen recently, sorted.
    pub fn consumers(&self, wall: i64) -> Vec<String> {
        let cutoff = self.consumer_cutoff(wall);
        let mut v: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, &at)| at >= cutoff)
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }

    /// Activity not yet written to the store (taken: it counts as written).
    pub fn take_touched(&mut self) -> Option<i64> {
        (self.last_active > self.persisted_active).then(|| {
            self.persisted_active = self.last_active;
            self.last_active
        })
    }

    /// When the group's idle TTL runs out (None: never).
    pub fn idle_deadline(&self) -> Option<i64> {
        (self.spec.idle_ttl_ms > 0).then(|| {
            self.last_active
                .saturating_add(self.spec.idle_ttl_ms as i64)
        })
    }

    /// When the next lease becomes due for redelivery.
    pub fn next_wake(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.retry_at).min()
    }

    /// Plans a pull of at most `max` entries.
    pub fn plan_take(&self, now: Instant, max: usize) -> TakePlan {
        let limit = self.spec.max_deliveries;
        type Due = Vec<(u64, u32)>;
        let (dead, mut due): (Due, Due) = self
            .leases
            .iter()
            .filter(|(_, l)| l.retry_at <= now)
            .map(|(o, l)| (*o, l.deliveries))
            .partition(|&(_, d)| limit > 0 && d >= limit);
        let dead: Vec<u64> = dead.into_iter().map(|(o, _)| o).collect();
        due.truncate(max);
        // max_in_flight counts every entry handed out and not settled, waiting for
        // its redelivery included: with 1, nothing overtakes an unacknowledged entry.
        let held = self.leases.len() - dead.len();
        let mut fresh_room = match self.spec.max_in_flight {
            0 => max,
            n => (n as usize).saturating_sub(held),
        }
        .min(max - due.len());
        let redriven: Vec<u64> = self.redriven.iter().copied().take(fresh_room).collect();
        fresh_room -= redriven.len();
        let room = due.len() + redriven.len() + fresh_room;
        let reread = due.into_iter().map(|(o, _)| o).chain(redriven).collect();
        TakePlan { dead, reread, room }
    }

    /// The dead-letter records of leased offsets.
    pub fn dead_rows(&self, offsets: &[u64], wall: i64) -> Vec<GroupDeadRow> {
        offsets
            .iter()
            .filter_map(|o| {
                let l = self.leases.get(o)?;
                Some(dead_row(
                    *o,
                    &l.id,
                    l.deliveries,
                    l.last_error.clone(),
                    wall,
                ))
            })
            .collect()
    }

    fn new_lease(&mut self, e: &LogEntry, deliveries: u32, now: Instant) -> Leased {
        let until = now + self.ack_wait();
        let retry_at = until + backoff(&self.spec, deliveries);
        self.by_id.insert(e.id.clone(), e.offset);
        self.leases.insert(
            e.offset,
            Lease {
                id: e.id.clone(),
                until,
                retry_at,
                deliveries,
                last_error: None,
            },
        );
        Leased {
            entry: e.clone(),
            deliveries,
            until,
        }
    }

    /// The deliveries an entry not leased now had before, and whether it is spent.
    fn prior(&mut self, offset: u64) -> (u32, bool) {
        let n = self.counts.remove(&offset).unwrap_or(0);
        (
            n,
            self.spec.max_deliveries > 0 && n >= self.spec.max_deliveries,
        )
    }

    /// Leases the entries of `wanted` (a plan's rereads) that were read; the missing
    /// ones are gone from the log and settled as skipped.
    pub fn lease_reread(
        &mut self,
        wanted: &[u64],
        entries: Vec<LogEntry>,
        now: Instant,
        wall: i64,
    ) -> Fresh {
        let mut out = Fresh::default();
        let found: BTreeSet<u64> = entries.iter().map(|e| e.offset).collect();
        for o in wanted {
            if !found.contains(o) {
                if let Some(l) = self.leases.remove(o) {
                    self.by_id.remove(&l.id);
                }
                self.redriven.remove(o);
                out.skipped.push((*o, *o));
            }
        }
        let ack_wait = self.ack_wait();
        for e in entries {
            if let Some(l) = self.leases.get_mut(&e.offset) {
                l.deliveries += 1;
                l.until = now + ack_wait;
                l.retry_at = l.until + backoff(&self.spec, l.deliveries);
                out.leased.push(Leased {
                    entry: e,
                    deliveries: l.deliveries,
                    until: l.until,
                });
                continue;
            }
            // A redriven dead letter (or one read again after a restart).
            self.redriven.remove(&e.offset);
            let (n, spent) = self.prior(e.offset);
            if spent {
                out.dead.push(dead_row(e.offset, &e.id, n, None, wall));
            } else {
                out.leased.push(self.new_lease(&e, n + 1, now));
            }
        }
        out
    }

    /// Leases fresh entries read from [`GroupState::next`] while `room` lasts.
    pub fn lease_fresh(
        &mut self,
        entries: Vec<LogEntry>,
        room: usize,
        now: Instant,
        wall: i64,
    ) -> Fresh {
        let mut out = Fresh::default();
        for e in entries {
            if out.leased.len() >= room {
                out.full = true;
                break;
            }
            if e.offset > self.next {
                // Deleted from the log (TTL sweep) before this group read it.
                out.skipped.push((self.next, e.offset - 1));
            }
            self.next = self.next.max(e.offset + 1);
            if e.offset <= self.floor || self.acked.contains(&e.offset) {
                continue;
            }
            if e.expires_at <= wall {
                out.skipped.push((e.offset, e.offset));
                continue;
            }
            let (n, spent) = self.prior(e.offset);
            if spent {
                out.dead.push(dead_row(e.offset, &e.id, n, None, wall));
                continue;
            }
            out.leased.push(self.new_lease(&e, n + 1, now));
        }
        out
    }

    /// The delivery counts to persist for what a pull leased: every count when
    /// `max_deliveries` applies, else only redeliveries.
    pub fn counts_to_persist(&self, leased: &[Leased]) -> Vec<(u64, u32)> {
        leased
            .iter()
            .filter(|l| self.spec.max_deliveries > 0 || l.deliveries > 1)
            .map(|l| (l.entry.offset, l.deliveries))
            .collect()
    }

    /// Skips and dead letters whose commit failed earlier (taken to be retried).
    pub fn take_unsettled(&mut self) -> (Vec<(u64, u64)>, Vec<GroupDeadRow>) {
        (
            std::mem::take(&mut self.unsettled_skips),
            std::mem::take(&mut self.unsettled_dead),
        )
    }

    /// Skips and dead letters whose commit failed, to retry on the next pull.
    pub fn keep_unsettled(&mut self, skips: Vec<(u64, u64)>, dead: Vec<GroupDeadRow>) {
        self.unsettled_skips = skips;
        self.unsettled_dead = dead;
    }

    /// The leased offsets of `ids`, and the ids not leased here.
    pub fn lookup(&self, ids: &[String]) -> (Vec<(String, u64)>, Vec<String>) {
        let mut leased = Vec::new();
        let mut unleased = Vec::new();
        for id in ids {
            match self.by_id.get(id) {
                Some(&o) => leased.push((id.clone(), o)),
                None => unleased.push(id.clone()),
            }
        }
        (leased, unleased)
    }

    /// Not settled yet (an ack or term of it applies).
    pub fn is_open(&self, offset: u64) -> bool {
        (offset > self.floor && !self.acked.contains(&offset))
            || self.redriven_all.contains(&offset)
    }

    /// Gives leases up: due again after `delay` (at most [`MAX_DELAY`]).
    pub fn nack(&mut self, offsets: &[u64], delay: Duration, error: Option<String>, now: Instant) {
        let delay = delay.min(MAX_DELAY);
        for o in offsets {
            if let Some(l) = self.leases.get_mut(o) {
                l.until = now;
                l.retry_at = now + delay;
                if error.is_some() {
                    l.last_error = error.clone();
                }
            }
        }
    }

    /// Runs leases for another `ack_wait` from now.
    pub fn extend(&mut self, offsets: &[u64], now: Instant) {
        let wait = self.ack_wait();
        for o in offsets {
            if let Some(l) = self.leases.get_mut(o) {
                l.until = now + wait;
                l.retry_at = l.until + backoff(&self.spec, l.deliveries);
            }
        }
    }

    /// Works out the floor and acks after settling `ranges` (with dead letters and
    /// consumed offsets); nothing changes until [`GroupState::apply_commit`].
    pub fn plan_commit(
        &self,
        ranges: &[(u64, u64)],
        dead: Vec<GroupDeadRow>,
        consumed: Vec<u64>,
    ) -> Commit {
        let old_floor = self.floor;
        let mut floor = old_floor;
        let mut acked = self.acked.clone();
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        let mut new_above = Vec::new();
        let redriven: Vec<u64> = ranges
            .iter()
            .filter(|(a, _)| self.redriven_all.contains(a))
            .map(|(a, _)| *a)
            .collect();
        for &(a, b) in &sorted {
            if b <= floor {
                continue;
            }
            if a <= floor.saturating_add(1) {
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
        let acked = acked.split_off(&(floor + 1));
        new_above.retain(|&o| o > floor);
        Commit {
            old_floor,
            floor,
            acked,
            new_above,
            redriven,
            dead,
            consumed,
            settled: sorted,
        }
    }

    /// Adopts a commit the store has: settled offsets lose their leases and counts.
    pub fn apply_commit(&mut self, c: Commit, wall: i64) {
        for &(a, b) in &c.settled {
            let gone: Vec<u64> = self.leases.range(a..=b).map(|(o, _)| *o).collect();
            for o in gone {
                if let Some(l) = self.leases.remove(&o) {
                    self.by_id.remove(&l.id);
                }
            }
            let gone: Vec<u64> = self.redriven_all.range(a..=b).copied().collect();
            for o in gone {
                self.redriven.remove(&o);
                self.redriven_all.remove(&o);
            }
            let gone: Vec<u64> = self.counts.range(a..=b).map(|(o, _)| *o).collect();
            for o in gone {
                self.counts.remove(&o);
            }
        }
        if !c.is_noop() {
            self.persisted_active = wall;
        }
        self.counts = self.counts.split_off(&(c.floor + 1));
        self.floor = c.floor;
        self.acked = c.acked;
        self.next = self.next.max(c.floor + 1);
    }

    /// Moves the position (replay): leases, counts and redrives are dropped.
    pub fn reset(&mut self, floor: u64, wall: i64) {
        self.floor = floor;
        self.acked.clear();
        self.next = floor.saturating_add(1);
        self.leases.clear();
        self.by_id.clear();
        self.counts.clear();
        // Redriven dead letters go back to the queue: the replay covers them.
        self.redriven.clear();
        self.redriven_all.clear();
        self.touch(None, wall);
    }

    /// A dead letter is delivered again, once, counting from one.
    pub fn on_redriven(&mut self, offset: u64) {
        if !self.leases.contains_key(&offset) {
            self.redriven.insert(offset);
        }
        self.redriven_all.insert(offset);
        self.counts.remove(&offset);
    }

    /// A dead letter was deleted: it is not redriven any more.
    pub fn on_dead_deleted(&mut self, offset: u64) {
        self.redriven.remove(&offset);
        self.redriven_all.remove(&offset);
    }
}

/// The dead-letter record of an entry.
pub fn dead_row(
    offset: u64,
    id: &str,
    deliveries: u32,
    last_error: Option<String>,
    wall: i64,
) -> GroupDeadRow {
    GroupDeadRow {
        offset,
        id: id.to_string(),
        state: "dead".into(),
        deliveries,
        reason: format!("not acknowledged after {deliveries} deliveries"),
        last_error,
        dead_at: wall,
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
