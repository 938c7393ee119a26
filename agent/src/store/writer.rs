//! The writer thread: ordered jobs, group commit, savepoint per job.
//!
//! Every shared transaction also writes its batch number to `meta`. When COMMIT
//! reports an error, the writer first makes sure no transaction is left open (a
//! failed COMMIT, e.g. SQLITE_FULL, can leave it open: then it is rolled back and the
//! batch failed), and only then reads the number back: if the batch is in the
//! database after all, its jobs are reported as committed, so that no caller retries
//! what is already stored. A job is never reported committed unless it is.

use super::{Error, Result};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

/// A unit of work for the writer thread.
trait Job: Send {
    /// Runs inside the shared transaction, in its own savepoint.
    fn apply(&mut self, tx: &mut rusqlite::Transaction<'_>);
    /// Reports the outcome once the shared transaction committed or failed.
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct FnJob<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for FnJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn apply(&mut self, tx: &mut rusqlite::Transaction<'_>) {
        let Some(f) = self.f.take() else { return };
        let out = match tx.savepoint() {
            Ok(mut sp) => {
                let r = f(&sp);
                // A failing job rolls back only its own savepoint.
                let end = if r.is_ok() {
                    sp.commit()
                } else {
                    sp.rollback()
                };
                match (r, end) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        };
        self.out = Some(out);
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let result = match (commit, self.out) {
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(Error::Closed),
            (Err(e), _) => Err(e),
        };
        let _ = self.reply.send(result);
    }
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on an opened, migrated connection.
    pub fn spawn(conn: Connection, max_batch: usize, capacity: usize) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(capacity);
        std::thread::Builder::new()
            .name("rmds-writer".into())
            .spawn(move || run(conn, rx, max_batch))
            .map_err(|e| Error::Sqlite(format!("cannot start writer thread: {e}")))?;
        Ok(Writer { tx })
    }

    /// Queues a job and returns a receiver for its committed result. Jobs apply in the
    /// order they were queued, so a caller may queue several and await them later.
    pub async fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(FnJob {
            f: Some(f),
            out: None,
            reply,
        });
        self.tx.send(job).await.map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// Runs a job and waits until it is committed.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(f).await?.await.map_err(|_| Error::Closed)?
    }

    /// Waits until every job queued before this call is committed.
    pub async fn flush(&self) -> Result<()> {
        self.run(|_| Ok(())).await
    }
}

/// The `meta` key holding the number of the last batch the writer committed.
const BATCH_KEY: &str = "writer_batch";

/// Whether a batch whose COMMIT returned `commit` is in the database, given the batch
/// number read back afterwards (`None`: it could not be read).
fn committed(commit: &Result<()>, batch: u64, read_back: Option<u64>) -> Result<()> {
    match commit {
        Ok(()) => Ok(()),
        Err(_) if read_back == Some(batch) => Ok(()),
        Err(e) => Err(e.clone()),
    }
}

fn read_batch(conn: &Connection) -> Option<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = ?", [BATCH_KEY], |r| {
        r.get::<_, String>(0)
    })
    .ok()
    .and_then(|v| v.parse().ok())
}

