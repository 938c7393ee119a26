//! Domains (namespaces with a schema and a default policy) and channel policies.

use super::error::from_rejection;
use super::messages::{self, channel as parse_channel};
use super::{ApiError, AppState};
use crate::domains::{DomainError, DomainSpec, DEFAULT_DOMAIN};
use crate::names::{Channel, DomainName, Role};
use crate::policy::Policy;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        match e {
            DomainError::Store(e) => e.into(),
            DomainError::NotFound(_) => ApiError::not_found(e.to_string()),
            DomainError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            DomainError::Invalid(m) => ApiError::bad_request(m),
        }
    }
}

fn domain(d: &str) -> Result<DomainName, ApiError> {
    Ok(DomainName::new(d)?)
}

/// `POST /v1/domains` `{"name","schema","policy"}`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    body: Result<Json<DomainSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(spec) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let name = domain(&spec.name)?;
    state.domains.create(spec).await?;
    Ok((StatusCode::CREATED, Json(state.domains.get(name.as_str()))).into_response())
}

/// `GET /v1/domains`.
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = state
        .domains
        .names()
        .iter()
        .filter_map(|n| state.domains.get(n))
        .collect();
    Json(json!({"domains": list}))
}

/// `GET /v1/domains/{d}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(d): Path<String>,
) -> Result<Response, ApiError> {
    let name = domain(&d)?;
    state
        .domains
        .get(name.as_str())
        .map(|v| Json(v).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no domain {name}")))
}

/// `PUT /v1/domains/{d}` `{"schema","policy"}`: replaces both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceBody {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    policy: Policy,
}

/// `PUT /v1/domains/{d}`.
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Path(d): Path<String>,
    body: Result<Json<ReplaceBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let name = domain(&d)?;
    let Json(b) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    state
        .domains
        .replace(DomainSpec {
            name: name.to_string(),
            schema: b.schema,
            policy: b.policy,
        })
        .await?;
    Ok(Json(state.domains.get(name.as_str())).into_response())
}

/// `DELETE /v1/domains/{d}`: its channels go back to `default`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(d): Path<String>,
) -> Result<Response, ApiError> {
    let name = domain(&d)?;
    if name.as_str() == DEFAULT_DOMAIN {
        return Err(ApiError::bad_request(
            "the default domain cannot be deleted",
        ));
    }
    state.domains.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/domains/{d}/channels/{ch}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceBody {
    role: Option<Role>,
    #[serde(default)]
    policy: Option<Policy>,
}

/// `PUT /v1/domains/{d}/channels/{ch}` `{"role","policy"}`: places the channel in the
/// domain (and joins it when a role is given).
pub async fn place(
    State(state): State<Arc<AppState>>,
    Path((d, ch)): Path<(String, String)>,
    body: Result<Json<PlaceBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let name = domain(&d)?;
    let channel = parse_channel(&ch)?;
    let Json(b) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    if !state.domains.exists(name.as_str()) {
        return Err(ApiError::not_found(format!("no domain {name}")));
    }
    let policy = b
        .policy
        .unwrap_or_else(|| state.domains.channel_policy(&channel));
    state
        .domains
        .set_channel(&channel, Some(&name), policy)
        .await?;
    if let Some(role) = b.role {
        state
            .discovery
            .join(channel.clone(), role)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
    }
    Ok(Json(channel_view(&state, &channel)).into_response())
}

fn channel_view(state: &AppState, channel: &Channel) -> Value {
    json!({
        "channel": channel,
        "domain": state.domains.domain_of(channel),
        "role": state.discovery.own_role(channel),
        "policy": state.domains.channel_policy(channel),
        "effective": state.domains.effective(channel),
    })
}

fn in_domain(state: &AppState, d: &str, ch: &str) -> Result<Channel, ApiError> {
    let name = domain(d)?;
    let channel = parse_channel(ch)?;
    if !state.domains.exists(name.as_str()) {
        return Err(ApiError::not_found(format!("no domain {name}")));
    }
    if state.domains.domain_of(&channel) != name.as_str() {
        return Err(ApiError::not_found(format!(
            "channel {channel} is not in domain {name}; PUT /v1/domains/{name}/channels/{channel} first"
        )));
    }
    Ok(channel)
}

/// `GET /v1/domains/{d}/channels/{ch}`.
pub async fn get_channel(
    State(state): State<Arc<AppState>>,
    Path((d, ch)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let channel = in_domain(&state, &d, &ch)?;
    Ok(Json(channel_view(&state, &channel)).into_response())
}

/// `POST /v1/domains/{d}/channels/{ch}/messages`: publish within the domain.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Path((d, ch)): Path<(String, String)>,
    query: Result<Query<messages::PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = in_domain(&state, &d, &ch)?;
    messages::publish(
        State(state),
        Path(channel.to_string()),
        query,
        headers,
        body,
    )
    .await
}

/// `POST /v1/domains/{d}/channels/{ch}/messages:batch`.
pub async fn publish_batch(
    State(state): State<Arc<AppState>>,
    Path((d, ch)): Path<(String, String)>,
    query: Result<Query<messages::PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let channel = in_domain(&state, &d, &ch)?;
    messages::publish_batch(
        State(state),
        Path(channel.to_string()),
        query,
        headers,
        body,
    )
    .await
}

/// `GET /v1/domains/{d}/channels/{ch}/messages`: pull within the domain.
pub async fn pull(
    State(state): State<Arc<AppState>>,
    Path((d, ch)): Path<(String, String)>,
    query: Result<Query<messages::PullQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = in_domain(&state, &d, &ch)?;
    messages::pull(State(state), Path(channel.to_string()), query).await
}

/// `GET /v1/channels/{ch}/policy`: the channel's own policy, its domain, and the
/// effective policy.
pub async fn get_policy(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
) -> Result<Response, ApiError> {
    let channel = parse_channel(&ch)?;
    Ok(Json(channel_view(&state, &channel)).into_response())
}

/// `PUT /v1/channels/{ch}/policy` (a policy object): sets the channel's own policy.
pub async fn put_policy(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    body: Result<Json<Policy>, JsonRejection>,
) -> Result<Response, ApiError> {
    let channel = parse_channel(&ch)?;
    let Json(policy) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let domain = state.domains.domain_of(&channel);
    let domain = (domain != DEFAULT_DOMAIN)
        .then(|| DomainName::new(domain))
        .transpose()?;
    state
        .domains
        .set_channel(&channel, domain.as_ref(), policy)
        .await?;
    Ok(Json(channel_view(&state, &channel)).into_response())
}
