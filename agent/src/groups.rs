//! Consumer groups over the local channel log: positions, leases, ack / nack / term,
//! redelivery with backoff, dead letters, idle expiry and replay.
//!
//! Every group sees every message of its channel; consumers in one group compete.
//! A pull leases each message it returns for `ack_wait`; an unacknowledged message
//! comes back when its lease runs out (after the group's backoff), and after
//! `max_deliveries` (counted across restarts) it moves to the group's dead-letter
//! queue. Acknowledgements, terms, dead letters and delivery counts are committed to
//! SQLite before the caller hears success. Leases live in memory: after a restart
//! every unacknowledged message is available again, with its delivery count.
//!
//! ```text
//! groups.rs        this handle: the API's entry points, the map of loaded groups,
//!                  long polling, creation (implicit ones from a tombstone), the sweep
//! groups/state.rs  one group as a pure state machine with explicit `now`: plans what
//!                  to read, lease, redeliver, dead-letter and commit (unit-tested)
//! groups/actor.rs  one task per loaded group owning its state and doing the store
//!                  I/O of its plans, one command at a time (no lock across I/O)
//! ```
//!
//! The `default` group is created by the first pull that names none. When its idle
//! TTL deletes it, its position stays behind as a tombstone, and the group created
//! again later starts there: nothing it acknowledged is replayed, and what it had not
//! acknowledged yet is still delivered (DESIGN.md §3: every group sees every message,
//! and an acknowledged message is not delivered to that group again).

mod actor;
mod plans;
pub mod state;

use crate::config::GroupsConfig;
use crate::inbox::LogHeads;
use crate::metrics::Metrics;
use crate::names::{Channel, GroupName};
use crate::store::groups::{GroupDeadRow, GroupSpec};
use crate::store::{self, now_ms, LogEntry, Store};
use actor::{call, Actor, Cmd, Ctx};
use state::GroupState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// When the lease runs out (the message may then go to another consumer).
    pub until: Instant,
}

/// What an ack/nack/term/extend call did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AckResult {
    /// Ids applied.
    pub applied: Vec<String>,
    /// Ids not currently leased by this group (unknown, or already acknowledged).
    pub not_found: Vec<String>,
    /// For an extend: when the extended leases run out now.
    #[serde(skip)]
    pub until: Option<Instant>,
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

type Key = (Channel, GroupName);

