//! A receiver's record of first consumption: which log entries some consumer group
//! acknowledged, as disjoint runs of offsets, and the receipts that tell senders.
//!
//! Receipts wait in `receipt_runs`: for each group ack and sender, the run of log
//! offsets `[lo, hi]` whose entries from that sender were consumed then. The message
//! ids are read from the log when the receipts are sent (an entry the log sweep
//! deleted meanwhile, past its TTL, gets no receipt).

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
    // The parts of [a, b] no run covers get receipts: a run per sender.
    let mut receipt = conn.prepare_cached(
        "INSERT INTO receipt_runs(sender, channel, lo, hi, consumed_at)
         SELECT sender, ?1, MIN(offset), MAX(offset), ?4 FROM channel_log
         WHERE channel = ?1 AND offset BETWEEN ?2 AND ?3 GROUP BY sender ORDER BY MIN(offset)",
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

/// How far a batch of receipts reached in its sender's runs: every run before `run`,
/// and `run` itself up to the offset `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptMark {
    /// The last run the batch read from (its row id).
    pub run: u64,
    /// The last offset of that run the batch covers.
    pub through: u64,
}

/// Receipts for one sender, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBatch {
    /// The sender of the messages.
    pub sender: String,
    /// (message id, consumed at), oldest run first; may be empty when the entries
    /// of the runs read are gone from the log.
    pub consumed: Vec<(String, i64)>,
    /// What [`receipts_done`] forgets once the sender recorded them.
    pub mark: ReceiptMark,
}

/// Receipts waiting to be sent: for each sender, at most `per_sender` message ids
/// from its oldest runs (one sender that cannot be reached never holds up the
/// others).
pub fn pending_receipts(conn: &Connection, per_sender: usize) -> Result<Vec<ReceiptBatch>> {
    let senders: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT sender FROM receipt_runs")?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let mut runs = conn.prepare_cached(
        "SELECT id, channel, lo, hi, consumed_at FROM receipt_runs WHERE sender = ? ORDER BY id",
    )?;
    let mut entries = conn.prepare_cached(
        "SELECT offset, message_id FROM channel_log
         WHERE channel = ? AND offset BETWEEN ? AND ? AND sender = ? ORDER BY offset LIMIT ?",
    )?;
    let mut out = Vec::with_capacity(senders.len());
    for sender in senders {
        let mut consumed = Vec::new();
        let mut mark = None;
        let mut rows = runs.query([&sender])?;
        while let Some(r) = rows.next()? {
            let room = per_sender.saturating_sub(consumed.len());
            if room == 0 {
                break;
            }
            let (id, channel, lo, hi, at): (i64, String, i64, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            let mut through = hi;
            let read: Vec<(i64, String)> = entries
                .query_map(params![channel, lo, hi, sender, room as i64], |e| {
                    Ok((e.get(0)?, e.get(1)?))
                })?
                .collect::<std::result::Result<_, _>>()?;
            if read.len() == room {
                // The room ran out in this run: it is covered up to the last read.
                through = read.last().map_or(hi, |e| e.0);
            }
            consumed.extend(read.into_iter().map(|(_, m)| (m, at)));
            mark = Some(ReceiptMark {
                run: id as u64,
                through: through as u64,
            });
        }
        if let Some(mark) = mark {
            out.push(ReceiptBatch {
                sender,
                consumed,
                mark,
            });
        }
    }
    Ok(out)
}

/// Forgets the receipts a sender recorded (up to `mark`), and receipts older than
/// `older_than` ms that never found their sender.
pub fn receipts_done(
    conn: &Connection,
    sender: &str,
    mark: Option<ReceiptMark>,
    older_than: i64,
) -> Result<()> {
    if let Some(m) = mark {
        let (run, through) = (m.run as i64, m.through as i64);
        conn.prepare_cached("DELETE FROM receipt_runs WHERE sender = ? AND id < ?")?
            .execute(params![sender, run])?;
        conn.prepare_cached("DELETE FROM receipt_runs WHERE sender = ? AND id = ? AND hi <= ?")?
            .execute(params![sender, run, through])?;
        conn.prepare_cached("UPDATE receipt_runs SET lo = ? + 1 WHERE sender = ? AND id = ?")?
            .execute(params![through, sender, run])?;
    }
    conn.prepare_cached("DELETE FROM receipt_runs WHERE consumed_at < ?")?
        .execute([older_than])?;
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

    /// Every receipt waiting, the odd sender's first, in the order each sender gets them.
    fn receipts(c: &Connection) -> Vec<String> {
        let mut batches = pending_receipts(c, usize::MAX).unwrap();
        batches.sort_by(|a, b| b.sender.cmp(&a.sender));
        batches
            .into_iter()
            .flat_map(|b| b.consumed.into_iter().map(|(m, _)| m))
            .collect()
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
        assert_eq!(receipts(&c), vec!["m1", "m3", "m5", "m2", "m4"]);
        // One run per (ack, sender), not a row per entry.
        let rows: i64 = c
            .query_row("SELECT COUNT(*) FROM receipt_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 4);
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
            vec!["m3", "m9", "m1", "m5", "m7", "m4", "m8", "m2", "m6", "m10"]
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

    #[test]
    fn given_more_receipts_than_a_batch_then_each_is_sent_once_in_order() {
        let c = db();
        mark_consumed(&c, "c", &(1..=9).collect::<Vec<_>>(), 10).unwrap();
        mark_consumed(&c, "c", &(10..=20).collect::<Vec<_>>(), 11).unwrap();
        // The odd sender has 1, 3, .., 19: batches of 3 cut its runs in the middle.
        let mut sent = Vec::new();
        for _ in 0..10 {
            let batches = pending_receipts(&c, 3).unwrap();
            let Some(b) = batches.into_iter().find(|b| b.sender == "odd") else {
                break;
            };
            assert!(b.consumed.len() <= 3);
            sent.extend(b.consumed.iter().map(|(m, _)| m.clone()));
            receipts_done(&c, "odd", Some(b.mark), 0).unwrap();
        }
        let want: Vec<String> = (1..=20).step_by(2).map(|o| format!("m{o}")).collect();
        assert_eq!(sent, want);
        // The even sender's receipts were left alone.
        assert_eq!(receipts(&c).len(), 10);
    }

    #[test]
    fn given_receipt_runs_whose_entries_are_gone_then_the_batch_is_empty_but_marked() {
        let c = db();
        mark_consumed(&c, "c", &[1, 2, 3], 10).unwrap();
        c.execute("DELETE FROM channel_log WHERE offset <= 3", [])
            .unwrap();
        let batches = pending_receipts(&c, 1000).unwrap();
        assert_eq!(batches.len(), 2);
        for b in batches {
            assert!(b.consumed.is_empty());
            receipts_done(&c, &b.sender, Some(b.mark), 0).unwrap();
        }
        assert!(pending_receipts(&c, 1000).unwrap().is_empty());
    }

    #[test]
    fn given_old_receipts_then_they_are_dropped_by_time() {
        let c = db();
        mark_consumed(&c, "c", &[1, 2], 10).unwrap();
        mark_consumed(&c, "c", &[3, 4], 20).unwrap();
        receipts_done(&c, "", None, 15).unwrap();
        assert_eq!(receipts(&c), vec!["m3", "m4"]);
    }
}
