//! SQLite: the only module that writes SQL.
//!
//! One writer thread owns the write connection and applies jobs in submission order,
//! many jobs per transaction (group commit: one fsync for many publishes). A job runs
//! inside its own savepoint, so one failing job never undoes its neighbours; callers
//! hear about success only after the shared COMMIT returned. Reads go through a small
//! pool of read-only connections on blocking threads (WAL lets them run beside the
//! writer). Domain operations live in the submodules as plain functions over a
//! `&Connection`, so they are testable and composable inside one job.

pub mod audit;
pub mod auth;
pub mod consumed;
pub mod group_counts;
pub mod groups;
pub mod inbox;
mod log_sweep;
pub mod outbox;
pub mod peers;
mod reads;
pub mod samples;
mod schema;
mod writer;

pub use groups::{GroupRow, LogEntry};
pub use inbox::{AppendOutcome, InboundMessage};
pub use outbox::{
    DeliveryState, ExpirySweep, MessageStatus, NewMessage, PublishOutcome, ReceiverStatus,
    StreamRow, WindowRow,
};
pub use peers::{PeerRow, PeerSeen};
pub use reads::ReadPool;
pub use writer::Writer;

use crate::config::StoreConfig;
use std::path::Path;

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// The shared transaction failed to commit; the job's changes are not durable.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The writer thread has stopped (shutdown or a fatal error).
    #[error("store is closed")]
    Closed,
    /// The database moved on since the caller looked (e.g. a stream's sequence).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e.to_string())
    }
}

/// Result alias for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The opened store: writer, readers and the identity fixed at creation.
#[derive(Clone)]
pub struct Store {
    /// Serialized writes with group commit.
    pub writer: Writer,
    /// Concurrent reads.
    pub reads: ReadPool,
    /// Stream epoch, random, fixed when the database was created.
    pub epoch: u64,
    /// This process's boot counter, raised and committed at open (replay protection).
    pub boot: u64,
}

/// Milliseconds since the Unix epoch, the unit of every timestamp in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Whether a new message could be stored now: writes a row of a few pages and
    /// removes it again, committed like any write (a full disk, a full
    /// `max_size_mb` or a read-only file fails it). For `/readyz`.
    pub async fn probe_write(&self) -> Result<()> {
        self.writer
            .run(|c| {
                c.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('ready_probe', hex(randomblob(8192)))",
                    [],
                )?;
                c.execute("DELETE FROM meta WHERE key = 'ready_probe'", [])?;
                Ok(())
            })
            .await
    }
    /// Opens (creating and migrating if needed) `dir/rmds.db` and starts the writer thread.
    pub fn open(dir: &Path, node_id: &str, config: &StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Sqlite(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("rmds.db");
        let mut conn = rusqlite::Connection::open(&path)?;
        schema::configure(&conn, config.synchronous)?;
        schema::migrate(&mut conn)?;
        let epoch = schema::identity(&conn, node_id)?;
        let boot = match schema::next_boot(&conn) {
            Ok(b) => b,
            // A full disk must not keep the agent from starting: the wall clock is
            // still above every earlier boot unless it went back.
            Err(e) => {
                tracing::warn!(error = %e, "cannot persist the boot counter; using the clock");
                now_ms().max(0) as u64
            }
        };
        if config.max_size_mb > 0 {
            let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = (config.max_size_mb as i64 * 1024 * 1024) / page.max(512);
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        let writer = Writer::spawn(conn, config.max_batch, config.queue_capacity)?;
        let reads = ReadPool::new(path, config.read_connections);
        Ok(Store {
            writer,
            reads,
            epoch,
            boot,
        })
    }
}
