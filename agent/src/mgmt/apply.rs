//! Applying one management command on this node: the kick in the view (or, for the
//! kicked node, leaving), the purge in the outbox; each recorded in the audit log
//! once per command id.

use super::command::{Command, Issued, PurgeWhat};
use super::Mgmt;
use crate::events::EventKind;
use crate::names::{Channel, NodeId};
use crate::store::{self, now_ms};
use serde_json::json;

/// Rows per writer job of a purge, so a large purge never holds the writer long.
const PURGE_CHUNK: i64 = 5_000;

impl Mgmt {
    /// Applies `issued` unless its id was applied before; what was done, in words.
    pub(super) async fn apply(&self, issued: &Issued) -> Result<String, String> {
        let s = &self.inner;
        let id = issued.id.clone();
        if let Ok(Some(done)) = s
            .store
            .reads
            .read(move |c| store::audit::detail(c, &id))
            .await
        {
            return Ok(format!("already applied: {done}"));
        }
        let detail = match &issued.command {
            Command::Kick { node } => self.kick(issued, node, None).await?,
            Command::KickChannel { node, channel } => {
                self.kick(issued, node, Some(channel)).await?
            }
            Command::Purge { what, .. } => self.purge(issued, *what).await?,
        };
        let entry = store::audit::AuditEntry {
            id: issued.id.clone(),
            at: now_ms(),
            issuer: issued.issuer.to_string(),
            kind: issued.command.kind().into(),
            command: serde_json::to_value(&issued.command).unwrap_or_default(),
            detail: detail.clone(),
        };
        s.store
            .writer
            .run(move |c| store::audit::record(c, &entry))
            .await
            .map_err(|e| format!("cannot record the command: {e}"))?;
        s.metrics.mgmt_applied.inc();
        Ok(detail)
    }

    async fn kick(
        &self,
        issued: &Issued,
        node: &NodeId,
        channel: Option<&Channel>,
    ) -> Result<String, String> {
        let s = &self.inner;
        let names = |cs: &[Channel]| {
            if cs.is_empty() {
                "no channel".to_string()
            } else {
                cs.iter()
                    .map(Channel::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        if node == &s.me {
            let left = s
                .discovery
                .kicked_self(channel)
                .await
                .map_err(|e| e.to_string())?;
            let record = json!({
                "command": issued.id, "by": issued.issuer, "at": now_ms(),
                "all": channel.is_none(),
                "channels": channel.map(|c| vec![c.to_string()]).unwrap_or_default(),
            });
            s.store
                .writer
                .run(move |c| {
                    let mut r = record;
                    if let Some(old) = store::audit::kicked(c)? {
                        // Kicks add up until the node joins again.
                        r["all"] = json!(
                            r["all"].as_bool() == Some(true) || old["all"].as_bool() == Some(true)
                        );
                        let mut chans: Vec<serde_json::Value> =
                            old["channels"].as_array().cloned().unwrap_or_default();
                        for ch in r["channels"].as_array().cloned().unwrap_or_default() {
                            if !chans.contains(&ch) {
                                chans.push(ch);
                            }
                        }
                        r["channels"] = json!(chans);
                    }
                    store::audit::set_kicked(c, Some(&r))
                })
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(by = %issued.issuer, channel = ?channel.map(Channel::as_str), "this node was kicked");
            s.metrics.events.emit(
                EventKind::Kicked,
                channel.map(Channel::as_str),
                Some(&issued.id),
                Some(issued.issuer.as_str()),
                json!({"node": node, "left": left, "self": true}),
            );
            return Ok(format!("this node left {}", names(&left)));
        }
        let removed = s
            .discovery
            .kick_peer(node, channel)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(peer = %node, by = %issued.issuer, removed = %names(&removed), "peer kicked");
        s.metrics.events.emit(
            EventKind::Kicked,
            channel.map(Channel::as_str),
            Some(&issued.id),
            Some(node.as_str()),
            json!({"node": node, "removed": removed, "by": issued.issuer}),
        );
        Ok(format!("removed {node} from {}", names(&removed)))
    }

    async fn purge(&self, issued: &Issued, what: PurgeWhat) -> Result<String, String> {
        let s = &self.inner;
        let mut queued = 0u64;
        let mut unrouted = 0u64;
        let mut sent = 0u64;
        if matches!(what, PurgeWhat::Queued | PurgeWhat::All) {
            let reason = format!(
                "purged by management command {} from {}",
                issued.id, issued.issuer
            );
            loop {
                let r = reason.clone();
                let step = s
                    .store
                    .writer
                    .run(move |c| store::outbox::purge_queued(c, &r, now_ms(), PURGE_CHUNK))
                    .await
                    .map_err(|e| e.to_string())?;
                queued += step.deliveries;
                unrouted += step.unrouted;
                for (r, c) in &step.streams {
                    if let (Ok(r), Ok(c)) = (NodeId::new(r.clone()), Channel::new(c.clone())) {
                        // The stream reads its rows again: purged ones go as skips.
                        s.delivery.kick(r, c).await;
                    }
                }
                if !step.more {
                    break;
                }
            }
            s.metrics.purged.inc_by(queued + unrouted);
            s.metrics
                .pending_messages
                .set((s.metrics.pending_messages.get() - queued as i64).max(0));
        }
        if matches!(what, PurgeWhat::Sent | PurgeWhat::All) {
            loop {
                let n = s
                    .store
                    .writer
                    .run(|c| store::outbox::purge_sent(c, PURGE_CHUNK))
                    .await
                    .map_err(|e| e.to_string())?;
                sent += n;
                if n == 0 {
                    break;
                }
            }
        }
        s.metrics.events.emit(
            EventKind::Purged,
            None,
            Some(&issued.id),
            Some(issued.issuer.as_str()),
            json!({"what": what, "queued": queued, "unrouted": unrouted, "sent_records": sent}),
        );
        tracing::warn!(by = %issued.issuer, ?what, queued, unrouted, sent, "outbox purged");
        Ok(format!(
            "purged {queued} undelivered deliveries and {unrouted} unrouted messages; deleted {sent} records of delivered messages"
        ))
    }
}
