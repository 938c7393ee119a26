//! Receiving side: dedupe state and the append-only channel log.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// A message accepted from a peer, ready to append.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// Message id.
    pub id: String,
    /// Sending node.
    pub sender: String,
    /// Creation time at the sender (ms).
    pub created_at: i64,
    /// Expiry on this node's clock (ms): receive time + remaining TTL.
    pub expires_at: i64,
    /// Content type.
    pub content_type: String,
    /// Headers JSON.
    pub headers: String,
    /// Payload (decompressed).
    pub payload: Vec<u8>,
}

/// Where appended messages landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first appended message (if any).
    pub first_offset: u64,
    /// Messages appended.
    pub count: u64,
    /// The channel's next offset after the append.
    pub head: u64,
    /// Messages not appended because the channel's log already has their id (a copy
    /// that came on another stream: a forged or recreated sender epoch).
    pub repeated: u64,
}

/// Highest sequence committed for a stream, if the stream is known.
pub fn last_seq(conn: &Connection, sender: &str, epoch: u64, channel: &str) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached(
            "SELECT last_seq FROM inbox_streams WHERE sender = ? AND epoch = ? AND channel = ?",
        )?
        .query_row(params![sender, epoch as i64, channel], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .map(|v| v as u64))
}

/// The next offset of a channel's log.
pub fn head(conn: &Connection, channel: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT next_offset FROM channel_heads WHERE channel = ?")?
        .query_row([channel], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(1) as u64)
}

/// Appends accepted messages to the channel log and records the stream's new last
/// sequence, in the caller's transaction. `prev` is the last sequence the caller based
/// its decision on; if the database disagrees (an earlier append failed), nothing is
/// written, so the log can never get a gap.
#[allow(clippy::too_many_arguments)]
pub fn append(
    conn: &Connection,
    sender: &str,
    epoch: u64,
    channel: &str,
    prev: u64,
    new_last_seq: u64,
    msgs: &[InboundMessage],
    now: i64,
) -> Result<AppendOutcome> {
    let current = last_seq(conn, sender, epoch, channel)?.unwrap_or(0);
    if current != prev {
        return Err(super::Error::Conflict(format!(
            "stream {sender}/{epoch}/{channel} is at {current}, expected {prev}"
        )));
    }
    let first = head(conn, channel)?;
    let mut offset = first;
    let mut repeated = 0;
    {
        // A message id is appended to a channel's log once, whatever stream brings it.
        let mut seen = conn.prepare_cached(
            "SELECT 1 FROM channel_log WHERE message_id = ? AND channel = ? LIMIT 1",
        )?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for m in msgs {
            if seen.exists(params![m.id, channel])? {
                repeated += 1;
                continue;
            }
            insert.execute(params![
                channel,
                offset as i64,
                m.id,
                m.sender,
                m.created_at,
                now,
                m.expires_at,
                m.content_type,
                m.headers,
                m.payload
            ])?;
            offset += 1;
        }
    }
    if offset != first {
        conn.prepare_cached(
            "INSERT INTO channel_heads(channel, next_offset) VALUES (?1, ?2)
             ON CONFLICT(channel) DO UPDATE SET next_offset = ?2",
        )?
        .execute(params![channel, offset as i64])?;
    }
    conn.prepare_cached(
        "INSERT INTO inbox_streams(sender, epoch, channel, last_seq, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(sender, epoch, channel) DO UPDATE SET last_seq = MAX(last_seq, ?4), updated_at = ?5",
    )?
    .execute(params![sender, epoch as i64, channel, new_last_seq as i64, now])?;
    Ok(AppendOutcome {
        first_offset: first,
        count: offset - first,
        head: offset,
        repeated,
    })
}

/// Every channel with a log and its next offset.
pub fn heads(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare("SELECT channel, next_offset FROM channel_heads")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Of these (sequence, message id) pairs skipped by `sender`, the sequences whose
/// message is in `channel`'s log here.
pub fn have(
    conn: &Connection,
    channel: &str,
    sender: &str,
    asked: &[(u64, String)],
) -> Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM channel_log WHERE message_id = ? AND channel = ? AND sender = ? LIMIT 1",
    )?;
    let mut had = Vec::new();
    for (seq, id) in asked {
        if stmt.exists(params![id, channel, sender])? {
            had.push(*seq);
        }
    }
    Ok(had)
}
