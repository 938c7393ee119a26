//! Publish, pull, settle and message status.

use super::error::from_rejection;
use super::render::render;
use super::{ApiError, AppState};
use crate::groups::Settle;
use crate::names::{Channel, GroupName};
use crate::store;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Request headers with this prefix become message headers.
pub const HEADER_PREFIX: &str = "rmds-header-";

pub(super) use crate::service::{check_reader, Draft};
pub(super) use crate::service::{parse_bounded, parse_duration};

pub(super) fn channel(ch: &str) -> Result<Channel, ApiError> {
    Ok(Channel::new(ch)?)
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

pub(super) fn ttl_of(
    state: &AppState,
    channel: &Channel,
    q: &Option<String>,
) -> Result<Duration, ApiError> {
    state.ttl_of(channel, q.as_deref())
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
    crate::service::check_writer(&state, &channel)?;
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
    let published = state
        .publish(
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
    Ok((published.status(), Json(published.to_json())).into_response())
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

/// `GET /v1/channels/{ch}/messages?group=g&max=n&wait=5s`: long-poll pull.
pub async fn pull(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    query: Result<Query<PullQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let group = GroupName::new(q.group.unwrap_or_else(|| "default".into()))?;
    let wait = match &q.wait {
        Some(w) => parse_duration("wait", w)?,
        None => Duration::ZERO,
    };
    let msgs = state
        .pull(
            &channel,
            crate::service::Pull {
                group: &group,
                consumer: q.consumer.as_deref(),
                max: q.max.unwrap_or(100),
                wait,
            },
        )
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
    let r = state.settle(&channel, &group, &b.ids, how).await?;
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
