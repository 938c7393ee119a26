//! The writer thread: ordered jobs, group commit, savepoint per job.

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

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, max_batch: usize) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(mut tx) => {
                for job in batch.iter_mut() {
                    job.apply(&mut tx);
                }
                tx.commit().map_err(|e| Error::Commit(e.to_string()))
            }
            Err(e) => Err(Error::Commit(e.to_string())),
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
