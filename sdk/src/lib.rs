//! # rmds: Rust client for a local rmds agent
//!
//! Applications talk only to the agent on their own node. This crate wraps its HTTP
//! API: join channels, publish (durable when the call returns), pull through consumer
//! groups with long polling, and acknowledge.
//!
//! # Examples
//! ```no_run
//! # async fn demo() -> Result<(), rmds::Error> {
//! let client = rmds::Client::new("http://127.0.0.1:7700");
//! client.join("chat", rmds::Role::Rw).await?;
//! let receipt = client.publish_json("chat", &serde_json::json!({"text": "hi"})).await?;
//! println!("stored as {} for {:?}", receipt.id, receipt.receivers);
//! let batch = client.pull("chat", "default", 10, std::time::Duration::from_secs(5)).await?;
//! let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
//! client.ack("chat", "default", &ids).await?;
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The agent could not be reached (not running, wrong address).
    Connect,
    /// The request was refused as invalid (4xx other than the ones below).
    BadRequest,
    /// Not allowed (e.g. publishing as a reader): 403.
    Forbidden,
    /// Unknown resource: 404.
    NotFound,
    /// Message larger than the cluster can carry: 413.
    TooLarge,
    /// Receiver backlog full: 429. Nothing was stored; retry later.
    Backpressure,
    /// The agent failed (5xx).
    Server,
    /// The answer could not be understood.
    Decode,
}

/// An error from the agent or the transport, with the agent's code and message.
#[derive(Debug, Clone)]
pub struct Error {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// HTTP status, when the agent answered.
    pub status: Option<u16>,
    /// The agent's error code (`backlog_full`, `forbidden`, ...), when it answered.
    pub code: Option<String>,
    /// A human-readable message.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, "{s} {c}: {}", self.message),
            _ => write!(f, "{:?}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn connect(e: reqwest::Error) -> Error {
        Error {
            kind: if e.is_decode() {
                ErrorKind::Decode
            } else {
                ErrorKind::Connect
            },
            status: None,
            code: None,
            message: e.to_string(),
        }
    }
}

/// A node's role in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Receives.
    Reader,
    /// Publishes.
    Writer,
    /// Both.
    Rw,
}

/// Options of [`Client::publish_with`].
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Content type (default `application/octet-stream`).
    pub content_type: String,
    /// Time to live (default: the agent's `message_expiry`).
    pub ttl: Option<Duration>,
    /// Same key, same message: stored once.
    pub idempotency_key: Option<String>,
    /// Application headers.
    pub headers: Vec<(String, String)>,
}

/// Where a consumer group starts reading its channel's log.
#[derive(Debug, Clone, Copy, Default)]
pub enum GroupStart {
    /// The oldest entry still kept.
    #[default]
    Earliest,
    /// Only entries appended from now on.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first entry received at or after this time.
    Time(std::time::SystemTime),
}

/// Settings of a new consumer group; `None` takes the agent's default.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    /// Where the group starts.
    pub start: GroupStart,
    /// Lease on a pulled message.
    pub ack_wait: Option<Duration>,
    /// Deliveries before the dead-letter queue (0: no limit).
    pub max_deliveries: Option<u32>,
    /// Most unacknowledged messages at once (1: strict order).
    pub max_in_flight: Option<u32>,
    /// Deleted after this long without pulls or acks.
    pub idle_ttl: Option<Duration>,
    /// Waits before redelivery after the 1st, 2nd, … lease ran out (the last repeats).
    pub backoff: Vec<Duration>,
}

/// The agent's answer to a publish.
#[derive(Debug, Clone, Deserialize)]
pub struct Receipt {
    /// Message id.
    pub id: String,
    /// Reader nodes it will be delivered to.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// No reader known yet: kept for readers discovered before it expires.
    #[serde(default)]
    pub unrouted: bool,
    /// Same idempotency key as an earlier publish: that message's id.
    #[serde(default)]
    pub duplicate: bool,
}

