//! `/v1/auth/…`: the first user (bootstrap), login and refresh (JWT), and the
//! principals an admin manages: users, API keys and HMAC service accounts. A secret
//! (key, service secret) is returned once, at creation; passwords never.

use super::authn::unauthorized;
use super::error::from_rejection;
use super::{ApiError, AppState};
use crate::auth::{password, token, Grant, Principal, Role};
use crate::store;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Password hashes (argon2id, 19 MiB each) computed at once: a flood of logins waits
/// here rather than taking a blocking thread and 19 MiB each.
static HASHING: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(2)));

/// Runs a password hash or check on a blocking thread, at most two at a time. The
/// permit is held by the blocking closure: a client that disconnects while its hash
/// runs does not let a third one start.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let permit = HASHING.clone().acquire_owned().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .ok()
}

fn body<T>(b: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        let mut err = from_rejection(e.status(), e.body_text());
        err.message = format!("{}; expected {expected}", err.message);
        err
    })
}

fn now_s() -> i64 {
    store::now_ms() / 1000
}

fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", m)
}

/// `{"username","password"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

fn check_user(name: &str, pw: &str) -> Result<(), ApiError> {
    crate::names::NodeId::new(name.to_string())
        .map_err(|_| ApiError::bad_request("username: 1-64 letters, digits, '_' or '-'"))?;
    if pw.chars().count() < password::MIN_LEN {
        return Err(ApiError::bad_request(format!(
            "password must be at least {} characters",
            password::MIN_LEN
        )));
    }
    Ok(())
}

async fn create_user(
    s: &AppState,
    name: String,
    pw: String,
    role: Role,
    grants: Option<Vec<Grant>>,
    only_first: bool,
) -> Result<Response, ApiError> {
    check_user(&name, &pw)?;
    let hash = hashing(move || password::hash(&pw))
        .await
        .ok_or_else(|| ApiError::unavailable("password hashing failed".to_string()))?
        .map_err(ApiError::unavailable)?;
    let row = store::auth::Row {
        kind: "user".into(),
        id: name.clone(),
        name: name.clone(),
        secret: hash,
        role: json!(role).as_str().unwrap_or("reader-only").to_string(),
        grants: grants.map(|g| json!(g)),
        created_at: 0,
    };
    let created = s
        .store
        .writer
        .run(move |c| {
            if only_first && store::auth::users(c)? > 0 {
                return Ok(None);
            }
            store::auth::insert(c, &row).map(Some)
        })
        .await?;
    match created {
        None => Err(conflict(
            "a user exists already: log in (POST /v1/auth/login)",
        )),
        Some(false) => Err(conflict(format!("user {name:?} exists"))),
        Some(true) => Ok((
            StatusCode::CREATED,
            Json(json!({"username": name, "role": role})),
        )
            .into_response()),
    }
}

