//! Connection settings, versioned migrations and the database identity.

use super::{Error, Result};
use crate::config::Synchronous;
use rusqlite::{params, Connection, OptionalExtension};

/// Migrations in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

-- Sending side: a message is stored once, with one delivery row per receiver.
CREATE TABLE messages (
  id TEXT PRIMARY KEY,
  channel TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  content_type TEXT NOT NULL,
  headers TEXT NOT NULL,
  payload BLOB NOT NULL,
  idempotency_key TEXT
);
CREATE INDEX messages_by_expiry ON messages(expires_at);
CREATE UNIQUE INDEX messages_by_idempotency ON messages(channel, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Messages published while no reader was known; routed to readers discovered later.
CREATE TABLE unrouted (
  message_id TEXT PRIMARY KEY,
  channel TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX unrouted_by_channel ON unrouted(channel);

-- One ordered stream per (receiver, channel).
CREATE TABLE streams (
  receiver TEXT NOT NULL,
  channel TEXT NOT NULL,
  next_seq INTEGER NOT NULL,
  acked_seq INTEGER NOT NULL,
  PRIMARY KEY (receiver, channel)
) WITHOUT ROWID;

-- state: 0 queued, 1 sent, 2 delivered, 3 dead, 4 expired, 5 dropped
CREATE TABLE deliveries (
  receiver TEXT NOT NULL,
  channel TEXT NOT NULL,
  seq INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER NOT NULL,
  sent_at INTEGER,
  done_at INTEGER,
  reason TEXT,
  PRIMARY KEY (receiver, channel, seq)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_message ON deliveries(message_id);
CREATE INDEX deliveries_pending ON deliveries(receiver, state, queued_at);

-- Undelivered messages per receiver (back-pressure), kept exact inside transactions.
CREATE TABLE backlog (receiver TEXT PRIMARY KEY, pending INTEGER NOT NULL) WITHOUT ROWID;

CREATE TABLE dead_letters (
  receiver TEXT NOT NULL,
  channel TEXT NOT NULL,
  seq INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  history TEXT NOT NULL,
  dead_at INTEGER NOT NULL,
  PRIMARY KEY (receiver, channel, seq)
) WITHOUT ROWID;

-- Discovery, persisted so that a restart (even without NATS) knows its readers.
CREATE TABLE peers (
  node_id TEXT PRIMARY KEY,
  epoch INTEGER NOT NULL,
  api TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE memberships (
  node_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  role TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (node_id, channel)
) WITHOUT ROWID;

-- Receiving side: dedupe state per (sender, epoch, channel), no time window.
CREATE TABLE inbox_streams (
  sender TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  channel TEXT NOT NULL,
  last_seq INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (sender, epoch, channel)
) WITHOUT ROWID;

-- The local append-only log per channel.
CREATE TABLE channel_log (
  channel TEXT NOT NULL,
  offset INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  content_type TEXT NOT NULL,
  headers TEXT NOT NULL,
  payload BLOB NOT NULL,
  PRIMARY KEY (channel, offset)
);
CREATE INDEX channel_log_by_id ON channel_log(message_id);
CREATE TABLE channel_heads (channel TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) WITHOUT ROWID;

-- Consumer groups: every offset at or below ack_floor is acknowledged; acks above it
-- are listed in group_acks until the floor catches up.
CREATE TABLE groups (
  channel TEXT NOT NULL,
  name TEXT NOT NULL,
  ack_floor INTEGER NOT NULL,
  ack_wait_ms INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  last_active INTEGER NOT NULL,
  PRIMARY KEY (channel, name)
) WITHOUT ROWID;
CREATE TABLE group_acks (
  channel TEXT NOT NULL,
  grp TEXT NOT NULL,
  offset INTEGER NOT NULL,
  PRIMARY KEY (channel, grp, offset)
) WITHOUT ROWID;
"#,
    r#"
-- Consumer group settings.
ALTER TABLE groups ADD COLUMN max_deliveries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN max_in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN idle_ttl_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN backoff TEXT NOT NULL DEFAULT '[]';
-- A group's dead letters: entries delivered max_deliveries times without an ack.
-- state is 'dead', or 'redriven' while the entry is being delivered again.
CREATE TABLE group_dead (
  channel TEXT NOT NULL,
  grp TEXT NOT NULL,
  offset INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  state TEXT NOT NULL,
  deliveries INTEGER NOT NULL,
  reason TEXT NOT NULL,
  last_error TEXT,
  dead_at INTEGER NOT NULL,
  PRIMARY KEY (channel, grp, offset)
) WITHOUT ROWID;
CREATE INDEX group_dead_by_id ON group_dead(message_id);
CREATE INDEX dead_letters_by_message ON dead_letters(message_id);
-- The retention sweep finds finished deliveries, old messages and expired log entries
-- by index instead of scanning.
CREATE INDEX deliveries_done ON deliveries(done_at) WHERE state >= 2;
CREATE INDEX messages_by_created ON messages(created_at);
CREATE INDEX channel_log_by_expiry ON channel_log(expires_at);
-- Receipts: when a message was first consumed (acknowledged by a group) at a receiver.
ALTER TABLE channel_log ADD COLUMN consumed_at INTEGER;
ALTER TABLE deliveries ADD COLUMN consumed_at INTEGER;
-- Receipts waiting to reach their sender.
CREATE TABLE receipts_out (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sender TEXT NOT NULL,
  message_id TEXT NOT NULL,
  consumed_at INTEGER NOT NULL
);
CREATE INDEX receipts_out_by_sender ON receipts_out(sender, id);
-- Domains: namespaces with an optional JSON Schema and a default channel policy.
CREATE TABLE domains (
  name TEXT PRIMARY KEY,
  schema TEXT,
  policy TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Per-channel settings on this node: its domain and its own policy.
CREATE TABLE channel_settings (
  channel TEXT PRIMARY KEY,
  domain TEXT,
  policy TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 3: backlogs per (receiver, channel), so that a channel's limit and its drop_oldest
    // policy never touch another channel's messages.
    r#"
DROP TABLE backlog;
CREATE TABLE backlog (
  receiver TEXT NOT NULL,
  channel TEXT NOT NULL,
  pending INTEGER NOT NULL,
  PRIMARY KEY (receiver, channel)
) WITHOUT ROWID;
INSERT INTO backlog(receiver, channel, pending)
  SELECT receiver, channel, COUNT(*) FROM deliveries WHERE state IN (0, 1)
  GROUP BY receiver, channel;
"#,
    // 4: consumer-group delivery counts and tombstones.
    r#"
-- How often a consumer group handed out an entry it has not settled yet, so that
-- max_deliveries counts across restarts. Rows go when the entry is settled.
CREATE TABLE group_deliveries (
  channel TEXT NOT NULL,
  grp TEXT NOT NULL,
  offset INTEGER NOT NULL,
  deliveries INTEGER NOT NULL,
  PRIMARY KEY (channel, grp, offset)
) WITHOUT ROWID;
-- The position of a group deleted by its idle TTL: the group created implicitly
-- again under that name starts here instead of replaying what it acknowledged.
-- acked: JSON list of acknowledged offsets above ack_floor; high: the highest
-- acknowledged offset (the row goes once the log holds nothing at or below it).
CREATE TABLE group_tombstones (
  channel TEXT NOT NULL,
  name TEXT NOT NULL,
  ack_floor INTEGER NOT NULL,
  acked TEXT NOT NULL,
  high INTEGER NOT NULL,
  deleted_at INTEGER NOT NULL,
  PRIMARY KEY (channel, name)
) WITHOUT ROWID;
"#,
    // 5: replay protection.
    r#"
-- Replay protection: a peer's highest boot seen and the version of its memberships.
ALTER TABLE peers ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN mver_boot INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN mver_counter INTEGER NOT NULL DEFAULT 0;
"#,
    // 6: sends and acknowledgements as cursors. A delivery at or below its stream's
    // acked_seq is delivered and one at or below sent_seq was sent, whatever its row's
    // state says (only terminal states and resends are written per row); one row per
    // send and per ACK records when each range got there.
    r#"
ALTER TABLE streams ADD COLUMN sent_seq INTEGER NOT NULL DEFAULT 0;
UPDATE streams SET sent_seq = MAX(acked_seq, COALESCE((SELECT MAX(d.seq) FROM deliveries d
  WHERE d.receiver = streams.receiver AND d.channel = streams.channel AND d.attempts > 0), 0));
-- A row's attempts now count resends: the first send is the cursor's.
UPDATE deliveries SET attempts = attempts - 1
  WHERE attempts > 0 AND state IN (0, 1)
    AND seq <= (SELECT s.sent_seq FROM streams s WHERE s.receiver = deliveries.receiver AND s.channel = deliveries.channel);
CREATE TABLE stream_sends (
  receiver TEXT NOT NULL,
  channel TEXT NOT NULL,
  upto INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (receiver, channel, upto)
) WITHOUT ROWID;
CREATE TABLE stream_acks (
  receiver TEXT NOT NULL,
  channel TEXT NOT NULL,
  upto INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (receiver, channel, upto)
) WITHOUT ROWID;
-- The retention sweep finds ACK records past retention by time.
CREATE INDEX stream_acks_by_time ON stream_acks(at);
DROP INDEX deliveries_pending;
DROP INDEX deliveries_done;
-- Only terminal rows (dead, expired, dropped) carry their own done_at now.
CREATE INDEX deliveries_terminal ON deliveries(done_at) WHERE state >= 2;
-- A receiver's first consumption of its log entries, as disjoint runs of offsets
-- (channel_log.consumed_at is no longer written).
CREATE TABLE consumed_runs (
  channel TEXT NOT NULL,
  lo INTEGER NOT NULL,
  hi INTEGER NOT NULL,
  PRIMARY KEY (channel, lo)
) WITHOUT ROWID;
INSERT INTO consumed_runs(channel, lo, hi)
  SELECT channel, offset, offset FROM channel_log WHERE consumed_at IS NOT NULL;
-- Receipts older than their retention are dropped by time.
CREATE INDEX receipts_out_by_time ON receipts_out(consumed_at);
"#,
    // 7: management commands this node applied (or issued), for `GET /v1/audit` and
    // so that a command id is applied once.
    r#"
CREATE TABLE audit (
  id TEXT PRIMARY KEY,
  at INTEGER NOT NULL,
  issuer TEXT NOT NULL,
  kind TEXT NOT NULL,
  command TEXT NOT NULL,
  detail TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX audit_by_time ON audit(at);
"#,
    // 8: principals of the local API: API keys (secret: SHA-256 of the key), users
    // (secret: Argon2id PHC string) and HMAC service accounts (secret: the shared
    // key, which the check needs).
    r#"
CREATE TABLE auth_principals (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  name TEXT NOT NULL,
  secret TEXT NOT NULL,
  role TEXT NOT NULL,
  grants TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"#,
    // 9: the stats ring: one row per sample interval with the counters' increase since
    // the previous sample, their values, the backlogs and the process's resources
    // (JSON objects, so that a new counter needs no migration). Bounded by
    // stats.retention: older rows are deleted at every sample.
    r#"
CREATE TABLE stats_samples (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  boot INTEGER NOT NULL,
  deltas TEXT NOT NULL,
  totals TEXT NOT NULL,
  gauges TEXT NOT NULL,
  resources TEXT NOT NULL
);
CREATE INDEX stats_samples_by_time ON stats_samples(at);
"#,
    // 10: receipts waiting for their sender as runs of log offsets, one row per
    // (group ack, sender) instead of one per message: the receipt task reads the
    // message ids from the log when it sends them.
    r#"
CREATE TABLE receipt_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sender TEXT NOT NULL,
  channel TEXT NOT NULL,
  lo INTEGER NOT NULL,
  hi INTEGER NOT NULL,
  consumed_at INTEGER NOT NULL
);
CREATE INDEX receipt_runs_by_sender ON receipt_runs(sender, id);
CREATE INDEX receipt_runs_by_time ON receipt_runs(consumed_at);
INSERT INTO receipt_runs(sender, channel, lo, hi, consumed_at)
  SELECT r.sender, l.channel, l.offset, l.offset, r.consumed_at
  FROM receipts_out r JOIN channel_log l ON l.message_id = r.message_id AND l.sender = r.sender
  ORDER BY r.id;
DROP TABLE receipts_out;
"#,
    // 11: fewer B-trees per message. The outbox's messages and the channel log are
    // keyed by their primary key alone (WITHOUT ROWID): a message row was a rowid table
    // plus an index on its id, a log entry a rowid table plus an index on (channel,
    // offset). Messages past retention are found by their id, a ULID whose time is
    // their created_at, so messages_by_created goes too. Unrouted messages keep their
    // publish order by the unrouted table's own rowid.
    r#"
CREATE TABLE messages_v11 (
  id TEXT NOT NULL PRIMARY KEY,
  channel TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  content_type TEXT NOT NULL,
  headers TEXT NOT NULL,
  payload BLOB NOT NULL,
  idempotency_key TEXT
) WITHOUT ROWID;
INSERT INTO messages_v11 SELECT id, channel, created_at, expires_at, content_type, headers,
  payload, idempotency_key FROM messages;
CREATE TABLE unrouted_v11 (
  message_id TEXT PRIMARY KEY,
  channel TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
INSERT INTO unrouted_v11(message_id, channel, expires_at)
  SELECT u.message_id, u.channel, u.expires_at FROM unrouted u
  LEFT JOIN messages m ON m.id = u.message_id ORDER BY m.created_at, m.rowid;
DROP TABLE unrouted;
ALTER TABLE unrouted_v11 RENAME TO unrouted;
CREATE INDEX unrouted_by_channel ON unrouted(channel);
DROP TABLE messages;
ALTER TABLE messages_v11 RENAME TO messages;
CREATE INDEX messages_by_expiry ON messages(expires_at);
CREATE UNIQUE INDEX messages_by_idempotency ON messages(channel, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE TABLE channel_log_v11 (
  channel TEXT NOT NULL,
  offset INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  content_type TEXT NOT NULL,
  headers TEXT NOT NULL,
  payload BLOB NOT NULL,
  consumed_at INTEGER,
  PRIMARY KEY (channel, offset)
) WITHOUT ROWID;
INSERT INTO channel_log_v11 SELECT channel, offset, message_id, sender, created_at,
  received_at, expires_at, content_type, headers, payload, consumed_at FROM channel_log;
DROP TABLE channel_log;
ALTER TABLE channel_log_v11 RENAME TO channel_log;
CREATE INDEX channel_log_by_id ON channel_log(message_id);
CREATE INDEX channel_log_by_expiry ON channel_log(expires_at);
"#,
];

/// Pragmas for every connection.
pub fn configure(conn: &Connection, sync: Synchronous) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Runs the migrations not yet applied, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(Error::Corrupt(format!(
            "database schema version {version} is newer than this agent ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Returns the database epoch, creating it (and recording the node id) on first open.
/// Opening a database that belongs to another node id is refused.
pub fn identity(conn: &Connection, node_id: &str) -> Result<u64> {
    let get = |key: &str| -> Result<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?", [key], |r| r.get(0))
            .optional()?)
    };
    match get("node_id")? {
        Some(owner) if owner != node_id => {
            return Err(Error::Corrupt(format!(
                "this data directory belongs to node {owner:?}, not {node_id:?}"
            )))
        }
        Some(_) => {}
        None => {
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('node_id', ?)",
                [node_id],
            )?;
        }
    }
    if let Some(e) = get("epoch")? {
        return e
            .parse()
            .map_err(|_| Error::Corrupt(format!("bad epoch {e:?}")));
    }
    // 63 bits so the value round-trips through SQLite's signed integers.
    let epoch = rand::random::<u64>() >> 1;
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('epoch', ?)",
        params![epoch.to_string()],
    )?;
    Ok(epoch)
}

/// Raises and returns this node's boot counter, committed before the caller sends any
/// frame. It never goes back: at least one more than the last boot, and at least the
/// wall clock in ms, so a node whose database was recreated still starts above every
/// boot its peers remember (given a clock that is not far behind).
pub fn next_boot(conn: &Connection) -> Result<u64> {
    let last: u64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'boot'", [], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .map(|v| {
            v.parse()
                .map_err(|_| Error::Corrupt(format!("bad boot counter {v:?}")))
        })
        .transpose()?
        .unwrap_or(0);
    let boot = last.saturating_add(1).max(super::now_ms().max(0) as u64);
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('boot', ?1)
         ON CONFLICT(key) DO UPDATE SET value = ?1",
        params![boot.to_string()],
    )?;
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_receipts_queued_before_runs_when_migrated_then_each_becomes_a_run() {
        let mut c = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..9] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 9).unwrap();
        for o in 1..=3i64 {
            c.execute(
                "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload)
                 VALUES ('c', ?1, 'm' || ?1, 'alice', 0, 0, 1, 'text/plain', '[]', x'')",
                [o],
            )
            .unwrap();
        }
        c.execute_batch(
            "INSERT INTO receipts_out(sender, message_id, consumed_at) VALUES
               ('alice', 'm3', 7), ('alice', 'm1', 8), ('alice', 'gone', 9);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let runs: Vec<(String, String, i64, i64, i64)> = c
            .prepare("SELECT sender, channel, lo, hi, consumed_at FROM receipt_runs ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let alice = || "alice".to_string();
        let c_ = || "c".to_string();
        assert_eq!(
            runs,
            vec![(alice(), c_(), 3, 3, 7), (alice(), c_(), 1, 1, 8)],
            "a receipt whose entry is gone has nothing to tell"
        );
    }

    #[test]
    fn given_a_version_10_database_when_migrated_then_messages_log_and_unrouted_order_are_kept() {
        let mut c = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..10] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 10).unwrap();
        // Published in this order, all in the same millisecond: "b" before "a".
        for id in ["b", "a", "c"] {
            c.execute(
                "INSERT INTO messages(id, channel, created_at, expires_at, content_type, headers, payload)
                 VALUES (?1, 'ch', 5, 9, 'text/plain', '[]', x'01')",
                [id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO unrouted(message_id, channel, expires_at) VALUES (?1, 'ch', 9)",
                [id],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload, consumed_at)
             VALUES ('ch', 1, 'a', 'alice', 1, 2, 3, 'text/plain', '[]', x'02', 4)",
            [],
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let order: Vec<String> = c
            .prepare("SELECT message_id FROM unrouted ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(order, ["b", "a", "c"]);
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE payload = x'01'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 3);
        let entry: (String, Vec<u8>, Option<i64>) = c
            .query_row(
                "SELECT message_id, payload, consumed_at FROM channel_log WHERE channel = 'ch' AND offset = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(entry, ("a".to_string(), vec![2], Some(4)));
        // Keyed by their primary keys alone.
        for table in ["messages", "channel_log"] {
            assert!(
                c.prepare(&format!("SELECT rowid FROM {table}")).is_err(),
                "{table}"
            );
        }
    }
}
