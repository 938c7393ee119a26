//! Sender-side dead letters: deliveries given up after `max_retry_attempts` or refused
//! as too large; list, inspect, delete, redrive.

use super::error::from_rejection;
use super::{ApiError, AppState};
use crate::names::{Channel, NodeId};
use crate::store::now_ms;
use crate::store::outbox::{self, Redrive};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Filters of the dead-letter list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    channel: Option<String>,
    receiver: Option<String>,
    limit: Option<usize>,
}

/// `?receiver=` of the per-message calls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverQuery {
    receiver: Option<String>,
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request("message id must be a ULID"));
    }
    Ok(())
}

fn receiver(q: Option<String>) -> Result<Option<String>, ApiError> {
    q.map(|r| NodeId::new(r).map(|n| n.to_string()))
        .transpose()
        .map_err(ApiError::from)
}

/// `GET /v1/dead-letters?channel=&receiver=&limit=`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let channel = q
        .channel
        .map(|c| Channel::new(c).map(|c| c.to_string()))
        .transpose()?;
    let receiver = receiver(q.receiver)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state
        .store
        .reads
        .read(move |c| outbox::list_dead(c, None, channel.as_deref(), receiver.as_deref(), limit))
        .await?;
    Ok(Json(json!({"dead_letters": rows})).into_response())
}

/// `GET /v1/dead-letters/{id}`: a message's dead letters with the message status.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let i = id.clone();
    let (rows, status) = state
        .store
        .reads
        .read(move |c| {
            Ok((
                outbox::list_dead(c, Some(&i), None, None, 10_000)?,
                outbox::status(c, &i)?,
            ))
        })
        .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no dead letter for message {id}"
        )));
    }
    Ok(Json(json!({"id": id, "dead_letters": rows, "message": status})).into_response())
}

/// `DELETE /v1/dead-letters/{id}?receiver=`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ReceiverQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let receiver = receiver(q.receiver)?;
    let i = id.clone();
    let n = state
        .store
        .writer
        .run(move |c| outbox::delete_dead(c, &i, receiver.as_deref()))
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!(
            "no dead letter for message {id}"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/dead-letters/{id}/redrive?receiver=`: queues the message again for the
/// receivers it did not reach (each gets it once more, at the end of its stream).
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ReceiverQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let receiver = receiver(q.receiver)?;
    let i = id.clone();
    let r = state
        .store
        .writer
        .run(move |c| outbox::redrive_dead(c, &i, receiver.as_deref(), now_ms()))
        .await?;
    match r {
        Redrive::NotFound => Err(ApiError::not_found(format!(
            "no dead letter for message {id}"
        ))),
        Redrive::Expired => Err(ApiError::new(
            StatusCode::CONFLICT,
            "expired",
            format!("message {id} has expired; it cannot be sent again"),
        )),
        Redrive::Queued(routes) => {
            state.metrics.pending_messages.inc_by(routes.len() as i64);
            let mut receivers = Vec::with_capacity(routes.len());
            for (r, c, seq) in routes {
                if let (Ok(r), Ok(c)) = (NodeId::new(r), Channel::new(c)) {
                    receivers.push(r.to_string());
                    state.delivery.enqueued(r, c, seq, None).await;
                }
            }
            Ok(Json(json!({"id": id, "receivers": receivers, "state": "queued"})).into_response())
        }
    }
}
