//! A stream's terminal moves: dead-lettering the head after its attempts, and
//! committing expired or oversize rows before their skips go out.

use super::StreamTask;
use crate::delivery::window::Window;
use crate::events::EventKind;
use crate::store::{self, now_ms, DeliveryState};

impl StreamTask {
    pub(super) async fn dead_letter_head(&mut self, window: &Window, attempts: u32, reason: &str) {
        let (r, c) = (self.receiver.to_string(), self.channel.to_string());
        let from = window.acked() + 1;
        let to = window.last_seq();
        let history = self.history.clone();
        let why = reason.to_string();
        let res = self
            .shared
            .store
            .writer
            .run(move |conn| {
                let rows = store::outbox::window(conn, &r, &c, from, to.min(from + 1024))?;
                for row in rows {
                    if row.state.pending() {
                        let h = serde_json::to_string(&history.history(row.seq))
                            .unwrap_or_else(|_| "[]".into());
                        store::outbox::dead_letter(conn, &r, &c, row.seq, &why, attempts, &h)?;
                        return Ok(Some((row.seq, row.id)));
                    }
                }
                Ok(None)
            })
            .await;
        match res {
            Ok(Some((seq, id))) => {
                if let Some(old) = self.fresh.remove(&seq) {
                    self.fresh_bytes -= old.payload.len();
                }
                self.shared.metrics.dead_lettered.inc();
                self.shared.metrics.pending_messages.dec();
                self.shared.metrics.events.emit(
                    EventKind::DeadLettered,
                    Some(self.channel.as_str()),
                    Some(&id),
                    Some(self.receiver.as_str()),
                    serde_json::json!({"seq": seq, "attempts": attempts, "reason": reason}),
                );
                tracing::warn!(peer = %self.receiver, channel = %self.channel, seq, msg = %id, attempts, "dead-lettered");
            }
            Ok(None) => {}
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot dead-letter");
            }
        }
    }

    /// Commits the end state of rows; false when the store refused.
    pub(super) async fn finish_rows(
        &self,
        seqs: &[u64],
        state: DeliveryState,
        reason: &'static str,
    ) -> bool {
        if seqs.is_empty() {
            return true;
        }
        let (r, c, seqs) = (
            self.receiver.to_string(),
            self.channel.to_string(),
            seqs.to_vec(),
        );
        let seqs_copy = seqs.clone();
        let res = self
            .shared
            .store
            .writer
            .run(move |conn| {
                let mut n = 0u64;
                for seq in seqs {
                    let done = if state == DeliveryState::Dead {
                        store::outbox::dead_letter(conn, &r, &c, seq, reason, 1, "[]")?
                    } else {
                        store::outbox::finish(conn, &r, &c, seq, state, reason, now_ms())?
                    };
                    n += done as u64;
                }
                Ok(n)
            })
            .await;
        match res {
            Ok(n) => {
                let m = &self.shared.metrics;
                m.events.emit(
                    if state == DeliveryState::Dead {
                        EventKind::DeadLettered
                    } else {
                        EventKind::Expired
                    },
                    Some(self.channel.as_str()),
                    None,
                    Some(self.receiver.as_str()),
                    serde_json::json!({"seqs": seqs_copy, "reason": reason}),
                );
                if state == DeliveryState::Dead {
                    m.dead_lettered.inc_by(n);
                    tracing::warn!(peer = %self.receiver, channel = %self.channel, count = n, "dead-lettered oversize messages");
                } else {
                    m.expired.inc_by(n);
                }
                m.pending_messages.dec_by(n as i64);
                true
            }
            Err(e) => {
                self.shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot finish rows");
                false
            }
        }
    }
}
