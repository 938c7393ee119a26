//! Consumer groups over the channel log: positions and acknowledgements.

pub use super::log_sweep::sweep_log;
use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// A consumer group's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSpec {
    /// Lease on a pulled message (ms).
    pub ack_wait_ms: u64,
    /// Deliveries before the message goes to the group's dead-letter queue (0: no limit).
    pub max_deliveries: u32,
    /// Most messages leased at once (0: no limit; 1 gives strict order).
    pub max_in_flight: u32,
    /// The group is deleted after this long without a pull or ack (0: never).
    pub idle_ttl_ms: u64,
    /// Wait before redelivering after the n-th lease ran out (ms; the last repeats).
    pub backoff_ms: Vec<u64>,
}

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
    /// Settings.
    pub spec: GroupSpec,
    /// Created (ms).
    pub created_at: i64,
    /// Last pull or ack (ms).
    pub last_active: i64,
    /// Dead letters being delivered again.
    pub redriven: Vec<u64>,
    /// How often unsettled entries were handed out: (offset, deliveries).
    pub deliveries: Vec<(u64, u32)>,
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

/// Creates a group; false when it already exists (nothing changed).
pub fn create_group(
    conn: &Connection,
    channel: &str,
    name: &str,
    ack_floor: u64,
    spec: &GroupSpec,
    now: i64,
) -> Result<bool> {
    let backoff = serde_json::to_string(&spec.backoff_ms).unwrap_or_else(|_| "[]".into());
    let n = conn
        .prepare_cached(
            "INSERT INTO groups(channel, name, ack_floor, ack_wait_ms, created_at, last_active,
                                max_deliveries, max_in_flight, idle_ttl_ms, backoff)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            channel,
            name,
            ack_floor as i64,
            spec.ack_wait_ms as i64,
            now,
            spec.max_deliveries,
            spec.max_in_flight,
            spec.idle_ttl_ms as i64,
            backoff
        ])?;
    Ok(n == 1)
}

/// Creates a group the way a pull does when it names none: at the position of its
/// tombstone when idle expiry deleted it before (nothing it acknowledged is replayed),
/// else at the earliest entry. False when it exists already.
pub fn create_implicit_group(
    conn: &Connection,
    channel: &str,
    name: &str,
    spec: &GroupSpec,
    now: i64,
) -> Result<bool> {
    if load_group(conn, channel, name)?.is_some() {
        return Ok(false);
    }
    let (floor, acked) =
        super::group_counts::take_tombstone(conn, channel, name)?.unwrap_or((0, Vec::new()));
    if !create_group(conn, channel, name, floor, spec, now)? {
        return Ok(false);
    }
    let above: Vec<u64> = acked.into_iter().filter(|&o| o > floor).collect();
    save_acks(conn, channel, name, floor, floor, &above, now)?;
    Ok(true)
}

/// Loads one group.
pub fn load_group(conn: &Connection, channel: &str, name: &str) -> Result<Option<GroupRow>> {
    let row = conn
        .prepare_cached(
            "SELECT ack_floor, ack_wait_ms, created_at, last_active, max_deliveries, max_in_flight,
                    idle_ttl_ms, backoff
             FROM groups WHERE channel = ? AND name = ?",
        )?
        .query_row(params![channel, name], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                GroupSpec {
                    ack_wait_ms: r.get::<_, i64>(1)? as u64,
                    max_deliveries: r.get::<_, i64>(4)? as u32,
                    max_in_flight: r.get::<_, i64>(5)? as u32,
                    idle_ttl_ms: r.get::<_, i64>(6)? as u64,
                    backoff_ms: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                },
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((floor, spec, created_at, last_active)) = row else {
        return Ok(None);
    };
    let acked = conn
        .prepare_cached(
            "SELECT offset FROM group_acks WHERE channel = ? AND grp = ? ORDER BY offset",
        )?
        .query_map(params![channel, name], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|v| v as u64))
        .collect::<std::result::Result<_, _>>()?;
    let redriven = conn
        .prepare_cached(
            "SELECT offset FROM group_dead WHERE channel = ? AND grp = ? AND state = 'redriven' ORDER BY offset",
        )?
        .query_map(params![channel, name], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|v| v as u64))
        .collect::<std::result::Result<_, _>>()?;
    let deliveries = super::group_counts::load_deliveries(conn, channel, name)?;
    Ok(Some(GroupRow {
        channel: channel.into(),
        name: name.into(),
        ack_floor: floor as u64,
        acked,
        spec,
        created_at,
        last_active,
        redriven,
        deliveries,
    }))
}

