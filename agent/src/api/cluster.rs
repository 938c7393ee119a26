//! Memberships, peers and topology (health: `health.rs`; stats and metrics: `observe.rs`).

use super::error::from_rejection;
use super::{ApiError, AppState};
use crate::names::{Channel, Role};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    role: Role,
}

/// `PUT /v1/channels/{ch}` `{"role": "reader"|"writer"|"rw"}`: join (idempotent).
pub async fn join(
    State(s): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let channel = Channel::new(ch)?;
    let Json(b) = body.map_err(|e| {
        let mut err = from_rejection(e.status(), e.body_text());
        err.message = format!(
            "{}; expected {{\"role\":\"reader\"|\"writer\"|\"rw\"}}",
            err.message
        );
        err
    })?;
    let changed = s.join(&channel, b.role).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"channel": channel, "role": b.role, "changed": changed})),
    )
        .into_response())
}

/// `DELETE /v1/channels/{ch}`: leave.
pub async fn leave(
    State(s): State<Arc<AppState>>,
    Path(ch): Path<String>,
) -> Result<Response, ApiError> {
    let channel = Channel::new(ch)?;
    s.leave(&channel).await?;
    Ok(Json(json!({"channel": channel, "left": true})).into_response())
}

fn members(s: &AppState) -> BTreeMap<String, Vec<Value>> {
    let mut by_channel: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (c, r) in s.discovery.own_memberships() {
        by_channel
            .entry(c.to_string())
            .or_default()
            .push(json!({"node": s.discovery.me(), "role": r, "online": true, "self": true}));
    }
    for p in s.discovery.peers() {
        for (c, r) in &p.memberships {
            by_channel
                .entry(c.clone())
                .or_default()
                .push(json!({"node": p.node_id, "role": r, "online": p.online, "self": false}));
        }
    }
    by_channel
}

/// `GET /v1/channels`: every channel this node knows of.
pub async fn channels(State(s): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = members(&s)
        .into_iter()
        .map(|(c, ms)| {
            let own = ms
                .iter()
                .find(|m| m["self"] == true)
                .map(|m| m["role"].clone());
            let readers = ms.iter().filter(|m| m["role"] != "writer").count();
            let writers = ms.iter().filter(|m| m["role"] != "reader").count();
            json!({"channel": c, "role": own, "readers": readers, "writers": writers})
        })
        .collect();
    Json(json!({"channels": list}))
}

/// `GET /v1/channels/{ch}`.
pub async fn channel(
    State(s): State<Arc<AppState>>,
    Path(ch): Path<String>,
) -> Result<Response, ApiError> {
    let channel = Channel::new(ch)?;
    let ms = members(&s).remove(channel.as_str()).unwrap_or_default();
    if ms.is_empty() {
        return Err(ApiError::not_found(format!(
            "no node is known to be a member of {channel}"
        )));
    }
    let own = s.discovery.own_role(&channel);
    Ok(Json(json!({"channel": channel, "role": own, "members": ms})).into_response())
}

/// `GET /v1/channels/{ch}/subscribers`.
pub async fn subscribers(
    State(s): State<Arc<AppState>>,
    Path(ch): Path<String>,
) -> Result<Response, ApiError> {
    let channel = Channel::new(ch)?;
    let ms = members(&s).remove(channel.as_str()).unwrap_or_default();
    Ok(Json(json!({"channel": channel, "subscribers": ms})).into_response())
}

/// `GET /v1/nodes`.
pub async fn nodes(State(s): State<Arc<AppState>>) -> Json<Value> {
    let me = json!({
        "node_id": s.discovery.me(),
        "online": true,
        "self": true,
        "epoch": s.store.epoch,
        "nats": s.transport.is_connected(),
        "kicked": super::mgmt::kicked(&s).await,
        "memberships": s.discovery.own_memberships().into_iter().map(|(c, r)| (c.to_string(), json!(r))).collect::<serde_json::Map<_, _>>(),
    });
    let mut nodes = vec![me];
    for p in s.discovery.peers() {
        let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
        v["self"] = json!(false);
        nodes.push(v);
    }
    Json(json!({"nodes": nodes}))
}

/// `GET /v1/topology`: channels with their readers and writers, and node liveness.
pub async fn topology(State(s): State<Arc<AppState>>) -> Json<Value> {
    let mut channels = serde_json::Map::new();
    for (c, ms) in members(&s) {
        let pick = |f: &dyn Fn(&str) -> bool| -> Vec<Value> {
            ms.iter()
                .filter(|m| f(m["role"].as_str().unwrap_or("")))
                .map(|m| m["node"].clone())
                .collect()
        };
        channels.insert(
            c,
            json!({
                "readers": pick(&|r| r != "writer"),
                "writers": pick(&|r| r != "reader"),
            }),
        );
    }
    let mut nodes = serde_json::Map::new();
    nodes.insert(
        s.discovery.me().to_string(),
        json!({"online": true, "self": true}),
    );
    for p in s.discovery.peers() {
        nodes.insert(
            p.node_id.clone(),
            json!({"online": p.online, "self": false}),
        );
    }
    Json(json!({"node_id": s.discovery.me(), "nodes": nodes, "channels": channels}))
}
