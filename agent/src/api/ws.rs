//! WebSocket API: `/v1/ws` (publish, subscribe through consumer groups with credit,
//! ack/nack/term, ping) and `/v1/ws/tap` (the live event stream).
//!
//! Frames are JSON text. Requests carry `op` and an optional `request_id` that the
//! reply echoes. Errors are `{"type":"error","request_id","code","message"}` with the
//! HTTP API's codes plus `slow_consumer`.
//!
//! Flow control: a subscription's `credit` is the most messages the client holds
//! unsettled; the server never sends more, and each ack/nack/term makes room again
//! (`{"op":"credit"}` changes the credit). A message whose lease runs out (it may go
//! to another consumer) stops counting against the credit then; an extend keeps it
//! counting. The held set is therefore never larger than the credit. Every connection has a bounded outbound
//! queue (frames and bytes); a client that stops reading fills it, is sent
//! `slow_consumer` and is disconnected, so a stuck client cannot grow the agent's
//! memory. Messages it held are redelivered when their leases run out.

use super::messages::{
    channel as parse_channel, check_reader, message_json, parse_bounded, ttl_of, Draft,
};
use super::{ApiError, AppState};
use crate::groups::{Settle, DEFAULT_GROUP};
use crate::names::{Channel, GroupName};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

mod outbound;
mod tap;
use outbound::{api_error_frame, error_frame, writer, Outbound};

/// Most frames waiting to be written to one connection (the capacity of its queue).
pub const QUEUE_FRAMES: usize = 1024;
/// Most bytes waiting to be written to one connection.
pub const QUEUE_BYTES: usize = 16 << 20;
/// Most subscriptions on one connection.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Largest credit a subscription may grant.
pub const MAX_CREDIT: usize = 10_000;
/// Most history events a tap may ask for.
pub const MAX_TAP_HISTORY: usize = 1000;
/// A client whose queue makes no progress for this long is a slow consumer.
pub const SLOW_AFTER: Duration = Duration::from_secs(10);

/// `GET /v1/ws`: the application WebSocket.
pub async fn ws(
    State(state): State<Arc<AppState>>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(upgrade_error)?;
    let limit = state.transport.max_payload() * 2 + 64 * 1024;
    let principal = principal.map(|axum::Extension(p)| p);
    Ok(upgrade
        .protocols(["rmds"])
        .max_message_size(limit)
        .on_upgrade(move |socket| Session::run(state, principal, socket)))
}

fn upgrade_error(e: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        e.status(),
        "bad_request",
        format!("a WebSocket upgrade is required here: {}", e.body_text()),
    )
}

/// The messages a subscription's client holds: id -> when its lease runs out.
type Held = Arc<Mutex<HashMap<String, Instant>>>;

fn held_lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
    match held.lock() {
        Ok(h) => h,
        Err(p) => p.into_inner(),
    }
}

struct Subscription {
    channel: Channel,
    group: GroupName,
    credit: Arc<AtomicUsize>,
    held: Held,
    room: Arc<Notify>,
    stop: CancellationToken,
}

struct Session {
    state: Arc<AppState>,
    /// Who opened the connection (`None`: authentication is off).
    principal: Option<crate::auth::Principal>,
    out: Outbound,
    subs: HashMap<String, Subscription>,
    next_sub: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
    #[serde(default)]
    request_id: Value,
    channel: Option<String>,
    group: Option<String>,
    subscription: Option<String>,
    credit: Option<usize>,
    ids: Option<Vec<String>>,
    delay: Option<String>,
    error: Option<String>,
    data: Option<Value>,
    text: Option<String>,
    data_base64: Option<String>,
    content_type: Option<String>,
    headers: Option<HashMap<String, String>>,
    ttl: Option<String>,
    idempotency_key: Option<String>,
}

