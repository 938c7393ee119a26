//! The sender's dead letters: deliveries given up on, listed, deleted, redriven, and
//! corrected to delivered when the receiver turns out to have had them.

use super::{enqueue, finish, DeliveryState};
use crate::store::{now_ms, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// The receiver reports it had these sequences although the sender had finished them
/// as dead, expired or dropped (its ACK was lost): they are delivered. Their dead
/// letters go away. Returns how many deliveries changed.
pub fn delivered_after_all(
    conn: &Connection,
    receiver: &str,
    channel: &str,
    seqs: &[u64],
) -> Result<u64> {
    let mut n = 0;
    let now = now_ms();
    for &seq in seqs {
        let changed = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 2, done_at = ?, reason = NULL
                 WHERE receiver = ? AND channel = ? AND seq = ? AND state IN (3, 4, 5, 7)",
            )?
            .execute(params![now, receiver, channel, seq as i64])?;
        if changed > 0 {
            conn.prepare_cached(
                "DELETE FROM dead_letters WHERE receiver = ? AND channel = ? AND seq = ?",
            )?
            .execute(params![receiver, channel, seq as i64])?;
        }
        n += changed as u64;
    }
    Ok(n)
}

/// Moves the delivery to the dead-letter store with its reason and attempt history.
#[allow(clippy::too_many_arguments)]
pub fn dead_letter(
    conn: &Connection,
    receiver: &str,
    channel: &str,
    seq: u64,
    reason: &str,
    attempts: u32,
    history: &str,
) -> Result<bool> {
    let now = now_ms();
    if !finish(
        conn,
        receiver,
        channel,
        seq,
        DeliveryState::Dead,
        reason,
        now,
    )? {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO dead_letters(receiver, channel, seq, message_id, reason, attempts, history, dead_at)
         SELECT receiver, channel, seq, message_id, ?, ?, ?, ? FROM deliveries
         WHERE receiver = ? AND channel = ? AND seq = ?",
    )?
    .execute(params![reason, attempts, history, now, receiver, channel, seq as i64])?;
    Ok(true)
}

/// A sender-side dead letter: a delivery given up on.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Message id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// The receiver it did not reach.
    pub receiver: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Why.
    pub reason: String,
    /// Sends made.
    pub attempts: u32,
    /// Send times (ms) of the last rounds.
    pub history: Vec<i64>,
    /// When it was given up (ms).
    pub dead_at: i64,
}

/// Dead letters, oldest first, optionally of one message, channel or receiver.
pub fn list_dead(
    conn: &Connection,
    id: Option<&str>,
    channel: Option<&str>,
    receiver: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, channel, receiver, seq, reason, attempts, history, dead_at FROM dead_letters
         WHERE (?1 IS NULL OR message_id = ?1) AND (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR receiver = ?3)
         ORDER BY dead_at, receiver, seq LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(
            params![id, channel, receiver, limit.min(i64::MAX as usize) as i64],
            |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    receiver: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    reason: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u32,
                    history: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    dead_at: r.get(7)?,
                })
            },
        )?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Deletes a message's dead letters (of one receiver, or all); returns how many.
pub fn delete_dead(conn: &Connection, id: &str, receiver: Option<&str>) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM dead_letters WHERE message_id = ?1 AND (?2 IS NULL OR receiver = ?2)",
        )?
        .execute(params![id, receiver])? as u64)
}

/// What a redrive did.
#[derive(Debug, Clone, PartialEq)]
pub enum Redrive {
    /// Queued again: (receiver, channel, new sequence) per dead letter.
    Queued(Vec<(String, String, u64)>),
    /// No such dead letter.
    NotFound,
    /// The message's TTL has run out; nothing was queued.
    Expired,
}

/// Queues a message's dead letters (of one receiver, or all) again, each as a new
/// delivery at the end of its stream; the dead-letter records go away.
pub fn redrive_dead(
    conn: &Connection,
    id: &str,
    receiver: Option<&str>,
    now: i64,
) -> Result<Redrive> {
    let dead = list_dead(conn, Some(id), None, receiver, usize::MAX)?;
    if dead.is_empty() {
        return Ok(Redrive::NotFound);
    }
    let expires: Option<i64> = conn
        .prepare_cached("SELECT expires_at FROM messages WHERE id = ? AND length(payload) > 0")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match expires {
        Some(e) if e > now => {}
        _ => return Ok(Redrive::Expired),
    }
    let mut out = Vec::with_capacity(dead.len());
    for d in dead {
        let seq = enqueue(conn, &d.receiver, &d.channel, id, now)?;
        out.push((d.receiver, d.channel, seq));
    }
    delete_dead(conn, id, receiver)?;
    Ok(Redrive::Queued(out))
}
