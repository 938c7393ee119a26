//! Publish, pull, settle and message status.

use super::error::from_rejection;
use super::render::render;
use super::{ApiError, AppState};
use crate::events::EventKind;
use crate::groups::Settle;
use crate::names::{Channel, GroupName, NodeId, Role};
use crate::store::{self, now_ms, NewMessage, PublishOutcome};
use crate::wire::FRAME_OVERHEAD;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Request headers with this prefix become message headers.
pub const HEADER_PREFIX: &str = "rmds-header-";

pub(super) fn parse_duration(key: &str, v: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(v).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid {key} {v:?}: {e} (use e.g. \"30s\", \"5m\")"
        ))
    })
}

/// Parses a duration and refuses one past `max` (see `durations.rs`), naming `key`.
pub(super) fn parse_bounded(key: &str, v: &str, max: Duration) -> Result<Duration, ApiError> {
    let d = parse_duration(key, v)?;
    crate::durations::check(key, d, max).map_err(ApiError::bad_request)?;
    Ok(d)
}

pub(super) fn channel(ch: &str) -> Result<Channel, ApiError> {
    Ok(Channel::new(ch)?)
}

/// Checks that this node may publish on `channel`.
pub(super) fn check_writer(state: &AppState, channel: &Channel) -> Result<(), ApiError> {
    match state.discovery.own_role(channel) {
        Some(r) if r.writes() => Ok(()),
        Some(Role::Reader) => Err(ApiError::forbidden(format!(
            "this node is a reader of {channel}; join as writer or rw to publish"
        ))),
        _ => Err(ApiError::forbidden(format!(
            "this node is not a member of {channel}; PUT /v1/channels/{channel} with {{\"role\":\"writer\"}} first"
        ))),
    }
}

/// Largest payload a single message may carry on this cluster.
fn max_message(state: &AppState, content_type: &str, headers: &[(String, String)]) -> usize {
    let framing = crate::wire::body_size_bound(
        26,
        content_type.len(),
        headers.iter().map(|(k, v)| (k.len(), v.len())),
        0,
    );
    state
        .transport
        .max_payload()
        .saturating_sub(FRAME_OVERHEAD + framing)
}

pub(super) struct Draft {
    pub payload: Vec<u8>,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub ttl: Duration,
    pub idempotency_key: Option<String>,
}

/// Validates a draft and turns it into a message ready to store.
pub(super) fn prepare(
    state: &AppState,
    channel: &Channel,
    d: Draft,
) -> Result<NewMessage, ApiError> {
    let headers_json = serde_json::to_string(&d.headers).unwrap_or_else(|_| "[]".into());
    let max = max_message(state, &d.content_type, &d.headers);
    if d.payload.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "message of {} bytes exceeds the largest deliverable size of {} bytes (NATS max payload {})",
                d.payload.len(),
                max,
                state.transport.max_payload()
            ),
        ));
    }
    if d.content_type.starts_with("application/json")
        && serde_json::from_slice::<serde::de::IgnoredAny>(&d.payload).is_err()
    {
        return Err(ApiError::bad_request(
            "body is not valid JSON but Content-Type is application/json",
        ));
    }
    if let Err(e) = state.domains.validate(channel, &d.content_type, &d.payload) {
        state.metrics.schema_rejections.inc();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            e,
        ));
    }
    let now = now_ms();
    Ok(NewMessage {
        id: ulid::Ulid::new().to_string(),
        channel: channel.to_string(),
        created_at: now,
        expires_at: now.saturating_add(d.ttl.as_millis().min(i64::MAX as u128) as i64),
        content_type: d.content_type,
        headers: headers_json,
        payload: d.payload,
        idempotency_key: d.idempotency_key,
    })
}

pub(super) fn readers(state: &AppState, channel: &Channel) -> Vec<String> {
    state
        .discovery
        .readers(channel)
        .into_iter()
        .map(|n| n.to_string())
        .collect()
}

/// The result of one publish, as JSON, with its status.
pub(super) async fn publish_one(
    state: &AppState,
    channel: &Channel,
    d: Draft,
) -> Result<(StatusCode, Value), ApiError> {
    let msg = Arc::new(prepare(state, channel, d)?);
    let receivers = readers(state, channel);
    let policy = state.domains.effective(channel);
    check_routable(&policy, channel, &receivers)?;
    let (limit, overflow) = (policy.max_messages_per_receiver, policy.overflow);
    let m = msg.clone();
    let started = std::time::Instant::now();
    let outcome = state
        .store
        .writer
        .run(move |c| store::outbox::publish(c, &m, &receivers, limit, overflow))
        .await?;
    if matches!(outcome, PublishOutcome::Accepted { .. }) {
        state.metrics.publish_commit.observe(started.elapsed());
    }
    finish_publish(state, channel, outcome, msg, None).await
}

