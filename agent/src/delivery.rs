//! Sending side: one sender task per (receiver node, channel) stream.
//!
//! The [`Delivery`] handle is what the API calls after a publish committed; its
//! manager task owns the map of stream tasks, routes ACKs from NATS to them, routes
//! unrouted messages to readers discovery reports, and runs the expiry/retention
//! sweep. Each stream task wraps the pure [`window::Window`] and does the I/O: read
//! rows, batch envelopes under the NATS max payload, publish, commit ACKs.

pub mod breaker;
mod sends;
mod stream;
pub mod window;

use crate::config::DeliveryConfig;
use crate::discovery::{Discovery, DiscoveryEvent};
use crate::events::EventKind;
use crate::metrics::Metrics;
use crate::names::{Channel, NodeId};
use crate::store::{self, now_ms, NewMessage, Store};
use crate::transport::Transport;
use crate::wire::{Ack, Nack, Packet, Receipt, ReceiptAck};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use stream::{StreamCmd, StreamTask};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

enum Command {
    Enqueued {
        receiver: NodeId,
        channel: Channel,
        seq: u64,
        msg: Option<Arc<NewMessage>>,
    },
    /// Several deliveries of one stream committed together (a batch publish).
    EnqueuedMany {
        receiver: NodeId,
        channel: Channel,
        items: Vec<(u64, Arc<NewMessage>)>,
    },
    Kick {
        receiver: NodeId,
        channel: Channel,
    },
    /// Unrouted messages of this channel may have readers now.
    Route(Channel),
}

/// Handle to the sending side. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    tx: mpsc::Sender<Command>,
}

/// Everything a stream task needs, shared.
#[derive(Clone)]
pub(crate) struct Shared {
    pub me: NodeId,
    pub store: Store,
    pub transport: Transport,
    pub discovery: Discovery,
    pub metrics: Arc<Metrics>,
    pub config: DeliveryConfig,
    pub domains: crate::domains::Domains,
    /// Tracks every task the sending side spawns (streams, ACK commits, receipts), so
    /// that shutdown waits for them.
    pub tasks: TaskTracker,
}

/// A running stream task as the manager sees it.
struct StreamHandle {
    tx: mpsc::Sender<StreamCmd>,
    /// When the stream last became idle (ms, local clock); 0 while it has work.
    idle_since: Arc<std::sync::atomic::AtomicI64>,
}

/// Commands a stream task can have queued.
const STREAM_QUEUE: usize = 4096;
/// Commands the manager can have queued.
const MANAGER_QUEUE: usize = 65_536;