/// Reports every job of a batch that SQLite rolled back as failed.
fn return_batch_failed(batch: &mut Vec<Box<dyn Job>>, why: &str) {
    tracing::error!(jobs = batch.len(), "{why}");
    let err = Err(Error::Commit(why.to_string()));
    for job in batch.drain(..) {
        job.finish(err.clone());
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, max_batch: usize) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut number = read_batch(&conn).unwrap_or(0);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        number += 1;
        let commit = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(mut tx) => {
                // SQLite may roll back the whole transaction on its own when a
                // statement fails with SQLITE_FULL or an I/O error: then the jobs applied
                // so far are gone, and none of the batch may be reported committed.
                let mut rolled_back = false;
                for job in batch.iter_mut() {
                    job.apply(&mut tx);
                    if tx.is_autocommit() {
                        rolled_back = true;
                        break;
                    }
                }
                if rolled_back {
                    return_batch_failed(
                        &mut batch,
                        "the store rolled the batch back (disk full or I/O error)",
                    );
                    continue;
                }
                let mark = tx
                    .prepare_cached(
                        "INSERT INTO meta(key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = ?2",
                    )
                    .and_then(|mut st| {
                        st.execute(rusqlite::params![BATCH_KEY, number.to_string()])
                    });
                match mark {
                    Ok(_) => tx.commit().map_err(|e| Error::Commit(e.to_string())),
                    Err(e) => Err(Error::Commit(e.to_string())),
                }
            }
            Err(e) => Err(Error::Commit(e.to_string())),
        };
        let commit = if commit.is_err() {
            if conn.is_autocommit() {
                // No transaction is open: what the database says is what is durable.
                committed(&commit, number, read_batch(&conn))
            } else {
                // A failed COMMIT can leave the transaction open; reading it back would
                // see its own writes. Roll it back: nothing of the batch was committed.
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %e, "rollback after a failed commit failed");
                }
                commit
            }
        } else {
            commit
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
    // Channel closed: every handle is gone. Leave the WAL checkpointed.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE t (v INTEGER);",
        )
        .unwrap();
        (dir, Writer::spawn(conn, 64, 64).unwrap())
    }

    #[test]
    fn given_a_commit_error_when_the_batch_is_in_the_database_then_its_jobs_succeed() {
        let err = Err(Error::Commit("disk I/O error".into()));
        assert!(committed(&err, 7, Some(7)).is_ok());
        assert!(committed(&err, 7, Some(6)).is_err());
        assert!(committed(&err, 7, None).is_err());
        assert!(committed(&Ok(()), 7, None).is_ok());
    }

    #[tokio::test]
    async fn given_a_commit_that_fails_then_every_job_of_the_batch_fails_and_nothing_is_stored() {
        let (_dir, w) = writer();
        // A deferred foreign key fails at COMMIT, after both savepoints were released.
        let a = w
            .submit(|c| Ok(c.execute("INSERT INTO t(v) VALUES (1)", [])?))
            .await
            .unwrap();
        let b = w
            .submit(|c| Ok(c.execute("INSERT INTO child(p) VALUES (42)", [])?))
            .await
            .unwrap();
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert!(b.is_err());
        let rows: i64 = w
            .run(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        // The two jobs may or may not have shared the batch; what is reported matches
        // what is stored.
        assert_eq!(
            a.is_ok(),
            rows == 1,
            "reported {a:?} with {rows} rows stored"
        );
    }

    #[tokio::test]
    async fn given_a_store_that_fills_up_then_every_job_reported_ok_is_in_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages + 40)
            .unwrap();
        let w = Writer::spawn(conn, 64, 1024).unwrap();
        let mut replies = Vec::new();
        for i in 0..400i64 {
            let rx = w
                .submit(move |c| {
                    Ok(c.execute("INSERT INTO t(id, v) VALUES (?, zeroblob(900))", [i])?)
                })
                .await
                .unwrap();
            replies.push((i, rx));
        }
        let mut ok = Vec::new();
        for (i, rx) in replies {
            if rx.await.unwrap().is_ok() {
                ok.push(i);
            }
        }
        assert!(ok.len() < 400, "the store never filled up");
        drop(w);
        let check = Connection::open(&path).unwrap();
        for i in ok {
            let n: i64 = check
                .query_row("SELECT COUNT(*) FROM t WHERE id = ?", [i], |r| r.get(0))
                .unwrap();
            assert_eq!(
                n, 1,
                "job {i} was reported committed but is not in the database"
            );
        }
    }

    #[tokio::test]
    async fn given_ordered_jobs_then_each_batch_number_is_recorded() {
        let (_dir, w) = writer();
        for _ in 0..3 {
            w.run(|c| Ok(c.execute("INSERT INTO t(v) VALUES (1)", [])?))
                .await
                .unwrap();
        }
        let n: String = w
            .run(|c| {
                Ok(c.query_row(
                    "SELECT value FROM meta WHERE key = 'writer_batch'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert!(n.parse::<u64>().unwrap() >= 3);
    }
}
