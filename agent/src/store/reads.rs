//! A small pool of read connections used from blocking threads.
//!
//! At most `size` reads run at once: the others wait for a permit. Without that bound,
//! 200 sending streams loading at once opened 200 connections on 200 blocking threads
//! (each with its own schema, lookaside and page cache), and the process kept that
//! memory after they were gone.

use super::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Read-only connections, opened lazily, reused, at most `size` open and in use.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    size: usize,
    idle: Mutex<Vec<Connection>>,
    /// One per connection: bounds the reads (and blocking threads) running at once.
    /// A permit moves into the blocking closure, so a caller that gives up waiting
    /// (a cancelled future) does not free it while the read still runs.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// A pool over the database at `path`.
    pub fn new(path: PathBuf, size: usize) -> ReadPool {
        ReadPool {
            inner: Arc::new(Inner {
                path,
                size: size.max(1),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size.max(1))),
            }),
        }
    }

    fn take(&self) -> Result<Connection> {
        if let Some(c) = self.inner.idle.lock().map_err(|_| Error::Closed)?.pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            if idle.len() < self.inner.size {
                idle.push(conn);
            }
        }
    }

    /// Runs `f` on a read connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let pool = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.take()?;
            let out = f(&conn);
            pool.put(conn);
            out
        })
        .await;
        out.map_err(|e| Error::Sqlite(format!("read task failed: {e}")))?
    }

    /// Runs `f` on a read connection on the current thread (for startup code).
    pub fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.take()?;
        let out = f(&conn);
        self.put(conn);
        out
    }

    /// Checkpoints the WAL into the main database file (shutdown).
    pub async fn checkpoint(&self) -> Result<()> {
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Sqlite(format!("checkpoint task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A pool of `size` over a fresh database with one empty table `t`.
    fn pool(size: usize) -> (tempfile::TempDir, ReadPool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
            .unwrap();
        (dir, ReadPool::new(path, size))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_many_reads_at_once_when_run_then_at_most_size_run_together() {
        let (_dir, pool) = pool(3);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let (pool, now, most) = (pool.clone(), now.clone(), most.clone());
            reads.spawn(async move {
                pool.read(move |c| {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    let count: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok(count)
                })
                .await
            });
        }
        while let Some(r) = reads.join_next().await {
            assert_eq!(r.unwrap().unwrap(), 0);
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "reads running at once");
        assert!(pool.inner.idle.lock().unwrap().len() <= 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_a_cancelled_read_when_another_starts_then_it_waits_for_the_first_to_end() {
        let (_dir, pool) = pool(1);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let read = |now: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
            move |_: &Connection| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(200));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        };
        // The caller gives up while its read runs on the blocking thread.
        let first = pool.read(read(now.clone(), most.clone()));
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(30), first).await;
        assert!(gave_up.is_err());
        pool.read(read(now.clone(), most.clone())).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 1, "reads running at once");
    }
}
