//! Consumption receipts: tell each sender when its messages were first consumed here.
//!
//! A consumer group's first ack of a log entry queues a receipt row in the same
//! transaction. This task sends the rows to their senders in batches, as NATS
//! requests; a sender records them (its message status then reads `consumed`) and
//! answers, and only then are the rows deleted. Unanswered batches are retried, so a
//! receipt survives NATS outages and restarts; receipts for a sender never heard from
//! again are dropped after `delivered_message_retention`.

use crate::metrics::Metrics;
use crate::names::NodeId;
use crate::store::{self, now_ms, Store};
use crate::transport::Transport;
use crate::wire::{Packet, Receipt};
use std::collections::BTreeMap;
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
                .run(move |c| store::groups::receipts_done(c, "", 0, older))
                .await;
        }
        if !transport.is_connected() {
            continue;
        }
        let rows = match store
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
        let mut by_sender: BTreeMap<String, Vec<(u64, String, i64)>> = BTreeMap::new();
        for (row, sender, id, at) in rows {
            let list = by_sender.entry(sender).or_default();
            if list.len() < BATCH {
                list.push((row, id, at));
            }
        }
        for (sender, list) in by_sender {
            let Ok(sender_id) = NodeId::new(sender.clone()) else {
                continue;
            };
            let batch = list.last().map_or(0, |r| r.0);
            let packet = Packet::Receipt(Receipt {
                receiver: me.clone(),
                sender: sender_id.clone(),
                batch,
                consumed: list.into_iter().map(|(_, id, at)| (id, at)).collect(),
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
                    let older = now_ms() - retention.as_millis() as i64;
                    let s = sender.clone();
                    if let Err(e) = store
                        .writer
                        .run(move |c| store::groups::receipts_done(c, &s, batch, older))
                        .await
                    {
                        metrics.store_errors.inc();
                        tracing::warn!(error = %e, "cannot record sent receipts");
                    }
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
