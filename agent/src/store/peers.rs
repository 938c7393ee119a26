//! Discovery state: peers and memberships (this node's own included).

use super::Result;
use crate::wire::Stamp;
use rusqlite::{params, Connection};

/// A peer as persisted.
#[derive(Debug, Clone)]
pub struct PeerRow {
    /// Node id.
    pub node_id: String,
    /// Its database epoch.
    pub epoch: u64,
    /// Its highest boot seen: frames of older boots are replays.
    pub boot: u64,
    /// Version of its memberships as stored (a list is replaced only by a newer one).
    pub version: Stamp,
    /// Its API address (informational).
    pub api: String,
    /// First seen (ms, local clock).
    pub first_seen: i64,
    /// Last seen (ms, local clock).
    pub last_seen: i64,
    /// Memberships: (channel, role).
    pub memberships: Vec<(String, String)>,
}

/// What is persisted when a peer is seen.
#[derive(Debug, Clone)]
pub struct PeerSeen {
    /// Its database epoch.
    pub epoch: u64,
    /// Its highest boot seen.
    pub boot: u64,
    /// Version of its memberships.
    pub version: Stamp,
    /// Its API address.
    pub api: String,
}

/// Records that a peer was seen, replacing its memberships when given.
pub fn upsert_peer(
    conn: &Connection,
    node_id: &str,
    seen: &PeerSeen,
    now: i64,
    memberships: Option<&[(String, String)]>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO peers(node_id, epoch, api, first_seen, last_seen, boot, mver_boot, mver_counter)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)
         ON CONFLICT(node_id) DO UPDATE SET epoch = ?2, api = ?3, last_seen = ?4,
           boot = max(boot, ?5), mver_boot = ?6, mver_counter = ?7",
    )?
    .execute(params![
        node_id,
        seen.epoch as i64,
        seen.api,
        now,
        seen.boot as i64,
        seen.version.boot as i64,
        seen.version.counter as i64
    ])?;
    if let Some(ms) = memberships {
        set_memberships(conn, node_id, ms, now)?;
    }
    Ok(())
}

/// Replaces a node's memberships.
pub fn set_memberships(
    conn: &Connection,
    node_id: &str,
    memberships: &[(String, String)],
    now: i64,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM memberships WHERE node_id = ?")?
        .execute([node_id])?;
    let mut ins = conn.prepare_cached(
        "INSERT INTO memberships(node_id, channel, role, updated_at) VALUES (?, ?, ?, ?)",
    )?;
    for (ch, role) in memberships {
        ins.execute(params![node_id, ch, role, now])?;
    }
    Ok(())
}

/// Forgets a peer and its memberships.
pub fn delete_peer(conn: &Connection, node_id: &str) -> Result<()> {
    conn.execute("DELETE FROM memberships WHERE node_id = ?", [node_id])?;
    conn.execute("DELETE FROM peers WHERE node_id = ?", [node_id])?;
    Ok(())
}

/// Every persisted peer with its memberships.
pub fn load_peers(conn: &Connection) -> Result<Vec<PeerRow>> {
    let mut stmt = conn.prepare(
        "SELECT node_id, epoch, api, first_seen, last_seen, boot, mver_boot, mver_counter
         FROM peers ORDER BY node_id",
    )?;
    let mut peers: Vec<PeerRow> = stmt
        .query_map([], |r| {
            Ok(PeerRow {
                node_id: r.get(0)?,
                epoch: r.get::<_, i64>(1)? as u64,
                api: r.get(2)?,
                first_seen: r.get(3)?,
                last_seen: r.get(4)?,
                boot: r.get::<_, i64>(5)? as u64,
                version: Stamp {
                    boot: r.get::<_, i64>(6)? as u64,
                    counter: r.get::<_, i64>(7)? as u64,
                },
                memberships: Vec::new(),
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    for p in &mut peers {
        p.memberships = memberships(conn, &p.node_id)?;
    }
    Ok(peers)
}

/// A node's memberships (works for this node's own id too).
pub fn memberships(conn: &Connection, node_id: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT channel, role FROM memberships WHERE node_id = ? ORDER BY channel",
    )?;
    let rows = stmt
        .query_map([node_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}