/// The manager task, consumed by [`DeliveryTask::run`].
pub struct DeliveryTask {
    shared: Shared,
    rx: mpsc::Receiver<Command>,
    streams: HashMap<(NodeId, Channel), StreamHandle>,
    /// Highest sequence of each stream that was open when this process started: up to
    /// there the receiver may have ACKs from an earlier life of the process (or of a
    /// stream task) that the store does not know yet. Taken when the stream starts.
    prior: HashMap<(NodeId, Channel), u64>,
    /// Whether the streams open at start were read.
    resumed: bool,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Delivery {
    /// Creates the handle and the manager task.
    pub fn new(
        me: NodeId,
        store: Store,
        transport: Transport,
        discovery: Discovery,
        metrics: Arc<Metrics>,
        config: DeliveryConfig,
        domains: crate::domains::Domains,
    ) -> (Delivery, DeliveryTask) {
        let (tx, rx) = mpsc::channel(MANAGER_QUEUE);
        let tracker = TaskTracker::new();
        let task = DeliveryTask {
            shared: Shared {
                me,
                store,
                transport,
                discovery,
                metrics,
                config,
                domains,
                tasks: tracker.clone(),
            },
            rx,
            streams: HashMap::new(),
            prior: HashMap::new(),
            resumed: false,
            tracker,
            cancel: CancellationToken::new(),
        };
        (Delivery { tx }, task)
    }

    /// A delivery was committed: its stream should send it. With the message itself,
    /// the stream can send it without reading it back from SQLite.
    pub async fn enqueued(
        &self,
        receiver: NodeId,
        channel: Channel,
        seq: u64,
        msg: Option<Arc<NewMessage>>,
    ) {
        let _ = self
            .tx
            .send(Command::Enqueued {
                receiver,
                channel,
                seq,
                msg,
            })
            .await;
    }

    /// Deliveries of one stream were committed together, with their messages.
    pub async fn enqueued_many(
        &self,
        receiver: NodeId,
        channel: Channel,
        items: Vec<(u64, Arc<NewMessage>)>,
    ) {
        let _ = self
            .tx
            .send(Command::EnqueuedMany {
                receiver,
                channel,
                items,
            })
            .await;
    }

    /// Something changed in a stream's rows (expired, dropped): have it look again.
    pub async fn kick(&self, receiver: NodeId, channel: Channel) {
        let _ = self.tx.send(Command::Kick { receiver, channel }).await;
    }

    /// A message was stored unrouted: give it to every reader known now. Closes the
    /// gap between the publish reading the reader list and a reader appearing.
    pub async fn route(&self, channel: Channel) {
        let _ = self.tx.send(Command::Route(channel)).await;
    }
}

impl DeliveryTask {
    fn stream(&mut self, receiver: &NodeId, channel: &Channel) -> mpsc::Sender<StreamCmd> {
        let key = (receiver.clone(), channel.clone());
        if let Some(h) = self.streams.get(&key) {
            if !h.tx.is_closed() {
                return h.tx.clone();
            }
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let idle_since = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let prior = self.prior.remove(&key).unwrap_or(0);
        let task = StreamTask::new(
            self.shared.clone(),
            receiver.clone(),
            channel.clone(),
            rx,
            idle_since.clone(),
            prior,
        );
        self.tracker.spawn(task.run(self.cancel.clone()));
        self.streams.insert(
            key,
            StreamHandle {
                tx: tx.clone(),
                idle_since,
            },
        );
        tx
    }

    async fn send(&mut self, receiver: &NodeId, channel: &Channel, cmd: StreamCmd) {
        let tx = self.stream(receiver, channel);
        if let Err(mpsc::error::SendError(cmd)) = tx.send(cmd).await {
            // The task ended between the lookup and the send: start it again.
            self.streams.remove(&(receiver.clone(), channel.clone()));
            if self.stream(receiver, channel).send(cmd).await.is_err() {
                tracing::warn!(peer = %receiver, channel = %channel, "stream task gone");
            }
        }
    }

    /// Releases streams idle for long enough (and forgets finished ones), so that
    /// memory grows with active streams, not with every (receiver, channel) ever seen.
    fn release_idle_streams(&mut self) {
        let now = now_ms();
        let release = self.shared.config.stream_idle_release.as_millis() as i64;
        let before = self.streams.len();
        self.streams.retain(|_, h| {
            let since = h.idle_since.load(std::sync::atomic::Ordering::Relaxed);
            !h.tx.is_closed() && (since == 0 || now - since < release)
        });
        let released = before - self.streams.len();
        if released > 0 {
            self.shared.metrics.streams_released.inc_by(released as u64);
            tracing::debug!(released, open = self.streams.len(), "released idle streams");
        }
    }

    /// Runs until cancelled; waits for every stream task to stop.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.cancel = cancel.clone();
        let t = self.shared.transport.clone();
        let ack_subject = t.ack_subject(&self.shared.me);
        let Some(mut acks) = t.subscribe_until(ack_subject.clone(), &cancel).await else {
            return;
        };
        let mut events = self.shared.discovery.subscribe();
        // Resume every stream with unacknowledged deliveries.
        self.resume_open_streams().await;
        // Readers already known at start get the unrouted messages they lack.
        self.route_all_known().await;
        let mut sweep = tokio::time::interval(self.shared.config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(cmd) = self.rx.recv() => match cmd {
                    Command::Enqueued { receiver, channel, seq, msg } => {
                        let cmd = match msg {
                            Some(m) => StreamCmd::Fresh(seq, m),
                            None => StreamCmd::New(seq),
                        };
                        self.send(&receiver, &channel, cmd).await;
                    }
                    Command::EnqueuedMany { receiver, channel, items } => {
                        self.send(&receiver, &channel, StreamCmd::FreshMany(items)).await;
                    }
                    Command::Kick { receiver, channel } => {
                        self.send(&receiver, &channel, StreamCmd::Kick).await;
                    }
                    Command::Route(channel) => {
                        for node in self.shared.discovery.readers(&channel) {
                            self.route(node, channel.clone()).await;
                        }
                    }
                },
                msg = acks.next() => {
                    let Some(msg) = msg else {
                        tracing::warn!("ack subscription ended; subscribing again");
                        match t.subscribe_until(ack_subject.clone(), &cancel).await {
                            Some(s) => acks = s,
                            None => break,
                        }
                        continue;
                    };
                    match t.decode(&msg.payload) {
                        Ok(Packet::Ack(ack)) => self.on_ack(ack).await,
                        Ok(Packet::Nack(n)) => self.on_nack(n).await,
                        Ok(Packet::Receipt(r)) => self.on_receipt(r, msg.reply.map(|s| s.to_string())),
                        Ok(_) => {
                self.shared.metrics.misrouted_frames.inc();
            }
                        Err(e) => tracing::debug!(error = %e, "dropped malformed ack"),
                    }
                }
                ev = events.recv() => match ev {
                    Ok(DiscoveryEvent::NewReader { node, channel }) => self.route(node, channel).await,
                    Ok(DiscoveryEvent::Online(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.route_all_known().await,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = sweep.tick() => self.sweep().await,
            }
        }
        self.streams.clear();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tells every stream with unacknowledged deliveries how far its rows go. At
    /// start this resumes them; on each sweep it is the safety net for a commit
    /// whose notification never came (a publish whose caller went away).
    async fn resume_open_streams(&mut self) {
        match self
            .shared
            .store
            .reads
            .read(store::outbox::open_streams)
            .await
        {
            Ok(rows) => {
                let first = !self.resumed;
                self.resumed = true;
                for row in rows {
                    if let (Ok(r), Ok(c)) = (NodeId::new(row.receiver), Channel::new(row.channel)) {
                        if first {
                            self.prior.insert((r.clone(), c.clone()), row.last_seq);
                        }
                        self.send(&r, &c, StreamCmd::New(row.last_seq)).await;
                    }
                }
            }
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot load open streams");
            }
        }
    }

    /// Records a receiver's consumption receipts and answers, without holding up ACKs.
    fn on_receipt(&self, r: Receipt, reply: Option<String>) {
        let valid_id = |id: &str| {
            !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
        };
        if r.sender != self.shared.me
            || r.consumed.len() > 10_000
            || !r.consumed.iter().all(|(id, _)| valid_id(id))
        {
            self.shared.metrics.misrouted_frames.inc();
            return;
        }
        let Some(reply) = reply else {
            self.shared.metrics.misrouted_frames.inc();
            return;
        };
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let receiver = r.receiver.to_string();
            let consumed = r.consumed.clone();
            match shared
                .store
                .writer
                .run(move |c| store::outbox::record_consumed(c, &receiver, &consumed))
                .await
            {
                Ok(_) => {
                    for (id, at) in &r.consumed {
                        shared.metrics.events.emit(
                            EventKind::Consumed,
                            None,
                            Some(id),
                            Some(r.receiver.as_str()),
                            serde_json::json!({"consumed_at": at}),
                        );
                    }
                    let ack = Packet::ReceiptAck(ReceiptAck {
                        sender: shared.me.clone(),
                        receiver: r.receiver.clone(),
                        batch: r.batch,
                    });
                    let _ = shared.transport.publish(reply, &ack).await;
                }
                Err(e) => {
                    shared.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "cannot record receipts");
                }
            }
        });
    }