/// Handle to the consumer groups. Cheap to clone.
#[derive(Clone)]
pub struct Groups {
    ctx: Arc<Ctx>,
    /// The actors of loaded groups (a group's entry goes when it is deleted).
    groups: Arc<Mutex<HashMap<Key, mpsc::Sender<Cmd>>>>,
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
            ctx: Arc::new(Ctx {
                store,
                heads,
                metrics,
                config,
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
            groups: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// The longest wait a pull may ask for.
    pub fn max_wait(&self) -> Duration {
        self.ctx.config.max_wait
    }

    /// The most messages one pull may return.
    pub fn max_batch(&self) -> usize {
        self.ctx.config.max_batch
    }

    /// The settings a group gets when it is created implicitly or without them.
    pub fn default_spec(&self) -> GroupSpec {
        let c = &self.ctx.config;
        GroupSpec {
            ack_wait_ms: c.ack_wait.as_millis() as u64,
            max_deliveries: c.max_deliveries,
            max_in_flight: 0,
            idle_ttl_ms: c.idle_ttl.as_millis() as u64,
            backoff_ms: Vec::new(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, mpsc::Sender<Cmd>>> {
        match self.groups.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    fn not_found(channel: &Channel, name: &GroupName) -> impl Fn() -> GroupError {
        let (c, n) = (channel.to_string(), name.to_string());
        move || GroupError::NotFound {
            channel: c.clone(),
            group: n.clone(),
        }
    }

    /// The group's actor, loading the group from the store on first use. With
    /// `create`, a missing group is created with the default settings (how a pull's
    /// group comes to exist): at its tombstone's position, else the earliest offset.
    async fn group(
        &self,
        channel: &Channel,
        name: &GroupName,
        create: bool,
    ) -> Result<mpsc::Sender<Cmd>, GroupError> {
        let key = (channel.clone(), name.clone());
        if let Some(tx) = self.map().get(&key).filter(|t| !t.is_closed()).cloned() {
            return Ok(tx);
        }
        let (c, n) = (channel.to_string(), name.to_string());
        let spec = self.default_spec();
        let row = self
            .store()
            .writer
            .run(move |conn| {
                if create {
                    store::groups::create_implicit_group(conn, &c, &n, &spec, now_ms())?;
                }
                store::groups::load_group(conn, &c, &n)
            })
            .await?
            .ok_or_else(Self::not_found(channel, name))?;
        let mut map = self.map();
        if let Some(tx) = map.get(&key).filter(|t| !t.is_closed()) {
            return Ok(tx.clone()); // loaded meanwhile by another caller
        }
        let tx = Actor::spawn(
            channel.clone(),
            name.clone(),
            GroupState::from_row(row),
            self.ctx.clone(),
        );
        map.insert(key, tx.clone());
        Ok(tx)
    }

    async fn floor_for(&self, channel: &Channel, start: Start) -> Result<u64, GroupError> {
        let c = channel.to_string();
        let reads = &self.store().reads;
        Ok(match start {
            Start::Earliest => 0,
            Start::Offset(o) => o.saturating_sub(1),
            Start::Latest => {
                reads
                    .read(move |conn| store::groups::next_offset(conn, &c))
                    .await?
                    - 1
            }
            Start::Time(t) => {
                reads
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
            .store()
            .writer
            .run(move |conn| {
                let created = store::groups::create_group(conn, &c, &n, floor, &spec, now_ms())?;
                if created {
                    // An explicit start wins over a tombstone's position.
                    store::group_counts::drop_tombstone(conn, &c, &n)?;
                }
                Ok(created)
            })
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
            .store()
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
        let tx = self.group(channel, name, false).await?;
        let snap = call(&tx, Self::not_found(channel, name), |reply| Cmd::Snapshot {
            reply,
        })
        .await?;
        let (c, n) = (channel.to_string(), name.to_string());
        let (head, dead) = self
            .store()
            .reads
            .read(move |conn| {
                Ok((
                    store::groups::next_offset(conn, &c)?,
                    store::groups::count_group_dead(conn, &c, &n)?,
                ))
            })
            .await?;
        let above = head.saturating_sub(snap.floor + 1);
        Ok(GroupInfo {
            channel: channel.to_string(),
            name: name.to_string(),
            ack_floor: snap.floor,
            next_offset: snap.next,
            log_head: head,
            pending: above.saturating_sub(snap.acked_above),
            in_flight: snap.in_flight,
            dead_letters: dead,
            consumers: snap.consumers,
            spec: snap.spec,
            created_at: snap.created_at,
            last_active: snap.last_active,
        })
    }

    /// Deletes a group, its position and its dead letters.
    pub async fn delete(&self, channel: &Channel, name: &GroupName) -> Result<(), GroupError> {
        let held = self.map().remove(&(channel.clone(), name.clone()));
        let deleted = match held {
            Some(tx) => {
                call(&tx, Self::not_found(channel, name), |reply| Cmd::Delete {
                    reply,
                })
                .await?
            }
            None => {
                let (c, n) = (channel.to_string(), name.to_string());
                self.store()
                    .writer
                    .run(move |conn| store::groups::delete_group(conn, &c, &n))
                    .await?
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(Self::not_found(channel, name)())
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
        let tx = self.group(channel, name, false).await?;
        let floor = self.floor_for(channel, start).await?;
        call(&tx, Self::not_found(channel, name), |reply| Cmd::Reset {
            floor,
            reply,
        })
        .await?;
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
        let deadline = Instant::now() + wait.min(self.ctx.config.max_wait);
        let max = max.clamp(1, self.ctx.config.max_batch);
        let tx = self
            .group(channel, group, group.as_str() == DEFAULT_GROUP)
            .await?;
        let mut head = self.ctx.heads.watch(channel);
        loop {
            head.borrow_and_update();
            let consumer = consumer.map(str::to_string);
            let (out, next_wake) = call(&tx, Self::not_found(channel, group), |reply| Cmd::Take {
                consumer,
                max,
                reply,
            })
            .await?;
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

    /// Settles leased messages by id. Acks, terms and their dead-letter effects are
    /// committed before returning.
    pub async fn settle(
        &self,
        channel: &Channel,
        group: &GroupName,
        ids: &[String],
        how: Settle,
    ) -> Result<AckResult, GroupError> {
        let tx = self.group(channel, group, false).await?;
        let ids = ids.to_vec();
        call(&tx, Self::not_found(channel, group), |reply| Cmd::Settle {
            ids,
            how,
            reply,
        })
        .await
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
            .store()
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
        self.dead_letter(channel, group, id, false).await
    }

    /// Delivers a dead letter again, once, to the group (false when there is none).
    pub async fn redrive(
        &self,
        channel: &Channel,
        group: &GroupName,
        id: &str,
    ) -> Result<bool, GroupError> {
        self.dead_letter(channel, group, id, true).await
    }

    async fn dead_letter(
        &self,
        channel: &Channel,
        group: &GroupName,
        id: &str,
        redrive: bool,
    ) -> Result<bool, GroupError> {
        let tx = self.group(channel, group, false).await?;
        let id = id.to_string();
        call(&tx, Self::not_found(channel, group), |reply| {
            Cmd::DeadLetter { id, redrive, reply }
        })
        .await
    }

    /// Expires idle groups and records pull activity, every `interval`, until
    /// cancelled; then stops every group's actor and waits for them.
    pub async fn run_sweeper(self, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        self.ctx.metrics.store_errors.inc();
                        tracing::warn!(error = %e, "group sweep failed");
                    }
                }
            }
        }
        self.ctx.stop.cancel();
        self.ctx.tasks.close();
        self.ctx.tasks.wait().await;
    }

    async fn sweep(&self) -> Result<(), GroupError> {
        let held: Vec<(Key, mpsc::Sender<Cmd>)> = {
            let mut map = self.map();
            // Actors that ended (nothing can reach them) leave the map.
            map.retain(|_, tx| !tx.is_closed());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut touched = Vec::new();
        for ((c, n), tx) in held {
            let r = call(&tx, Self::not_found(&c, &n), |reply| Cmd::Sweep { reply }).await;
            if let Ok(Some(at)) = r {
                touched.push((c.to_string(), n.to_string(), at));
            }
        }
        let expired = self
            .store()
            .writer
            .run(move |conn| {
                store::groups::touch_groups(conn, &touched)?;
                store::groups::expire_idle_groups(conn, now_ms())
            })
            .await?;
        for (c, n) in expired {
            if let (Ok(c), Ok(n)) = (Channel::new(c), GroupName::new(n)) {
                tracing::info!(channel = %c, group = %n, "consumer group expired after its idle TTL");
                self.ctx.metrics.groups_expired.inc();
                let held = self.map().remove(&(c, n));
                if let Some(tx) = held {
                    // Handles still held by callers fail with not found.
                    let _ = tx.send(Cmd::Expired).await;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
