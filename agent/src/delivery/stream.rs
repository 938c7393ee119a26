//! One stream's sender task: the I/O around [`super::window::Window`].

use super::breaker::{CircuitBreaker, Transition};
use super::window::{AckOutcome, Action, Window, WindowConfig};
use super::Shared;
use crate::discovery::Liveness;
use crate::events::EventKind;
use crate::names::{Channel, NodeId};
use crate::policy::Effective;
use crate::store::{self, now_ms, DeliveryState, NewMessage, WindowRow};
use crate::wire::{DataBatch, Entry, MessageBody, Packet, FRAME_OVERHEAD};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod terminal;

/// Most messages per data frame. A window goes out as several frames, so that the
/// receiver commits and acknowledges the first while the next are on their way and
/// the window slides continuously instead of a whole window per round trip.
const FRAME_MESSAGES: usize = 128;

/// What the manager tells a stream.
#[derive(Debug)]
pub(crate) enum StreamCmd {
    /// Sequences up to this one exist.
    New(u64),
    /// This sequence exists and here is its message (no need to read it back).
    Fresh(u64, Arc<NewMessage>),
    /// Several sequences and their messages, in order.
    FreshMany(Vec<(u64, Arc<NewMessage>)>),
    /// The receiver acknowledged up to this sequence.
    Ack(u64),
    /// Rows changed state (expired/dropped): resend the window from the head.
    Kick,
    /// The receiver committed up to this sequence and refused the rest.
    Refused(u64),
}

pub(crate) struct StreamTask {
    shared: Shared,
    receiver: NodeId,
    channel: Channel,
    rx: mpsc::Receiver<StreamCmd>,
    /// Send times per unacknowledged sequence, kept for the dead-letter history.
    history: super::sends::SendLog,
    /// Messages just published, by sequence, so that the first send needs no read.
    /// Bounded; anything missing is read from SQLite. Cleared when rows change state
    /// behind the stream's back (expiry sweep, drop_oldest).
    fresh: BTreeMap<u64, Arc<NewMessage>>,
    /// Payload bytes held in `fresh`.
    fresh_bytes: usize,
    /// The channel's policy in force.
    policy: Effective,
    /// Circuit breaker, when the policy has one.
    breaker: Option<CircuitBreaker>,
    /// When this stream became idle (ms), 0 while it has work: the manager releases
    /// streams idle for long.
    idle_since: Arc<AtomicI64>,
    /// Highest sequence an earlier life of this process may have sent (see
    /// [`Window::new`]); 0 for a stream with nothing unacknowledged at start.
    prior: u64,
}

/// Most payload bytes a stream keeps in memory for sending without a read.
const FRESH_BYTES_MAX: usize = 8 << 20;

impl StreamTask {
    pub fn new(
        shared: Shared,
        receiver: NodeId,
        channel: Channel,
        rx: mpsc::Receiver<StreamCmd>,
        idle_since: Arc<AtomicI64>,
        prior: u64,
    ) -> StreamTask {
        let shared_policy = shared.domains.effective(&channel);
        let breaker = shared_policy.circuit_breaker.map(CircuitBreaker::new);
        StreamTask {
            shared,
            receiver,
            channel,
            rx,
            history: Default::default(),
            fresh: BTreeMap::new(),
            fresh_bytes: 0,
            policy: shared_policy,
            breaker,
            idle_since,
            prior,
        }
    }

    fn window_config(&self) -> WindowConfig {
        let c = &self.shared.config;
        let p = &self.policy;
        WindowConfig {
            window: c.window as u64,
            ack_timeout: c.ack_timeout,
            retry_initial: p.retry_initial,
            retry_factor: p.retry_factor,
            retry_max: p.retry_max,
            max_attempts: p.max_attempts,
            max_sends: c.sends_in_flight as usize,
            fill: FRAME_MESSAGES as u64,
        }
    }

    /// Picks up policy changes (API or domain) between actions.
    fn refresh_policy(&mut self, window: &mut Window) {
        let p = self.shared.domains.effective(&self.channel);
        if p == self.policy {
            return;
        }
        self.policy = p;
        window.set_config(self.window_config());
        match (self.policy.circuit_breaker, self.breaker.as_mut()) {
            (Some(s), Some(b)) => b.update(s),
            (Some(s), None) => self.breaker = Some(CircuitBreaker::new(s)),
            (None, _) => self.breaker = None,
        }
    }

