//! `rmds-chat --web PORT`: the chat as a web page, one per node, like RMDS's demo.
//!
//! The page (`web/`, compiled in) talks to this process only: a WebSocket (`/ws`)
//! for lines in and out, and JSON views (`/api/health`, `/api/nodes`,
//! `/api/status/{id}`, `/api/stats`, `/api/topology`) read from the node through the
//! SDK. Incoming lines come through one `on_message` handler and go to every open
//! page (the last ones are kept for a page that opens later). The WebSocket accepts a
//! browser only from this server's own origin, and every request must name a local
//! host (no DNS rebinding); pages are served with a strict Content-Security-Policy.

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The page's policy: everything from this origin, nothing inline, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// Lines kept for pages that open later.
const HISTORY: usize = 200;

struct Web {
    node: rmds::Node,
    chat: rmds::Channel,
    lines: broadcast::Sender<Value>,
    history: Mutex<VecDeque<Value>>,
    listen: SocketAddr,
}

/// Whether `host` (the `Host` header) names this server: a loopback name or the
/// listen address, any port.
pub fn local_host(host: &str, listen: &SocketAddr) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) && !n.ends_with(':') => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == listen.ip())
}

/// Whether a WebSocket upgrade's `Origin` is this server's own (`http://` + `Host`);
/// a request without `Origin` is not from a browser page and passes.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (None, _) => true,
        (Some(o), Some(h)) => o.eq_ignore_ascii_case(&format!("http://{h}")),
        (Some(_), None) => false,
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn guard(
    State(w): State<Arc<Web>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if host.is_some_and(|h| !local_host(h, &w.listen)) {
        return refuse(StatusCode::FORBIDDEN, "unknown Host");
    }
    next.run(req).await
}

fn sdk_error(e: rmds::Error) -> Response {
    let status = StatusCode::from_u16(e.status.unwrap_or(502)).unwrap_or(StatusCode::BAD_GATEWAY);
    refuse(status, &e.to_string())
}

async fn health(State(w): State<Arc<Web>>) -> Response {
    match w.node.mgmt().health().await {
        Ok(h) => Json(json!({"node": h.node_id, "nats": h.nats, "nats_error": h.nats_error}))
            .into_response(),
        Err(e) => sdk_error(e),
    }
}

async fn nodes(State(w): State<Arc<Web>>) -> Response {
    match w.node.mgmt().nodes().await {
        Ok(n) => Json(json!({ "nodes": n })).into_response(),
        Err(e) => sdk_error(e),
    }
}

async fn stats(State(w): State<Arc<Web>>) -> Response {
    match w.node.mgmt().stats().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => sdk_error(e),
    }
}

async fn topology(State(w): State<Arc<Web>>) -> Response {
    match w.node.mgmt().topology().await {
        Ok(t) => Json(t).into_response(),
        Err(e) => sdk_error(e),
    }
}

