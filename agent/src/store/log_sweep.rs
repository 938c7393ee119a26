//! The retention sweep of the channel logs: expired entries, and entries every
//! consumer group has acknowledged once they are past retention.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// Deletes expired log entries and, past retention, entries every group has acknowledged.
pub fn sweep_log(conn: &Connection, now: i64, retention_ms: i64, limit: i64) -> Result<u64> {
    let mut n = conn
        .prepare_cached(
            "DELETE FROM channel_log WHERE (channel, offset) IN (
               SELECT l.channel, l.offset FROM channel_log l WHERE l.expires_at <= ?
                 AND NOT EXISTS (SELECT 1 FROM group_dead d WHERE d.channel = l.channel AND d.offset = l.offset)
               LIMIT ?)",
        )?
        .execute(params![now, limit])? as u64;
    // Entries every group has acknowledged, past retention. Per channel, from the
    // oldest entry on (entries are appended in time order): nothing is scanned when
    // the oldest entry is still within retention.
    let cutoff = now - retention_ms;
    let floors: Vec<(String, i64)> = conn
        .prepare_cached("SELECT channel, MIN(ack_floor) FROM groups GROUP BY channel")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    for (channel, floor) in floors {
        let oldest: Option<i64> = conn
            .prepare_cached(
                "SELECT received_at FROM channel_log WHERE channel = ? ORDER BY offset LIMIT 1",
            )?
            .query_row([&channel], |r| r.get(0))
            .optional()?;
        if oldest.is_none_or(|t| t >= cutoff) {
            continue;
        }
        n += conn
            .prepare_cached(
                "DELETE FROM channel_log WHERE channel = ?1 AND offset IN (
                   SELECT l.offset FROM channel_log l
                   WHERE l.channel = ?1 AND l.offset <= ?2 AND l.received_at < ?3
                     AND NOT EXISTS (SELECT 1 FROM group_dead d WHERE d.channel = l.channel AND d.offset = l.offset)
                   ORDER BY l.offset LIMIT ?4)",
            )?
            .execute(params![channel, floor, cutoff, limit])? as u64;
    }
    // Consumption runs wholly below a channel's oldest entry say nothing any more.
    conn.prepare_cached(
        "DELETE FROM consumed_runs WHERE hi < COALESCE(
           (SELECT MIN(l.offset) FROM channel_log l WHERE l.channel = consumed_runs.channel),
           (SELECT h.next_offset FROM channel_heads h WHERE h.channel = consumed_runs.channel))",
    )?
    .execute([])?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::groups::{add_group_dead, create_group, GroupDeadRow, GroupSpec};

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    fn entry(c: &Connection, offset: i64, received_at: i64, expires_at: i64) {
        c.execute(
            "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload)
             VALUES ('c', ?1, 'm' || ?1, 's', 0, ?2, ?3, 'text/plain', '[]', x'00')",
            params![offset, received_at, expires_at],
        )
        .unwrap();
    }

    fn offsets(c: &Connection) -> Vec<i64> {
        c.prepare("SELECT offset FROM channel_log ORDER BY offset")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn given_acked_old_expired_and_dead_entries_then_the_sweep_removes_exactly_the_right_ones() {
        let c = db();
        let now = 1_000_000;
        for o in 1..=4 {
            entry(&c, o, 1_000, i64::MAX); // old
        }
        entry(&c, 5, now, i64::MAX); // recent
        entry(&c, 6, now, now - 1); // expired
        let spec = GroupSpec {
            ack_wait_ms: 1000,
            max_deliveries: 0,
            max_in_flight: 0,
            idle_ttl_ms: 0,
            backoff_ms: Vec::new(),
        };
        create_group(&c, "c", "g", 3, &spec, now).unwrap();
        add_group_dead(
            &c,
            "c",
            "g",
            &[GroupDeadRow {
                offset: 2,
                id: "m2".into(),
                state: "dead".into(),
                deliveries: 3,
                reason: "r".into(),
                last_error: None,
                dead_at: now,
            }],
        )
        .unwrap();
        let n = sweep_log(&c, now, 10_000, 100).unwrap();
        // 1 and 3: acknowledged by every group and past retention; 2 is a dead letter,
        // 4 is not acknowledged yet, 5 is recent, 6 expired.
        assert_eq!(offsets(&c), vec![2, 4, 5]);
        assert_eq!(n, 3);
        // A second group behind the first holds everything it has not acknowledged.
        create_group(&c, "c", "h", 0, &spec, now).unwrap();
        entry(&c, 7, 1_000, i64::MAX);
        sweep_log(&c, now, 10_000, 100).unwrap();
        assert_eq!(offsets(&c), vec![2, 4, 5, 7]);
    }
}
