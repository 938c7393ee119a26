//! `/livez`, `/readyz` and `/healthz`: the probes an orchestrator and an operator use.
//!
//! - `/livez`: the process answers HTTP (restart it when this fails).
//! - `/readyz`: the agent can do its job now: the store takes writes, NATS is
//!   connected, and discovery is done (subscriptions in place, this node's hello sent
//!   on the current connection). 503 with every failing check named otherwise. An
//!   unready agent still accepts publishes whenever its store does: they wait in the
//!   outbox for NATS.
//! - `/healthz`: always 200, the node's state in one object (NATS state and the reason
//!   it is not connected).

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long the store may take to commit the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz`.
pub async fn healthz(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "node_id": s.discovery.me(),
        "nats": if s.transport.is_connected() { "connected" } else { "disconnected" },
        "nats_error": s.transport.problem(),
        "nats_auth": s.transport.auth_method(),
        "kicked": super::mgmt::kicked(&s).await,
    }))
}

/// `GET /livez`.
pub async fn livez(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"status": "alive", "node_id": s.discovery.me()}))
}

/// One check of `/readyz`: ok, or why not.
fn check(ok: bool, why: Option<String>) -> Value {
    match ok {
        true => json!({"ok": true}),
        false => json!({"ok": false, "reason": why}),
    }
}

/// `GET /readyz`: 200 when every check passes, 503 naming the failing ones.
pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let store = match tokio::time::timeout(PROBE_TIMEOUT, s.store.probe_write()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the store refuses writes: {e}")),
        Err(_) => Err(format!(
            "the store did not commit a write within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    };
    if store.is_err() {
        s.metrics.store_errors.inc();
    }
    let nats = s.transport.is_connected();
    let nats_why = s
        .transport
        .problem()
        .or_else(|| Some("not connected to NATS".into()));
    let discovery = nats && s.discovery.announced();
    let discovery_why = Some(if nats {
        "this node has not announced itself on the current connection yet".to_string()
    } else {
        "waits for NATS".to_string()
    });
    let ready = store.is_ok() && nats && discovery;
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "node_id": s.discovery.me(),
        "checks": {
            "store": check(store.is_ok(), store.err()),
            "nats": check(nats, nats_why),
            "discovery": check(discovery, discovery_why),
        },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