    fn breaker_event(&self, t: Transition) {
        let m = &self.shared.metrics;
        let kind = match t {
            Transition::None => return,
            Transition::Opened => {
                m.circuit_opened.inc();
                tracing::warn!(peer = %self.receiver, channel = %self.channel, "circuit breaker opened: not sending to this receiver for now");
                "opened"
            }
            Transition::Closed => {
                m.circuit_closed.inc();
                tracing::info!(peer = %self.receiver, channel = %self.channel, "circuit breaker closed: sending again");
                "closed"
            }
        };
        m.events.emit(
            EventKind::Circuit,
            Some(self.channel.as_str()),
            None,
            Some(self.receiver.as_str()),
            serde_json::json!({"circuit": kind}),
        );
    }

    async fn load_state(&self) -> (u64, u64) {
        let (r, c) = (self.receiver.to_string(), self.channel.to_string());
        let res = self
            .shared
            .store
            .reads
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT acked_seq, next_seq - 1 FROM streams WHERE receiver = ? AND channel = ?",
                        [&r, &c],
                        |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
                    )
                    .unwrap_or((0, 0)))
            })
            .await;
        res.unwrap_or((0, 0))
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let (acked, last) = self.load_state().await;
        let mut window = Window::new(self.window_config(), acked, last, self.prior);
        let mut live: watch::Receiver<Liveness> = self.shared.discovery.liveness(&self.receiver);
        let mut nats = self.shared.transport.watch_state();
        tracing::debug!(peer = %self.receiver, channel = %self.channel, acked, last, "stream started");
        loop {
            self.refresh_policy(&mut window);
            let now = Instant::now();
            let reachable = *nats.borrow() && live.borrow().online;
            let (allowed, probing) = match self.breaker.as_mut() {
                Some(b) => (b.allows(now), b.probing(now)),
                None => (true, false),
            };
            let can_send = reachable && allowed;
            window.set_cap(probing.then_some(1));
            // Do everything that is due now; a failed send is retried shortly.
            let mut stalled = None;
            loop {
                let failed_before = window.failed_rounds();
                let Some(action) = window.poll(Instant::now(), can_send) else {
                    break;
                };
                if window.failed_rounds() > failed_before {
                    // A round timed out while the receiver was online.
                    if let Some(b) = self.breaker.as_mut() {
                        let t = b.failure(Instant::now());
                        self.breaker_event(t);
                        if t == Transition::Opened {
                            break;
                        }
                    }
                }
                if !self.act(&mut window, action).await {
                    stalled = Some(Instant::now() + std::time::Duration::from_millis(250));
                    break;
                }
            }
            let idle = window.idle() && self.fresh.is_empty();
            match (idle, self.idle_since.load(Ordering::Relaxed)) {
                (true, 0) => self.idle_since.store(now_ms().max(1), Ordering::Relaxed),
                (false, s) if s != 0 => self.idle_since.store(0, Ordering::Relaxed),
                _ => {}
            }
            let reopen = self.breaker.as_ref().and_then(|b| b.reopens_at());
            let deadline = [
                window.deadline().filter(|_| can_send),
                window.held_until().filter(|_| can_send),
                stalled,
                reopen.filter(|_| reachable),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.apply(&mut window, cmd);
                    // Coalesce whatever else is queued before acting.
                    while let Ok(cmd) = self.rx.try_recv() {
                        self.apply(&mut window, cmd);
                    }
                }
                changed = live.changed() => {
                    if changed.is_err() { break; }
                    if live.borrow_and_update().online {
                        tracing::debug!(peer = %self.receiver, channel = %self.channel, "receiver online: resending");
                        window.restart();
                    } else {
                        // An offline receiver's backlog is read back from SQLite later.
                        self.forget_fresh(u64::MAX);
                    }
                }
                changed = nats.changed() => {
                    if changed.is_err() { break; }
                    if *nats.borrow_and_update() {
                        window.restart();
                    }
                }
                _ = sleep_until(deadline) => {}
            }
        }
    }

    fn apply(&mut self, window: &mut Window, cmd: StreamCmd) {
        match cmd {
            StreamCmd::New(seq) => window.on_new(seq),
            StreamCmd::FreshMany(items) => {
                for (seq, msg) in items {
                    self.apply(window, StreamCmd::Fresh(seq, msg));
                }
            }
            StreamCmd::Fresh(seq, msg) => {
                window.on_new(seq);
                let fits = self.fresh.len() < 4 * self.shared.config.window as usize
                    && self.fresh_bytes + msg.payload.len() <= FRESH_BYTES_MAX;
                if seq > window.acked() && fits {
                    self.fresh_bytes += msg.payload.len();
                    if let Some(old) = self.fresh.insert(seq, msg) {
                        self.fresh_bytes -= old.payload.len();
                    }
                }
            }
            StreamCmd::Kick => {
                self.forget_fresh(u64::MAX);
                window.restart();
            }
            StreamCmd::Refused(acked) => {
                self.apply(window, StreamCmd::Ack(acked));
                // The receiver is there but cannot store: wait as for an offline
                // receiver. Never a failed attempt, never a dead letter.
                let now = Instant::now();
                window.on_refused(now);
                self.shared.metrics.refused_rounds.inc();
                if let Some(b) = self.breaker.as_mut() {
                    let t = b.failure(now);
                    self.breaker_event(t);
                }
            }
            StreamCmd::Ack(seq) => match window.on_ack(seq, Instant::now()) {
                AckOutcome::Advanced { from, to } => {
                    if let Some(b) = self.breaker.as_mut() {
                        let t = b.success(Instant::now());
                        self.breaker_event(t);
                    }
                    self.forget_fresh(to);
                    let (now, timer) = (now_ms(), &self.shared.metrics.send_ack);
                    self.history.acked(to, |at, n| {
                        let ms = (now - at).max(0) as u64;
                        timer.observe_n(std::time::Duration::from_millis(ms), n);
                    });
                    self.shared.metrics.received_acks.inc();
                    self.commit_ack(from, to);
                }
                AckOutcome::Stale => {}
                AckOutcome::Invalid => {
                    self.shared.metrics.invalid_acks.inc();
                    tracing::debug!(peer = %self.receiver, channel = %self.channel, seq, "ignored ack for a sequence never sent");
                }
            },
        }
    }

    /// Drops cached messages up to and including `upto`.
    fn forget_fresh(&mut self, upto: u64) {
        let keep = match upto.checked_add(1) {
            Some(next) => self.fresh.split_off(&next),
            None => BTreeMap::new(),
        };
        let gone = std::mem::replace(&mut self.fresh, keep);
        self.fresh_bytes -= gone.values().map(|m| m.payload.len()).sum::<usize>();
    }

    fn commit_ack(&self, from: u64, to: u64) {
        self.shared.metrics.events.emit(
            EventKind::Acked,
            Some(self.channel.as_str()),
            None,
            Some(self.receiver.as_str()),
            serde_json::json!({"from": from, "to": to}),
        );
        let (r, c) = (self.receiver.to_string(), self.channel.to_string());
        let writer = self.shared.store.writer.clone();
        let metrics = self.shared.metrics.clone();
        // Nothing waits for it (a lost ACK commit only means a resend that the
        // receiver deduplicates, and a restarted window accepts the receiver's ACK).
        self.shared.tasks.spawn(async move {
            match writer
                .run(move |conn| store::outbox::ack(conn, &r, &c, to))
                .await
            {
                Ok(n) => {
                    metrics.delivered.inc_by(n);
                    metrics.pending_messages.dec_by(n as i64);
                }
                Err(e) => {
                    metrics.store_errors.inc();
                    tracing::warn!(error = %e, "cannot record ack");
                }
            }
        });
    }

    /// Performs an action; false when nothing more can be done right now.
    async fn act(&mut self, window: &mut Window, action: Action) -> bool {
        match action {
            Action::Send { from, to, resend } => self.send(window, from, to, resend).await,
            Action::DeadLetter { attempts } => {
                self.dead_letter_head(
                    window,
                    attempts,
                    "no acknowledgement after max_retry_attempts",
                )
                .await;
                window.on_dead_lettered();
                true
            }
        }
    }

    /// The rows `from..=to` from memory when every one is there, else from SQLite.
    async fn rows(&self, from: u64, to: u64) -> Option<Vec<WindowRow>> {
        if (from..=to).all(|s| self.fresh.contains_key(&s)) {
            return Some(
                self.fresh
                    .range(from..=to)
                    .map(|(&seq, m)| WindowRow {
                        seq,
                        state: DeliveryState::Queued,
                        id: m.id.clone(),
                        created_at: m.created_at,
                        expires_at: m.expires_at,
                        content_type: m.content_type.clone(),
                        headers: m.headers.clone(),
                        payload: m.payload.clone(),
                    })
                    .collect(),
            );
        }
        let (r, c) = (self.receiver.to_string(), self.channel.to_string());
        match self
            .shared
            .store
            .reads
            .read(move |conn| store::outbox::window(conn, &r, &c, from, to))
            .await
        {
            Ok(rows) => Some(rows),
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot read stream window");
                None
            }
        }
    }

    async fn send(&mut self, window: &mut Window, from: u64, to: u64, resend: bool) -> bool {
        let Some(rows) = self.rows(from, to).await else {
            return false;
        };
        let now = now_ms();
        let threshold = self
            .policy
            .compression
            .then_some(self.shared.config.compression_threshold);
        let budget = self
            .shared
            .transport
            .max_payload()
            .saturating_sub(FRAME_OVERHEAD);
        let mut rows = rows.into_iter().peekable();
        let mut entries = Vec::with_capacity((to - from + 1) as usize);
        let mut expired = Vec::new();
        let mut oversize = Vec::new();
        for seq in from..=to {
            let row: Option<WindowRow> = match rows.peek() {
                Some(r) if r.seq == seq => rows.next(),
                _ => None,
            };
            let mut skipped = None;
            let body = match row {
                Some(row) if row.state.pending() => {
                    if row.expires_at <= now {
                        expired.push(seq);
                        skipped = Some(row.id);
                        None
                    } else {
                        let headers: Vec<(String, String)> = if row.headers == "[]" {
                            Vec::new()
                        } else {
                            serde_json::from_str(&row.headers).unwrap_or_default()
                        };
                        let b = MessageBody::new(
                            row.id,
                            row.created_at,
                            (row.expires_at - now) as u64,
                            row.content_type,
                            headers,
                            &row.payload,
                            threshold,
                        );
                        if b.approx_size() > budget {
                            oversize.push(seq);
                            skipped = Some(b.id);
                            None
                        } else {
                            Some(b)
                        }
                    }
                }
                // Delivered rows cannot be above the ACK; dead, expired, dropped and
                // deleted rows travel as explicit skips, with the id when known.
                Some(row) if row.state == DeliveryState::Delivered => None,
                Some(row) => {
                    skipped = Some(row.id);
                    None
                }
                None => None,
            };
            entries.push(Entry { seq, body, skipped });
        }
        // Skips go out only for rows whose new state is committed.
        if !self
            .finish_rows(&expired, DeliveryState::Expired, "ttl expired")
            .await
            || !self
                .finish_rows(
                    &oversize,
                    DeliveryState::Dead,
                    "larger than the NATS max payload",
                )
                .await
        {
            return false;
        }
        // Batch under the max payload.
        let mut sent_upto = from - 1;
        let mut batch: Vec<Entry> = Vec::new();
        let mut size = 0usize;
        let mut ok = true;
        let mut messages = 0u64;
        for e in entries {
            let sz = e.body.as_ref().map_or(
                16 + e.skipped.as_ref().map_or(0, String::len),
                MessageBody::approx_size,
            );
            if !batch.is_empty() && (size + sz > budget || batch.len() >= FRAME_MESSAGES) {
                let last = batch.last().map_or(sent_upto, |e| e.seq);
                let n = batch.iter().filter(|e| e.body.is_some()).count() as u64;
                if !self.publish(window, std::mem::take(&mut batch)).await {
                    ok = false;
                    break;
                }
                messages += n;
                sent_upto = last;
                size = 0;
            }
            size += sz;
            batch.push(e);
        }
        if ok && !batch.is_empty() {
            let last = batch.last().map_or(sent_upto, |e| e.seq);
            let n = batch.iter().filter(|e| e.body.is_some()).count() as u64;
            if self.publish(window, batch).await {
                messages += n;
                sent_upto = last;
            } else {
                ok = false;
            }
        }
        if sent_upto >= from {
            let m = &self.shared.metrics;
            m.sent_messages.inc_by(messages);
            if resend {
                m.resent_messages.inc_by(messages);
            }
            m.events.emit(
                if resend {
                    EventKind::Retried
                } else {
                    EventKind::Sent
                },
                Some(self.channel.as_str()),
                None,
                Some(self.receiver.as_str()),
                serde_json::json!({"from": from, "to": sent_upto, "messages": messages}),
            );
            self.history.sent(from, sent_upto, now);
            window.on_sent(sent_upto, Instant::now());
            let (r, c) = (self.receiver.to_string(), self.channel.to_string());
            let _ = self
                .shared
                .store
                .writer
                .submit(move |conn| store::outbox::mark_sent(conn, &r, &c, from, sent_upto))
                .await;
        }
        ok
    }

    async fn publish(&self, window: &Window, entries: Vec<Entry>) -> bool {
        let packet = Packet::Data(DataBatch {
            sender: self.shared.me.clone(),
            epoch: self.shared.store.epoch,
            receiver: self.receiver.clone(),
            channel: self.channel.clone(),
            base: window.acked() + 1,
            entries,
        });
        let subject = self.shared.transport.data_subject(&self.receiver);
        match self.shared.transport.publish(subject, &packet).await {
            Ok(()) => {
                self.shared.metrics.sent_batches.inc();
                true
            }
            Err(e) => {
                tracing::debug!(peer = %self.receiver, error = %e, "send failed; will retry");
                false
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