/// Every group, or those of one channel.
pub fn load_groups(conn: &Connection, channel: Option<&str>) -> Result<Vec<GroupRow>> {
    let keys: Vec<(String, String)> = conn
        .prepare("SELECT channel, name FROM groups WHERE ?1 IS NULL OR channel = ?1 ORDER BY channel, name")?
        .query_map([channel], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(keys.len());
    for (c, n) in keys {
        if let Some(g) = load_group(conn, &c, &n)? {
            out.push(g);
        }
    }
    Ok(out)
}

/// Deletes a group with its acks and dead letters; false when there was none.
pub fn delete_group(conn: &Connection, channel: &str, name: &str) -> Result<bool> {
    super::group_counts::clear_deliveries(conn, channel, name)?;
    conn.prepare_cached("DELETE FROM group_acks WHERE channel = ? AND grp = ?")?
        .execute(params![channel, name])?;
    conn.prepare_cached("DELETE FROM group_dead WHERE channel = ? AND grp = ?")?
        .execute(params![channel, name])?;
    Ok(conn
        .prepare_cached("DELETE FROM groups WHERE channel = ? AND name = ?")?
        .execute(params![channel, name])?
        == 1)
}

/// Moves a group's position: everything at or below `floor` counts as acknowledged,
/// everything above it as not yet delivered.
pub fn reset_group(
    conn: &Connection,
    channel: &str,
    name: &str,
    floor: u64,
    now: i64,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM group_acks WHERE channel = ? AND grp = ?")?
        .execute(params![channel, name])?;
    super::group_counts::clear_deliveries(conn, channel, name)?;
    conn.prepare_cached(
        "UPDATE groups SET ack_floor = ?, last_active = ? WHERE channel = ? AND name = ?",
    )?
    .execute(params![floor as i64, now, channel, name])?;
    Ok(())
}

/// Records activity of groups (pulls that changed nothing durable).
pub fn touch_groups(conn: &Connection, touched: &[(String, String, i64)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE groups SET last_active = max(last_active, ?) WHERE channel = ? AND name = ?",
    )?;
    for (c, n, at) in touched {
        stmt.execute(params![at, c, n])?;
    }
    Ok(())
}

/// Groups idle past their TTL, deleted (each leaves a tombstone with its position);
/// returns their keys. Tombstones with nothing left to protect go.
pub fn expire_idle_groups(conn: &Connection, now: i64) -> Result<Vec<(String, String)>> {
    let keys: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT channel, name FROM groups WHERE idle_ttl_ms > 0 AND last_active + idle_ttl_ms <= ?",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    for (c, n) in &keys {
        super::group_counts::save_tombstone(conn, c, n, now)?;
        delete_group(conn, c, n)?;
    }
    super::group_counts::prune_tombstones(conn)?;
    Ok(keys)
}

/// The offset a group created or reset "at a time" starts from: the first entry
/// received at or after `at` (ms), or the head when there is none.
pub fn offset_at_time(conn: &Connection, channel: &str, at: i64) -> Result<u64> {
    let o: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(offset) FROM channel_log WHERE channel = ? AND received_at >= ?",
        )?
        .query_row(params![channel, at], |r| r.get(0))?;
    match o {
        Some(o) => Ok(o as u64),
        None => next_offset(conn, channel),
    }
}

/// The offset the next appended entry of `channel` will get.
pub fn next_offset(conn: &Connection, channel: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT next_offset FROM channel_heads WHERE channel = ?")?
        .query_row([channel], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(1) as u64)
}

