//! `rmdsctl tail`: the agent's live tap (`/v1/ws/tap`), filtered by kind, one line
//! per event.

use crate::agent::{segment, Agent, CallError};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// One event as a line: time, kind, channel, peer, id, details.
pub fn line(e: &Value) -> String {
    let at = e["at"].as_i64().unwrap_or(0);
    let mut parts = vec![format!("{at}"), crate::table::cell(&e["kind"])];
    for key in ["channel", "peer", "id"] {
        if let Some(s) = e[key].as_str() {
            parts.push(format!("{key}={s}"));
        }
    }
    if !e["detail"].is_null() {
        parts.push(e["detail"].to_string());
    }
    parts.join(" ")
}

/// Follows the tap until `count` events were printed (or forever).
pub async fn follow(
    agent: &Agent,
    channel: Option<&str>,
    kinds: &[String],
    last: usize,
    count: Option<usize>,
    json: bool,
) -> Result<(), CallError> {
    let ws_base = agent.base().replacen("http", "ws", 1);
    let mut url = format!("{ws_base}/v1/ws/tap?last_n={last}");
    if let Some(c) = channel {
        url.push_str(&format!("&channel={}", segment(c)));
    }
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .map_err(|e| CallError::Unreachable(e.to_string()))?;
    if let Some(k) = agent.key_header().and_then(|k| k.parse().ok()) {
        request.headers_mut().insert("x-api-key", k);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => CallError::Refused {
                status: r.status().as_u16(),
                message: r
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            },
            other => CallError::Unreachable(other.to_string()),
        })?;
    let mut printed = 0usize;
    while count.is_none_or(|c| printed < c) {
        let Some(frame) = ws.next().await else { break };
        let frame = frame.map_err(|e| CallError::Unreachable(e.to_string()))?;
        let Message::Text(text) = frame else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if v["type"] != "event" {
            continue;
        }
        let e = &v["event"];
        let kind = e["kind"].as_str().unwrap_or("");
        if !kinds.is_empty() && !kinds.iter().any(|k| k == kind) {
            continue;
        }
        if json {
            println!("{e}");
        } else {
            println!("{}", line(e));
        }
        printed += 1;
    }
    Ok(())
}
