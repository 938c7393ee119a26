//! Receiving side: verify, dedupe, commit to the channel log, then acknowledge.
//!
//! One task reads this node's data subject. For each (sender, epoch, channel) stream it
//! accepts only the next sequence (go-back-N), appends the accepted messages to the
//! channel log in a writer job, and only when that job has committed publishes a
//! cumulative ACK. Duplicates are re-acknowledged with the committed sequence and never
//! appended twice; the dedupe state is in SQLite and has no time window. A new sender
//! epoch (its database was recreated) is a new stream.

use crate::events::EventKind;
use crate::metrics::Metrics;
use crate::names::{Channel, NodeId};
use crate::store::{self, now_ms, InboundMessage, Store};
use crate::transport::Transport;
use crate::wire::{Ack, DataBatch, Nack, Packet};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Largest payload accepted after decompression (guards against snappy bombs).
const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// Streams whose state the inbox keeps in memory. The state is a cache of SQLite:
/// past this many, streams with no commit in flight are forgotten and read back
/// when they send again, so old sender epochs and forged streams cannot grow it.
const STREAM_CACHE_MAX: usize = 4096;

/// Per-channel log heads, so that long polls wake the moment a message is appended.
#[derive(Clone, Default)]
pub struct LogHeads {
    heads: Arc<Mutex<HashMap<Channel, watch::Sender<u64>>>>,
}

impl LogHeads {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Channel, watch::Sender<u64>>) -> T) -> T {
        match self.heads.lock() {
            Ok(mut m) => f(&mut m),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Records that `channel`'s next offset is now `head`.
    pub fn advance(&self, channel: &Channel, head: u64) {
        self.with(|m| {
            m.entry(channel.clone())
                .or_insert_with(|| watch::channel(head).0)
                .send_if_modified(|h| {
                    let changed = head > *h;
                    *h = (*h).max(head);
                    changed
                })
        });
    }

    /// Wakes every long poll on `channel` (something besides a new entry changed).
    pub fn nudge(&self, channel: &Channel) {
        self.with(|m| {
            if let Some(tx) = m.get(channel) {
                tx.send_modify(|_| {});
            }
        });
    }

    /// Watches `channel`'s next offset.
    pub fn watch(&self, channel: &Channel) -> watch::Receiver<u64> {
        self.with(|m| {
            m.entry(channel.clone())
                .or_insert_with(|| watch::channel(1).0)
                .subscribe()
        })
    }
}

type StreamKey = (NodeId, u64, Channel);

struct Pending {
    key: StreamKey,
    last: u64,
    count: u64,
    ids: Vec<String>,
    result: Result<store::AppendOutcome, store::Error>,
}

/// The inbox task.
pub struct Inbox {
    me: NodeId,
    store: Store,
    transport: Transport,
    metrics: Arc<Metrics>,
    heads: LogHeads,
    /// Highest sequence accepted (possibly not yet committed) per stream.
    accepted: HashMap<StreamKey, u64>,
    /// Highest sequence committed per stream.
    committed: HashMap<StreamKey, u64>,
    /// Commits in flight per stream.
    inflight: HashMap<StreamKey, u32>,
}

impl Inbox {
    /// Creates the inbox; `heads` is shared with the consumer groups.
    pub fn new(
        me: NodeId,
        store: Store,
        transport: Transport,
        metrics: Arc<Metrics>,
        heads: LogHeads,
    ) -> Inbox {
        Inbox {
            me,
            store,
            transport,
            metrics,
            heads,
            accepted: HashMap::new(),
            committed: HashMap::new(),
            inflight: HashMap::new(),
        }
    }

