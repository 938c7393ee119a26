//! Consumption receipts: tell each sender when its messages were first consumed here.
//!
//! A consumer group's first ack of log entries queues, in the same transaction, a
//! run of log offsets per sender (`store::consumed`). This task reads the message
//! ids of the runs from the log and sends them to their senders in batches, as NATS
//! requests; a sender records them (its message status then reads `consumed`) and
//! answers, and only then are the runs forgotten. Unanswered batches are retried, so
//! a receipt survives NATS outages and restarts. The ids come from the log, so a
//! receipt waits for an unreachable sender while its entry is in the log (until the
//! message's TTL, when the log sweep deletes it; the sender's status then stays
//! `delivered`), and at most `delivered_message_retention`.

use crate::metrics::Metrics;
use crate::names::NodeId;
use crate::store::groups::ReceiptMark;
use crate::store::{self, now_ms, Store};
use crate::transport::Transport;
use crate::wire::{Packet, Receipt};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most receipts in one request.
const BATCH: usize = 1000;

/// Sends queued receipts every `interval` until cancelled.
pub async fn run(
    me: NodeId,
    store: Store,
    transport: Transport,
    metrics: Arc<Metrics>,
    interval: Duration,
    retention: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        ticks += 1;
        if ticks.is_multiple_of(120) {
            // Receipts for senders not heard from within the retention period.
            let older = now_ms() - retention.as_millis() as i64;
            let _ = store
                .writer
                .run(move |c| store::groups::receipts_done(c, "", None, older))
                .await;
        }
        if !transport.is_connected() {
            continue;
        }
        let batches = match store
            .reads
            .read(|c| store::groups::pending_receipts(c, BATCH))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot read receipts");
                continue;
            }
        };
        for b in batches {
            let sender = b.sender;
            let mark = b.mark;
            let older = now_ms() - retention.as_millis() as i64;
            let Ok(sender_id) = NodeId::new(sender.clone()) else {
                continue;
            };
            if b.consumed.is_empty() {
                // The runs' entries are gone from the log (past their TTL): nothing to tell.
                forget(&store, &metrics, &sender, mark, older).await;
                continue;
            }
            let batch = mark.run;
            let packet = Packet::Receipt(Receipt {
                receiver: me.clone(),
                sender: sender_id.clone(),
                batch,
                consumed: b.consumed,
            });
            let answer = transport
                .request(
                    transport.ack_subject(&sender_id),
                    &packet,
                    Duration::from_secs(2),
                )
                .await;
            match answer {
                Ok(Packet::ReceiptAck(a)) if a.batch == batch && a.receiver == me => {
                    forget(&store, &metrics, &sender, mark, older).await;
                }
                Ok(_) => {
                    metrics.misrouted_frames.inc();
                }
                // Offline, unreachable or busy: try again on a later tick.
                Err(e) => tracing::debug!(peer = %sender, error = %e, "receipts not delivered yet"),
            }
        }
    }
}

/// Forgets a sender's receipts up to `mark` (it recorded them, or there was nothing to
/// tell), and receipts older than `older` ms.
async fn forget(store: &Store, metrics: &Metrics, sender: &str, mark: ReceiptMark, older: i64) {
    let s = sender.to_string();
    if let Err(e) = store
        .writer
        .run(move |c| store::groups::receipts_done(c, &s, Some(mark), older))
        .await
    {
        metrics.store_errors.inc();
        tracing::warn!(error = %e, "cannot forget sent receipts");
    }
}
