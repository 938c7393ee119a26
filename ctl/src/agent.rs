//! The agent's HTTP API as rmdsctl uses it: one GET/POST/DELETE helper each, and
//! errors that say whether the agent was unreachable or refused.

use serde_json::Value;
use std::time::Duration;

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// No answer (not running, wrong `--url`, timeout).
    Unreachable(String),
    /// The agent answered with an error status.
    Refused {
        /// HTTP status.
        status: u16,
        /// The agent's error code and message.
        message: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "cannot reach the agent: {e}"),
            CallError::Refused {
                status: 200,
                message,
            } => write!(f, "{message}"),
            CallError::Refused { status, message } => write!(f, "{status}: {message}"),
        }
    }
}

/// A client for one agent.
pub struct Agent {
    base: String,
    http: reqwest::Client,
    key: Option<String>,
}

impl Agent {
    /// A client for the agent at `base` (`http://127.0.0.1:7700`), sending `key` as
    /// `X-API-Key` when the agent has `api.auth.enabled`.
    pub fn new(base: &str, timeout: Duration, key: Option<&str>) -> Agent {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(mut v) = key.and_then(|k| reqwest::header::HeaderValue::from_str(k).ok()) {
            v.set_sensitive(true);
            headers.insert("x-api-key", v);
        }
        Agent {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .default_headers(headers)
                .build()
                .unwrap_or_default(),
            key: key.map(String::from),
        }
    }

    /// The API key, for the WebSocket handshake.
    pub fn key_header(&self) -> Option<String> {
        self.key.clone()
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, any status: the status and the JSON body (for probes whose 503
    /// carries an answer).
    pub async fn probe(&self, path: &str) -> Result<(u16, Value), CallError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `GET path` (with `query`), a 2xx JSON answer.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CallError> {
        let r = self.http.get(format!("{}{path}", self.base)).query(query);
        answer(r.send().await).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let r = self.http.post(format!("{}{path}", self.base)).json(body);
        answer(r.send().await).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CallError> {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .query(query);
        answer(r.send().await).await
    }
}

async fn answer(r: reqwest::Result<reqwest::Response>) -> Result<Value, CallError> {
    let r = r.map_err(|e| CallError::Unreachable(e.to_string()))?;
    let status = r.status().as_u16();
    let text = r
        .text()
        .await
        .map_err(|e| CallError::Unreachable(e.to_string()))?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = match &body["error"] {
        Value::Object(e) => format!(
            "{}: {}",
            e.get("code").and_then(Value::as_str).unwrap_or("error"),
            e.get("message").and_then(Value::as_str).unwrap_or("")
        ),
        _ => body.to_string(),
    };
    Err(CallError::Refused { status, message })
}

/// Percent-encodes one path segment (channel names may hold `/`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