    async fn on_nack(&mut self, nack: Nack) {
        if nack.sender != self.shared.me || nack.epoch != self.shared.store.epoch {
            self.shared.metrics.invalid_acks.inc();
            return;
        }
        if !self.shared.discovery.fresh_nack(&nack.receiver, nack.stamp) {
            // A replayed refusal would hold the stream for nothing.
            self.shared.metrics.replayed_frames.inc();
            return;
        }
        self.shared.metrics.received_nacks.inc();
        tracing::debug!(peer = %nack.receiver, channel = %nack.channel, acked = nack.acked, reason = %nack.reason, "receiver refused a round");
        let key = (nack.receiver.clone(), nack.channel.clone());
        match self.streams.get(&key) {
            Some(h) => {
                let _ = h.tx.send(StreamCmd::Refused(nack.acked)).await;
            }
            None => {
                self.shared.metrics.invalid_acks.inc();
            }
        }
    }

    async fn on_ack(&mut self, ack: Ack) {
        if ack.sender != self.shared.me {
            self.shared.metrics.misrouted_frames.inc();
            return;
        }
        if ack.epoch != self.shared.store.epoch {
            self.shared.metrics.invalid_acks.inc();
            return;
        }
        if !ack.had.is_empty() {
            self.correct_statuses(&ack);
        }
        let key = (ack.receiver.clone(), ack.channel.clone());
        match self.streams.get(&key) {
            Some(h) => {
                let _ = h.tx.send(StreamCmd::Ack(ack.acked)).await;
            }
            // No such stream here: an ACK for something never sent.
            None => {
                self.shared.metrics.invalid_acks.inc();
            }
        }
    }