/// A message as delivered to an application.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Message id (the same on every node).
    pub id: String,
    /// Channel.
    pub channel: String,
    /// Sending node.
    pub sender: String,
    /// Offset in this node's channel log.
    pub offset: u64,
    /// Creation time at the sender (RFC 3339).
    pub created_at: String,
    /// Application headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Content type.
    pub content_type: String,
    /// JSON value (JSON content) or text (other UTF-8).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Base64 payload for binary content.
    #[serde(default)]
    pub data_base64: Option<String>,
    /// Times handed out, this one included.
    #[serde(default)]
    pub deliveries: u32,
}

impl Message {
    /// The payload bytes, whatever the encoding.
    pub fn payload(&self) -> Vec<u8> {
        use base64::Engine;
        if let Some(b) = &self.data_base64 {
            return base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default();
        }
        match &self.data {
            Some(serde_json::Value::String(s))
                if !self.content_type.starts_with("application/json") =>
            {
                s.clone().into_bytes()
            }
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct PullAnswer {
    messages: Vec<Message>,
}

/// Result of ack / nack / term.
#[derive(Debug, Clone, Deserialize)]
pub struct Settled {
    /// Ids applied.
    pub applied: Vec<String>,
    /// Ids not leased by the group.
    pub not_found: Vec<String>,
}

/// The header the SDK sends on every request (`X-Rmds-Request: 1`): the agent's
/// cross-site guard lets a POST with a text or form body through only with it.
pub const REQUEST_MARKER: &str = "x-rmds-request";

/// Client for the agent's HTTP API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the agent at `base` (e.g. `http://127.0.0.1:7700`).
    pub fn new(base: impl Into<String>) -> Client {
        Client::build(base.into(), None)
    }

    /// A client that sends an API key (`X-API-Key`) with every request, for an agent
    /// with `api.auth.enabled`.
    pub fn with_api_key(base: impl Into<String>, key: &str) -> Client {
        Client::build(base.into(), Some(key))
    }

    fn build(base: String, key: Option<&str>) -> Client {
        // Marks every request as a program's, not a web page's: the agent refuses a
        // POST with a text or form body unless it carries this header.
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = key.and_then(|k| reqwest::header::HeaderValue::from_str(k).ok()) {
            let mut v = v;
            v.set_sensitive(true);
            headers.insert(reqwest::header::HeaderName::from_static("x-api-key"), v);
        }
        headers.insert(
            reqwest::header::HeaderName::from_static(REQUEST_MARKER),
            reqwest::header::HeaderValue::from_static("1"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Client {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The agent's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, Error> {
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(Error::connect)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| Error {
                kind: ErrorKind::Decode,
                status: Some(status.as_u16()),
                code: None,
                message: e.to_string(),
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = v["error"]["code"].as_str().map(String::from);
        let message = v["error"]["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let kind = match status.as_u16() {
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::Backpressure,
            s if s >= 500 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        Err(Error {
            kind,
            status: Some(status.as_u16()),
            code,
            message,
        })
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<serde_json::Value, Error> {
        let r = self
            .http
            .get(self.url("/healthz"))
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// Joins `channel` with `role` (idempotent).
    pub async fn join(&self, channel: &str, role: Role) -> Result<(), Error> {
        let r = self
            .http
            .put(self.url(&format!("/v1/channels/{}", enc(channel))))
            .json(&serde_json::json!({ "role": role }))
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer::<serde_json::Value>(r).await.map(|_| ())
    }

    /// Leaves `channel`.
    pub async fn leave(&self, channel: &str) -> Result<(), Error> {
        let r = self
            .http
            .delete(self.url(&format!("/v1/channels/{}", enc(channel))))
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer::<serde_json::Value>(r).await.map(|_| ())
    }

    /// Publishes raw bytes with a content type; durable when this returns Ok.
    pub async fn publish_bytes(
        &self,
        channel: &str,
        payload: Vec<u8>,
        content_type: &str,
        ttl: Option<Duration>,
    ) -> Result<Receipt, Error> {
        self.publish_with(
            channel,
            payload,
            &PublishOptions {
                content_type: content_type.into(),
                ttl,
                ..PublishOptions::default()
            },
        )
        .await
    }

    /// Publishes with every option. With an idempotency key, retrying after an
    /// ambiguous failure (timeout, agent crash) never stores the message twice.
    pub async fn publish_with(
        &self,
        channel: &str,
        payload: Vec<u8>,
        opts: &PublishOptions,
    ) -> Result<Receipt, Error> {
        let mut url = self.url(&format!("/v1/channels/{}/messages", enc(channel)));
        if let Some(t) = opts.ttl {
            url.push_str(&format!("?ttl={}ms", t.as_millis()));
        }
        let ct = if opts.content_type.is_empty() {
            "application/octet-stream"
        } else {
            &opts.content_type
        };
        let mut req = self.http.post(url).header("content-type", ct).body(payload);
        if let Some(k) = &opts.idempotency_key {
            req = req.header("idempotency-key", k);
        }
        for (k, v) in &opts.headers {
            req = req.header(format!("rmds-header-{k}"), v);
        }
        let r = req.send().await.map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// Publishes text.
    pub async fn publish_text(&self, channel: &str, text: &str) -> Result<Receipt, Error> {
        self.publish_bytes(
            channel,
            text.as_bytes().to_vec(),
            "text/plain; charset=utf-8",
            None,
        )
        .await
    }

    /// Publishes a JSON value.
    pub async fn publish_json<T: Serialize>(
        &self,
        channel: &str,
        value: &T,
    ) -> Result<Receipt, Error> {
        let body = serde_json::to_vec(value).map_err(|e| Error {
            kind: ErrorKind::BadRequest,
            status: None,
            code: None,
            message: e.to_string(),
        })?;
        self.publish_bytes(channel, body, "application/json", None)
            .await
    }

    /// Publishes many JSON payloads in one request; returns the raw per-item results.
    pub async fn publish_batch<T: Serialize>(
        &self,
        channel: &str,
        items: &[T],
    ) -> Result<serde_json::Value, Error> {
        let r = self
            .http
            .post(self.url(&format!("/v1/channels/{}/messages:batch", enc(channel))))
            .json(items)
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// Pulls up to `max` messages for `group`, waiting up to `wait` for the first.
    pub async fn pull(
        &self,
        channel: &str,
        group: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, Error> {
        let url = self.url(&format!(
            "/v1/channels/{}/messages?group={}&max={max}&wait={}ms",
            enc(channel),
            enc(group),
            wait.as_millis()
        ));
        let r = self.http.get(url).send().await.map_err(Error::connect)?;
        Ok(Self::answer::<PullAnswer>(r).await?.messages)
    }

    async fn settle(
        &self,
        verb: &str,
        channel: &str,
        group: &str,
        ids: &[String],
        delay: Option<Duration>,
    ) -> Result<Settled, Error> {
        let mut body = serde_json::json!({"group": group, "ids": ids});
        if let Some(d) = delay {
            body["delay"] = serde_json::json!(format!("{}ms", d.as_millis()));
        }
        let r = self
            .http
            .post(self.url(&format!("/v1/channels/{}/{verb}", enc(channel))))
            .json(&body)
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// Acknowledges messages: they are never delivered to `group` again.
    pub async fn ack(&self, channel: &str, group: &str, ids: &[String]) -> Result<Settled, Error> {
        self.settle("acks", channel, group, ids, None).await
    }

    /// Gives messages back for redelivery after `delay`.
    pub async fn nack(
        &self,
        channel: &str,
        group: &str,
        ids: &[String],
        delay: Duration,
    ) -> Result<Settled, Error> {
        self.settle("nacks", channel, group, ids, Some(delay)).await
    }

    /// Stops delivering messages to `group` without processing them.
    pub async fn term(&self, channel: &str, group: &str, ids: &[String]) -> Result<Settled, Error> {
        self.settle("terms", channel, group, ids, None).await
    }

    /// Per-receiver status of a message published from this node.
    pub async fn status(&self, id: &str) -> Result<serde_json::Value, Error> {
        let r = self
            .http
            .get(self.url(&format!("/v1/messages/{}", enc(id))))
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// `GET` any JSON path of the API (e.g. `/v1/stats`).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, Error> {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// POSTs a JSON body to an API path and returns the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(Error::connect)?;
        Self::answer(r).await
    }

    /// DELETEs an API path.
    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        let r = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .map_err(Error::connect)?;
        if r.status().is_success() {
            return Ok(());
        }
        Self::answer::<serde_json::Value>(r).await.map(|_| ())
    }

    /// Creates a consumer group on `channel` (409 `conflict` when it exists).
    pub async fn create_group(
        &self,
        channel: &str,
        name: &str,
        opts: &GroupOptions,
    ) -> Result<serde_json::Value, Error> {
        let mut body = serde_json::json!({"name": name});
        match opts.start {
            GroupStart::Earliest => body["start"] = "earliest".into(),
            GroupStart::Latest => body["start"] = "latest".into(),
            GroupStart::Offset(o) => body["offset"] = o.into(),
            GroupStart::Time(t) => {
                body["time"] = humantime::format_rfc3339_millis(t).to_string().into()
            }
        }
        if let Some(d) = opts.ack_wait {
            body["ack_wait"] = format!("{}ms", d.as_millis()).into();
        }
        if let Some(d) = opts.idle_ttl {
            body["idle_ttl"] = format!("{}ms", d.as_millis()).into();
        }
        if let Some(n) = opts.max_deliveries {
            body["max_deliveries"] = n.into();
        }
        if let Some(n) = opts.max_in_flight {
            body["max_in_flight"] = n.into();
        }
        if !opts.backoff.is_empty() {
            body["backoff"] = opts
                .backoff
                .iter()
                .map(|d| format!("{}ms", d.as_millis()))
                .collect::<Vec<_>>()
                .into();
        }
        self.post_json(&format!("/v1/channels/{}/groups", enc(channel)), &body)
            .await
    }

    /// Creates a consumer group unless it exists already (then it is left as it is).
    pub async fn ensure_group(
        &self,
        channel: &str,
        name: &str,
        opts: &GroupOptions,
    ) -> Result<(), Error> {
        match self.create_group(channel, name, opts).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A group's position, backlog and settings.
    pub async fn group(&self, channel: &str, name: &str) -> Result<serde_json::Value, Error> {
        self.get_json(&format!(
            "/v1/channels/{}/groups/{}",
            enc(channel),
            enc(name)
        ))
        .await
    }

    /// Deletes a group.
    pub async fn delete_group(&self, channel: &str, name: &str) -> Result<(), Error> {
        self.delete(&format!(
            "/v1/channels/{}/groups/{}",
            enc(channel),
            enc(name)
        ))
        .await
    }

    /// Moves a group's position (replay from `start`).
    pub async fn reset_group(
        &self,
        channel: &str,
        name: &str,
        start: GroupStart,
    ) -> Result<serde_json::Value, Error> {
        let body = match start {
            GroupStart::Earliest => serde_json::json!({"start": "earliest"}),
            GroupStart::Latest => serde_json::json!({"start": "latest"}),
            GroupStart::Offset(o) => serde_json::json!({"offset": o}),
            GroupStart::Time(t) => {
                serde_json::json!({"time": humantime::format_rfc3339_millis(t).to_string()})
            }
        };
        self.post_json(
            &format!("/v1/channels/{}/groups/{}/reset", enc(channel), enc(name)),
            &body,
        )
        .await
    }

    /// A group's dead letters.
    pub async fn group_dead_letters(
        &self,
        channel: &str,
        name: &str,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let v = self
            .get_json(&format!(
                "/v1/channels/{}/groups/{}/dead-letters",
                enc(channel),
                enc(name)
            ))
            .await?;
        Ok(v["dead_letters"].as_array().cloned().unwrap_or_default())
    }

    /// Delivers a group's dead letter again, once.
    pub async fn redrive_group_dead_letter(
        &self,
        channel: &str,
        name: &str,
        id: &str,
    ) -> Result<serde_json::Value, Error> {
        self.post_json(
            &format!(
                "/v1/channels/{}/groups/{}/dead-letters/{}/redrive",
                enc(channel),
                enc(name),
                enc(id)
            ),
            &serde_json::json!({}),
        )
        .await
    }

    /// `/v1/stats`.
    pub async fn stats(&self) -> Result<serde_json::Value, Error> {
        self.get_json("/v1/stats").await
    }
}

/// Percent-encodes a path segment (channels may contain `/`).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
