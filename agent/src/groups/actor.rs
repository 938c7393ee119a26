//! The actor of one consumer group: it owns the group's [`GroupState`] and does the
//! store reads and writes the state's plans ask for, one command at a time. Commands
//! come through a bounded queue; nothing is locked across a store call.
//!
//! Acknowledgements, terms, dead letters and delivery counts are committed before
//! the caller hears back, so an acknowledged entry is never delivered again and a
//! delivery counts towards `max_deliveries` even after `kill -9`.

use super::state::{Fresh, GroupState, TakePlan};
use super::{AckResult, GroupError, Leased, Settle};
use crate::config::GroupsConfig;
use crate::inbox::LogHeads;
use crate::metrics::Metrics;
use crate::names::{Channel, GroupName};
use crate::store::groups::{GroupDeadRow, GroupSpec};
use crate::store::{self, group_counts, now_ms, Store};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Commands waiting for one group's actor (callers wait when it is full).
pub const COMMAND_QUEUE: usize = 64;

type Reply<T> = oneshot::Sender<Result<T, GroupError>>;

/// What the actor is asked to do.
pub(super) enum Cmd {
    /// A pull: lease up to `max` entries; also answers when a lease is due next.
    Take {
        consumer: Option<String>,
        max: usize,
        reply: Reply<(Vec<Leased>, Option<Instant>)>,
    },
    /// Ack, nack, term or extend by id.
    Settle {
        ids: Vec<String>,
        how: Settle,
        reply: Reply<AckResult>,
    },
    /// The group's position and settings.
    Snapshot { reply: Reply<Snapshot> },
    /// Moves the floor (replay).
    Reset { floor: u64, reply: Reply<()> },
    /// Deletes the group from the store; the actor then refuses everything.
    Delete { reply: Reply<bool> },
    /// The store deleted the group (idle TTL); the actor refuses everything.
    Expired,
    /// Redrives (`redrive`) or deletes a dead letter; false when there is none.
    DeadLetter {
        id: String,
        redrive: bool,
        reply: Reply<bool>,
    },
    /// Sweep: forget old consumers; answers activity not yet written to the store.
    Sweep { reply: Reply<Option<i64>> },
}

/// A group's position as the API shows it.
pub(super) struct Snapshot {
    pub floor: u64,
    pub next: u64,
    pub acked_above: u64,
    pub in_flight: u64,
    pub consumers: Vec<String>,
    pub spec: GroupSpec,
    pub created_at: i64,
    pub last_active: i64,
}

/// What every actor shares.
pub(super) struct Ctx {
    pub store: Store,
    pub heads: LogHeads,
    pub metrics: Arc<Metrics>,
    pub config: GroupsConfig,
    /// Stops every actor (the sweeper cancels it when it is cancelled itself).
    pub stop: CancellationToken,
    /// Every actor task, so that shutdown waits for them.
    pub tasks: TaskTracker,
}

pub(super) struct Actor {
    channel: Channel,
    group: GroupName,
    state: GroupState,
    ctx: Arc<Ctx>,
    deleted: bool,
}

