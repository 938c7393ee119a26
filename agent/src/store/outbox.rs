//! Sending side: accept messages, route them to receivers, and track every delivery.

use super::{Error, Result};
use crate::config::Overflow;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Where one (message, receiver) delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored, not yet sent.
    Queued = 0,
    /// Sent at least once, not yet acknowledged.
    Sent = 1,
    /// Acknowledged by the receiver (committed to its channel log).
    Delivered = 2,
    /// Moved to the dead-letter store after too many attempts.
    Dead = 3,
    /// TTL ran out before it was delivered.
    Expired = 4,
    /// Dropped by the `drop_oldest` overflow policy.
    Dropped = 5,
    /// Delivered, and acknowledged by a consumer group at the receiver (status view
    /// only: stored as delivered with a `consumed_at`).
    Consumed = 6,
    /// Dropped on purpose by a management purge of queued messages.
    Purged = 7,
}

impl DeliveryState {
    fn from_i64(v: i64) -> Result<DeliveryState> {
        Ok(match v {
            0 => DeliveryState::Queued,
            1 => DeliveryState::Sent,
            2 => DeliveryState::Delivered,
            3 => DeliveryState::Dead,
            4 => DeliveryState::Expired,
            5 => DeliveryState::Dropped,
            7 => DeliveryState::Purged,
            _ => return Err(Error::Corrupt(format!("delivery state {v}"))),
        })
    }

    /// Whether the delivery still needs sending.
    pub fn pending(self) -> bool {
        matches!(self, DeliveryState::Queued | DeliveryState::Sent)
    }
}

/// A message accepted from a local application.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// ULID.
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Absolute expiry on this node's clock (ms).
    pub expires_at: i64,
    /// Content type.
    pub content_type: String,
    /// Headers as JSON text (array of pairs).
    pub headers: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Idempotency key, if the client gave one.
    pub idempotency_key: Option<String>,
}

/// What happened to a publish.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// Stored; deliveries created.
    Accepted {
        /// Message id.
        id: String,
        /// (receiver, seq) per delivery created.
        routes: Vec<(String, u64)>,
        /// Messages dropped by `drop_oldest` to make room: (receiver, channel, seq).
        dropped: Vec<(String, String, u64)>,
        /// True when no reader was known and the message is kept as unrouted.
        unrouted: bool,
    },
    /// Same idempotency key seen before: the earlier message, nothing stored.
    Duplicate {
        /// The earlier message's id.
        id: String,
        /// Its receivers.
        receivers: Vec<String>,
    },
    /// A receiver's backlog is full and the policy is `reject`: nothing stored.
    Rejected {
        /// The full receiver.
        receiver: String,
        /// Its backlog.
        pending: u64,
    },
}

