//! Consumer groups over the channel log: positions and acknowledgements.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// A consumer group as persisted.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// Channel.
    pub channel: String,
    /// Group name.
    pub name: String,
    /// Every offset at or below this is acknowledged.
    pub ack_floor: u64,
    /// Acknowledged offsets above the floor.
    pub acked: Vec<u64>,
    /// Lease length (ms).
    pub ack_wait_ms: u64,
    /// Created (ms).
    pub created_at: i64,
    /// Last pull or ack (ms).
    pub last_active: i64,
}

/// One entry of a channel log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Offset in the channel log, from 1.
    pub offset: u64,
    /// Message id.
    pub id: String,
    /// Sending node.
    pub sender: String,
    /// Created at the sender (ms).
    pub created_at: i64,
    /// Appended here (ms).
    pub received_at: i64,
    /// Expires (ms, local clock).
    pub expires_at: i64,
    /// Content type.
    pub content_type: String,
    /// Headers JSON.
    pub headers: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Creates a group if absent and returns it.
pub fn ensure_group(
    conn: &Connection,
    channel: &str,
    name: &str,
    ack_floor: u64,
    ack_wait_ms: u64,
    now: i64,
) -> Result<GroupRow> {
    conn.prepare_cached(
        "INSERT INTO groups(channel, name, ack_floor, ack_wait_ms, created_at, last_active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        channel,
        name,
        ack_floor as i64,
        ack_wait_ms as i64,
        now
    ])?;
    load_group(conn, channel, name)?.ok_or_else(|| super::Error::Corrupt("group vanished".into()))
}

fn load_group(conn: &Connection, channel: &str, name: &str) -> Result<Option<GroupRow>> {
    let row = conn
        .prepare_cached(
            "SELECT ack_floor, ack_wait_ms, created_at, last_active FROM groups WHERE channel = ? AND name = ?",
        )?
        .query_row(params![channel, name], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((floor, wait, created_at, last_active)) = row else {
        return Ok(None);
    };
    let acked = conn
        .prepare_cached(
            "SELECT offset FROM group_acks WHERE channel = ? AND grp = ? ORDER BY offset",
        )?
        .query_map(params![channel, name], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|v| v as u64))
        .collect::<std::result::Result<_, _>>()?;
    Ok(Some(GroupRow {
        channel: channel.into(),
        name: name.into(),
        ack_floor: floor as u64,
        acked,
        ack_wait_ms: wait as u64,
        created_at,
        last_active,
    }))
}

/// Every group.
pub fn load_groups(conn: &Connection) -> Result<Vec<GroupRow>> {
    let keys: Vec<(String, String)> = conn
        .prepare("SELECT channel, name FROM groups")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(keys.len());
    for (c, n) in keys {
        if let Some(g) = load_group(conn, &c, &n)? {
            out.push(g);
        }
    }
    Ok(out)
}

/// Persists a group's acknowledgement state: the new floor, and the acknowledged
/// offsets above it that were not recorded yet. Rows at or below the floor go away.
pub fn save_acks(
    conn: &Connection,
    channel: &str,
    name: &str,
    old_floor: u64,
    new_floor: u64,
    above_floor: &[u64],
    now: i64,
) -> Result<()> {
    {
        let mut ins = conn.prepare_cached(
            "INSERT OR IGNORE INTO group_acks(channel, grp, offset) VALUES (?, ?, ?)",
        )?;
        for &o in above_floor {
            ins.execute(params![channel, name, o as i64])?;
        }
    }
    if new_floor != old_floor {
        conn.prepare_cached(
            "DELETE FROM group_acks WHERE channel = ? AND grp = ? AND offset <= ?",
        )?
        .execute(params![channel, name, new_floor as i64])?;
    }
    conn.prepare_cached(
        "UPDATE groups SET ack_floor = ?, last_active = ? WHERE channel = ? AND name = ?",
    )?
    .execute(params![new_floor as i64, now, channel, name])?;
    Ok(())
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        offset: r.get::<_, i64>(0)? as u64,
        id: r.get(1)?,
        sender: r.get(2)?,
        created_at: r.get(3)?,
        received_at: r.get(4)?,
        expires_at: r.get(5)?,
        content_type: r.get(6)?,
        headers: r.get(7)?,
        payload: r.get(8)?,
    })
}

/// Reads log entries with offset >= `from`, at most `limit`.
pub fn read_log(
    conn: &Connection,
    channel: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload
         FROM channel_log WHERE channel = ? AND offset >= ? ORDER BY offset LIMIT ?",
    )?;
    let rows = stmt
        .query_map(params![channel, from as i64, limit as i64], entry)?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Reads specific offsets (missing ones are skipped).
pub fn read_offsets(conn: &Connection, channel: &str, offsets: &[u64]) -> Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload
         FROM channel_log WHERE channel = ? AND offset = ?",
    )?;
    let mut out = Vec::with_capacity(offsets.len());
    for &o in offsets {
        if let Some(e) = stmt
            .query_row(params![channel, o as i64], entry)
            .optional()?
        {
            out.push(e);
        }
    }
    Ok(out)
}

/// Offsets of the given message ids in a channel's log (absent ids are left out).
pub fn offsets_of(conn: &Connection, channel: &str, ids: &[String]) -> Result<Vec<(String, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT offset FROM channel_log WHERE message_id = ? AND channel = ?")?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(o) = stmt
            .query_row(params![id, channel], |r| r.get::<_, i64>(0))
            .optional()?
        {
            out.push((id.clone(), o as u64));
        }
    }
    Ok(out)
}

/// Deletes expired log entries and, past retention, entries every group has acknowledged.
pub fn sweep_log(conn: &Connection, now: i64, retention_ms: i64, limit: i64) -> Result<u64> {
    let mut n = conn
        .prepare_cached(
            "DELETE FROM channel_log WHERE (channel, offset) IN (
               SELECT channel, offset FROM channel_log WHERE expires_at <= ? LIMIT ?)",
        )?
        .execute(params![now, limit])? as u64;
    n += conn
        .prepare_cached(
            "DELETE FROM channel_log WHERE (channel, offset) IN (
               SELECT l.channel, l.offset FROM channel_log l
               WHERE l.received_at < ?
                 AND EXISTS (SELECT 1 FROM groups g WHERE g.channel = l.channel)
                 AND l.offset <= (SELECT MIN(g.ack_floor) FROM groups g WHERE g.channel = l.channel)
               LIMIT ?)",
        )?
        .execute(params![now - retention_ms, limit])? as u64;
    Ok(n)
}