/// Deliveries committed by a batch, per receiver, handed to the streams at once.
pub(super) type Enqueue = std::collections::BTreeMap<String, Vec<(u64, Arc<NewMessage>)>>;

pub(super) async fn finish_publish(
    state: &AppState,
    channel: &Channel,
    outcome: PublishOutcome,
    msg: Arc<NewMessage>,
    mut collect: Option<&mut Enqueue>,
) -> Result<(StatusCode, Value), ApiError> {
    match outcome {
        PublishOutcome::Accepted {
            id,
            routes,
            dropped,
            unrouted,
        } => {
            let m = &state.metrics;
            m.published.inc();
            m.pending_messages.inc_by(routes.len() as i64);
            if !dropped.is_empty() {
                m.dropped.inc_by(dropped.len() as u64);
                m.pending_messages.dec_by(dropped.len() as i64);
                for (r, ch, _) in &dropped {
                    if let (Ok(r), Ok(ch)) = (NodeId::new(r.clone()), Channel::new(ch.clone())) {
                        state.delivery.kick(r, ch).await;
                    }
                }
            }
            let receivers: Vec<String> = routes.iter().map(|(r, _)| r.clone()).collect();
            m.events.emit(
                EventKind::Published,
                Some(channel.as_str()),
                Some(&id),
                None,
                json!({"receivers": receivers, "unrouted": unrouted}),
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
            if unrouted && !readers(state, channel).is_empty() {
                // A reader appeared while this publish was being stored.
                state.delivery.route(channel.clone()).await;
            }
            for (r, seq) in routes {
                if let Some(batch) = collect.as_deref_mut() {
                    batch.entry(r).or_default().push((seq, msg.clone()));
                    continue;
                }
                if let Ok(r) = NodeId::new(r) {
                    state
                        .delivery
                        .enqueued(r, channel.clone(), seq, Some(msg.clone()))
                        .await;
                }
            }
            Ok((
                StatusCode::CREATED,
                json!({"id": id, "channel": channel, "receivers": receivers, "unrouted": unrouted, "dropped": dropped.len()}),
            ))
        }
        PublishOutcome::Duplicate { id, receivers } => Ok((
            StatusCode::OK,
            json!({"id": id, "channel": channel, "receivers": receivers, "duplicate": true}),
        )),
        PublishOutcome::Rejected { receiver, pending } => {
            state.metrics.rejected_publishes.inc();
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "backlog_full",
                format!(
                    "receiver {receiver} already has {pending} undelivered messages (max_messages_per_receiver); nothing was stored, retry later"
                ),
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PublishQuery {
    pub(super) ttl: Option<String>,
}

fn message_headers(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix(HEADER_PREFIX)?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect()
}

/// Refuses a publish that would be unrouted when the channel's policy says so.
pub(super) fn check_routable(
    policy: &crate::policy::Effective,
    channel: &Channel,
    receivers: &[String],
) -> Result<(), ApiError> {
    if receivers.is_empty() && policy.unrouted == crate::policy::Unrouted::Reject {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_readers",
            format!("no reader of {channel} is known and its policy refuses unrouted messages; nothing was stored"),
        ));
    }
    Ok(())
}

pub(super) fn ttl_of(
    state: &AppState,
    channel: &Channel,
    q: &Option<String>,
) -> Result<Duration, ApiError> {
    match q {
        Some(v) => {
            let d = parse_bounded("ttl", v, crate::durations::MAX_LIFETIME)?;
            if d.is_zero() {
                return Err(ApiError::bad_request("ttl must be greater than zero"));
            }
            Ok(d)
        }
        None => Ok(state.domains.effective(channel).ttl),
    }
}

/// `POST /v1/channels/{ch}/messages`: the body is the payload.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    query: Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let body = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    check_writer(&state, &channel)?;
    let ttl = ttl_of(&state, &channel, &q.ttl)?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let (status, v) = publish_one(
        &state,
        &channel,
        Draft {
            payload: body.to_vec(),
            content_type,
            headers: message_headers(&headers),
            ttl,
            idempotency_key,
        },
    )
    .await?;
    Ok((status, Json(v)).into_response())
}

pub use super::batch::publish_batch;

#[derive(Debug, Deserialize)]
pub struct PullQuery {
    group: Option<String>,
    consumer: Option<String>,
    max: Option<usize>,
    wait: Option<String>,
}

pub use super::render::message_json;

pub(super) fn check_reader(state: &AppState, channel: &Channel) -> Result<(), ApiError> {
    match state.discovery.own_role(channel) {
        Some(r) if r.reads() => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "this node is not a reader of {channel}; PUT /v1/channels/{channel} with {{\"role\":\"reader\"}} first"
        ))),
    }
}