/// Undelivered messages of `channel` for `receiver`: the backlog a channel's limit and
/// overflow policy apply to. Other channels' messages never count here.
fn backlog(conn: &Connection, receiver: &str, channel: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT pending FROM backlog WHERE receiver = ? AND channel = ?")?
        .query_row([receiver, channel], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

fn add_backlog(conn: &Connection, receiver: &str, channel: &str, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO backlog(receiver, channel, pending) VALUES (?1, ?2, MAX(?3, 0))
         ON CONFLICT(receiver, channel) DO UPDATE SET pending = MAX(pending + ?3, 0)",
    )?
    .execute(params![receiver, channel, delta])?;
    Ok(())
}

/// Appends a delivery for `receiver` to its stream on `channel`; returns the sequence.
fn enqueue(conn: &Connection, receiver: &str, channel: &str, id: &str, now: i64) -> Result<u64> {
    conn.prepare_cached(
        "INSERT INTO streams(receiver, channel, next_seq, acked_seq) VALUES (?, ?, 1, 0)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![receiver, channel])?;
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE streams SET next_seq = next_seq + 1 WHERE receiver = ? AND channel = ?
             RETURNING next_seq - 1",
        )?
        .query_row(params![receiver, channel], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO deliveries(receiver, channel, seq, message_id, state, queued_at)
         VALUES (?, ?, ?, ?, 0, ?)",
    )?
    .execute(params![receiver, channel, seq, id, now])?;
    add_backlog(conn, receiver, channel, 1)?;
    Ok(seq as u64)
}

/// Drops the receiver's oldest undelivered message of `channel`; returns its sequence.
fn drop_oldest(conn: &Connection, receiver: &str, channel: &str, now: i64) -> Result<Option<u64>> {
    let seq: Option<i64> = conn
        .prepare_cached(
            "SELECT seq FROM deliveries WHERE receiver = ?1 AND channel = ?2 AND state IN (0, 1)
               AND seq > (SELECT acked_seq FROM streams WHERE receiver = ?1 AND channel = ?2)
             ORDER BY seq LIMIT 1",
        )?
        .query_row([receiver, channel], |r| r.get(0))
        .optional()?;
    let Some(seq) = seq else {
        return Ok(None);
    };
    finish(
        conn,
        receiver,
        channel,
        seq as u64,
        DeliveryState::Dropped,
        "dropped: the receiver's backlog of this channel was full (drop_oldest)",
        now,
    )?;
    Ok(Some(seq as u64))
}

/// Moves a pending delivery to a terminal state; false if it was not pending.
pub fn finish(
    conn: &Connection,
    receiver: &str,
    channel: &str,
    seq: u64,
    state: DeliveryState,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET state = ?1, done_at = ?2, reason = ?3,
               attempts = attempts + (seq <= s.sent_seq)
             FROM (SELECT acked_seq, sent_seq FROM streams WHERE receiver = ?4 AND channel = ?5) AS s
             WHERE receiver = ?4 AND channel = ?5 AND seq = ?6 AND state IN (0, 1)
               AND seq > s.acked_seq",
        )?
        .execute(params![
            state as i64,
            now,
            reason,
            receiver,
            channel,
            seq as i64
        ])?;
    if n > 0 {
        add_backlog(conn, receiver, channel, -1)?;
    }
    Ok(n > 0)
}

/// Stores a message and one delivery per receiver, applying the overflow policy.
pub fn publish(
    conn: &Connection,
    msg: &NewMessage,
    receivers: &[String],
    limit: u64,
    overflow: Overflow,
) -> Result<PublishOutcome> {
    if let Some(key) = &msg.idempotency_key {
        let earlier: Option<String> = conn
            .prepare_cached("SELECT id FROM messages WHERE channel = ? AND idempotency_key = ?")?
            .query_row(params![msg.channel, key], |r| r.get(0))
            .optional()?;
        if let Some(id) = earlier {
            let mut stmt = conn.prepare_cached(
                "SELECT receiver FROM deliveries WHERE message_id = ? ORDER BY receiver, seq",
            )?;
            let receivers = stmt
                .query_map([&id], |r| r.get(0))?
                .collect::<std::result::Result<Vec<String>, _>>()?;
            return Ok(PublishOutcome::Duplicate { id, receivers });
        }
    }
    if overflow == Overflow::Reject {
        for r in receivers {
            let pending = backlog(conn, r, &msg.channel)?;
            if pending >= limit {
                return Ok(PublishOutcome::Rejected {
                    receiver: r.clone(),
                    pending,
                });
            }
        }
    }
    let now = msg.created_at;
    conn.prepare_cached(
        "INSERT INTO messages(id, channel, created_at, expires_at, content_type, headers, payload, idempotency_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        msg.id,
        msg.channel,
        msg.created_at,
        msg.expires_at,
        msg.content_type,
        msg.headers,
        msg.payload,
        msg.idempotency_key
    ])?;
    let mut dropped = Vec::new();
    let mut routes = Vec::with_capacity(receivers.len());
    for r in receivers {
        if overflow == Overflow::DropOldest {
            while backlog(conn, r, &msg.channel)? >= limit {
                match drop_oldest(conn, r, &msg.channel, now)? {
                    Some(seq) => dropped.push((r.clone(), msg.channel.clone(), seq)),
                    None => break,
                }
            }
        }
        routes.push((r.clone(), enqueue(conn, r, &msg.channel, &msg.id, now)?));
    }
    let unrouted = receivers.is_empty();
    if unrouted {
        conn.prepare_cached(
            "INSERT INTO unrouted(message_id, channel, expires_at) VALUES (?, ?, ?)",
        )?
        .execute(params![msg.id, msg.channel, msg.expires_at])?;
    }
    Ok(PublishOutcome::Accepted {
        id: msg.id.clone(),
        routes,
        dropped,
        unrouted,
    })
}

