//! Authentication and authorisation of every request, when `api.auth.enabled`:
//! who is asking (API key, JWT access token, HMAC-signed request of a service
//! account, or the operator's admin key) and whether the route's access
//! ([`crate::auth::route_access`], keyed by the route table's path patterns) allows
//! it on the channel the path names. 401 without valid credentials (expired token,
//! replayed or stale signature included), 403 for a principal without the right;
//! every refusal is counted. The principal travels on to the handlers (the WebSocket
//! checks each publish and subscribe against it).

use super::{ApiError, AppState};
use crate::auth::{self, hmac_req, token, Action, Grant, Principal, Role};
use crate::config::AuthConfig;
use crate::store;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What authentication needs at hand.
pub struct AuthCtx {
    /// The settings.
    pub config: AuthConfig,
    /// JWT signing key of this node.
    pub jwt_key: Vec<u8>,
    /// Nonces of signed requests seen within the window.
    pub nonces: hmac_req::Nonces,
    /// SHA-256 of the operator's admin key, if set.
    pub admin_key: Option<[u8; 32]>,
    /// Largest body a signed request may have (it is read to be hashed).
    pub body_limit: usize,
}

fn now_s() -> i64 {
    crate::store::now_ms() / 1000
}

/// 401 with a challenge.
pub fn unauthorized(message: impl Into<String>) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"rmds\""),
    );
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The channel a path names, by the position of `{ch}` in its pattern.
pub fn channel_of(pattern: &str, path: &str) -> Option<String> {
    let at = pattern.split('/').position(|s| s == "{ch}")?;
    path.split('/').nth(at).map(percent_decode)
}

fn grants(v: &Option<serde_json::Value>) -> Option<Vec<Grant>> {
    v.as_ref()
        .and_then(|g| serde_json::from_value(g.clone()).ok())
}

fn role(s: &str) -> Option<Role> {
    serde_json::from_value(serde_json::Value::String(s.into())).ok()
}

/// The principal of a stored row.
pub fn principal(kind: &'static str, row: &store::auth::Row) -> Option<Principal> {
    Some(Principal {
        kind,
        id: row.id.clone(),
        role: role(&row.role)?,
        grants: grants(&row.grants),
    })
}

enum Refusal {
    Missing,
    Invalid(String),
}