    /// The receiver had these skipped messages (its ACK had been lost before the
    /// sender gave up on them): record them as delivered, not dead, expired or dropped.
    fn correct_statuses(&self, ack: &Ack) {
        let mut had: Vec<u64> = ack
            .had
            .iter()
            .copied()
            .filter(|&s| s <= ack.acked)
            .collect();
        had.truncate(crate::wire::MAX_HAD);
        let (r, c) = (ack.receiver.to_string(), ack.channel.to_string());
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            match shared
                .store
                .writer
                .run(move |conn| store::outbox::delivered_after_all(conn, &r, &c, &had))
                .await
            {
                Ok(n) => {
                    shared.metrics.corrected_statuses.inc_by(n);
                }
                Err(e) => {
                    shared.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "cannot correct statuses");
                }
            }
        });
    }

    async fn route(&mut self, node: NodeId, channel: Channel) {
        let (n, c) = (node.to_string(), channel.to_string());
        match self
            .shared
            .store
            .writer
            .run(move |conn| store::outbox::route_unrouted(conn, &c, &n, now_ms()))
            .await
        {
            Ok(seqs) => {
                for &seq in &seqs {
                    self.shared.metrics.events.emit(
                        EventKind::Enqueued,
                        Some(channel.as_str()),
                        None,
                        Some(node.as_str()),
                        serde_json::json!({"seq": seq, "routed": "unrouted"}),
                    );
                }
                if let Some(&last) = seqs.last() {
                    tracing::info!(peer = %node, channel = %channel, count = seqs.len(), "routed unrouted messages to new reader");
                    self.send(&node, &channel, StreamCmd::New(last)).await;
                }
            }
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot route unrouted messages");
            }
        }
    }

    async fn route_all_known(&mut self) {
        let peers = self.shared.discovery.peers();
        for p in peers {
            for (ch, role) in p.memberships {
                if !role.reads() {
                    continue;
                }
                if let (Ok(n), Ok(c)) = (NodeId::new(p.node_id.clone()), Channel::new(ch)) {
                    self.route(n, c).await;
                }
            }
        }
    }

    async fn sweep(&mut self) {
        let retention = self.shared.config.delivered_message_retention.as_millis() as i64;
        let r = self
            .shared
            .store
            .writer
            .run(move |c| {
                let now = now_ms();
                let t = std::time::Instant::now();
                let out = store::outbox::sweep(c, now, retention, 10_000)?;
                let outbox = t.elapsed();
                store::groups::sweep_log(c, now, retention, 10_000)?;
                let total = t.elapsed();
                if total > std::time::Duration::from_millis(50) {
                    // The sweep holds the writer: long ones delay publishes and ACKs.
                    tracing::warn!(?outbox, ?total, "slow expiry/retention sweep");
                }
                Ok(out)
            })
            .await;
        match r {
            Ok(out) => {
                let m = &self.shared.metrics;
                m.expired
                    .inc_by(out.expired.len() as u64 + out.expired_unrouted);
                let mut kicked = std::collections::HashSet::new();
                for (r, c, seq) in out.expired {
                    self.shared.metrics.events.emit(
                        EventKind::Expired,
                        Some(&c),
                        None,
                        Some(&r),
                        serde_json::json!({"seq": seq}),
                    );
                    if let (Ok(r), Ok(c)) = (NodeId::new(r), Channel::new(c)) {
                        if kicked.insert((r.clone(), c.clone())) {
                            self.send(&r, &c, StreamCmd::Kick).await;
                        }
                    }
                }
            }
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "sweep failed");
            }
        }
        self.release_idle_streams();
        self.resume_open_streams().await;
        if self.refresh_gauges().await > 0 {
            self.route_all_known().await;
        }
    }

    /// Updates the backlog gauges; returns the number of unrouted messages.
    async fn refresh_gauges(&self) -> u64 {
        let r = self
            .shared
            .store
            .reads
            .read(|c| {
                Ok((
                    store::outbox::backlogs(c)?,
                    store::outbox::unrouted_count(c)?,
                ))
            })
            .await;
        if let Ok((backlogs, unrouted)) = r {
            let total: u64 = backlogs.iter().map(|(_, n)| n).sum();
            self.shared.metrics.pending_messages.set(total as i64);
            self.shared.metrics.unrouted_messages.set(unrouted as i64);
            return unrouted;
        }
        0
    }
}