async fn status(State(w): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    match w.node.mgmt().message(&id).await {
        Ok(s) => Json(json!({
            "id": s.id,
            "unrouted": s.unrouted,
            "receivers": s.receivers.iter().map(|r| json!({"receiver": r.receiver, "state": r.state})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => sdk_error(e),
    }
}

async fn ws(State(w): State<Arc<Web>>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !same_origin(origin, host) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin WebSocket refused");
    }
    upgrade.on_upgrade(move |socket| session(w, socket))
}

async fn session(w: Arc<Web>, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let mut lines = w.lines.subscribe();
    let hello = json!({"type": "hello", "node": w.node.id(), "channel": w.chat.name()});
    if tx.send(WsMessage::text(hello.to_string())).await.is_err() {
        return;
    }
    let past: Vec<Value> = w
        .history
        .lock()
        .map(|h| h.iter().cloned().collect())
        .unwrap_or_default();
    for l in past {
        if tx.send(WsMessage::text(l.to_string())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Ok(l) => {
                    if tx.send(WsMessage::text(l.to_string())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            frame = rx.next() => match frame {
                Some(Ok(WsMessage::Text(t))) => {
                    let answer = on_frame(&w, t.as_str()).await;
                    if tx.send(WsMessage::text(answer.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn on_frame(w: &Web, text: &str) -> Value {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return json!({"type": "error", "ref": Value::Null, "message": format!("not JSON: {e}")})
        }
    };
    let r = v["ref"].clone();
    match (v["type"].as_str(), v["text"].as_str()) {
        (Some("send"), Some(text)) if !text.trim().is_empty() => {
            match w
                .chat
                .send(&crate::Line {
                    text: text.to_string(),
                })
                .await
            {
                Ok(rc) => {
                    json!({"type": "sent", "ref": r, "id": rc.id, "receivers": rc.receivers, "unrouted": rc.unrouted})
                }
                Err(e) => json!({"type": "error", "ref": r, "message": e.to_string()}),
            }
        }
        _ => {
            json!({"type": "error", "ref": r, "message": "expected {\"type\":\"send\",\"ref\":N,\"text\":\"…\"}"})
        }
    }
}

/// Serves the page on `listen` until the process ends.
pub async fn serve(
    node: rmds::Node,
    chat: rmds::Channel,
    group: &str,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let (lines, _) = broadcast::channel(1024);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let listen = listener.local_addr()?;
    let w = Arc::new(Web {
        node,
        chat: chat.clone(),
        lines,
        history: Mutex::new(VecDeque::new()),
        listen,
    });
    // A writer-only node receives nothing: its page shows what it sends.
    let _handler = if chat.role().reads() {
        let hw = w.clone();
        Some(
            chat.on_message(group, move |m| {
                let w = hw.clone();
                async move {
                    let line = json!({
                        "type": "message", "id": m.id, "sender": m.sender,
                        "text": crate::show(&m), "time": m.created_at,
                    });
                    if let Ok(mut h) = w.history.lock() {
                        h.push_back(line.clone());
                        while h.len() > HISTORY {
                            h.pop_front();
                        }
                    }
                    let _ = w.lines.send(line);
                    Ok::<_, rmds::Error>(())
                }
            })
            .await?,
        )
    } else {
        None
    };
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    include_str!("../web/index.html"),
                    "text/html; charset=utf-8",
                )
            }),
        )
        .route(
            "/chat.js",
            get(|| async {
                asset(
                    include_str!("../web/chat.js"),
                    "text/javascript; charset=utf-8",
                )
            }),
        )
        .route(
            "/chat.css",
            get(|| async { asset(include_str!("../web/chat.css"), "text/css; charset=utf-8") }),
        )
        .route("/ws", get(ws))
        .route("/api/health", get(health))
        .route("/api/nodes", get(nodes))
        .route("/api/stats", get(stats))
        .route("/api/topology", get(topology))
        .route("/api/status/{id}", get(status))
        .layer(axum::middleware::from_fn_with_state(w.clone(), guard))
        .with_state(w.clone());
    println!("web page of node {} on http://{listen}/", w.node.id());
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_host_then_only_local_names_pass() {
        let listen: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        for ok in [
            "localhost:8081",
            "127.0.0.1:8081",
            "127.0.0.1",
            "[::1]:8081",
            "LOCALHOST",
        ] {
            assert!(local_host(ok, &listen), "{ok}");
        }
        for bad in [
            "evil.example:8081",
            "10.0.0.1:8081",
            "127.0.0.1.evil.example",
        ] {
            assert!(!local_host(bad, &listen), "{bad}");
        }
    }

    #[test]
    fn given_an_origin_then_only_this_servers_own_passes() {
        assert!(same_origin(
            Some("http://127.0.0.1:8081"),
            Some("127.0.0.1:8081")
        ));
        assert!(same_origin(None, Some("127.0.0.1:8081")));
        assert!(!same_origin(
            Some("http://evil.example"),
            Some("127.0.0.1:8081")
        ));
        assert!(!same_origin(
            Some("http://127.0.0.1:9999"),
            Some("127.0.0.1:8081")
        ));
        assert!(!same_origin(Some("http://127.0.0.1:8081"), None));
    }
}