/// `POST /v1/auth/bootstrap`: the first user, an admin; only while no user exists.
pub async fn bootstrap(
    State(s): State<Arc<AppState>>,
    b: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let c = body(b, r#"{"username","password"}"#)?;
    create_user(&s, c.username, c.password, Role::Admin, None, true).await
}

fn tokens(s: &AppState, user: &str) -> Value {
    let cfg = &s.auth.config;
    let now = now_s();
    let mk = |typ: &str, ttl: u64| {
        token::sign(
            &s.auth.jwt_key,
            &token::Claims {
                sub: user.to_string(),
                typ: typ.into(),
                iat: now,
                exp: now + ttl as i64,
                jti: ulid::Ulid::new().to_string(),
            },
        )
    };
    json!({
        "access_token": mk("access", cfg.token_ttl.as_secs()),
        "token_type": "Bearer",
        "expires_in": cfg.token_ttl.as_secs(),
        "refresh_token": mk("refresh", cfg.refresh_ttl.as_secs()),
        "refresh_expires_in": cfg.refresh_ttl.as_secs(),
    })
}

/// `POST /v1/auth/login`: a JWT access token and a refresh token.
pub async fn login(
    State(s): State<Arc<AppState>>,
    b: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let c = body(b, r#"{"username","password"}"#)?;
    let name = c.username.clone();
    let row = s
        .store
        .reads
        .read(move |conn| store::auth::get(conn, "user", &name))
        .await?;
    let ok = match row {
        Some(r) => {
            let pw = c.password.clone();
            hashing(move || password::verify(&pw, &r.secret))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if !ok {
        s.metrics.auth_logins_failed.inc();
        s.metrics.auth_unauthenticated.inc();
        return Ok(unauthorized("wrong user name or password"));
    }
    Ok(Json(tokens(&s, &c.username)).into_response())
}

/// `{"refresh_token"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

/// `POST /v1/auth/refresh`: new tokens for a valid refresh token of an existing user.
pub async fn refresh(
    State(s): State<Arc<AppState>>,
    b: Result<Json<Refresh>, JsonRejection>,
) -> Result<Response, ApiError> {
    let r = body(b, r#"{"refresh_token"}"#)?;
    let claims = match token::verify(&s.auth.jwt_key, &r.refresh_token, "refresh", now_s()) {
        Ok(c) => c,
        Err(e) => {
            s.metrics.auth_unauthenticated.inc();
            return Ok(unauthorized(e.to_string()));
        }
    };
    let sub = claims.sub.clone();
    let exists = s
        .store
        .reads
        .read(move |c| store::auth::get(c, "user", &sub))
        .await?
        .is_some();
    if !exists {
        s.metrics.auth_unauthenticated.inc();
        return Ok(unauthorized("the token's user no longer exists"));
    }
    Ok(Json(tokens(&s, &claims.sub)).into_response())
}

/// `GET /v1/auth/whoami`.
pub async fn whoami(p: Option<Extension<Principal>>) -> Json<Value> {
    match p {
        Some(Extension(p)) => Json(json!({"principal": p})),
        None => Json(json!({"principal": null, "auth": "disabled"})),
    }
}

/// A new user, key or service account: name, role, grants.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    name: Option<String>,
    username: Option<String>,
    password: Option<String>,
    role: Role,
    grants: Option<Vec<Grant>>,
}

fn check_grants(g: &Option<Vec<Grant>>) -> Result<(), ApiError> {
    for grant in g.iter().flatten() {
        grant.validate().map_err(ApiError::bad_request)?;
    }
    Ok(())
}

/// `POST /v1/auth/users` `{"username","password","role","grants"?}`.
pub async fn add_user(
    State(s): State<Arc<AppState>>,
    b: Result<Json<NewPrincipal>, JsonRejection>,
) -> Result<Response, ApiError> {
    let n = body(b, r#"{"username","password","role","grants"?}"#)?;
    check_grants(&n.grants)?;
    let (Some(u), Some(p)) = (n.username, n.password) else {
        return Err(ApiError::bad_request("username and password are required"));
    };
    create_user(&s, u, p, n.role, n.grants, false).await
}

fn random(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

async fn add_secret(
    s: &AppState,
    kind: &'static str,
    n: NewPrincipal,
) -> Result<Response, ApiError> {
    check_grants(&n.grants)?;
    let name = n.name.unwrap_or_default();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("name: 1 to 128 characters"));
    }
    let id: String = (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let secret = random(32);
    let (stored, shown) = match kind {
        "key" => {
            let key = format!("rmds_{id}.{secret}");
            let digest = crate::auth::hmac_req::hex(&Sha256::digest(key.as_bytes()));
            (digest, json!({"id": id, "key": key}))
        }
        _ => (secret.clone(), json!({"id": id, "secret": secret})),
    };
    let row = store::auth::Row {
        kind: kind.into(),
        id: id.clone(),
        name: name.clone(),
        secret: stored,
        role: json!(n.role).as_str().unwrap_or("reader-only").to_string(),
        grants: n.grants.map(|g| json!(g)),
        created_at: 0,
    };
    s.store
        .writer
        .run(move |c| store::auth::insert(c, &row))
        .await?;
    let mut out = shown;
    out["name"] = json!(name);
    out["role"] = json!(n.role);
    out["note"] = json!("the secret is shown only now");
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `POST /v1/auth/keys` `{"name","role","grants"?}`: the key is in this answer only.
pub async fn add_key(
    State(s): State<Arc<AppState>>,
    b: Result<Json<NewPrincipal>, JsonRejection>,
) -> Result<Response, ApiError> {
    add_secret(&s, "key", body(b, r#"{"name","role","grants"?}"#)?).await
}

/// `POST /v1/auth/service-accounts` `{"name","role","grants"?}`: the HMAC secret is
/// in this answer only.
pub async fn add_service(
    State(s): State<Arc<AppState>>,
    b: Result<Json<NewPrincipal>, JsonRejection>,
) -> Result<Response, ApiError> {
    add_secret(&s, "service", body(b, r#"{"name","role","grants"?}"#)?).await
}

async fn list(s: &AppState, kind: &'static str) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store
        .reads
        .read(move |c| store::auth::list(c, kind))
        .await?;
    Ok(Json(json!({ "principals": rows })))
}

async fn remove(s: &AppState, kind: &'static str, id: String) -> Result<Response, ApiError> {
    let what = id.clone();
    let gone = s
        .store
        .writer
        .run(move |c| store::auth::delete(c, kind, &id))
        .await?;
    if gone {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no {kind} {what:?}")))
    }
}

/// `GET /v1/auth/users`.
pub async fn users(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    list(&s, "user").await
}
/// `GET /v1/auth/keys`.
pub async fn keys(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    list(&s, "key").await
}
/// `GET /v1/auth/service-accounts`.
pub async fn services(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    list(&s, "service").await
}
/// `DELETE /v1/auth/users/{id}`.
pub async fn delete_user(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    remove(&s, "user", id).await
}
/// `DELETE /v1/auth/keys/{id}`.
pub async fn delete_key(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    remove(&s, "key", id).await
}
/// `DELETE /v1/auth/service-accounts/{id}`.
pub async fn delete_service(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    remove(&s, "service", id).await
}
