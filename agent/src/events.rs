//! The node's live event stream: every publish and delivery and the lifecycle events
//! around them, for the WebSocket tap. Observing never consumes anything or moves a
//! group's position.
//!
//! Events go to a broadcast channel (slow observers lag and are told so) and to a
//! bounded ring of recent history, so that a tap can start with the last N events.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A local application published a message (stored, routed).
    Published,
    /// A message was queued for a receiver (at publish, or routed later).
    Enqueued,
    /// Envelopes were sent to a receiver for the first time.
    Sent,
    /// Envelopes were sent again (timeout, reconnect, receiver back).
    Retried,
    /// A receiver acknowledged a stream up to a sequence.
    Acked,
    /// A message expired before delivery.
    Expired,
    /// A delivery was given up and moved to a dead-letter store.
    DeadLettered,
    /// A delivery was dropped by the drop_oldest overflow policy.
    Dropped,
    /// A message from a peer was appended to this node's channel log.
    Received,
    /// A receiver reported that a message was first consumed (group ack) there.
    Consumed,
    /// A receiver's circuit breaker opened or closed.
    Circuit,
    /// A peer came online.
    PeerUp,
    /// A peer went offline (silence or bye).
    PeerDown,
    /// A node was kicked from a channel or from all (by a management command).
    Kicked,
    /// This node's outbox was purged (by a management command).
    Purged,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increasing per agent process.
    pub seq: u64,
    /// Wall clock (ms since the Unix epoch).
    pub at: i64,
    /// What happened.
    pub kind: EventKind,
    /// Channel, when the event concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Message id, when the event concerns one message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The other node involved (receiver, sender or peer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Details (sequence ranges, counts, reasons).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// The event hub. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    history: Arc<Mutex<VecDeque<Arc<Event>>>>,
    capacity: usize,
    seq: Arc<AtomicU64>,
}

impl Events {
    /// A hub keeping the last `history` events.
    pub fn new(history: usize) -> Events {
        let (tx, _) = broadcast::channel(4096);
        Events {
            tx,
            history: Arc::new(Mutex::new(VecDeque::with_capacity(history.min(65_536)))),
            capacity: history,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records an event.
    pub fn emit(
        &self,
        kind: EventKind,
        channel: Option<&str>,
        id: Option<&str>,
        peer: Option<&str>,
        detail: serde_json::Value,
    ) {
        // Numbered, recorded and sent under one lock: history and live stream never
        // overlap and stay in order.
        let mut h = match self.history.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let ev = Arc::new(Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at: crate::store::now_ms(),
            kind,
            channel: channel.map(str::to_string),
            id: id.map(str::to_string),
            peer: peer.map(str::to_string),
            detail,
        });
        if self.capacity > 0 {
            if h.len() >= self.capacity {
                h.pop_front();
            }
            h.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
        drop(h);
    }

    /// Subscribes, returning up to `last_n` recent events matching `filter` first.
    /// The history and the live stream do not overlap.
    pub fn subscribe(
        &self,
        last_n: usize,
        filter: impl Fn(&Event) -> bool,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        // Hold the history lock while subscribing so nothing falls between the two.
        let h = match self.history.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let rx = self.tx.subscribe();
        let mut recent: Vec<Arc<Event>> = h
            .iter()
            .rev()
            .filter(|e| filter(e))
            .take(last_n)
            .cloned()
            .collect();
        recent.reverse();
        (recent, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_filtered_and_live_events_follow_it() {
        let ev = Events::new(3);
        for i in 0..5 {
            let ch = if i % 2 == 0 { "a" } else { "b" };
            ev.emit(
                EventKind::Published,
                Some(ch),
                None,
                None,
                serde_json::json!({"i": i}),
            );
        }
        let (recent, mut rx) = ev.subscribe(10, |e| e.channel.as_deref() == Some("a"));
        // Only the last 3 events are kept: i = 2, 3, 4; of those, channel a: 2 and 4.
        let is: Vec<i64> = recent
            .iter()
            .map(|e| e.detail["i"].as_i64().unwrap())
            .collect();
        assert_eq!(is, vec![2, 4]);
        ev.emit(
            EventKind::Acked,
            Some("a"),
            None,
            None,
            serde_json::Value::Null,
        );
        let next = rx.try_recv().unwrap();
        assert_eq!(next.kind, EventKind::Acked);
        assert_eq!(next.seq, 6);
        let (recent, _) = ev.subscribe(1, |_| true);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].seq, 6);
    }
}