async fn by_key(s: &AppState, key: &str) -> Result<Principal, Refusal> {
    let ctx = &s.auth;
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if ctx.admin_key.is_some_and(|k| k == digest) {
        return Ok(Principal {
            kind: "key",
            id: "admin_key".into(),
            role: Role::Admin,
            grants: None,
        });
    }
    let Some((id, _)) = key.strip_prefix("rmds_").and_then(|k| k.split_once('.')) else {
        return Err(Refusal::Invalid("unknown API key".into()));
    };
    let id = id.to_string();
    let row = s
        .store
        .reads
        .read(move |c| store::auth::get(c, "key", &id))
        .await
        .map_err(|e| Refusal::Invalid(format!("cannot check the key: {e}")))?;
    let want = hmac_req::hex(&digest);
    match row {
        Some(r) if constant_eq(r.secret.as_bytes(), want.as_bytes()) => {
            principal("key", &r).ok_or_else(|| Refusal::Invalid("key has an unknown role".into()))
        }
        _ => Err(Refusal::Invalid("unknown API key".into())),
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn by_token(s: &AppState, jwt: &str) -> Result<Principal, Refusal> {
    let claims = token::verify(&s.auth.jwt_key, jwt, "access", now_s())
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    let sub = claims.sub.clone();
    let row = s
        .store
        .reads
        .read(move |c| store::auth::get(c, "user", &sub))
        .await
        .map_err(|e| Refusal::Invalid(format!("cannot check the token: {e}")))?;
    row.as_ref()
        .and_then(|r| principal("user", r))
        .ok_or_else(|| Refusal::Invalid("the token's user no longer exists".into()))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn by_signature(s: &AppState, req: Request) -> Result<(Principal, Request), Refusal> {
    let ctx = &s.auth;
    let h = req.headers();
    let bad = |m: &str| Refusal::Invalid(m.to_string());
    let id = header(h, "x-service-id")
        .ok_or_else(|| bad("X-Service-ID missing"))?
        .to_string();
    let ts = header(h, "x-timestamp")
        .ok_or_else(|| bad("X-Timestamp missing"))?
        .to_string();
    let nonce = header(h, "x-nonce")
        .ok_or_else(|| bad("X-Nonce missing"))?
        .to_string();
    let sig = header(h, "x-signature")
        .ok_or_else(|| bad("X-Signature missing"))?
        .to_string();
    let window = ctx.config.signature_window.as_secs() as i64;
    hmac_req::in_window(&ts, now_s(), window).map_err(|e| bad(&e.to_string()))?;
    let key_id = id.clone();
    let row = s
        .store
        .reads
        .read(move |c| store::auth::get(c, "service", &key_id))
        .await
        .map_err(|e| Refusal::Invalid(format!("cannot check the signature: {e}")))?
        .ok_or_else(|| bad("unknown service account"))?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, ctx.body_limit)
        .await
        .map_err(|e| bad(&format!("cannot read the body: {e}")))?;
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let canonical = hmac_req::canonical(parts.method.as_str(), &pq, &ts, &nonce, &bytes);
    hmac_req::check(row.secret.as_bytes(), &canonical, &sig).map_err(|e| bad(&e.to_string()))?;
    ctx.nonces
        .first_use(&id, &nonce, now_s(), window)
        .map_err(|e| {
            s.metrics.auth_replayed.inc();
            bad(&e.to_string())
        })?;
    let p = principal("service", &row).ok_or_else(|| bad("service account has an unknown role"))?;
    Ok((p, Request::from_parts(parts, axum::body::Body::from(bytes))))
}

/// The subprotocol prefix that carries a credential on a WebSocket upgrade.
pub const WS_AUTH_PROTOCOL: &str = "rmds.auth.";

/// The credential a browser passes on a WebSocket upgrade (a page cannot set headers
/// there): the subprotocol `rmds.auth.<base64url of the API key or JWT, unpadded>`,
/// offered next to `rmds`, which the agent selects.
pub fn ws_credential(h: &HeaderMap) -> Option<String> {
    use base64::Engine;
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(WS_AUTH_PROTOCOL))
        .and_then(|b| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b)
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
}

/// The middleware.
pub async fn authn(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !s.auth.config.enabled {
        return next.run(req).await;
    }
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().as_str().to_ascii_lowercase();
    let action = match &pattern {
        Some(p) => auth::route_access(&method, p),
        // Unknown routes: any valid principal gets the 404.
        None => Action::Read,
    };
    if action == Action::Public {
        return next.run(req).await;
    }
    let h = req.headers();
    let bearer = header(h, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(String::from)
        .or_else(|| ws_credential(h));
    let key = header(h, "x-api-key").map(String::from);
    let signed = h.contains_key("x-service-id");
    let (found, req) = if let Some(k) = key {
        (by_key(&s, &k).await, req)
    } else if let Some(b) = bearer {
        // A JWT has three dot-separated parts; an API key has fewer (an operator's
        // admin key might have two dots: it is tried when the token is not a JWT).
        let r = if b.matches('.').count() == 2 {
            match by_token(&s, &b).await {
                Err(Refusal::Invalid(m)) if m == token::TokenError::Malformed.to_string() => {
                    by_key(&s, &b).await
                }
                other => other,
            }
        } else {
            by_key(&s, &b).await
        };
        (r, req)
    } else if signed {
        match by_signature(&s, req).await {
            Ok((p, req)) => (Ok(p), req),
            Err(e) => {
                s.metrics.auth_unauthenticated.inc();
                return unauthorized(match e {
                    Refusal::Invalid(m) => m,
                    Refusal::Missing => "signed request incomplete".into(),
                });
            }
        }
    } else {
        (Err(Refusal::Missing), req)
    };
    let principal = match found {
        Ok(p) => p,
        Err(Refusal::Missing) => {
            s.metrics.auth_unauthenticated.inc();
            return unauthorized(
                "credentials required: X-API-Key, Authorization: Bearer (API key or JWT), or an HMAC-signed request",
            );
        }
        Err(Refusal::Invalid(m)) => {
            s.metrics.auth_unauthenticated.inc();
            return unauthorized(m);
        }
    };
    let channel = pattern
        .as_deref()
        .and_then(|p| channel_of(p, req.uri().path()));
    if !principal.allows(action, channel.as_deref()) {
        s.metrics.auth_forbidden.inc();
        let on = channel
            .map(|c| format!(" on channel {c:?}"))
            .unwrap_or_default();
        return ApiError::forbidden(format!(
            "{} {:?} ({:?}) may not {:?}{on}",
            principal.kind, principal.id, principal.role, action
        ))
        .into_response();
    }
    let mut req = req;
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_websocket_subprotocol_credential_then_it_is_decoded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "rmds, rmds.auth.cm1kc19hYmMuZGVm".parse().unwrap(),
        );
        assert_eq!(ws_credential(&h).as_deref(), Some("rmds_abc.def"));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, "rmds".parse().unwrap());
        assert_eq!(ws_credential(&h), None);
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "rmds.auth.%%%".parse().unwrap(),
        );
        assert_eq!(ws_credential(&h), None);
    }

    #[test]
    fn given_a_pattern_and_a_path_then_the_channel_is_the_segment_at_ch() {
        assert_eq!(
            channel_of("/v1/channels/{ch}/messages", "/v1/channels/chat/messages").as_deref(),
            Some("chat")
        );
        assert_eq!(
            channel_of(
                "/v1/domains/{d}/channels/{ch}",
                "/v1/domains/x/channels/a%2Fb"
            )
            .as_deref(),
            Some("a/b")
        );
        assert_eq!(channel_of("/v1/stats", "/v1/stats"), None);
    }
}
