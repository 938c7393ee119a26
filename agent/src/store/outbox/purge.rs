//! Purges of the sending side, ordered by a management command: undelivered
//! messages dropped on purpose (state `purged`, the stream skips them explicitly),
//! and the records of delivered ones deleted.

use super::{finish, DeliveryState};
use crate::store::Result;
use rusqlite::{params, Connection};
use std::collections::BTreeSet;

/// What one purge step did.
#[derive(Debug, Default, Clone)]
pub struct Purged {
    /// Pending deliveries moved to `purged`.
    pub deliveries: u64,
    /// Unrouted messages dropped.
    pub unrouted: u64,
    /// Streams whose rows changed: (receiver, channel).
    pub streams: BTreeSet<(String, String)>,
    /// Whether more remain (call again).
    pub more: bool,
}

/// Moves up to `limit` undelivered deliveries to `purged` (with `reason`) and drops
/// unrouted messages. Rows an ACK already covers are delivered, not purged.
pub fn purge_queued(conn: &Connection, reason: &str, now: i64, limit: i64) -> Result<Purged> {
    let mut out = Purged::default();
    let due: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT d.receiver, d.channel, d.seq FROM deliveries d
               JOIN streams s ON s.receiver = d.receiver AND s.channel = d.channel
             WHERE d.state IN (0, 1) AND d.seq > s.acked_seq LIMIT ?",
        )?
        .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<std::result::Result<_, _>>()?;
    out.more = due.len() as i64 >= limit;
    for (receiver, channel, seq) in due {
        if finish(
            conn,
            &receiver,
            &channel,
            seq as u64,
            DeliveryState::Purged,
            reason,
            now,
        )? {
            out.deliveries += 1;
            out.streams.insert((receiver, channel));
        }
    }
    out.unrouted = conn.prepare_cached("DELETE FROM unrouted")?.execute([])? as u64;
    Ok(out)
}

/// Deletes up to about `limit` records of delivered messages (acknowledged rows, their
/// send and ACK records) and the messages nothing refers to any more; the number of
/// rows deleted (0: done).
pub fn purge_sent(conn: &Connection, limit: i64) -> Result<u64> {
    let mut deleted = conn
        .prepare_cached(
            "DELETE FROM deliveries WHERE (receiver, channel, seq) IN (
               SELECT d.receiver, d.channel, d.seq FROM deliveries d
                 JOIN streams s ON s.receiver = d.receiver AND s.channel = d.channel
               WHERE ((d.state IN (0, 1) AND d.seq <= s.acked_seq) OR d.state = 2)
                 AND NOT EXISTS (SELECT 1 FROM unrouted u WHERE u.message_id = d.message_id)
               LIMIT ?)",
        )?
        .execute([limit])? as u64;
    for table in ["stream_acks", "stream_sends"] {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE upto <= (SELECT s.acked_seq FROM streams s
               WHERE s.receiver = {table}.receiver AND s.channel = {table}.channel)"
        ))?
        .execute([])?;
    }
    deleted += conn
        .prepare_cached(
            "DELETE FROM messages WHERE id IN (
               SELECT m.id FROM messages m
               WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id)
                 AND NOT EXISTS (SELECT 1 FROM unrouted u WHERE u.message_id = m.id)
                 AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.message_id = m.id)
               LIMIT ?)",
        )?
        .execute(params![limit])? as u64;
    Ok(deleted)
}