/// `GET /v1/channels/{ch}/messages?group=g&max=n&wait=5s`: long-poll pull.
pub async fn pull(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    query: Result<Query<PullQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let group = GroupName::new(q.group.unwrap_or_else(|| "default".into()))?;
    check_reader(&state, &channel)?;
    let max = q.max.unwrap_or(100);
    if max == 0 || max > state.groups.max_batch() {
        return Err(ApiError::bad_request(format!(
            "max must be between 1 and {}",
            state.groups.max_batch()
        )));
    }
    let wait = match &q.wait {
        Some(w) => parse_duration("wait", w)?,
        None => Duration::ZERO,
    };
    if wait > state.groups.max_wait() {
        return Err(ApiError::bad_request(format!(
            "wait must be at most {}",
            humantime::format_duration(state.groups.max_wait())
        )));
    }
    if let Some(c) = &q.consumer {
        if c.is_empty() || c.len() > 64 || c.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_request(
                "consumer must be 1-64 printable characters",
            ));
        }
    }
    let msgs = state
        .groups
        .pull(&channel, &group, q.consumer.as_deref(), max, wait)
        .await?;
    Ok(Json(super::render::Pulled {
        group: &group,
        messages: msgs.iter().map(|l| render(&channel, l)).collect(),
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleBody {
    group: Option<String>,
    ids: Vec<String>,
    delay: Option<String>,
    error: Option<String>,
}

async fn settle(
    state: Arc<AppState>,
    ch: String,
    body: Result<Json<SettleBody>, JsonRejection>,
    kind: &str,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let Json(b) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let group = GroupName::new(b.group.unwrap_or_else(|| "default".into()))?;
    check_reader(&state, &channel)?;
    if b.ids.is_empty() {
        return Err(ApiError::bad_request("ids must not be empty"));
    }
    if b.ids.len() > 10_000 {
        return Err(ApiError::bad_request("at most 10000 ids per request"));
    }
    if kind != "nack" && (b.delay.is_some() || b.error.is_some()) {
        return Err(ApiError::bad_request("delay and error apply to nacks only"));
    }
    let how = match kind {
        "ack" => Settle::Ack,
        "term" => Settle::Term,
        "extend" => Settle::Extend,
        _ => Settle::Nack(
            match &b.delay {
                Some(d) => parse_bounded("delay", d, crate::durations::MAX_NACK_DELAY)?,
                None => Duration::ZERO,
            },
            b.error.map(|e| e.chars().take(1024).collect()),
        ),
    };
    let r = state.groups.settle(&channel, &group, &b.ids, how).await?;
    Ok(
        Json(json!({"group": group, "applied": r.applied, "not_found": r.not_found}))
            .into_response(),
    )
}

/// `POST /v1/channels/{ch}/acks`.
pub async fn ack(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<SettleBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    settle(state, ch, body, "ack").await
}

/// `POST /v1/channels/{ch}/nacks` (optional `delay`).
pub async fn nack(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<SettleBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    settle(state, ch, body, "nack").await
}

/// `POST /v1/channels/{ch}/terms`.
pub async fn term(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<SettleBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    settle(state, ch, body, "term").await
}

/// `POST /v1/channels/{ch}/extends`: leases run for another `ack_wait`.
pub async fn extend(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<SettleBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    settle(state, ch, body, "extend").await
}

/// `GET /v1/messages/{id}`: per-receiver status at the sender.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request("message id must be a ULID"));
    }
    let id2 = id.clone();
    let st = state
        .store
        .reads
        .read(move |c| store::outbox::status(c, &id2))
        .await?;
    match st {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(ApiError::not_found(format!(
            "no message {id} was published from this node"
        ))),
    }
}
