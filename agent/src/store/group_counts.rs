//! What consumer groups keep beyond positions and acks: per-entry delivery counts
//! (so `max_deliveries` counts across restarts) and the tombstones of groups deleted
//! by their idle TTL (so an implicitly recreated group does not replay what it had
//! acknowledged).

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// Records how often entries were handed out (replacing earlier counts).
pub fn save_deliveries(
    conn: &Connection,
    channel: &str,
    name: &str,
    counts: &[(u64, u32)],
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO group_deliveries(channel, grp, offset, deliveries) VALUES (?, ?, ?, ?)",
    )?;
    for &(o, n) in counts {
        stmt.execute(params![channel, name, o as i64, n])?;
    }
    Ok(())
}

/// The delivery counts of a group's unsettled entries.
pub fn load_deliveries(conn: &Connection, channel: &str, name: &str) -> Result<Vec<(u64, u32)>> {
    let rows = conn
        .prepare_cached(
            "SELECT offset, deliveries FROM group_deliveries WHERE channel = ? AND grp = ? ORDER BY offset",
        )?
        .query_map(params![channel, name], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u32))
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Forgets the counts of settled entries: everything at or below `floor`, and `settled`.
pub fn forget_deliveries(
    conn: &Connection,
    channel: &str,
    name: &str,
    floor: u64,
    settled: &[(u64, u64)],
) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM group_deliveries WHERE channel = ? AND grp = ? AND offset <= ?",
    )?
    .execute(params![channel, name, floor as i64])?;
    let mut stmt = conn.prepare_cached(
        "DELETE FROM group_deliveries WHERE channel = ? AND grp = ? AND offset BETWEEN ? AND ?",
    )?;
    for &(a, b) in settled {
        if b > floor {
            stmt.execute(params![channel, name, a.max(floor + 1) as i64, b as i64])?;
        }
    }
    Ok(())
}

/// Forgets every count of a group (deleted, or reset for a replay).
pub fn clear_deliveries(conn: &Connection, channel: &str, name: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM group_deliveries WHERE channel = ? AND grp = ?")?
        .execute(params![channel, name])?;
    Ok(())
}

/// Remembers the position of a group about to be deleted by its idle TTL.
pub fn save_tombstone(conn: &Connection, channel: &str, name: &str, now: i64) -> Result<()> {
    let floor: Option<i64> = conn
        .prepare_cached("SELECT ack_floor FROM groups WHERE channel = ? AND name = ?")?
        .query_row(params![channel, name], |r| r.get(0))
        .optional()?;
    let Some(floor) = floor else { return Ok(()) };
    let acked: Vec<i64> = conn
        .prepare_cached(
            "SELECT offset FROM group_acks WHERE channel = ? AND grp = ? ORDER BY offset",
        )?
        .query_map(params![channel, name], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let high = acked.last().copied().unwrap_or(floor).max(floor);
    let json = serde_json::to_string(&acked).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT OR REPLACE INTO group_tombstones(channel, name, ack_floor, acked, high, deleted_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![channel, name, floor, json, high, now])?;
    Ok(())
}

/// Takes (reads and removes) the tombstone of a group: its floor and the
/// acknowledged offsets above it.
pub fn take_tombstone(
    conn: &Connection,
    channel: &str,
    name: &str,
) -> Result<Option<(u64, Vec<u64>)>> {
    let row: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT ack_floor, acked FROM group_tombstones WHERE channel = ? AND name = ?",
        )?
        .query_row(params![channel, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    drop_tombstone(conn, channel, name)?;
    Ok(row.map(|(f, a)| (f as u64, serde_json::from_str(&a).unwrap_or_default())))
}

/// Removes a group's tombstone (the group is created explicitly again).
pub fn drop_tombstone(conn: &Connection, channel: &str, name: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM group_tombstones WHERE channel = ? AND name = ?")?
        .execute(params![channel, name])?;
    Ok(())
}

/// Removes tombstones with nothing left to protect: the log holds no entry at or
/// below their highest acknowledged offset, so a group starting from the earliest
/// entry replays nothing it had acknowledged. Returns how many went.
pub fn prune_tombstones(conn: &Connection) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM group_tombstones WHERE NOT EXISTS (
               SELECT 1 FROM channel_log l
               WHERE l.channel = group_tombstones.channel AND l.offset <= group_tombstones.high)",
        )?
        .execute([])? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn given_counts_when_entries_are_settled_then_only_open_counts_remain() {
        let c = db();
        save_deliveries(&c, "c", "g", &[(1, 2), (2, 1), (5, 3), (7, 1)]).unwrap();
        save_deliveries(&c, "c", "g", &[(5, 4)]).unwrap();
        forget_deliveries(&c, "c", "g", 2, &[(7, 7)]).unwrap();
        assert_eq!(load_deliveries(&c, "c", "g").unwrap(), vec![(5, 4)]);
        clear_deliveries(&c, "c", "g").unwrap();
        assert!(load_deliveries(&c, "c", "g").unwrap().is_empty());
    }

    #[test]
    fn given_a_tombstone_when_the_log_below_its_high_mark_is_gone_then_it_is_pruned() {
        let c = db();
        c.execute(
            "INSERT INTO groups(channel, name, ack_floor, ack_wait_ms, created_at, last_active)
             VALUES ('c', 'default', 3, 1000, 0, 0)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO group_acks(channel, grp, offset) VALUES ('c', 'default', 5)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload)
             VALUES ('c', 5, 'm5', 's', 0, 0, 0, 't', '[]', x'00')",
            [],
        )
        .unwrap();
        save_tombstone(&c, "c", "default", 1).unwrap();
        assert_eq!(prune_tombstones(&c).unwrap(), 0);
        c.execute("DELETE FROM channel_log", []).unwrap();
        assert_eq!(prune_tombstones(&c).unwrap(), 1);
        assert_eq!(take_tombstone(&c, "c", "default").unwrap(), None);
        save_tombstone(&c, "c", "default", 1).unwrap();
        assert_eq!(
            take_tombstone(&c, "c", "default").unwrap(),
            Some((3, vec![5]))
        );
        assert_eq!(take_tombstone(&c, "c", "default").unwrap(), None);
    }
}