impl Actor {
    /// Starts the actor of a group loaded from the store; it ends when every
    /// sender is gone.
    pub fn spawn(
        channel: Channel,
        group: GroupName,
        state: GroupState,
        ctx: Arc<Ctx>,
    ) -> mpsc::Sender<Cmd> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let actor = Actor {
            channel,
            group,
            state,
            ctx,
            deleted: false,
        };
        let tasks = actor.ctx.tasks.clone();
        tasks.spawn(actor.run(rx));
        tx
    }

    fn not_found(&self) -> GroupError {
        GroupError::NotFound {
            channel: self.channel.to_string(),
            group: self.group.to_string(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let stop = self.ctx.stop.clone();
        loop {
            let cmd = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(c) => c,
                    None => break, // every handle is gone
                },
            };
            if self.deleted {
                self.refuse(cmd);
                continue;
            }
            match cmd {
                Cmd::Take {
                    consumer,
                    max,
                    reply,
                } => {
                    let _ = reply.send(self.take(consumer.as_deref(), max).await);
                }
                Cmd::Settle { ids, how, reply } => {
                    let _ = reply.send(self.settle(&ids, how).await);
                }
                Cmd::Snapshot { reply } => {
                    let _ = reply.send(Ok(self.snapshot()));
                }
                Cmd::Reset { floor, reply } => {
                    let _ = reply.send(self.reset(floor).await);
                }
                Cmd::Delete { reply } => {
                    let (c, n) = (self.channel.to_string(), self.group.to_string());
                    let r = self
                        .ctx
                        .store
                        .writer
                        .run(move |conn| store::groups::delete_group(conn, &c, &n))
                        .await
                        .map_err(GroupError::from);
                    if r.is_ok() {
                        self.deleted = true;
                    }
                    let _ = reply.send(r);
                }
                Cmd::Expired => self.deleted = true,
                Cmd::DeadLetter { id, redrive, reply } => {
                    let _ = reply.send(self.dead_letter(id, redrive).await);
                }
                Cmd::Sweep { reply } => {
                    self.state.prune_consumers(now_ms());
                    let _ = reply.send(Ok(self.state.take_touched()));
                }
            }
        }
    }

    /// Answers a command to a deleted group.
    fn refuse(&self, cmd: Cmd) {
        match cmd {
            Cmd::Take { reply, .. } => drop(reply.send(Err(self.not_found()))),
            Cmd::Settle { reply, .. } => drop(reply.send(Err(self.not_found()))),
            Cmd::Snapshot { reply } => drop(reply.send(Err(self.not_found()))),
            Cmd::Reset { reply, .. } => drop(reply.send(Err(self.not_found()))),
            Cmd::Delete { reply } => drop(reply.send(Ok(false))),
            Cmd::DeadLetter { reply, .. } => drop(reply.send(Err(self.not_found()))),
            Cmd::Sweep { reply } => drop(reply.send(Ok(None))),
            Cmd::Expired => {}
        }
    }

    fn snapshot(&self) -> Snapshot {
        let st = &self.state;
        Snapshot {
            floor: st.floor(),
            next: st.next(),
            acked_above: st.acked_above() as u64,
            in_flight: st.in_flight(Instant::now()) as u64,
            consumers: st.consumers(now_ms()),
            spec: st.spec.clone(),
            created_at: st.created_at,
            last_active: st.last_active,
        }
    }

    /// A pull: dead-letter spent leases, read what is due again, then fresh
    /// entries, and record counts and settlements before answering.
    async fn take(
        &mut self,
        consumer: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Leased>, Option<Instant>), GroupError> {
        let now = Instant::now();
        let wall = now_ms();
        self.state.touch(consumer, wall);
        let TakePlan { dead, reread, room } = self.state.plan_take(now, max);
        if !dead.is_empty() {
            let rows = self.state.dead_rows(&dead, wall);
            let ranges: Vec<(u64, u64)> = dead.iter().map(|&o| (o, o)).collect();
            self.commit(&ranges, rows, Vec::new()).await?;
            self.dead_lettered(dead.len());
        }
        let (skipped, dead) = self.state.take_unsettled();
        let mut got = Fresh {
            skipped,
            dead,
            ..Fresh::default()
        };
        let read = self.read_due(&reread, now, wall, &mut got).await;
        let read = match read {
            Ok(()) => self.read_fresh(room, now, wall, &mut got).await,
            Err(e) => Err(e),
        };
        if let Err(e) = read {
            self.state.keep_unsettled(got.skipped, got.dead);
            return Err(e);
        }
        self.record(got).await
    }

    /// Reads the entries due again (redeliveries, redriven) and leases them.
    async fn read_due(
        &mut self,
        reread: &[u64],
        now: Instant,
        wall: i64,
        got: &mut Fresh,
    ) -> Result<(), GroupError> {
        if reread.is_empty() {
            return Ok(());
        }
        let c = self.channel.to_string();
        let offsets = reread.to_vec();
        let entries = self
            .ctx
            .store
            .reads
            .read(move |conn| store::groups::read_offsets(conn, &c, &offsets))
            .await?;
        got.absorb(self.state.lease_reread(reread, entries, now, wall));
        Ok(())
    }

    /// Reads fresh entries from the group's position while the pull has room.
    async fn read_fresh(
        &mut self,
        room: usize,
        now: Instant,
        wall: i64,
        got: &mut Fresh,
    ) -> Result<(), GroupError> {
        while got.leased.len() < room {
            let c = self.channel.to_string();
            let from = self.state.next();
            let want = (room - got.leased.len()) + 64;
            let entries = self
                .ctx
                .store
                .reads
                .read(move |conn| store::groups::read_log(conn, &c, from, want))
                .await?;
            let Some(last) = entries.last().map(|e| e.offset) else {
                break;
            };
            let r = self
                .state
                .lease_fresh(entries, room - got.leased.len(), now, wall);
            let full = r.full;
            got.absorb(r);
            if full || self.state.next() <= last {
                break;
            }
        }
        Ok(())
    }

    /// Persists the delivery counts of what was leased (before the consumer sees
    /// it: a crash cannot lose a delivery), then commits skips and dead letters.
    async fn record(&mut self, got: Fresh) -> Result<(Vec<Leased>, Option<Instant>), GroupError> {
        let Fresh {
            leased,
            skipped,
            dead,
            ..
        } = got;
        let redelivered = leased.iter().filter(|l| l.deliveries > 1).count() as u64;
        self.ctx.metrics.group_redeliveries.inc_by(redelivered);
        let counts = self.state.counts_to_persist(&leased);
        if !counts.is_empty() {
            let (c, n) = (self.channel.to_string(), self.group.to_string());
            let r = self
                .ctx
                .store
                .writer
                .run(move |conn| group_counts::save_deliveries(conn, &c, &n, &counts))
                .await;
            if let Err(e) = r {
                // The leases stand and run out; the entries come back then.
                self.state.keep_unsettled(skipped, dead);
                return Err(e.into());
            }
        }
        if !skipped.is_empty() || !dead.is_empty() {
            let mut ranges = skipped.clone();
            ranges.extend(dead.iter().map(|d| (d.offset, d.offset)));
            let skipped_n: u64 = skipped.iter().map(|(a, b)| b - a + 1).sum();
            let dead_n = dead.len();
            match self.commit(&ranges, dead.clone(), Vec::new()).await {
                Ok(()) => {
                    self.ctx.metrics.group_skipped.inc_by(skipped_n);
                    if dead_n > 0 {
                        self.dead_lettered(dead_n);
                    }
                }
                Err(e) => {
                    // The leases made above stand; the rest is retried next time.
                    self.ctx.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "cannot record skipped log entries");
                    self.state.keep_unsettled(skipped, dead);
                }
            }
        }
        Ok((leased, self.state.next_wake()))
    }

    fn dead_lettered(&self, n: usize) {
        self.ctx.metrics.group_dead_lettered.inc_by(n as u64);
        tracing::warn!(channel = %self.channel, group = %self.group, count = n, "moved to the group's dead-letter queue");
    }

    async fn settle(&mut self, ids: &[String], how: Settle) -> Result<AckResult, GroupError> {
        let now = Instant::now();
        self.state.touch(None, now_ms());
        let (leased, unleased) = self.state.lookup(ids);
        let mut res = AckResult {
            applied: leased.iter().map(|(id, _)| id.clone()).collect(),
            not_found: unleased.clone(),
            until: None,
        };
        let mut offsets: Vec<u64> = leased.iter().map(|(_, o)| *o).collect();
        match how {
            Settle::Nack(delay, error) => self.state.nack(&offsets, delay, error, now),
            Settle::Extend => {
                self.state.extend(&offsets, now);
                res.until = Some(now + self.state.ack_wait());
            }
            Settle::Ack | Settle::Term => {
                if !unleased.is_empty() {
                    // Not leased here (for example after a restart): still settle it
                    // when it is in the log and not yet acknowledged.
                    let c = self.channel.to_string();
                    let found = self
                        .ctx
                        .store
                        .reads
                        .read(move |conn| store::groups::offsets_of(conn, &c, &unleased))
                        .await?;
                    for (id, o) in found {
                        if self.state.is_open(o) {
                            offsets.push(o);
                            res.not_found.retain(|x| x != &id);
                            res.applied.push(id);
                        }
                    }
                }
                if !offsets.is_empty() {
                    let ranges: Vec<(u64, u64)> = offsets.iter().map(|&o| (o, o)).collect();
                    // An ack is a consumption: the sender's receipt says so.
                    let consumed = if how == Settle::Ack && self.ctx.config.receipts {
                        offsets.clone()
                    } else {
                        Vec::new()
                    };
                    self.commit(&ranges, Vec::new(), consumed).await?;
                    let n = offsets.len() as u64;
                    match how {
                        Settle::Term => self.ctx.metrics.group_terms.inc_by(n),
                        _ => self.ctx.metrics.group_acks.inc_by(n),
                    };
                }
            }
        }
        // A waiting pull may have room again (max_in_flight) or a message due.
        self.ctx.heads.nudge(&self.channel);
        Ok(res)
    }

    async fn reset(&mut self, floor: u64) -> Result<(), GroupError> {
        let (c, n) = (self.channel.to_string(), self.group.to_string());
        self.ctx
            .store
            .writer
            .run(move |conn| {
                store::groups::unredrive_all(conn, &c, &n)?;
                store::groups::reset_group(conn, &c, &n, floor, now_ms())
            })
            .await?;
        self.state.reset(floor, now_ms());
        self.ctx.heads.nudge(&self.channel);
        Ok(())
    }

    async fn dead_letter(&mut self, id: String, redrive: bool) -> Result<bool, GroupError> {
        let (c, n) = (self.channel.to_string(), self.group.to_string());
        let state = redrive.then_some("redriven");
        let o = self
            .ctx
            .store
            .writer
            .run(move |conn| {
                let o = store::groups::set_group_dead(conn, &c, &n, &id, state)?;
                if let (Some(o), true) = (o, redrive) {
                    // A redriven dead letter counts its deliveries from one again.
                    group_counts::forget_deliveries(conn, &c, &n, 0, &[(o, o)])?;
                }
                Ok(o)
            })
            .await?;
        let Some(o) = o else { return Ok(false) };
        if redrive {
            self.state.on_redriven(o);
            self.ctx.heads.nudge(&self.channel);
        } else {
            self.state.on_dead_deleted(o);
        }
        Ok(true)
    }

    /// Commits settled offset ranges (with dead letters and consumed offsets) in one
    /// store job, and only then adopts them.
    async fn commit(
        &mut self,
        ranges: &[(u64, u64)],
        dead: Vec<GroupDeadRow>,
        consumed: Vec<u64>,
    ) -> Result<(), GroupError> {
        let plan = self.state.plan_commit(ranges, dead, consumed);
        let wall = now_ms();
        if !plan.is_noop() {
            let (c, n) = (self.channel.to_string(), self.group.to_string());
            let p = plan.clone();
            self.ctx
                .store
                .writer
                .run(move |conn| {
                    store::groups::clear_redriven(conn, &c, &n, &p.redriven)?;
                    store::groups::add_group_dead(conn, &c, &n, &p.dead)?;
                    store::groups::mark_consumed(conn, &c, &p.consumed, wall)?;
                    store::groups::save_acks(
                        conn,
                        &c,
                        &n,
                        p.old_floor,
                        p.floor,
                        &p.new_above,
                        wall,
                    )?;
                    group_counts::forget_deliveries(conn, &c, &n, p.floor, &p.settled)
                })
                .await?;
        }
        self.state.apply_commit(plan, wall);
        Ok(())
    }
}

/// Sends a command and waits for its answer; a group whose actor is gone is not found.
pub(super) async fn call<T>(
    tx: &mpsc::Sender<Cmd>,
    not_found: impl Fn() -> GroupError,
    make: impl FnOnce(Reply<T>) -> Cmd,
) -> Result<T, GroupError> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).await.map_err(|_| not_found())?;
    rx.await.map_err(|_| not_found())?
}
