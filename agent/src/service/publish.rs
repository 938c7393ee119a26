//! Publishing: one message or a batch, validated, stored in one job, then handed to
//! the streams of its receivers.

use super::{Service, ServiceError};
use crate::events::EventKind;
use crate::names::{Channel, NodeId, Role};
use crate::store::{self, now_ms, NewMessage, PublishOutcome};
use crate::wire::FRAME_OVERHEAD;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Receivers named in a `published` event (`receivers_total` counts them all).
const EVENT_RECEIVERS: usize = 16;

/// A message as an application hands it in.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Its content type (`application/json` payloads must be JSON).
    pub content_type: String,
    /// Application headers.
    pub headers: Vec<(String, String)>,
    /// Time to live (see [`Service::ttl_of`]).
    pub ttl: Duration,
    /// Same key, same message: stored once.
    pub idempotency_key: Option<String>,
}

/// What a publish did: stored (or found stored, for a repeated idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Message id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// Reader nodes it will be delivered to.
    pub receivers: Vec<String>,
    /// No reader known yet: kept for readers discovered before it expires.
    pub unrouted: bool,
    /// Older messages dropped to make room (`overflow = drop_oldest`).
    pub dropped: usize,
    /// Same idempotency key as an earlier publish: that message's id, nothing stored.
    pub duplicate: bool,
}

impl Published {
    /// 201 for a stored message, 200 for a duplicate.
    pub fn status(&self) -> StatusCode {
        if self.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        }
    }

    /// The REST and WebSocket answer.
    pub fn to_json(&self) -> Value {
        if self.duplicate {
            json!({"id": self.id, "channel": self.channel, "receivers": self.receivers, "duplicate": true})
        } else {
            json!({"id": self.id, "channel": self.channel, "receivers": self.receivers, "unrouted": self.unrouted, "dropped": self.dropped})
        }
    }
}

/// Deliveries committed by a batch, per receiver, handed to the streams at once.
pub type Enqueue = std::collections::BTreeMap<String, Vec<(u64, Arc<NewMessage>)>>;

/// Checks that this node may publish on `channel`.
pub fn check_writer(s: &Service, channel: &Channel) -> Result<(), ServiceError> {
    match s.discovery.own_role(channel) {
        Some(r) if r.writes() => Ok(()),
        Some(Role::Reader) => Err(ServiceError::forbidden(format!(
            "this node is a reader of {channel}; join as writer or rw to publish"
        ))),
        _ => Err(ServiceError::forbidden(format!(
            "this node is not a member of {channel}; PUT /v1/channels/{channel} with {{\"role\":\"writer\"}} first"
        ))),
    }
}

/// Refuses a publish that would be unrouted when the channel's policy says so.
pub fn check_routable(
    policy: &crate::policy::Effective,
    channel: &Channel,
    receivers: &[String],
) -> Result<(), ServiceError> {
    if receivers.is_empty() && policy.unrouted == crate::policy::Unrouted::Reject {
        return Err(ServiceError::new(
            StatusCode::CONFLICT,
            "no_readers",
            format!("no reader of {channel} is known and its policy refuses unrouted messages; nothing was stored"),
        ));
    }
    Ok(())
}

impl Service {
    /// Largest payload a single message may carry on this cluster.
    fn max_message(&self, content_type: &str, headers: &[(String, String)]) -> usize {
        let framing = crate::wire::body_size_bound(
            26,
            content_type.len(),
            headers.iter().map(|(k, v)| (k.len(), v.len())),
            0,
        );
        self.transport
            .max_payload()
            .saturating_sub(FRAME_OVERHEAD + framing)
    }

