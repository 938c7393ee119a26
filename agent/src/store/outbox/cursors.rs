//! A stream's send and ACK cursors: a first send and an ACK move `sent_seq` and
//! `acked_seq` and record one row for the range; only resends touch delivery rows.

use super::add_backlog;
use crate::store::{now_ms, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// The stream's (acked_seq, sent_seq) cursors, if it exists.
pub(super) fn cursors(
    conn: &Connection,
    receiver: &str,
    channel: &str,
) -> Result<Option<(u64, u64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT acked_seq, sent_seq FROM streams WHERE receiver = ? AND channel = ?",
        )?
        .query_row(params![receiver, channel], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// Marks a range of a stream as sent. A first send only moves the stream's
/// `sent_seq` cursor and records one row for the whole range; a resend (at or below
/// the cursor) counts one more attempt on each row it covers.
pub fn mark_sent(
    conn: &Connection,
    receiver: &str,
    channel: &str,
    from: u64,
    to: u64,
) -> Result<()> {
    let Some((acked, sent)) = cursors(conn, receiver, channel)? else {
        return Ok(());
    };
    let now = now_ms();
    let resent_from = from.max(acked + 1);
    let resent_to = to.min(sent);
    if resent_from <= resent_to {
        conn.prepare_cached(
            "UPDATE deliveries SET state = 1, attempts = attempts + 1, sent_at = ?
             WHERE receiver = ? AND channel = ? AND seq BETWEEN ? AND ? AND state IN (0, 1)",
        )?
        .execute(params![
            now,
            receiver,
            channel,
            resent_from as i64,
            resent_to as i64
        ])?;
    }
    if to > sent {
        conn.prepare_cached("UPDATE streams SET sent_seq = ? WHERE receiver = ? AND channel = ?")?
            .execute(params![to as i64, receiver, channel])?;
        conn.prepare_cached(
            "INSERT INTO stream_sends(receiver, channel, upto, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET at = ?4",
        )?
        .execute(params![receiver, channel, to as i64, now])?;
    }
    Ok(())
}

/// Records a cumulative ACK: every pending delivery up to `upto` is delivered. Only
/// the stream's cursor moves (and one row records when); rows keep their state and
/// read as delivered. Returns how many deliveries were pending.
pub fn ack(conn: &Connection, receiver: &str, channel: &str, upto: u64) -> Result<u64> {
    let Some((acked, _)) = cursors(conn, receiver, channel)? else {
        return Ok(0);
    };
    if upto <= acked {
        return Ok(0);
    }
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries
             WHERE receiver = ? AND channel = ? AND seq > ? AND seq <= ? AND state IN (0, 1)",
        )?
        .query_row(params![receiver, channel, acked as i64, upto as i64], |r| {
            r.get(0)
        })?;
    add_backlog(conn, receiver, channel, -n)?;
    conn.prepare_cached(
        "UPDATE streams SET acked_seq = ?1, sent_seq = MAX(sent_seq, ?1)
         WHERE receiver = ?2 AND channel = ?3",
    )?
    .execute(params![upto as i64, receiver, channel])?;
    conn.prepare_cached(
        "INSERT INTO stream_acks(receiver, channel, upto, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO UPDATE SET at = ?4",
    )?
    .execute(params![receiver, channel, upto as i64, now_ms()])?;
    Ok(n as u64)
}
