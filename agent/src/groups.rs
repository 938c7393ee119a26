//! Consumer groups over the local channel log: positions, leases, ack / nack / term,
//! redelivery with backoff, dead letters, idle expiry and replay.
//!
//! Every group sees every message of its channel; consumers in one group compete.
//! A pull leases each message it returns for `ack_wait`; an unacknowledged message
//! comes back when its lease runs out (after the group's backoff), and after
//! `max_deliveries` it moves to the group's dead-letter queue. Acknowledgements, terms
//! and dead letters are committed to SQLite before the caller hears success, so an
//! acknowledged message is never delivered again, even after a crash. Leases live in
//! memory: after a restart every unacknowledged message is simply available again.

use crate::config::GroupsConfig;
use crate::inbox::LogHeads;
use crate::metrics::Metrics;
use crate::names::{Channel, GroupName};
use crate::store::groups::{GroupDeadRow, GroupSpec};
use crate::store::{self, now_ms, LogEntry, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

/// A group operation failure.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// No such group.
    #[error("no group {group} on channel {channel}")]
    NotFound {
        /// Channel.
        channel: String,
        /// Group.
        group: String,
    },
    /// The group exists already.
    #[error("group {group} already exists on channel {channel}")]
    Exists {
        /// Channel.
        channel: String,
        /// Group.
        group: String,
    },
}

/// Where a new or reset group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest entry still in the log.
    Earliest,
    /// Only entries appended from now on.
    Latest,
    /// This offset (entries below it count as acknowledged).
    Offset(u64),
    /// The first entry received at or after this time (ms since the epoch).
    Time(i64),
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The log entry.
    pub entry: LogEntry,
    /// How many times it has been handed out, this time included.
    pub deliveries: u32,
}

/// What an ack/nack/term/extend call did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AckResult {
    /// Ids applied.
    pub applied: Vec<String>,
    /// Ids not currently leased by this group (unknown, or already acknowledged).
    pub not_found: Vec<String>,
}

/// How to settle leased messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Processed: never deliver again.
    Ack,
    /// Not processed: deliver again after the delay; the error is kept for the DLQ.
    Nack(Duration, Option<String>),
    /// Never deliver again (poison); counted apart from acks.
    Term,
    /// Still working: the lease runs for another `ack_wait` from now.
    Extend,
}

/// A group as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupInfo {
    /// Channel.
    pub channel: String,
    /// Group name.
    pub name: String,
    /// Every offset at or below this is acknowledged.
    pub ack_floor: u64,
    /// The next offset never handed out yet.
    pub next_offset: u64,
    /// The offset the next appended entry will get.
    pub log_head: u64,
    /// Entries above the floor not yet acknowledged (in flight included).
    pub pending: u64,
    /// Messages leased right now.
    pub in_flight: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Consumers seen pulling within the last `ack_wait` (at least a minute).
    pub consumers: Vec<String>,
    /// Settings.
    #[serde(flatten)]
    pub spec: GroupSpec,
    /// Created (ms).
    pub created_at: i64,
    /// Last pull or ack (ms).
    pub last_active: i64,
}

struct Lease {
    id: String,
    /// The consumer's lease runs out.
    until: Instant,
    /// Eligible for redelivery.
    retry_at: Instant,
    deliveries: u32,
    last_error: Option<String>,
}

struct GroupState {
    floor: u64,
    acked: BTreeSet<u64>,
    next: u64,
    leases: BTreeMap<u64, Lease>,
    by_id: HashMap<String, u64>,
    /// Dead letters being delivered again, not leased right now.
    redriven: BTreeSet<u64>,
    /// Every redriven offset (leased or not) until settled.
    redriven_all: BTreeSet<u64>,
    spec: GroupSpec,
    created_at: i64,
    last_active: i64,
    /// Last activity written to the store.
    persisted_active: i64,
    consumers: HashMap<String, i64>,
    /// Deleted (idle TTL or API): handles still held fail with not found.
    deleted: bool,
    /// Skipped offsets whose commit failed, retried on the next pull.
    unsettled_skips: Vec<(u64, u64)>,
}