    /// Runs until cancelled; in-flight commits are finished and acknowledged first.
    pub async fn run(mut self, cancel: CancellationToken) {
        if let Ok(heads) = self.store.reads.read(store::inbox::heads).await {
            for (ch, head) in heads {
                if let Ok(ch) = Channel::new(ch) {
                    self.heads.advance(&ch, head);
                }
            }
        }
        let subject = self.transport.data_subject(&self.me);
        let Some(mut sub) = self
            .transport
            .subscribe_until(subject.clone(), &cancel)
            .await
        else {
            return;
        };
        let mut pending: FuturesOrdered<
            std::pin::Pin<Box<dyn std::future::Future<Output = Pending> + Send>>,
        > = FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(done) = pending.next() => self.on_committed(done).await,
                msg = sub.next() => {
                    let Some(msg) = msg else {
                        tracing::warn!("data subscription ended; subscribing again");
                        match self.transport.subscribe_until(subject.clone(), &cancel).await {
                            Some(s) => sub = s,
                            None => break,
                        }
                        continue;
                    };
                    match self.transport.decode(&msg.payload) {
                        Ok(Packet::Data(batch)) => {
                            if let Some(fut) = self.on_batch(batch).await {
                                pending.push_back(fut);
                            }
                        }
                        Ok(_) => {
                self.metrics.misrouted_frames.inc();
            }
                        Err(e) => tracing::debug!(error = %e, "dropped malformed data frame"),
                    }
                }
            }
        }
        while let Some(done) = pending.next().await {
            self.on_committed(done).await;
        }
    }

    /// Forgets cached state of streams with nothing in flight once the cache is full.
    fn prune(&mut self) {
        if self.committed.len() < STREAM_CACHE_MAX && self.accepted.len() < STREAM_CACHE_MAX {
            return;
        }
        let inflight = &self.inflight;
        let busy = |k: &StreamKey| inflight.get(k).copied().unwrap_or(0) > 0;
        self.committed.retain(|k, _| busy(k));
        self.accepted.retain(|k, _| busy(k));
        self.inflight.retain(|_, n| *n > 0);
        self.metrics.inbox_cache_pruned.inc();
    }

    async fn last_committed(&mut self, key: &StreamKey) -> Option<u64> {
        if let Some(&v) = self.committed.get(key) {
            return Some(v);
        }
        self.prune();
        let (s, e, c) = (key.0.to_string(), key.1, key.2.to_string());
        match self
            .store
            .reads
            .read(move |conn| store::inbox::last_seq(conn, &s, e, &c))
            .await
        {
            Ok(v) => {
                let v = v.unwrap_or(0);
                self.committed.insert(key.clone(), v);
                Some(v)
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot load inbox stream state");
                None
            }
        }
    }

    async fn on_batch(
        &mut self,
        batch: DataBatch,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = Pending> + Send>>> {
        if batch.receiver != self.me || batch.sender == self.me {
            self.metrics.misrouted_frames.inc();
            return None;
        }
        let key: StreamKey = (batch.sender.clone(), batch.epoch, batch.channel.clone());
        let committed = self.last_committed(&key).await?;
        let last = *self.accepted.get(&key).unwrap_or(&committed);
        let mut new_last = last;
        let mut jumped = false;
        if batch.base > new_last + 1 {
            // Everything below base was acknowledged or skipped by the sender; this
            // node lost that state (or never had it). Move on from there.
            tracing::warn!(peer = %batch.sender, channel = %batch.channel, from = new_last, to = batch.base - 1, "fast-forwarding stream to the sender's base");
            new_last = batch.base - 1;
            jumped = true;
        }
        self.report_had(&key, &batch, committed).await;
        let now = now_ms();
        let mut msgs = Vec::new();
        for e in &batch.entries {
            if e.seq <= new_last {
                self.metrics.duplicates.inc();
                continue;
            }
            if e.seq != new_last + 1 {
                self.metrics.out_of_order.inc();
                break;
            }
            if let Some(body) = &e.body {
                let payload = match body.decompressed(MAX_DECOMPRESSED) {
                    Ok(p) => p,
                    Err(err) => {
                        self.metrics.malformed_frames.inc();
                        tracing::warn!(peer = %batch.sender, seq = e.seq, error = %err, "undecodable payload; waiting for a resend");
                        break;
                    }
                };
                msgs.push(InboundMessage {
                    id: body.id.clone(),
                    sender: batch.sender.to_string(),
                    created_at: body.created_at_ms,
                    expires_at: now.saturating_add(body.ttl_ms.min(i64::MAX as u64) as i64),
                    content_type: body.content_type.clone(),
                    headers: serde_json::to_string(&body.headers).unwrap_or_else(|_| "[]".into()),
                    payload,
                });
            }
            new_last = e.seq;
        }
        if new_last == last && !jumped {
            // Nothing new. Re-acknowledge what is committed, unless a commit is in
            // flight (its ACK follows).
            if self.inflight.get(&key).copied().unwrap_or(0) == 0 && committed > 0 {
                self.send_ack(&key, committed, Vec::new()).await;
            }
            return None;
        }
        self.accepted.insert(key.clone(), new_last);
        *self.inflight.entry(key.clone()).or_insert(0) += 1;
        let count = msgs.len() as u64;
        let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
        let (s, e, c) = (key.0.to_string(), key.1, key.2.to_string());
        let rx = self
            .store
            .writer
            .submit(move |conn| {
                store::inbox::append(conn, &s, e, &c, last, new_last, &msgs, now_ms())
            })
            .await;
        Some(Box::pin(async move {
            let result = match rx {
                Ok(rx) => rx.await.unwrap_or(Err(store::Error::Closed)),
                Err(e) => Err(e),
            };
            Pending {
                key,
                last: new_last,
                count,
                ids,
                result,
            }
        }))
    }

    async fn on_committed(&mut self, done: Pending) {
        if let Some(n) = self.inflight.get_mut(&done.key) {
            *n = n.saturating_sub(1);
        }
        match done.result {
            Ok(outcome) => {
                let c = self.committed.entry(done.key.clone()).or_insert(0);
                *c = (*c).max(done.last);
                self.metrics
                    .processed
                    .inc_by(done.count - outcome.repeated.min(done.count));
                self.metrics.repeated_ids.inc_by(outcome.repeated);
                if outcome.count > 0 {
                    self.heads.advance(&done.key.2, outcome.head);
                }
                if outcome.count == done.ids.len() as u64 {
                    let first = outcome.first_offset;
                    for (i, id) in done.ids.iter().enumerate() {
                        self.metrics.events.emit(
                            EventKind::Received,
                            Some(done.key.2.as_str()),
                            Some(id),
                            Some(done.key.0.as_str()),
                            serde_json::json!({"offset": first + i as u64}),
                        );
                    }
                }
                self.send_ack(&done.key, done.last, Vec::new()).await;
            }
            Err(e) => {
                // Forget what was accepted but not committed; tell the sender, which
                // resends later.
                self.metrics.store_errors.inc();
                tracing::error!(peer = %done.key.0, error = %e, "cannot commit received messages");
                let committed = self.committed.get(&done.key).copied().unwrap_or(0);
                self.accepted.remove(&done.key);
                self.committed.remove(&done.key);
                if matches!(e, store::Error::Conflict(_)) {
                    // A later batch behind the one that failed: one Nack is enough.
                    return;
                }
                let nack = Packet::Nack(Nack {
                    receiver: self.me.clone(),
                    sender: done.key.0.clone(),
                    channel: done.key.2.clone(),
                    epoch: done.key.1,
                    acked: committed,
                    reason: format!("receiver cannot store: {e}"),
                    stamp: self.transport.stamp(),
                });
                if self
                    .transport
                    .publish(self.transport.ack_subject(&done.key.0), &nack)
                    .await
                    .is_ok()
                {
                    self.metrics.sent_nacks.inc();
                }
            }
        }
    }

    /// Skips for sequences already committed here: if this node has the skipped
    /// message (the sender gave up on it because ACKs were lost), say so, so that the
    /// sender's status reads delivered. Rare, so the lookup may wait for the store.
    async fn report_had(&self, key: &StreamKey, batch: &DataBatch, committed: u64) {
        let asked: Vec<(u64, String)> = batch
            .entries
            .iter()
            .filter(|e| e.seq <= committed && e.body.is_none())
            .filter_map(|e| e.skipped.clone().map(|id| (e.seq, id)))
            .take(crate::wire::MAX_HAD)
            .collect();
        if asked.is_empty() {
            return;
        }
        let (s, c) = (key.0.to_string(), key.2.to_string());
        match self
            .store
            .reads
            .read(move |conn| store::inbox::have(conn, &c, &s, &asked))
            .await
        {
            Ok(had) if !had.is_empty() => self.send_ack(key, committed, had).await,
            Ok(_) => {}
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot look up skipped messages");
            }
        }
    }

    async fn send_ack(&self, key: &StreamKey, acked: u64, had: Vec<u64>) {
        let ack = Packet::Ack(Ack {
            receiver: self.me.clone(),
            sender: key.0.clone(),
            channel: key.2.clone(),
            epoch: key.1,
            acked,
            had,
        });
        match self
            .transport
            .publish(self.transport.ack_subject(&key.0), &ack)
            .await
        {
            Ok(()) => {
                self.metrics.sent_acks.inc();
            }
            Err(e) => tracing::debug!(error = %e, "ack not sent; the sender will resend"),
        }
    }
}
