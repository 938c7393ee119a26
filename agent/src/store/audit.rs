//! The audit log of management commands: one row per command id this node applied
//! or issued. It also makes commands idempotent: an id found here is not applied
//! again.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Rows kept; older ones are pruned as new ones arrive.
pub const KEEP: i64 = 10_000;

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// The command's id.
    pub id: String,
    /// When this node applied it (ms).
    pub at: i64,
    /// The node whose API received it.
    pub issuer: String,
    /// `kick`, `kick_channel`, `purge`.
    pub kind: String,
    /// The command as JSON.
    pub command: serde_json::Value,
    /// What this node did.
    pub detail: String,
}

/// Records an entry; false when the id was already recorded (nothing changes).
pub fn record(conn: &Connection, e: &AuditEntry) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO audit (id, at, issuer, kind, command, detail)
             VALUES (?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            e.id,
            e.at,
            e.issuer,
            e.kind,
            e.command.to_string(),
            e.detail
        ])?;
    if n > 0 {
        conn.prepare_cached(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY at DESC LIMIT -1 OFFSET ?)",
        )?
        .execute([KEEP])?;
    }
    Ok(n > 0)
}

/// What this node did for command `id`, if it applied it.
pub fn detail(conn: &Connection, id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT detail FROM audit WHERE id = ?")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// The newest `limit` entries, newest first.
pub fn list(conn: &Connection, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows = conn
        .prepare_cached(
            "SELECT id, at, issuer, kind, command, detail FROM audit ORDER BY at DESC, id DESC LIMIT ?",
        )?
        .query_map([limit], |r| {
            let command: String = r.get(4)?;
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                issuer: r.get(2)?,
                kind: r.get(3)?,
                command: serde_json::from_str(&command).unwrap_or(serde_json::Value::Null),
                detail: r.get(5)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// This node's kick record (`meta.kicked`), if it was kicked and has not joined since.
pub fn kicked(conn: &Connection) -> Result<Option<serde_json::Value>> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'kicked'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
}

/// Sets (or with `None` clears) this node's kick record.
pub fn set_kicked(conn: &Connection, v: Option<&serde_json::Value>) -> Result<()> {
    match v {
        Some(v) => conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('kicked', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
            )?
            .execute([v.to_string()])?,
        None => conn
            .prepare_cached("DELETE FROM meta WHERE key = 'kicked'")?
            .execute([])?,
    };
    Ok(())
}