impl GroupState {
    fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.spec.ack_wait_ms)
    }

    fn in_flight(&self, now: Instant) -> usize {
        self.leases.values().filter(|l| l.until > now).count()
    }

    fn touch(&mut self, consumer: Option<&str>) {
        let now = now_ms();
        self.last_active = now;
        if let Some(c) = consumer {
            if self.consumers.len() >= 1000 && !self.consumers.contains_key(c) {
                // Forget consumers not seen for ten minutes.
                self.consumers.retain(|_, at| *at >= now - 600_000);
            }
            if self.consumers.len() < 10_000 {
                self.consumers.insert(c.to_string(), now);
            }
        }
    }
}

type Key = (Channel, GroupName);
type Handle = Arc<AsyncMutex<GroupState>>;

/// Handle to the consumer groups. Cheap to clone.
#[derive(Clone)]
pub struct Groups {
    store: Store,
    heads: LogHeads,
    metrics: Arc<Metrics>,
    config: GroupsConfig,
    groups: Arc<Mutex<HashMap<Key, Handle>>>,
}

/// Longest nack delay honoured (longer ones are shortened to this).
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The name of the group a pull uses when it names none; created on first use.
pub const DEFAULT_GROUP: &str = "default";

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

    /// The settings a group gets when it is created implicitly or without them.
    pub fn default_spec(&self) -> GroupSpec {
        GroupSpec {
            ack_wait_ms: self.config.ack_wait.as_millis() as u64,
            max_deliveries: self.config.max_deliveries,
            max_in_flight: 0,
            idle_ttl_ms: self.config.idle_ttl.as_millis() as u64,
            backoff_ms: Vec::new(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Handle>> {
        match self.groups.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    fn not_found(channel: &Channel, name: &GroupName) -> GroupError {
        GroupError::NotFound {
            channel: channel.to_string(),
            group: name.to_string(),
        }
    }

    /// The group's in-memory state, loaded from the store on first use. With
    /// `create`, a missing group is created with the default settings at the
    /// earliest offset (how a pull's group comes to exist).
    async fn group(
        &self,
        channel: &Channel,
        name: &GroupName,
        create: bool,
    ) -> Result<Handle, GroupError> {
        let key = (channel.clone(), name.clone());
        if let Some(g) = self.map().get(&key).cloned() {
            return Ok(g);
        }
        let (c, n) = (channel.to_string(), name.to_string());
        let spec = self.default_spec();
        let row = self
            .store
            .writer
            .run(move |conn| {
                if create {
                    store::groups::create_group(conn, &c, &n, 0, &spec, now_ms())?;
                }
                store::groups::load_group(conn, &c, &n)
            })
            .await?
            .ok_or_else(|| Self::not_found(channel, name))?;
        let state = GroupState {
            floor: row.ack_floor,
            acked: row.acked.iter().copied().collect(),
            next: row.ack_floor + 1,
            leases: BTreeMap::new(),
            by_id: HashMap::new(),
            redriven: row.redriven.iter().copied().collect(),
            redriven_all: row.redriven.iter().copied().collect(),
            spec: row.spec,
            created_at: row.created_at,
            last_active: row.last_active,
            persisted_active: row.last_active,
            consumers: HashMap::new(),
            deleted: false,
            unsettled_skips: Vec::new(),
        };
        Ok(self
            .map()
            .entry(key)
            .or_insert_with(|| Arc::new(AsyncMutex::new(state)))
            .clone())
    }

    async fn floor_for(&self, channel: &Channel, start: Start) -> Result<u64, GroupError> {
        let c = channel.to_string();
        Ok(match start {
            Start::Earliest => 0,
            Start::Offset(o) => o.saturating_sub(1),
            Start::Latest => {
                self.store
                    .reads
                    .read(move |conn| store::groups::next_offset(conn, &c))
                    .await?
                    - 1
            }
            Start::Time(t) => {
                self.store
                    .reads
                    .read(move |conn| store::groups::offset_at_time(conn, &c, t))
                    .await?
                    - 1
            }
        })
    }

    /// Creates a group; `Exists` when it is there already.
    pub async fn create(
        &self,
        channel: &Channel,
        name: &GroupName,
        start: Start,
        spec: GroupSpec,
    ) -> Result<GroupInfo, GroupError> {
        let floor = self.floor_for(channel, start).await?;
        let (c, n) = (channel.to_string(), name.to_string());
        let created = self
            .store
            .writer
            .run(move |conn| store::groups::create_group(conn, &c, &n, floor, &spec, now_ms()))
            .await?;
        if !created {
            return Err(GroupError::Exists {
                channel: channel.to_string(),
                group: name.to_string(),
            });
        }
        self.info(channel, name).await
    }

    /// Every group of a channel.
    pub async fn list(&self, channel: &Channel) -> Result<Vec<GroupInfo>, GroupError> {
        let c = channel.to_string();
        let rows = self
            .store
            .reads
            .read(move |conn| store::groups::load_groups(conn, Some(&c)))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Ok(name) = GroupName::new(r.name) {
                match self.info(channel, &name).await {
                    Ok(i) => out.push(i),
                    Err(GroupError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// A group's position, backlog and settings.
    pub async fn info(&self, channel: &Channel, name: &GroupName) -> Result<GroupInfo, GroupError> {
        let g = self.group(channel, name, false).await?;
        let st = g.lock().await;
        if st.deleted {
            return Err(Self::not_found(channel, name));
        }
        let (c, n) = (channel.to_string(), name.to_string());
        let (head, dead) = self
            .store
            .reads
            .read(move |conn| {
                Ok((
                    store::groups::next_offset(conn, &c)?,
                    store::groups::count_group_dead(conn, &c, &n)?,
                ))
            })
            .await?;
        let now = Instant::now();
        let recent = now_ms() - (st.spec.ack_wait_ms as i64).max(60_000);
        let mut consumers: Vec<String> = st
            .consumers
            .iter()
            .filter(|(_, &at)| at >= recent)
            .map(|(c, _)| c.clone())
            .collect();
        consumers.sort();
        let above = head.saturating_sub(st.floor + 1);
        Ok(GroupInfo {
            channel: channel.to_string(),
            name: name.to_string(),
            ack_floor: st.floor,
            next_offset: st.next,
            log_head: head,
            pending: above.saturating_sub(st.acked.len() as u64),
            in_flight: st.in_flight(now) as u64,
            dead_letters: dead,
            consumers,
            spec: st.spec.clone(),
            created_at: st.created_at,
            last_active: st.last_active,
        })
    }

    /// Deletes a group, its position and its dead letters.
    pub async fn delete(&self, channel: &Channel, name: &GroupName) -> Result<(), GroupError> {
        let key = (channel.clone(), name.clone());
        let held = self.map().remove(&key);
        let mut guard = match &held {
            Some(g) => Some(g.lock().await),
            None => None,
        };
        let (c, n) = (channel.to_string(), name.to_string());
        let deleted = self
            .store
            .writer
            .run(move |conn| store::groups::delete_group(conn, &c, &n))
            .await?;
        if let Some(st) = guard.as_mut() {
            st.deleted = true;
        }
        if deleted {
            Ok(())
        } else {
            Err(Self::not_found(channel, name))
        }
    }

    /// Moves a group's position (replay): leases are dropped, and every entry from
    /// the new start on is delivered again.
    pub async fn reset(
        &self,
        channel: &Channel,
        name: &GroupName,
        start: Start,
    ) -> Result<GroupInfo, GroupError> {
        let g = self.group(channel, name, false).await?;
        let floor = self.floor_for(channel, start).await?;
        {
            let mut st = g.lock().await;
            if st.deleted {
                return Err(Self::not_found(channel, name));
            }
            let (c, n) = (channel.to_string(), name.to_string());
            self.store
                .writer
                .run(move |conn| {
                    store::groups::unredrive_all(conn, &c, &n)?;
                    store::groups::reset_group(conn, &c, &n, floor, now_ms())
                })
                .await?;
            st.floor = floor;
            st.acked.clear();
            st.next = floor + 1;
            st.leases.clear();
            st.by_id.clear();
            // Redriven dead letters go back to the queue: the replay covers them.
            st.redriven.clear();
            st.redriven_all.clear();
            st.touch(None);
        }
        self.info(channel, name).await
    }

    /// Pulls up to `max` messages for `group`, waiting up to `wait` for the first one.
    /// Returns as soon as anything is available; an empty answer means the wait ran out.
    /// The `default` group is created on first use; other groups must exist.
    pub async fn pull(
        &self,
        channel: &Channel,
        group: &GroupName,
        consumer: Option<&str>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Leased>, GroupError> {
        let deadline = Instant::now() + wait.min(self.config.max_wait);
        let max = max.clamp(1, self.config.max_batch);
        let g = self
            .group(channel, group, group.as_str() == DEFAULT_GROUP)
            .await?;
        let mut head = self.heads.watch(channel);
        loop {
            head.borrow_and_update();
            let (out, next_wake) = self.take(channel, group, &g, consumer, max).await?;
            if !out.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_wake.map_or(deadline, |e| e.min(deadline));
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
        g: &Handle,
        consumer: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Leased>, Option<Instant>), GroupError> {
        let mut st = g.lock().await;
        if st.deleted {
            return Err(Self::not_found(channel, group));
        }
        st.touch(consumer);
        let now = Instant::now();
        let mut out = Vec::new();
        // Offsets that will never be delivered: expired, or gone from the log.
        let mut skipped: Vec<(u64, u64)> = Vec::new();
        // Redeliveries first (oldest offset first), then dead letters redriven, then
        // new entries.
        let mut due: Vec<u64> = st
            .leases
            .iter()
            .filter(|(_, l)| l.retry_at <= now)
            .map(|(o, _)| *o)
            .collect();
        // Leases past max_deliveries go to the dead-letter queue instead.
        if st.spec.max_deliveries > 0 {
            let limit = st.spec.max_deliveries;
            let dead: Vec<u64> = due
                .iter()
                .copied()
                .filter(|o| st.leases.get(o).is_some_and(|l| l.deliveries >= limit))
                .collect();
            if !dead.is_empty() {
                due.retain(|o| !dead.contains(o));
                self.dead_letter(channel, group, &mut st, &dead).await?;
            }
        }
        due.truncate(max);
        // max_in_flight counts every message handed out and not settled, waiting for
        // its redelivery included: with 1, nothing overtakes an unacknowledged message.
        let mut fresh_room = match st.spec.max_in_flight {
            0 => max,
            n => (n as usize).saturating_sub(st.leases.len()),
        }
        .min(max - due.len());
        let redriven: Vec<u64> = st.redriven.iter().copied().take(fresh_room).collect();
        fresh_room -= redriven.len();
        let room = due.len() + redriven.len() + fresh_room;
        let wanted: Vec<u64> = due.iter().chain(redriven.iter()).copied().collect();
        if !wanted.is_empty() {
            let c = channel.to_string();
            let offsets = wanted.clone();
            let entries = self
                .store
                .reads
                .read(move |conn| store::groups::read_offsets(conn, &c, &offsets))
                .await?;
            let found: BTreeSet<u64> = entries.iter().map(|e| e.offset).collect();
            for o in &wanted {
                if !found.contains(o) {
                    // Gone from the log (TTL): nothing left to deliver.
                    if let Some(l) = st.leases.remove(o) {
                        st.by_id.remove(&l.id);
                    }
                    st.redriven.remove(o);
                    skipped.push((*o, *o));
                }
            }
            let ack_wait = st.ack_wait();
            for e in entries {
                let lease = match st.leases.get_mut(&e.offset) {
                    Some(l) => {
                        l.deliveries += 1;
                        l
                    }
                    None => {
                        // A redriven dead letter starts counting again.
                        st.redriven.remove(&e.offset);
                        st.by_id.insert(e.id.clone(), e.offset);
                        st.leases.entry(e.offset).or_insert(Lease {
                            id: e.id.clone(),
                            until: now,
                            retry_at: now,
                            deliveries: 1,
                            last_error: None,
                        })
                    }
                };
                lease.until = now + ack_wait;
                let deliveries = lease.deliveries;
                let retry = lease.until + st_backoff(&st.spec, deliveries);
                if let Some(l) = st.leases.get_mut(&e.offset) {
                    l.retry_at = retry;
                }
                if deliveries > 1 {
                    self.metrics.group_redeliveries.inc();
                }
                out.push(Leased {
                    deliveries,
                    entry: e,
                });
            }
        }
        while out.len() < room {
            let c = channel.to_string();
            let from = st.next;
            let want = (room - out.len()) + 64;
            let entries = self
                .store
                .reads
                .read(move |conn| store::groups::read_log(conn, &c, from, want))
                .await?;
            let Some(last) = entries.last() else { break };
            let last_offset = last.offset;
            let wall = now_ms();
            for e in entries {
                if out.len() >= room {
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
                let until = now + st.ack_wait();
                let retry_at = until + st_backoff(&st.spec, 1);
                st.by_id.insert(e.id.clone(), e.offset);
                st.leases.insert(
                    e.offset,
                    Lease {
                        id: e.id.clone(),
                        until,
                        retry_at,
                        deliveries: 1,
                        last_error: None,
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
        skipped.append(&mut st.unsettled_skips);
        if !skipped.is_empty() {
            match self.commit_settled(channel, group, &mut st, &skipped).await {
                Ok(()) => {
                    let n: u64 = skipped.iter().map(|(a, b)| b - a + 1).sum();
                    self.metrics.group_skipped.inc_by(n);
                }
                Err(e) => {
                    // The leases made above stand; the skips are retried next time.
                    self.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "cannot record skipped log entries");
                    st.unsettled_skips = skipped;
                }
            }
        }
        let next_wake = st.leases.values().map(|l| l.retry_at).min();
        Ok((out, next_wake))
    }

    /// Moves leased offsets to the group's dead-letter queue and settles them.
    async fn dead_letter(
        &self,
        channel: &Channel,
        group: &GroupName,
        st: &mut GroupState,
        offsets: &[u64],
    ) -> Result<(), GroupError> {
        let now = now_ms();
        let rows: Vec<GroupDeadRow> = offsets
            .iter()
            .filter_map(|o| {
                st.leases.get(o).map(|l| GroupDeadRow {
                    offset: *o,
                    id: l.id.clone(),
                    state: "dead".into(),
                    deliveries: l.deliveries,
                    reason: format!("not acknowledged after {} deliveries", l.deliveries),
                    last_error: l.last_error.clone(),
                    dead_at: now,
                })
            })
            .collect();
        let ranges: Vec<(u64, u64)> = offsets.iter().map(|&o| (o, o)).collect();
        self.commit(channel, group, st, &ranges, rows, Vec::new())
            .await?;
        for o in offsets {
            if let Some(l) = st.leases.remove(o) {
                st.by_id.remove(&l.id);
            }
            st.redriven_all.remove(o);
        }
        self.metrics
            .group_dead_lettered
            .inc_by(offsets.len() as u64);
        tracing::warn!(channel = %channel, group = %group, count = offsets.len(), "moved to the group's dead-letter queue");
        Ok(())
    }

    /// Settles leased messages by id. Acks, terms and their dead-letter effects are
    /// committed before returning.
    pub async fn settle(
        &self,
        channel: &Channel,
        group: &GroupName,
        ids: &[String],
        how: Settle,
    ) -> Result<AckResult, GroupError> {
        let g = self.group(channel, group, false).await?;
        let mut st = g.lock().await;
        if st.deleted {
            return Err(Self::not_found(channel, group));
        }
        st.touch(None);
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
        let now = Instant::now();
        match how {
            Settle::Nack(delay, error) => {
                let delay = delay.min(MAX_DELAY);
                for o in offsets {
                    if let Some(l) = st.leases.get_mut(&o) {
                        l.until = now;
                        l.retry_at = now + delay;
                        if error.is_some() {
                            l.last_error = error.clone();
                        }
                    }
                }
            }
            Settle::Extend => {
                let wait = st.ack_wait();
                let spec = st.spec.clone();
                for o in offsets {
                    if let Some(l) = st.leases.get_mut(&o) {
                        l.until = now + wait;
                        l.retry_at = l.until + st_backoff(&spec, l.deliveries);
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
                        let open = (o > st.floor && !st.acked.contains(&o))
                            || st.redriven_all.contains(&o);
                        if open {
                            offsets.push(o);
                            res.not_found.retain(|x| x != &id);
                            res.applied.push(id);
                        }
                    }
                }
                if !offsets.is_empty() {
                    let ranges: Vec<(u64, u64)> = offsets.iter().map(|&o| (o, o)).collect();
                    // An ack is a consumption: the sender's receipt says so.
                    let consumed = if how == Settle::Ack && self.config.receipts {
                        offsets.clone()
                    } else {
                        Vec::new()
                    };
                    self.commit(channel, group, &mut st, &ranges, Vec::new(), consumed)
                        .await?;
                    for o in &offsets {
                        if let Some(l) = st.leases.remove(o) {
                            st.by_id.remove(&l.id);
                        }
                        st.redriven.remove(o);
                        st.redriven_all.remove(o);
                    }
                    let n = offsets.len() as u64;
                    match how {
                        Settle::Term => self.metrics.group_terms.inc_by(n),
                        _ => self.metrics.group_acks.inc_by(n),
                    };
                }
            }
        }
        drop(st);
        // A waiting pull may have room again (max_in_flight) or a message due.
        self.heads.nudge(channel);
        Ok(res)
    }

    /// A group's dead letters.
    pub async fn dead_letters(
        &self,
        channel: &Channel,
        group: &GroupName,
        limit: usize,
    ) -> Result<Vec<GroupDeadRow>, GroupError> {
        self.group(channel, group, false).await?;
        let (c, n) = (channel.to_string(), group.to_string());
        Ok(self
            .store
            .reads
            .read(move |conn| store::groups::list_group_dead(conn, &c, &n, limit))
            .await?)
    }

    /// Deletes a dead letter (false when there is none with that id).
    pub async fn delete_dead_letter(
        &self,
        channel: &Channel,
        group: &GroupName,
        id: &str,
    ) -> Result<bool, GroupError> {
        let g = self.group(channel, group, false).await?;
        let mut st = g.lock().await;
        let (c, n, i) = (channel.to_string(), group.to_string(), id.to_string());
        let o = self
            .store
            .writer
            .run(move |conn| store::groups::set_group_dead(conn, &c, &n, &i, None))
            .await?;
        if let Some(o) = o {
            st.redriven.remove(&o);
            st.redriven_all.remove(&o);
        }
        Ok(o.is_some())
    }

    /// Delivers a dead letter again, once, to the group (false when there is none).
    pub async fn redrive(
        &self,
        channel: &Channel,
        group: &GroupName,
        id: &str,
    ) -> Result<bool, GroupError> {
        let g = self.group(channel, group, false).await?;
        let mut st = g.lock().await;
        let (c, n, i) = (channel.to_string(), group.to_string(), id.to_string());
        let o = self
            .store
            .writer
            .run(move |conn| store::groups::set_group_dead(conn, &c, &n, &i, Some("redriven")))
            .await?;
        if let Some(o) = o {
            if !st.leases.contains_key(&o) {
                st.redriven.insert(o);
            }
            st.redriven_all.insert(o);
            self.heads.nudge(channel);
        }
        Ok(o.is_some())
    }

    /// Commits settled offset ranges (and dead letters) for the group.
    async fn commit_settled(
        &self,
        channel: &Channel,
        group: &GroupName,
        st: &mut GroupState,
        ranges: &[(u64, u64)],
    ) -> Result<(), GroupError> {
        self.commit(channel, group, st, ranges, Vec::new(), Vec::new())
            .await
    }

    /// Works out the new floor and the acknowledged offsets above it, commits them
    /// with any dead letters in one store job, and only then adopts them.
    async fn commit(
        &self,
        channel: &Channel,
        group: &GroupName,
        st: &mut GroupState,
        ranges: &[(u64, u64)],
        dead: Vec<GroupDeadRow>,
        consumed: Vec<u64>,
    ) -> Result<(), GroupError> {
        let old_floor = st.floor;
        let mut floor = old_floor;
        let mut acked = st.acked.clone();
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        let mut new_above = Vec::new();
        let redriven: Vec<u64> = ranges
            .iter()
            .filter(|(a, _)| st.redriven_all.contains(a))
            .map(|(a, _)| *a)
            .collect();
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
        if floor == old_floor
            && new_above.is_empty()
            && dead.is_empty()
            && redriven.is_empty()
            && consumed.is_empty()
        {
            return Ok(());
        }
        let (c, n) = (channel.to_string(), group.to_string());
        let now = now_ms();
        self.store
            .writer
            .run(move |conn| {
                store::groups::clear_redriven(conn, &c, &n, &redriven)?;
                store::groups::add_group_dead(conn, &c, &n, &dead)?;
                store::groups::mark_consumed(conn, &c, &consumed, now)?;
                store::groups::save_acks(conn, &c, &n, old_floor, floor, &new_above, now)
            })
            .await?;
        st.floor = floor;
        st.acked = acked;
        st.next = st.next.max(floor + 1);
        st.persisted_active = now;
        Ok(())
    }

    /// Expires idle groups and records pull activity, every `interval`, until cancelled.
    pub async fn run_sweeper(self, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        self.metrics.store_errors.inc();
                        tracing::warn!(error = %e, "group sweep failed");
                    }
                }
            }
        }
    }

    async fn sweep(&self) -> Result<(), GroupError> {
        let held: Vec<(Key, Handle)> = self
            .map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut touched = Vec::new();
        for ((c, n), g) in held {
            let mut st = g.lock().await;
            if st.last_active > st.persisted_active {
                touched.push((c.to_string(), n.to_string(), st.last_active));
                st.persisted_active = st.last_active;
            }
        }
        let expired = self
            .store
            .writer
            .run(move |conn| {
                store::groups::touch_groups(conn, &touched)?;
                store::groups::expire_idle_groups(conn, now_ms())
            })
            .await?;
        for (c, n) in expired {
            if let (Ok(c), Ok(n)) = (Channel::new(c), GroupName::new(n)) {
                tracing::info!(channel = %c, group = %n, "consumer group expired after its idle TTL");
                self.metrics.groups_expired.inc();
                let held = self.map().remove(&(c, n));
                if let Some(g) = held {
                    g.lock().await.deleted = true;
                }
            }
        }
        Ok(())
    }
}

fn st_backoff(spec: &GroupSpec, deliveries: u32) -> Duration {
    let b = &spec.backoff_ms;
    if b.is_empty() {
        return Duration::ZERO;
    }
    let i = (deliveries.max(1) as usize - 1).min(b.len() - 1);
    Duration::from_millis(b[i])
}
