//! Management across nodes: kick, kick from a channel, purge, and the audit log.
//! Each command answers per node: who applied it, who failed, who did not answer.

use super::error::from_rejection;
use super::{ApiError, AppState};
use crate::mgmt::command::{Command, PurgeWhat, Scope};
use crate::names::{Channel, NodeId};
use crate::store;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Longest `?wait=` for answers.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// `?wait=` (how long to gather answers, default 3s).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait: Option<String>,
}

fn wait(q: Result<Query<WaitQuery>, QueryRejection>) -> Result<Duration, ApiError> {
    let Query(q) = q.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let Some(w) = q.wait else {
        return Ok(Duration::from_secs(3));
    };
    let d = humantime::parse_duration(&w)
        .map_err(|e| ApiError::bad_request(format!("wait {w:?}: {e}")))?;
    if d > MAX_WAIT {
        return Err(ApiError::bad_request("wait must be at most 60s"));
    }
    Ok(d)
}

fn node(id: String) -> Result<NodeId, ApiError> {
    Ok(NodeId::new(id)?)
}

/// `POST /v1/nodes/{id}/kick`: the node leaves every channel, on every agent.
pub async fn kick(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let node = node(id)?;
    let wait = wait(q)?;
    let out = s.mgmt.issue(Command::Kick { node }, wait).await;
    Ok(Json(json!(out)))
}

/// `POST /v1/nodes/{id}/channels/{ch}/kick`: the node leaves one channel.
pub async fn kick_channel(
    State(s): State<Arc<AppState>>,
    Path((id, ch)): Path<(String, String)>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let node = node(id)?;
    let channel = Channel::new(ch)?;
    let wait = wait(q)?;
    let out = s
        .mgmt
        .issue(Command::KickChannel { node, channel }, wait)
        .await;
    Ok(Json(json!(out)))
}

/// `{"what": "all"|"sent"|"queued", "scope": "self"|"all"|NODE}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    what: PurgeWhat,
    #[serde(default = "self_scope")]
    scope: String,
}

fn self_scope() -> String {
    "self".into()
}

/// `POST /v1/purge`.
pub async fn purge(
    State(s): State<Arc<AppState>>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Json<PurgeBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body.map_err(|e| {
        let mut err = from_rejection(e.status(), e.body_text());
        err.message = format!(
            "{}; expected {{\"what\":\"all\"|\"sent\"|\"queued\",\"scope\":\"self\"|\"all\"|NODE}}",
            err.message
        );
        err
    })?;
    let wait = wait(q)?;
    let scope = match b.scope.as_str() {
        "self" => Scope::SelfOnly,
        "all" => Scope::All,
        other => match node(other.to_string())? {
            n if &n == s.discovery.me() => Scope::SelfOnly,
            n => Scope::Node(n),
        },
    };
    let out = s
        .mgmt
        .issue(
            Command::Purge {
                what: b.what,
                scope,
            },
            wait,
        )
        .await;
    Ok(Json(json!(out)))
}

/// `?limit=` of the audit log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<i64>,
}

/// `GET /v1/audit`: the management commands this node applied, newest first.
pub async fn audit(
    State(s): State<Arc<AppState>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=store::audit::KEEP).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            store::audit::KEEP
        )));
    }
    let rows = s
        .store
        .reads
        .read(move |c| store::audit::list(c, limit))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({"audit": rows})))
}

/// This node's kick record, if it was kicked and has not joined since.
pub async fn kicked(s: &AppState) -> Option<Value> {
    s.service.kicked().await
}
