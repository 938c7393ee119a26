//! `/v1/ws/tap`: the live event stream of this node, recent history first.

use super::outbound::{writer, Outbound};
use super::{upgrade_error, ApiError, AppState, MAX_TAP_HISTORY, QUEUE_FRAMES};
use crate::events::Event;
use crate::names::Channel;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// `?channel=&last_n=` of the tap.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapQuery {
    channel: Option<String>,
    last_n: Option<usize>,
}

/// `GET /v1/ws/tap?channel=…&last_n=…`: every publish, delivery and lifecycle event of
/// this node (of one channel, or all), recent history first. Consumes nothing.
pub async fn tap(
    State(state): State<Arc<AppState>>,
    query: Result<Query<TapQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| crate::api::error::from_rejection(e.status(), e.body_text()))?;
    let channel = q.channel.map(Channel::new).transpose()?;
    let last_n = q.last_n.unwrap_or(0);
    if last_n > MAX_TAP_HISTORY {
        return Err(ApiError::bad_request(format!(
            "last_n must be at most {MAX_TAP_HISTORY}"
        )));
    }
    Ok(upgrade
        .map_err(upgrade_error)?
        .protocols(["rmds"])
        .on_upgrade(move |socket| run_tap(state, socket, channel, last_n))
        .into_response())
}

async fn run_tap(state: Arc<AppState>, socket: WebSocket, channel: Option<Channel>, last_n: usize) {
    state.metrics.ws_connections.inc();
    let filter = {
        let c = channel.clone();
        move |e: &Event| match &c {
            None => true,
            // Peer events concern every channel.
            Some(c) => e.channel.as_deref().is_none_or(|ec| ec == c.as_str()),
        }
    };
    let (history, mut rx) = state.metrics.events.subscribe(last_n, &filter);
    let (sink, mut stream) = socket.split();
    let (tx, wrx) = mpsc::channel(QUEUE_FRAMES);
    let out = Outbound::new(tx);
    let writer = tokio::spawn(writer(sink, wrx, out.clone(), state.metrics.clone()));
    out.push(&json!({"type": "tap", "channel": channel, "history": history.len()}));
    for e in history {
        if !out.push(&json!({"type": "event", "history": true, "event": &*e})) {
            break;
        }
    }
    loop {
        tokio::select! {
            _ = out.stop.cancelled() => break,
            f = stream.next() => match f {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
            e = rx.recv() => match e {
                Ok(e) => {
                    if filter(&e) && !out.push(&json!({"type": "event", "event": &*e})) {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // The hub ran ahead of this tap: it cannot keep up.
                    tracing::warn!(missed = n, "tap lagged behind the event stream");
                    out.slow.store(true, Ordering::SeqCst);
                    out.stop.cancel();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    out.stop.cancel();
    let _ = writer.await;
}