/// Gives a newly discovered reader every unexpired unrouted message of the channel it
/// does not have yet, in publish order. Returns the sequences created.
pub fn route_unrouted(
    conn: &Connection,
    channel: &str,
    reader: &str,
    now: i64,
) -> Result<Vec<u64>> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT u.message_id FROM unrouted u JOIN messages m ON m.id = u.message_id
             WHERE u.channel = ? AND u.expires_at > ?
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = u.message_id AND d.receiver = ?)
             ORDER BY u.rowid",
        )?
        .query_map(params![channel, now, reader], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let mut seqs = Vec::with_capacity(ids.len());
    for id in ids {
        seqs.push(enqueue(conn, reader, channel, &id, now)?);
    }
    Ok(seqs)
}

/// Records receipts from a receiver: when each message was first consumed there.
pub fn record_consumed(
    conn: &Connection,
    receiver: &str,
    consumed: &[(String, i64)],
) -> Result<u64> {
    let mut stmt = conn.prepare_cached(
        "UPDATE deliveries SET consumed_at = ?3
         WHERE message_id = ?1 AND receiver = ?2 AND consumed_at IS NULL AND state IN (0, 1, 2)",
    )?;
    let mut n = 0;
    for (id, at) in consumed {
        n += stmt.execute(params![id, receiver, at])? as u64;
    }
    Ok(n)
}

/// One stream as loaded at start.
#[derive(Debug, Clone)]
pub struct StreamRow {
    /// Receiver node.
    pub receiver: String,
    /// Channel.
    pub channel: String,
    /// Highest sequence assigned so far.
    pub last_seq: u64,
    /// Highest sequence acknowledged.
    pub acked_seq: u64,
}

