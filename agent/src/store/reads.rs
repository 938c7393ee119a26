//! A small pool of read connections used from blocking threads.

use super::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Read-only connections, opened lazily, reused, at most `size` kept idle.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    size: usize,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// A pool over the database at `path`.
    pub fn new(path: PathBuf, size: usize) -> ReadPool {
        ReadPool {
            inner: Arc::new(Inner {
                path,
                size,
                idle: Mutex::new(Vec::new()),
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
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.put(conn);
            out
        })
        .await
        .map_err(|e| Error::Sqlite(format!("read task failed: {e}")))?
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
