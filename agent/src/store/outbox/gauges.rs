//! Per-stream gauges for `/metrics` and the stats sampler: backlog, messages in
//! flight and the age of the oldest undelivered message, per (receiver, channel).

use crate::store::Result;
use rusqlite::Connection;

/// One sending stream's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGauge {
    /// Receiver node.
    pub receiver: String,
    /// Channel.
    pub channel: String,
    /// Undelivered messages (queued or sent, not acknowledged).
    pub backlog: u64,
    /// Sent and not acknowledged yet.
    pub in_flight: u64,
    /// When the oldest undelivered message was queued (ms), if any.
    pub oldest_queued_at: Option<i64>,
}

/// Every stream's gauges. The counts only look at rows above the stream's ACK
/// cursor (in flight: at most a window), and the oldest message only for streams
/// with a backlog, so the cost follows the work in progress, not the history.
pub fn stream_gauges(conn: &Connection) -> Result<Vec<StreamGauge>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.receiver, s.channel, COALESCE(b.pending, 0),
           CASE WHEN COALESCE(b.pending, 0) > 0 THEN
             (SELECT COUNT(*) FROM deliveries d WHERE d.receiver = s.receiver
                AND d.channel = s.channel AND d.seq > s.acked_seq AND d.seq <= s.sent_seq
                AND d.state IN (0, 1)) ELSE 0 END,
           CASE WHEN COALESCE(b.pending, 0) > 0 THEN
             (SELECT d.queued_at FROM deliveries d WHERE d.receiver = s.receiver
                AND d.channel = s.channel AND d.seq > s.acked_seq AND d.state IN (0, 1)
              ORDER BY d.seq LIMIT 1) END
         FROM streams s
         LEFT JOIN backlog b ON b.receiver = s.receiver AND b.channel = s.channel
         ORDER BY s.receiver, s.channel",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StreamGauge {
                receiver: r.get(0)?,
                channel: r.get(1)?,
                backlog: r.get::<_, i64>(2)?.max(0) as u64,
                in_flight: r.get::<_, i64>(3)?.max(0) as u64,
                oldest_queued_at: r.get(4)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}