/// A dead letter of a consumer group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupDeadRow {
    /// Log offset.
    pub offset: u64,
    /// Message id.
    pub id: String,
    /// `dead`, or `redriven` while being delivered again.
    pub state: String,
    /// Deliveries made.
    pub deliveries: u32,
    /// Why it is here.
    pub reason: String,
    /// The last error a consumer reported with a nack.
    pub last_error: Option<String>,
    /// When it became dead (ms).
    pub dead_at: i64,
}

/// Records dead letters of a group (replacing a redriven record of the same entry).
pub fn add_group_dead(
    conn: &Connection,
    channel: &str,
    name: &str,
    rows: &[GroupDeadRow],
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO group_dead(channel, grp, offset, message_id, state, deliveries, reason, last_error, dead_at)
         VALUES (?, ?, ?, ?, 'dead', ?, ?, ?, ?)",
    )?;
    for r in rows {
        stmt.execute(params![
            channel,
            name,
            r.offset as i64,
            r.id,
            r.deliveries,
            r.reason,
            r.last_error,
            r.dead_at
        ])?;
    }
    Ok(())
}

/// A group's dead letters, oldest first.
pub fn list_group_dead(
    conn: &Connection,
    channel: &str,
    name: &str,
    limit: usize,
) -> Result<Vec<GroupDeadRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT offset, message_id, state, deliveries, reason, last_error, dead_at FROM group_dead
         WHERE channel = ? AND grp = ? ORDER BY offset LIMIT ?",
    )?;
    let rows = stmt
        .query_map(params![channel, name, limit as i64], |r| {
            Ok(GroupDeadRow {
                offset: r.get::<_, i64>(0)? as u64,
                id: r.get(1)?,
                state: r.get(2)?,
                deliveries: r.get::<_, i64>(3)? as u32,
                reason: r.get(4)?,
                last_error: r.get(5)?,
                dead_at: r.get(6)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Counts a group's dead letters.
pub fn count_group_dead(conn: &Connection, channel: &str, name: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM group_dead WHERE channel = ? AND grp = ? AND state = 'dead'",
        )?
        .query_row(params![channel, name], |r| r.get::<_, i64>(0))? as u64)
}

/// Sets a dead letter's state (`redriven`) or deletes it (`None`); false when absent.
pub fn set_group_dead(
    conn: &Connection,
    channel: &str,
    name: &str,
    id: &str,
    state: Option<&str>,
) -> Result<Option<u64>> {
    let offset: Option<i64> = conn
        .prepare_cached(
            "SELECT offset FROM group_dead WHERE channel = ? AND grp = ? AND message_id = ?",
        )?
        .query_row(params![channel, name, id], |r| r.get(0))
        .optional()?;
    let Some(offset) = offset else {
        return Ok(None);
    };
    match state {
        Some(s) => conn
            .prepare_cached(
                "UPDATE group_dead SET state = ? WHERE channel = ? AND grp = ? AND offset = ?",
            )?
            .execute(params![s, channel, name, offset])?,
        None => conn
            .prepare_cached("DELETE FROM group_dead WHERE channel = ? AND grp = ? AND offset = ?")?
            .execute(params![channel, name, offset])?,
    };
    Ok(Some(offset as u64))
}

pub use super::consumed::{
    is_consumed, mark_consumed, pending_receipts, receipts_done, ReceiptBatch, ReceiptMark,
};

/// Puts every redriven dead letter of a group back in the queue.
pub fn unredrive_all(conn: &Connection, channel: &str, name: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE group_dead SET state = 'dead' WHERE channel = ? AND grp = ? AND state = 'redriven'",
    )?
    .execute(params![channel, name])?;
    Ok(())
}

/// Forgets redriven dead letters that were settled again.
pub fn clear_redriven(conn: &Connection, channel: &str, name: &str, offsets: &[u64]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM group_dead WHERE channel = ? AND grp = ? AND offset = ? AND state = 'redriven'",
    )?;
    for &o in offsets {
        stmt.execute(params![channel, name, o as i64])?;
    }
    Ok(())
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