impl Session {
    async fn run(
        state: Arc<AppState>,
        principal: Option<crate::auth::Principal>,
        socket: WebSocket,
    ) {
        state.metrics.ws_connections.inc();
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let out = Outbound::new(tx);
        let writer = tokio::spawn(writer(sink, rx, out.clone(), state.metrics.clone()));
        let mut session = Session {
            state,
            principal,
            out: out.clone(),
            subs: HashMap::new(),
            next_sub: 0,
        };
        loop {
            let frame = tokio::select! {
                _ = out.stop.cancelled() => break,
                f = stream.next() => f,
            };
            match frame {
                Some(Ok(Message::Text(t))) => session.handle(t.as_str()).await,
                Some(Ok(Message::Binary(_))) => {
                    session.state.metrics.api_client_errors.inc();
                    out.push(&error_frame(
                        &Value::Null,
                        "bad_request",
                        "send JSON text frames",
                    ));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // ping/pong frames are answered by the library
            }
        }
        for (_, s) in session.subs.drain() {
            s.stop.cancel();
        }
        out.stop.cancel();
        let _ = writer.await;
    }

    async fn handle(&mut self, text: &str) {
        let req: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                self.state.metrics.api_client_errors.inc();
                let id = serde_json::from_str::<Value>(text)
                    .ok()
                    .map(|v| v["request_id"].clone())
                    .unwrap_or(Value::Null);
                self.out.push(&error_frame(
                    &id,
                    "bad_request",
                    format!("invalid request: {e}"),
                ));
                return;
            }
        };
        let id = req.request_id.clone();
        let reply = match self.dispatch(req).await {
            Ok(v) => v,
            Err(e) => {
                if e.status.is_client_error() {
                    self.state.metrics.api_client_errors.inc();
                }
                api_error_frame(&id, e)
            }
        };
        self.out.push(&reply);
    }

    /// The same rule as for the REST routes: publish and consume per channel.
    fn may(&self, action: crate::auth::Action, channel: Option<&str>) -> Result<(), ApiError> {
        match &self.principal {
            Some(p) if !p.allows(action, channel) => {
                self.state.metrics.auth_forbidden.inc();
                Err(ApiError::forbidden(format!(
                    "{} {:?} ({:?}) may not {action:?} on channel {:?}",
                    p.kind,
                    p.id,
                    p.role,
                    channel.unwrap_or("")
                )))
            }
            _ => Ok(()),
        }
    }

    async fn dispatch(&mut self, req: Request) -> Result<Value, ApiError> {
        use crate::auth::Action;
        let id = req.request_id.clone();
        match req.op.as_str() {
            "publish" => self.may(Action::Publish, req.channel.as_deref())?,
            "subscribe" => self.may(Action::Consume, req.channel.as_deref())?,
            "ack" | "nack" | "term" | "extend" => {
                let ch = req.channel.clone().or_else(|| {
                    let name = req.subscription.as_ref()?;
                    self.subs.get(name).map(|s| s.channel.to_string())
                });
                self.may(Action::Consume, ch.as_deref())?
            }
            _ => {}
        }
        match req.op.as_str() {
            "ping" => Ok(json!({"type": "pong", "request_id": id})),
            "publish" => self.publish(req).await,
            "subscribe" => self.subscribe(req).await,
            "unsubscribe" => {
                let name = req
                    .subscription
                    .ok_or_else(|| ApiError::bad_request("unsubscribe needs subscription"))?;
                let s = self.subs.remove(&name).ok_or_else(|| {
                    ApiError::not_found(format!("no subscription {name:?} on this connection"))
                })?;
                s.stop.cancel();
                Ok(json!({"type": "unsubscribed", "request_id": id, "subscription": name}))
            }
            "credit" => {
                let name = req
                    .subscription
                    .ok_or_else(|| ApiError::bad_request("credit needs subscription"))?;
                let n = req
                    .credit
                    .ok_or_else(|| ApiError::bad_request("credit needs credit"))?;
                if n == 0 || n > MAX_CREDIT {
                    return Err(ApiError::bad_request(format!(
                        "credit must be between 1 and {MAX_CREDIT}"
                    )));
                }
                let s = self.subs.get(&name).ok_or_else(|| {
                    ApiError::not_found(format!("no subscription {name:?} on this connection"))
                })?;
                s.credit.store(n, Ordering::SeqCst);
                s.room.notify_one();
                Ok(json!({"type": "credit", "request_id": id, "subscription": name, "credit": n}))
            }
            "ack" | "nack" | "term" | "extend" => self.settle(req).await,
            other => Err(ApiError::bad_request(format!(
                "unknown op {other:?}; use publish, subscribe, unsubscribe, credit, ack, nack, term, extend or ping"
            ))),
        }
    }

    async fn publish(&mut self, req: Request) -> Result<Value, ApiError> {
        let ch = req
            .channel
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("publish needs channel"))?;
        let channel = parse_channel(ch)?;
        crate::service::check_writer(&self.state, &channel)?;
        let given =
            req.data.is_some() as u8 + req.text.is_some() as u8 + req.data_base64.is_some() as u8;
        if given != 1 {
            return Err(ApiError::bad_request(
                "publish needs exactly one of data (JSON), text or data_base64",
            ));
        }
        let (payload, default_type) = if let Some(d) = req.data {
            (d.to_string().into_bytes(), "application/json")
        } else if let Some(t) = req.text {
            (t.into_bytes(), "text/plain; charset=utf-8")
        } else {
            let b = req.data_base64.unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("data_base64: {e}")))?;
            (bytes, "application/octet-stream")
        };
        let mut headers: Vec<(String, String)> =
            req.headers.unwrap_or_default().into_iter().collect();
        headers.sort();
        let draft = Draft {
            payload,
            content_type: req.content_type.unwrap_or_else(|| default_type.to_string()),
            headers,
            ttl: ttl_of(&self.state, &channel, &req.ttl)?,
            idempotency_key: req.idempotency_key,
        };
        let mut v = self.state.publish(&channel, draft).await?.to_json();
        v["type"] = json!("published");
        v["request_id"] = req.request_id;
        Ok(v)
    }

    async fn subscribe(&mut self, req: Request) -> Result<Value, ApiError> {
        let ch = req
            .channel
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("subscribe needs channel"))?;
        let channel = parse_channel(ch)?;
        let group = GroupName::new(req.group.unwrap_or_else(|| DEFAULT_GROUP.into()))?;
        check_reader(&self.state, &channel)?;
        if group.as_str() != DEFAULT_GROUP {
            // Other groups must exist (the default one is created on first use).
            self.state.groups.info(&channel, &group).await?;
        }
        let credit = req.credit.unwrap_or(100);
        if credit == 0 || credit > MAX_CREDIT {
            return Err(ApiError::bad_request(format!(
                "credit must be between 1 and {MAX_CREDIT}"
            )));
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
            )));
        }
        let name = match req.subscription {
            Some(n) => {
                if n.is_empty() || n.len() > 64 {
                    return Err(ApiError::bad_request(
                        "subscription names are 1-64 characters",
                    ));
                }
                if self.subs.contains_key(&n) {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "conflict",
                        format!("subscription {n:?} exists on this connection"),
                    ));
                }
                n
            }
            None => {
                self.next_sub += 1;
                format!("s{}", self.next_sub)
            }
        };
        let sub = Subscription {
            channel: channel.clone(),
            group: group.clone(),
            credit: Arc::new(AtomicUsize::new(credit)),
            held: Arc::new(Mutex::new(HashMap::new())),
            room: Arc::new(Notify::new()),
            stop: self.out.stop.child_token(),
        };
        tokio::spawn(pump(
            self.state.clone(),
            self.out.clone(),
            name.clone(),
            channel.clone(),
            group.clone(),
            sub.credit.clone(),
            sub.held.clone(),
            sub.room.clone(),
            sub.stop.clone(),
        ));
        self.subs.insert(name.clone(), sub);
        Ok(json!({
            "type": "subscribed", "request_id": req.request_id, "subscription": name,
            "channel": channel, "group": group, "credit": credit,
        }))
    }

    async fn settle(&mut self, req: Request) -> Result<Value, ApiError> {
        let name = req
            .subscription
            .ok_or_else(|| ApiError::bad_request(format!("{} needs subscription", req.op)))?;
        let ids = req
            .ids
            .ok_or_else(|| ApiError::bad_request(format!("{} needs ids", req.op)))?;
        if ids.is_empty() || ids.len() > 10_000 {
            return Err(ApiError::bad_request("ids must hold 1 to 10000 ids"));
        }
        let s = self.subs.get(&name).ok_or_else(|| {
            ApiError::not_found(format!("no subscription {name:?} on this connection"))
        })?;
        let how = match req.op.as_str() {
            "ack" => Settle::Ack,
            "term" => Settle::Term,
            "extend" => Settle::Extend,
            _ => Settle::Nack(
                match &req.delay {
                    Some(d) => parse_bounded("delay", d, crate::durations::MAX_NACK_DELAY)?,
                    None => Duration::ZERO,
                },
                req.error.map(|e| e.chars().take(1024).collect()),
            ),
        };
        let extend = how == Settle::Extend;
        let r = self.state.settle(&s.channel, &s.group, &ids, how).await?;
        {
            let mut held = held_lock(&s.held);
            if extend {
                if let Some(until) = r.until {
                    for i in &r.applied {
                        if let Some(u) = held.get_mut(i) {
                            *u = until;
                        }
                    }
                }
            } else {
                // Settled, or not leased any more: either way the client gave it up.
                for i in &ids {
                    held.remove(i);
                }
            }
        }
        if !extend {
            s.room.notify_one();
        }
        let lease_ms = r
            .until
            .map(|u| u.saturating_duration_since(Instant::now()).as_millis() as u64);
        Ok(json!({
            "lease_ms": lease_ms,
            "type": match req.op.as_str() {
                "ack" => "acked",
                "nack" => "nacked",
                "term" => "termed",
                _ => "extended",
            },
            "request_id": req.request_id, "subscription": name,
            "applied": r.applied, "not_found": r.not_found,
        }))
    }
}

