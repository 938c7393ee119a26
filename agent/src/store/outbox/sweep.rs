//! The sender's expiry and retention sweep: pending deliveries past their TTL are
//! expired, finished ones and payloads are deleted once retention allows.

use super::ids::latest_id_at;
use super::{finish, DeliveryState};
use crate::store::Result;
use rusqlite::{params, Connection};

/// The result of one expiry/retention sweep.
#[derive(Debug, Default, Clone)]
pub struct ExpirySweep {
    /// Pending deliveries that expired: (receiver, channel, seq).
    pub expired: Vec<(String, String, u64)>,
    /// Unrouted messages whose TTL ran out unrouted.
    pub expired_unrouted: u64,
    /// Rows deleted by retention.
    pub deleted: u64,
}

/// Expires pending deliveries past their TTL and deletes what retention allows.
pub fn sweep(conn: &Connection, now: i64, retention_ms: i64, limit: i64) -> Result<ExpirySweep> {
    let mut out = ExpirySweep::default();
    let due: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT d.receiver, d.channel, d.seq FROM messages m JOIN deliveries d ON d.message_id = m.id
               JOIN streams s ON s.receiver = d.receiver AND s.channel = d.channel
             WHERE m.expires_at <= ? AND d.state IN (0, 1) AND d.seq > s.acked_seq LIMIT ?",
        )?
        .query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<std::result::Result<_, _>>()?;
    for (receiver, channel, seq) in due {
        if finish(
            conn,
            &receiver,
            &channel,
            seq as u64,
            DeliveryState::Expired,
            "ttl expired",
            now,
        )? {
            out.expired.push((receiver, channel, seq as u64));
        }
    }
    out.expired_unrouted = conn
        .prepare_cached(
            "DELETE FROM unrouted WHERE expires_at <= ?
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = unrouted.message_id)",
        )?
        .execute([now])? as u64;
    conn.prepare_cached("DELETE FROM unrouted WHERE expires_at <= ?")?
        .execute([now])?;
    // Status records of finished deliveries are kept for the retention period...
    out.deleted += sweep_acknowledged(conn, now - retention_ms, limit)?;
    out.deleted += conn
        .prepare_cached(
            "DELETE FROM deliveries WHERE (receiver, channel, seq) IN (
               SELECT d.receiver, d.channel, d.seq FROM deliveries d
               WHERE d.state >= 2 AND d.done_at < ?
                 -- an unrouted message's deliveries say which readers already have it
                 AND NOT EXISTS (SELECT 1 FROM unrouted u WHERE u.message_id = d.message_id)
               LIMIT ?)",
        )?
        .execute(params![now - retention_ms, limit])? as u64;
    // ...but no payload is kept past its TTL.
    conn.prepare_cached(
        "UPDATE messages SET payload = x'' WHERE id IN (
           SELECT id FROM messages WHERE expires_at <= ? AND length(payload) > 0 LIMIT ?)",
    )?
    .execute(params![now, limit])?;
    // Messages nothing refers to any more, past their TTL or their retention; two
    // statements so that each uses its key: the expiry index, and the id itself (a
    // ULID whose time part is the message's created_at, see `super::ids`).
    let unreferenced = |key: &str, cutoff: &dyn rusqlite::ToSql| -> Result<u64> {
        Ok(conn
            .prepare_cached(&format!(
                "DELETE FROM messages WHERE id IN (
                   SELECT m.id FROM messages m
                   WHERE {key}
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id)
                     AND NOT EXISTS (SELECT 1 FROM unrouted u WHERE u.message_id = m.id)
                     AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.message_id = m.id)
                   LIMIT ?2)"
            ))?
            .execute(params![cutoff, limit])? as u64)
    };
    out.deleted += unreferenced("m.expires_at <= ?1", &now)?;
    out.deleted += unreferenced("m.id <= ?1", &latest_id_at(now - retention_ms))?;
    Ok(out)
}

/// Deletes the deliveries acknowledged before `cutoff` (at or below an ACK cursor
/// recorded then), stream by stream, oldest ACK first, about `limit` rows at most;
/// the ACK and send records of the ranges deleted go with them.
fn sweep_acknowledged(conn: &Connection, cutoff: i64, limit: i64) -> Result<u64> {
    let due: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT receiver, channel, upto FROM stream_acks WHERE at < ? ORDER BY at LIMIT 256",
        )?
        .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut deleted = 0u64;
    for (receiver, channel, upto) in due {
        if deleted as i64 >= limit {
            break;
        }
        deleted += conn
            .prepare_cached(
                "DELETE FROM deliveries WHERE receiver = ?1 AND channel = ?2 AND seq <= ?3
                   AND state IN (0, 1)
                   -- an unrouted message's deliveries say which readers already have it
                   AND NOT EXISTS (SELECT 1 FROM unrouted u WHERE u.message_id = deliveries.message_id)",
            )?
            .execute(params![receiver, channel, upto])? as u64;
        for table in ["stream_acks", "stream_sends"] {
            conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE receiver = ? AND channel = ? AND upto <= ?"
            ))?
            .execute(params![receiver, channel, upto])?;
        }
    }
    Ok(deleted)
}