    /// Validates a draft and turns it into a message ready to store.
    pub fn prepare(&self, channel: &Channel, d: Draft) -> Result<NewMessage, ServiceError> {
        let headers_json = serde_json::to_string(&d.headers).unwrap_or_else(|_| "[]".into());
        let max = self.max_message(&d.content_type, &d.headers);
        if d.payload.len() > max {
            return Err(ServiceError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "message of {} bytes exceeds the largest deliverable size of {} bytes (NATS max payload {})",
                    d.payload.len(),
                    max,
                    self.transport.max_payload()
                ),
            ));
        }
        if d.content_type.starts_with("application/json")
            && serde_json::from_slice::<serde::de::IgnoredAny>(&d.payload).is_err()
        {
            return Err(ServiceError::bad_request(
                "body is not valid JSON but Content-Type is application/json",
            ));
        }
        if let Err(e) = self.domains.validate(channel, &d.content_type, &d.payload) {
            self.metrics.schema_rejections.inc();
            return Err(ServiceError::new(
                StatusCode::BAD_REQUEST,
                "schema_violation",
                e,
            ));
        }
        let now = now_ms();
        Ok(NewMessage {
            id: crate::store::outbox::message_id(now),
            channel: channel.to_string(),
            created_at: now,
            expires_at: now.saturating_add(d.ttl.as_millis().min(i64::MAX as u128) as i64),
            content_type: d.content_type,
            headers: headers_json,
            payload: d.payload,
            idempotency_key: d.idempotency_key,
        })
    }

    /// The reader nodes of `channel` known now.
    pub fn readers(&self, channel: &Channel) -> Vec<String> {
        self.discovery
            .readers(channel)
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    }

    /// Publishes one message: durable in the store before this returns `Ok`.
    pub async fn publish(&self, channel: &Channel, d: Draft) -> Result<Published, ServiceError> {
        check_writer(self, channel)?;
        let msg = Arc::new(self.prepare(channel, d)?);
        let receivers = self.readers(channel);
        let policy = self.domains.effective(channel);
        check_routable(&policy, channel, &receivers)?;
        let (limit, overflow) = (policy.max_messages_per_receiver, policy.overflow);
        let m = msg.clone();
        let started = std::time::Instant::now();
        let outcome = self
            .store
            .writer
            .run(move |c| store::outbox::publish(c, &m, &receivers, limit, overflow))
            .await?;
        if matches!(outcome, PublishOutcome::Accepted { .. }) {
            self.metrics.publish_commit.observe(started.elapsed());
        }
        self.finish_publish(channel, outcome, msg, None).await
    }

    /// Publishes many messages in one store job (one transaction). Each draft gets
    /// its own result; the call fails as a whole only when nothing could be tried
    /// (not a writer, unroutable, store unavailable).
    pub async fn publish_batch(
        &self,
        channel: &Channel,
        drafts: Vec<Draft>,
    ) -> Result<Vec<Result<Published, ServiceError>>, ServiceError> {
        check_writer(self, channel)?;
        // Each message once, shared by the store job, the answer and the streams.
        let prepared: Vec<Result<Arc<NewMessage>, ServiceError>> = drafts
            .into_iter()
            .map(|d| self.prepare(channel, d).map(Arc::new))
            .collect();
        let msgs: Vec<Arc<NewMessage>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let mut stored = msgs.clone().into_iter();
        let receivers = self.readers(channel);
        let policy = self.domains.effective(channel);
        check_routable(&policy, channel, &receivers)?;
        let (limit, overflow) = (policy.max_messages_per_receiver, policy.overflow);
        let started = std::time::Instant::now();
        let outcomes = self
            .store
            .writer
            .run(move |c| store::outbox::publish_batch(c, &msgs, &receivers, limit, overflow))
            .await?;
        let committed = outcomes
            .iter()
            .filter(|o| matches!(o, PublishOutcome::Accepted { .. }))
            .count();
        self.metrics
            .publish_commit
            .observe_n(started.elapsed(), committed as u64);
        let mut outcomes = outcomes.into_iter();
        let mut results = Vec::with_capacity(prepared.len());
        let mut enqueue = Enqueue::new();
        let mut dropped: std::collections::HashSet<(String, u64)> = Default::default();
        for p in prepared {
            results.push(match p {
                Ok(_) => match (outcomes.next(), stored.next()) {
                    (Some(outcome), Some(msg)) => {
                        if let PublishOutcome::Accepted { dropped: d, .. } = &outcome {
                            dropped.extend(d.iter().map(|(r, _, seq)| (r.clone(), *seq)));
                        }
                        self.finish_publish(channel, outcome, msg, Some(&mut enqueue))
                            .await
                    }
                    _ => Err(ServiceError::unavailable(
                        "store returned fewer results than items",
                    )),
                },
                Err(e) => Err(e),
            });
        }
        // A later item of the batch may have dropped an earlier one (drop_oldest): its
        // stream must not send it from memory.
        if !dropped.is_empty() {
            for (r, items) in enqueue.iter_mut() {
                items.retain(|(seq, _)| !dropped.contains(&(r.clone(), *seq)));
            }
        }
        for (r, items) in enqueue {
            if let Ok(r) = NodeId::new(r) {
                self.delivery.enqueued_many(r, channel.clone(), items).await;
            }
        }
        Ok(results)
    }

    async fn finish_publish(
        &self,
        channel: &Channel,
        outcome: PublishOutcome,
        msg: Arc<NewMessage>,
        mut collect: Option<&mut Enqueue>,
    ) -> Result<Published, ServiceError> {
        match outcome {
            PublishOutcome::Accepted {
                id,
                routes,
                dropped,
                unrouted,
            } => {
                let m = &self.metrics;
                m.published.inc();
                m.pending_messages.inc_by(routes.len() as i64);
                if !dropped.is_empty() {
                    m.dropped.inc_by(dropped.len() as u64);
                    m.pending_messages.dec_by(dropped.len() as i64);
                    for (r, ch, _) in &dropped {
                        if let (Ok(r), Ok(ch)) = (NodeId::new(r.clone()), Channel::new(ch.clone()))
                        {
                            self.delivery.kick(r, ch).await;
                        }
                    }
                }
                // The tap keeps its last events: name a bounded number of receivers, so
                // that its memory does not grow with the number of peers.
                let receivers: Vec<String> = routes.iter().map(|(r, _)| r.clone()).collect();
                let named = &receivers[..receivers.len().min(EVENT_RECEIVERS)];
                m.events.emit(
                    EventKind::Published,
                    Some(channel.as_str()),
                    Some(&id),
                    None,
                    json!({"receivers": named, "receivers_total": receivers.len(), "unrouted": unrouted}),
                );
                for (r, ch, seq) in &dropped {
                    m.events.emit(
                        EventKind::Dropped,
                        Some(ch),
                        None,
                        Some(r),
                        json!({"seq": seq}),
                    );
                }
                if unrouted && !self.readers(channel).is_empty() {
                    // A reader appeared while this publish was being stored.
                    self.delivery.route(channel.clone()).await;
                }
                for (r, seq) in routes {
                    if let Some(batch) = collect.as_deref_mut() {
                        batch.entry(r).or_default().push((seq, msg.clone()));
                        continue;
                    }
                    if let Ok(r) = NodeId::new(r) {
                        self.delivery
                            .enqueued(r, channel.clone(), seq, Some(msg.clone()))
                            .await;
                    }
                }
                Ok(Published {
                    id,
                    channel: channel.to_string(),
                    receivers,
                    unrouted,
                    dropped: dropped.len(),
                    duplicate: false,
                })
            }
            PublishOutcome::Duplicate { id, receivers } => Ok(Published {
                id,
                channel: channel.to_string(),
                receivers,
                unrouted: false,
                dropped: 0,
                duplicate: true,
            }),
            PublishOutcome::Rejected { receiver, pending } => {
                self.metrics.rejected_publishes.inc();
                Err(ServiceError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "backlog_full",
                    format!(
                        "receiver {receiver} already has {pending} undelivered messages (max_messages_per_receiver); nothing was stored, retry later"
                    ),
                ))
            }
        }
    }
}
