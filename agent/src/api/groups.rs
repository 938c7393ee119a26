//! Consumer groups: create, list, inspect, delete, reset (replay), dead letters.

use super::error::from_rejection;
use super::messages::{channel, check_reader, parse_bounded, parse_duration};
use super::{ApiError, AppState};
use crate::groups::Start;
use crate::names::GroupName;
use crate::store::groups::GroupSpec;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Where a group starts: at most one of `start`, `offset`, `time`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// `earliest` (default) or `latest`.
    start: Option<String>,
    /// Start at this offset.
    offset: Option<u64>,
    /// Start at the first entry received at or after this RFC 3339 time.
    time: Option<String>,
}

fn parse_start(b: &StartBody) -> Result<Start, ApiError> {
    let given = b.start.is_some() as u8 + b.offset.is_some() as u8 + b.time.is_some() as u8;
    if given > 1 {
        return Err(ApiError::bad_request(
            "give at most one of start, offset and time",
        ));
    }
    if let Some(o) = b.offset {
        if o == 0 {
            return Err(ApiError::bad_request("offsets start at 1"));
        }
        return Ok(Start::Offset(o));
    }
    if let Some(t) = &b.time {
        let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid time {t:?}: {e} (use RFC 3339, e.g. 2026-11-24T10:00:00Z)"
            ))
        })?;
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        return Ok(Start::Time(ms));
    }
    match b.start.as_deref() {
        None | Some("earliest") => Ok(Start::Earliest),
        Some("latest") => Ok(Start::Latest),
        Some(other) => Err(ApiError::bad_request(format!(
            "start must be \"earliest\" or \"latest\", not {other:?}"
        ))),
    }
}

/// `POST /v1/channels/{ch}/groups` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    #[serde(flatten)]
    start: StartBody,
    ack_wait: Option<String>,
    max_deliveries: Option<u32>,
    max_in_flight: Option<u32>,
    idle_ttl: Option<String>,
    backoff: Option<Vec<String>>,
}

/// `POST /v1/channels/{ch}/groups`: creates a group (409 when it exists).
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let Json(b) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let name = GroupName::new(b.name.clone())?;
    check_reader(&state, &channel)?;
    let start = parse_start(&b.start)?;
    let mut spec: GroupSpec = state.groups.default_spec();
    if let Some(w) = &b.ack_wait {
        let d = parse_duration("ack_wait", w)?;
        if d < Duration::from_millis(100) || d > Duration::from_secs(24 * 3600) {
            return Err(ApiError::bad_request(
                "ack_wait must be between 100ms and 24h",
            ));
        }
        spec.ack_wait_ms = d.as_millis() as u64;
    }
    if let Some(m) = b.max_deliveries {
        spec.max_deliveries = m;
    }
    if let Some(m) = b.max_in_flight {
        spec.max_in_flight = m;
    }
    if let Some(t) = &b.idle_ttl {
        spec.idle_ttl_ms =
            parse_bounded("idle_ttl", t, crate::durations::MAX_LIFETIME)?.as_millis() as u64;
    }
    if let Some(list) = &b.backoff {
        if list.len() > 32 {
            return Err(ApiError::bad_request("backoff has at most 32 steps"));
        }
        spec.backoff_ms = list
            .iter()
            .map(|d| parse_duration("backoff", d).map(|d| d.as_millis() as u64))
            .collect::<Result<_, _>>()?;
        if spec.backoff_ms.iter().any(|&ms| ms > 86_400_000) {
            return Err(ApiError::bad_request("backoff steps must be at most 24h"));
        }
    }
    let info = state.groups.create(&channel, &name, start, spec).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// `GET /v1/channels/{ch}/groups`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let groups = state.groups.list(&channel).await?;
    Ok(Json(json!({"channel": channel, "groups": groups})).into_response())
}

/// `GET /v1/channels/{ch}/groups/{g}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path((ch, g)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    Ok(Json(state.groups.info(&channel, &name).await?).into_response())
}

/// `DELETE /v1/channels/{ch}/groups/{g}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((ch, g)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    state.groups.delete(&channel, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/channels/{ch}/groups/{g}/reset`: moves the position (replay).
pub async fn reset(
    State(state): State<Arc<AppState>>,
    Path((ch, g)): Path<(String, String)>,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    let Json(b) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let start = parse_start(&b)?;
    Ok(Json(state.groups.reset(&channel, &name, start).await?).into_response())
}

/// `?limit=` of list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    limit: Option<usize>,
}

/// `GET /v1/channels/{ch}/groups/{g}/dead-letters`.
pub async fn dead_letters(
    State(state): State<Arc<AppState>>,
    Path((ch, g)): Path<(String, String)>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state.groups.dead_letters(&channel, &name, limit).await?;
    Ok(Json(json!({"channel": channel, "group": name, "dead_letters": rows})).into_response())
}

/// `GET /v1/channels/{ch}/groups/{g}/dead-letters/{id}`: one dead letter with its
/// message.
pub async fn dead_letter(
    State(state): State<Arc<AppState>>,
    Path((ch, g, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    let rows = state
        .groups
        .dead_letters(&channel, &name, usize::MAX)
        .await?;
    let Some(row) = rows.into_iter().find(|r| r.id == id) else {
        return Err(ApiError::not_found(format!(
            "no dead letter {id} in group {name} of {channel}"
        )));
    };
    let (c, o) = (channel.to_string(), row.offset);
    let entry = state
        .store
        .reads
        .read(move |conn| crate::store::groups::read_offsets(conn, &c, &[o]))
        .await?
        .pop();
    let message = entry.map(|e| {
        super::messages::message_json(
            &channel,
            &crate::groups::Leased {
                deliveries: row.deliveries,
                entry: e,
                until: std::time::Instant::now(),
            },
        )
    });
    Ok(Json(json!({"dead_letter": row, "message": message})).into_response())
}

/// `DELETE /v1/channels/{ch}/groups/{g}/dead-letters/{id}`.
pub async fn delete_dead_letter(
    State(state): State<Arc<AppState>>,
    Path((ch, g, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    if state
        .groups
        .delete_dead_letter(&channel, &name, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no dead letter {id} in group {name} of {channel}"
        )))
    }
}

/// `POST /v1/channels/{ch}/groups/{g}/dead-letters/{id}/redrive`: delivers it again,
/// once, to the group.
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Path((ch, g, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let channel = channel(&ch)?;
    let name = GroupName::new(g)?;
    if state.groups.redrive(&channel, &name, &id).await? {
        Ok(Json(json!({"id": id, "group": name, "state": "redriven"})).into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no dead letter {id} in group {name} of {channel}"
        )))
    }
}
