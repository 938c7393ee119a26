//! The local API's principals: API keys, users and service accounts, with their
//! role and grants. Secrets are stored hashed where the check allows (keys: SHA-256,
//! passwords: Argon2id); a service account's HMAC key must be kept as is.

use super::{now_ms, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// One stored principal (the secret is never serialised).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `key`, `user` or `service`.
    pub kind: String,
    /// Key id, user name or service id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Hash or key, per kind.
    #[serde(skip)]
    pub secret: String,
    /// Role name.
    pub role: String,
    /// Grants as JSON, if any.
    pub grants: Option<serde_json::Value>,
    /// When it was created (ms).
    pub created_at: i64,
}

/// Inserts a principal; false when one of that kind and id exists.
pub fn insert(conn: &Connection, r: &Row) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO auth_principals (kind, id, name, secret, role, grants, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            r.kind,
            r.id,
            r.name,
            r.secret,
            r.role,
            r.grants.as_ref().map(|g| g.to_string()),
            now_ms()
        ])?;
    Ok(n > 0)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let grants: Option<String> = r.get(5)?;
    Ok(Row {
        kind: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        secret: r.get(3)?,
        role: r.get(4)?,
        grants: grants.and_then(|g| serde_json::from_str(&g).ok()),
        created_at: r.get(6)?,
    })
}

/// One principal.
pub fn get(conn: &Connection, kind: &str, id: &str) -> Result<Option<Row>> {
    Ok(conn
        .prepare_cached(
            "SELECT kind, id, name, secret, role, grants, created_at FROM auth_principals
             WHERE kind = ? AND id = ?",
        )?
        .query_row(params![kind, id], from_row)
        .optional()?)
}

/// Every principal of a kind.
pub fn list(conn: &Connection, kind: &str) -> Result<Vec<Row>> {
    let rows = conn
        .prepare_cached(
            "SELECT kind, id, name, secret, role, grants, created_at FROM auth_principals
             WHERE kind = ? ORDER BY created_at, id",
        )?
        .query_map([kind], from_row)?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Deletes a principal; false when there was none.
pub fn delete(conn: &Connection, kind: &str, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM auth_principals WHERE kind = ? AND id = ?")?
        .execute(params![kind, id])?
        > 0)
}

/// How many users exist (bootstrap is allowed only while none does).
pub fn users(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM auth_principals WHERE kind = 'user'",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// This node's JWT signing key, created on first use.
pub fn jwt_key(conn: &Connection) -> Result<Vec<u8>> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'jwt_key'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let hex = match existing {
        Some(h) => h,
        None => {
            let key: [u8; 32] = rand::random();
            let h: String = key.iter().map(|b| format!("{b:02x}")).collect();
            conn.execute("INSERT INTO meta (key, value) VALUES ('jwt_key', ?)", [&h])?;
            h
        }
    };
    Ok((0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect())
}
