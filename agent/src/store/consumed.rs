//! A receiver's record of first consumption: which log entries some consumer group
//! acknowledged, as disjoint runs of offsets, and the receipts that tells senders.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// Marks log entries consumed (first group ack) and queues a receipt for each
/// entry's sender. Entries already consumed are left alone. Consumption is kept as
/// disjoint runs of offsets per channel (`consumed_runs`), merged as they grow: a
/// group acknowledging in order keeps one row per channel up to date.
pub fn mark_consumed(conn: &Connection, channel: &str, offsets: &[u64], now: i64) -> Result<()> {
    // Acks mostly cover runs of consecutive offsets: a few statements per run.
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        consume_run(conn, channel, sorted[i], sorted[j], now)?;
        i = j + 1;
    }
    Ok(())
}

/// Marks `[a, b]` consumed: receipts for the offsets not consumed before, and one
/// run replacing every run it overlaps or touches.
fn consume_run(conn: &Connection, channel: &str, a: u64, b: u64, now: i64) -> Result<()> {
    // Runs are disjoint: walking down from the highest start at or below b+1, each
    // run ends lower than the one before; stop below a-1.
    let mut near = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT lo, hi FROM consumed_runs WHERE channel = ? AND lo <= ? ORDER BY lo DESC",
        )?;
        let mut rows = stmt.query(params![channel, b.saturating_add(1) as i64])?;
        while let Some(r) = rows.next()? {
            let (lo, hi) = (r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64);
            if hi.saturating_add(1) < a {
                break;
            }
            near.push((lo, hi));
        }
    }
    near.reverse();
    // The parts of [a, b] no run covers get receipts.
    let mut receipt = conn.prepare_cached(
        "INSERT INTO receipts_out(sender, message_id, consumed_at)
         SELECT sender, message_id, ?4 FROM channel_log
         WHERE channel = ?1 AND offset BETWEEN ?2 AND ?3 ORDER BY offset",
    )?;
    let mut next = a;
    for &(lo, hi) in &near {
        if lo > next && next <= b {
            receipt.execute(params![channel, next as i64, (lo - 1).min(b) as i64, now])?;
        }
        next = next.max(hi.saturating_add(1));
    }
    if next <= b {
        receipt.execute(params![channel, next as i64, b as i64, now])?;
    }
    let lo = near.first().map_or(a, |r| r.0.min(a));
    let hi = near.last().map_or(b, |r| r.1.max(b));
    if near.len() == 1 && near[0] == (lo, hi) {
        return Ok(());
    }
    let mut delete =
        conn.prepare_cached("DELETE FROM consumed_runs WHERE channel = ? AND lo = ?")?;
    for &(l, _) in &near {
        delete.execute(params![channel, l as i64])?;
    }
    conn.prepare_cached("INSERT INTO consumed_runs(channel, lo, hi) VALUES (?, ?, ?)")?
        .execute(params![channel, lo as i64, hi as i64])?;
    Ok(())
}

/// Whether the entry at `offset` was consumed by some group.
pub fn is_consumed(conn: &Connection, channel: &str, offset: u64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT hi FROM consumed_runs WHERE channel = ? AND lo <= ? ORDER BY lo DESC LIMIT 1",
        )?
        .query_row(params![channel, offset as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some_and(|hi| hi as u64 >= offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        for o in 1..=20i64 {
            c.execute(
                "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload)
                 VALUES ('c', ?1, 'm' || ?1, CASE WHEN ?1 % 2 = 0 THEN 'even' ELSE 'odd' END, 0, 0, 9999999999999, 'text/plain', '[]', x'')",
                [o],
            )
            .unwrap();
        }
        c
    }

    fn receipts(c: &Connection) -> Vec<String> {
        let mut s = c
            .prepare("SELECT message_id FROM receipts_out ORDER BY id")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    fn runs(c: &Connection) -> Vec<(i64, i64)> {
        let mut s = c
            .prepare("SELECT lo, hi FROM consumed_runs WHERE channel = 'c' ORDER BY lo")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn given_in_order_acks_then_one_run_and_one_receipt_per_entry() {
        let c = db();
        mark_consumed(&c, "c", &[1, 2, 3], 10).unwrap();
        mark_consumed(&c, "c", &[4, 5], 11).unwrap();
        assert_eq!(runs(&c), vec![(1, 5)]);
        assert_eq!(receipts(&c), vec!["m1", "m2", "m3", "m4", "m5"]);
    }

    #[test]
    fn given_a_second_group_then_only_entries_never_consumed_get_receipts() {
        let c = db();
        mark_consumed(&c, "c", &[3, 4, 8, 9], 10).unwrap();
        assert_eq!(runs(&c), vec![(3, 4), (8, 9)]);
        // A second group acknowledges 1..=10: 1, 2, 5, 6, 7 and 10 are new.
        mark_consumed(&c, "c", &(1..=10).collect::<Vec<_>>(), 11).unwrap();
        assert_eq!(runs(&c), vec![(1, 10)]);
        assert_eq!(
            receipts(&c),
            vec!["m3", "m4", "m8", "m9", "m1", "m2", "m5", "m6", "m7", "m10"]
        );
        // Everything again: nothing new.
        mark_consumed(&c, "c", &(1..=10).collect::<Vec<_>>(), 12).unwrap();
        assert_eq!(receipts(&c).len(), 10);
        assert_eq!(runs(&c), vec![(1, 10)]);
    }

    #[test]
    fn given_scattered_acks_then_runs_stay_disjoint_and_membership_is_exact() {
        let c = db();
        mark_consumed(&c, "c", &[5, 1, 9, 2, 12], 10).unwrap();
        assert_eq!(runs(&c), vec![(1, 2), (5, 5), (9, 9), (12, 12)]);
        mark_consumed(&c, "c", &[6, 7, 8], 11).unwrap();
        assert_eq!(runs(&c), vec![(1, 2), (5, 9), (12, 12)]);
        for o in 1..=20 {
            let want = [1, 2, 5, 6, 7, 8, 9, 12].contains(&o);
            assert_eq!(is_consumed(&c, "c", o).unwrap(), want, "offset {o}");
        }
        assert_eq!(receipts(&c).len(), 8);
    }
}