/// Feeds one subscription: pulls from its group while the client has credit left.
#[allow(clippy::too_many_arguments)]
async fn pump(
    state: Arc<AppState>,
    out: Outbound,
    name: String,
    channel: Channel,
    group: GroupName,
    credit: Arc<AtomicUsize>,
    held: Held,
    room: Arc<Notify>,
    stop: CancellationToken,
) {
    let consumer = format!("ws:{name}");
    let wait = state.groups.max_wait().min(Duration::from_secs(30));
    loop {
        let (holding, first_out) = {
            let mut h = held_lock(&held);
            // Leases that ran out are not the client's any more: their credit is free.
            let now = Instant::now();
            h.retain(|_, until| *until > now);
            (h.len(), h.values().min().copied())
        };
        let free = credit.load(Ordering::SeqCst).saturating_sub(holding);
        if free == 0 {
            let wake = first_out.unwrap_or_else(|| Instant::now() + SLOW_AFTER);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = room.notified() => continue,
                _ = tokio::time::sleep_until(wake.into()) => continue,
            }
        }
        let pull = crate::service::Pull {
            group: &group,
            consumer: Some(&consumer),
            max: free.min(state.groups.max_batch()),
            wait,
        };
        let pulled = tokio::select! {
            _ = stop.cancelled() => return,
            r = state.pull(&channel, pull) => r,
        };
        let msgs = match pulled {
            Ok(m) => m,
            Err(e) if e.status.is_server_error() => {
                // Transient (the store): try again shortly.
                tracing::warn!(error = %e, "subscription pull failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            Err(e) => {
                // The group is gone (deleted, or expired), or this node left the
                // channel: the subscription ends.
                out.push(&json!({
                    "type": "error", "request_id": Value::Null, "subscription": name,
                    "code": e.code, "message": format!("subscription ended: {}", e.message),
                }));
                return;
            }
        };
        for m in msgs {
            if !out.room().await {
                return;
            }
            held_lock(&held).insert(m.entry.id.clone(), m.until);
            let lease_ms = m
                .until
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            let frame = json!({
                "type": "message", "subscription": name, "message": message_json(&channel, &m),
                "lease_ms": lease_ms,
            });
            if !out.push(&frame) {
                return;
            }
        }
    }
}

pub use tap::tap;
