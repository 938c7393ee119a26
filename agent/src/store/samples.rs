//! The stats ring (`stats_samples`): one row per sample interval, bounded by time and
//! by count. Rows carry their fields as JSON text; `stats/` owns their shape, so the
//! store stays below it.

use super::Result;
use rusqlite::{params, Connection};

/// One stored sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    /// When it was taken (ms since the Unix epoch).
    pub at: i64,
    /// The boot of the process that took it.
    pub boot: u64,
    /// JSON: each counter's increase since the previous sample of the same boot.
    pub deltas: String,
    /// JSON: each counter's value (since that boot).
    pub totals: String,
    /// JSON: backlogs.
    pub gauges: String,
    /// JSON: process resources.
    pub resources: String,
}

/// Appends a sample.
pub fn insert(conn: &Connection, row: &SampleRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO stats_samples(at, boot, deltas, totals, gauges, resources)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        row.at,
        row.boot as i64,
        row.deltas,
        row.totals,
        row.gauges,
        row.resources
    ])?;
    Ok(())
}

/// Deletes samples taken before `before` (ms) and all but the newest `keep`;
/// returns how many went. The count bound holds even if the clock jumps.
pub fn sweep(conn: &Connection, before: i64, keep: u64) -> Result<u64> {
    let old = conn
        .prepare_cached("DELETE FROM stats_samples WHERE at < ?")?
        .execute([before])?;
    let over = conn
        .prepare_cached(
            "DELETE FROM stats_samples WHERE id <= (SELECT id FROM stats_samples
             ORDER BY id DESC LIMIT 1 OFFSET ?)",
        )?
        .execute([keep.min(i64::MAX as u64) as i64])?;
    Ok((old + over) as u64)
}

fn rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<SampleRow>> {
    let rows = stmt
        .query_map(p, |r| {
            Ok(SampleRow {
                at: r.get(0)?,
                boot: r.get::<_, i64>(1)? as u64,
                deltas: r.get(2)?,
                totals: r.get(3)?,
                gauges: r.get(4)?,
                resources: r.get(5)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Samples taken in `[from, to)` (ms), in the order they were taken.
pub fn range(conn: &Connection, from: i64, to: i64) -> Result<Vec<SampleRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, boot, deltas, totals, gauges, resources FROM stats_samples
         WHERE at >= ? AND at < ? ORDER BY id",
    )?;
    rows(&mut stmt, params![from, to])
}

/// The newest `limit` samples, oldest first.
pub fn latest(conn: &Connection, limit: u64) -> Result<Vec<SampleRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, boot, deltas, totals, gauges, resources FROM stats_samples
         ORDER BY id DESC LIMIT ?",
    )?;
    let mut v = rows(&mut stmt, [limit.min(i64::MAX as u64) as i64])?;
    v.reverse();
    Ok(v)
}

/// Samples kept.
pub fn count(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT COUNT(*) FROM stats_samples", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    fn row(at: i64) -> SampleRow {
        SampleRow {
            at,
            boot: 1,
            deltas: "{}".into(),
            totals: "{}".into(),
            gauges: "{}".into(),
            resources: "{}".into(),
        }
    }

    #[test]
    fn given_samples_when_swept_then_old_ones_and_those_past_the_count_go() {
        let c = db();
        for at in 0..20 {
            insert(&c, &row(at * 10)).unwrap();
        }
        assert_eq!(sweep(&c, 50, 100).unwrap(), 5);
        assert_eq!(count(&c).unwrap(), 15);
        assert_eq!(sweep(&c, 0, 4).unwrap(), 11);
        let left: Vec<i64> = latest(&c, 100).unwrap().iter().map(|r| r.at).collect();
        assert_eq!(left, vec![160, 170, 180, 190]);
        assert_eq!(range(&c, 170, 190).unwrap().len(), 2);
    }

    #[test]
    fn given_a_clock_that_went_back_then_order_is_the_order_taken_and_the_count_bound_holds() {
        let c = db();
        for at in [100, 200, 50, 60] {
            insert(&c, &row(at)).unwrap();
        }
        let order: Vec<i64> = latest(&c, 10).unwrap().iter().map(|r| r.at).collect();
        assert_eq!(order, vec![100, 200, 50, 60]);
        sweep(&c, 0, 2).unwrap();
        let order: Vec<i64> = latest(&c, 10).unwrap().iter().map(|r| r.at).collect();
        assert_eq!(order, vec![50, 60]);
    }
}
