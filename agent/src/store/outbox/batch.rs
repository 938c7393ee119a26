//! Publishing a batch of messages in one job: each receiver's stream and backlog move
//! once for the whole batch.

use super::{add_backlog, backlog, publish, NewMessage, PublishOutcome};
use crate::config::Overflow;
use crate::store::{Error, Result};
use rusqlite::{params, Connection};

/// Stores a batch of messages for the same receivers, as [`publish`] would one by
/// one, but moves each receiver's stream and backlog once for the whole batch.
/// Messages with an idempotency key, and the `drop_oldest` policy, take the
/// message-by-message path.
pub fn publish_batch<M: std::borrow::Borrow<NewMessage>>(
    conn: &Connection,
    msgs: &[M],
    receivers: &[String],
    limit: u64,
    overflow: Overflow,
) -> Result<Vec<PublishOutcome>> {
    let msgs: Vec<&NewMessage> = msgs.iter().map(|m| m.borrow()).collect();
    if overflow == Overflow::DropOldest || msgs.iter().any(|m| m.idempotency_key.is_some()) {
        return msgs
            .iter()
            .map(|m| publish(conn, m, receivers, limit, overflow))
            .collect();
    }
    // Per receiver: the next sequence and the backlog, kept here for the batch.
    let mut streams = Vec::with_capacity(receivers.len());
    for r in receivers {
        let Some(channel) = msgs.first().map(|m| m.channel.as_str()) else {
            break;
        };
        conn.prepare_cached(
            "INSERT INTO streams(receiver, channel, next_seq, acked_seq) VALUES (?, ?, 1, 0)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![r, channel])?;
        let next: i64 = conn
            .prepare_cached("SELECT next_seq FROM streams WHERE receiver = ? AND channel = ?")?
            .query_row(params![r, channel], |row| row.get(0))?;
        streams.push((next as u64, backlog(conn, r, channel)?, 0u64));
    }
    let mut insert_message = conn.prepare_cached(
        "INSERT INTO messages(id, channel, created_at, expires_at, content_type, headers, payload, idempotency_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries(receiver, channel, seq, message_id, state, queued_at)
         VALUES (?, ?, ?, ?, 0, ?)",
    )?;
    let mut outcomes = Vec::with_capacity(msgs.len());
    for msg in msgs.iter().copied() {
        if msg.channel != msgs[0].channel {
            return Err(Error::Corrupt("a batch spans channels".into()));
        }
        if overflow == Overflow::Reject {
            if let Some((r, (_, pending, added))) = receivers
                .iter()
                .zip(&streams)
                .find(|(_, (_, pending, added))| pending + added >= limit)
            {
                outcomes.push(PublishOutcome::Rejected {
                    receiver: r.clone(),
                    pending: pending + added,
                });
                continue;
            }
        }
        insert_message.execute(params![
            msg.id,
            msg.channel,
            msg.created_at,
            msg.expires_at,
            msg.content_type,
            msg.headers,
            msg.payload,
        ])?;
        let mut routes = Vec::with_capacity(receivers.len());
        for (r, (next, _, added)) in receivers.iter().zip(streams.iter_mut()) {
            insert_delivery.execute(params![
                r,
                msg.channel,
                *next as i64,
                msg.id,
                msg.created_at
            ])?;
            routes.push((r.clone(), *next));
            *next += 1;
            *added += 1;
        }
        if receivers.is_empty() {
            conn.prepare_cached(
                "INSERT INTO unrouted(message_id, channel, expires_at) VALUES (?, ?, ?)",
            )?
            .execute(params![msg.id, msg.channel, msg.expires_at])?;
        }
        outcomes.push(PublishOutcome::Accepted {
            id: msg.id.clone(),
            routes,
            dropped: Vec::new(),
            unrouted: receivers.is_empty(),
        });
    }
    if let Some(channel) = msgs.first().map(|m| m.channel.as_str()) {
        for (r, (next, _, added)) in receivers.iter().zip(&streams) {
            if *added > 0 {
                conn.prepare_cached(
                    "UPDATE streams SET next_seq = ? WHERE receiver = ? AND channel = ?",
                )?
                .execute(params![*next as i64, r, channel])?;
                add_backlog(conn, r, channel, *added as i64)?;
            }
        }
    }
    Ok(outcomes)
}