/// Every stream with something not yet acknowledged.
pub fn open_streams(conn: &Connection) -> Result<Vec<StreamRow>> {
    let mut stmt = conn.prepare(
        "SELECT receiver, channel, next_seq - 1, acked_seq FROM streams WHERE next_seq - 1 > acked_seq",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StreamRow {
                receiver: r.get(0)?,
                channel: r.get(1)?,
                last_seq: r.get::<_, i64>(2)? as u64,
                acked_seq: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// One sequence of a stream as the sender needs it.
#[derive(Debug, Clone)]
pub struct WindowRow {
    /// Sequence.
    pub seq: u64,
    /// State.
    pub state: DeliveryState,
    /// Message id.
    pub id: String,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms, local clock).
    pub expires_at: i64,
    /// Content type.
    pub content_type: String,
    /// Headers JSON.
    pub headers: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Loads the rows of a stream in `[from, to]`. Missing sequences (deleted after a
/// terminal state) are simply absent; the sender sends them as skips.
pub fn window(
    conn: &Connection,
    receiver: &str,
    channel: &str,
    from: u64,
    to: u64,
) -> Result<Vec<WindowRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.seq, CASE WHEN d.state IN (0, 1) AND d.seq <= s.acked_seq THEN 2 ELSE d.state END,
                m.id, m.created_at, m.expires_at, m.content_type, m.headers, m.payload
         FROM deliveries d JOIN messages m ON m.id = d.message_id
           JOIN streams s ON s.receiver = d.receiver AND s.channel = d.channel
         WHERE d.receiver = ? AND d.channel = ? AND d.seq BETWEEN ? AND ? ORDER BY d.seq",
    )?;
    let rows = stmt
        .query_map(params![receiver, channel, from as i64, to as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(seq, state, id, created_at, expires_at, content_type, headers, payload)| {
                Ok(WindowRow {
                    seq: seq as u64,
                    state: DeliveryState::from_i64(state)?,
                    id,
                    created_at,
                    expires_at,
                    content_type,
                    headers,
                    payload,
                })
            },
        )
        .collect()
}

/// Status of one delivery of a message.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverStatus {
    /// Receiver node.
    pub receiver: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Stream sequence.
    pub seq: u64,
    /// Sends so far.
    pub attempts: u32,
    /// Queued (ms).
    pub queued_at: i64,
    /// Last sent (ms).
    pub sent_at: Option<i64>,
    /// Delivered, expired, dead or dropped (ms).
    pub done_at: Option<i64>,
    /// First acknowledged by a consumer group at the receiver (ms, receiver's clock);
    /// the state then reads `consumed`.
    pub consumed_at: Option<i64>,
    /// Why it ended, when not delivered.
    pub reason: Option<String>,
}

/// A message's status at the sender.
#[derive(Debug, Clone, Serialize)]
pub struct MessageStatus {
    /// Message id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Waiting for readers to be discovered.
    pub unrouted: bool,
    /// Per receiver.
    pub receivers: Vec<ReceiverStatus>,
}

/// Loads a message's per-receiver status.
pub fn status(conn: &Connection, id: &str) -> Result<Option<MessageStatus>> {
    let head: Option<(String, i64, i64)> = conn
        .query_row(
            "SELECT channel, created_at, expires_at FROM messages WHERE id = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((channel, created_at, expires_at)) = head else {
        return Ok(None);
    };
    let unrouted = conn
        .query_row("SELECT 1 FROM unrouted WHERE message_id = ?", [id], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    let mut stmt = conn.prepare(
        "SELECT d.receiver,
           CASE WHEN d.state IN (0, 1) AND d.seq <= s.acked_seq THEN 2
                WHEN d.state = 0 AND d.seq <= s.sent_seq THEN 1 ELSE d.state END,
           d.seq,
           d.attempts + (d.state IN (0, 1) AND d.seq <= s.sent_seq),
           d.queued_at,
           COALESCE(d.sent_at, CASE WHEN d.seq <= s.sent_seq THEN (SELECT x.at FROM stream_sends x
             WHERE x.receiver = d.receiver AND x.channel = d.channel AND x.upto >= d.seq
             ORDER BY x.upto LIMIT 1) END),
           COALESCE(d.done_at, CASE WHEN d.state IN (0, 1) AND d.seq <= s.acked_seq THEN (SELECT a.at
             FROM stream_acks a WHERE a.receiver = d.receiver AND a.channel = d.channel
               AND a.upto >= d.seq ORDER BY a.upto LIMIT 1) END),
           d.reason, d.consumed_at
         FROM deliveries d JOIN streams s ON s.receiver = d.receiver AND s.channel = d.channel
         WHERE d.message_id = ? ORDER BY d.receiver, d.seq",
    )?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut receivers = Vec::with_capacity(rows.len());
    for (receiver, state, seq, attempts, queued_at, sent_at, done_at, reason, consumed_at) in rows {
        let state = DeliveryState::from_i64(state)?;
        receivers.push(ReceiverStatus {
            receiver,
            state: match (state, consumed_at) {
                // A receipt proves delivery even if the ACK was lost on the way.
                (DeliveryState::Delivered | DeliveryState::Sent, Some(_)) => {
                    DeliveryState::Consumed
                }
                (s, _) => s,
            },
            consumed_at,
            seq: seq as u64,
            attempts: attempts as u32,
            queued_at,
            sent_at,
            done_at,
            reason,
        });
    }
    Ok(Some(MessageStatus {
        id: id.to_string(),
        channel,
        created_at,
        expires_at,
        unrouted,
        receivers,
    }))
}

/// Total undelivered messages across receivers, and per receiver.
pub fn backlogs(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT receiver, SUM(pending) FROM backlog WHERE pending > 0 GROUP BY receiver",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Count of unrouted messages.
pub fn unrouted_count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM unrouted", [], |r| r.get::<_, i64>(0))? as u64)
}

mod batch;
mod cursors;
mod dead;
mod gauges;
mod ids;
mod purge;
mod sweep;
pub use batch::publish_batch;
pub use cursors::{ack, mark_sent};
pub use dead::{
    dead_letter, delete_dead, delivered_after_all, list_dead, redrive_dead, DeadLetter, Redrive,
};
pub use gauges::{stream_gauges, StreamGauge};
pub use ids::message_id;
pub use purge::{purge_queued, purge_sent, Purged};
pub use sweep::{sweep, ExpirySweep};

#[cfg(test)]
mod tests;
