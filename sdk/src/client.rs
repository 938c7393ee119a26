//! The low-level HTTP client: one method per route of the agent's API.

use crate::{Error, ErrorKind, Message, PublishOptions, Receipt, Role, Settled};
use serde::Serialize;
use std::time::Duration;

/// The header the SDK sends on every request (`X-Rmds-Request: 1`): the agent's
/// cross-site guard lets a POST with a text or form body through only with it.
pub const REQUEST_MARKER: &str = "x-rmds-request";

/// The low-level client of the agent's HTTP API: one method per route. Most code
/// uses [`Node`](crate::Node) and [`Channel`](crate::Channel) instead. Cheap to clone.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let url = d.url();
/// let client = rmds::Client::new(&url); // url: e.g. "http://127.0.0.1:7700"
/// client.join("chat", rmds::Role::ReadWrite).await?;
/// let receipt = client.publish_json("chat", &serde_json::json!({"text": "hi"})).await?;
/// println!("stored as {} for {:?}", receipt.id, receipt.receivers);
/// for m in client.pull("chat", "default", 10, std::time::Duration::from_millis(200)).await? {
///     m.ack().await?;
/// }
/// # Ok(()) });
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    api_key: Option<std::sync::Arc<str>>,
}

impl Client {
    /// A client for the agent at `base` (e.g. `http://127.0.0.1:7700`).
    ///
    /// # Examples
    /// ```
    /// let client = rmds::Client::new("http://127.0.0.1:7700/");
    /// assert_eq!(client.base(), "http://127.0.0.1:7700");
    /// ```
    pub fn new(base: impl Into<String>) -> Client {
        Client::build(base.into(), None)
    }

    /// A client that sends an API key (`X-API-Key`) with every request, for an agent
    /// with `api.auth.enabled`.
    ///
    /// # Examples
    /// ```
    /// let client = rmds::Client::with_api_key("http://127.0.0.1:7700", "rmds_k_example");
    /// assert_eq!(client.base(), "http://127.0.0.1:7700");
    /// ```
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
            api_key: key.map(std::sync::Arc::from),
        }
    }

    /// The agent's base URL.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(rmds::Client::new("http://127.0.0.1:7700").base(), "http://127.0.0.1:7700");
    /// ```
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API key this client sends, if any.
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The WebSocket URL of `path` on the same agent.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{base}{path}")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, Error> {
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(Error::connect)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(Error::decode);
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = v["error"]["code"].as_str().map(String::from);
        let message = v["error"]["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(Error::from_status(status.as_u16(), code, message))
    }

    /// `GET /healthz`.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let h = client.health().await?;
    /// assert_eq!(h["node_id"], "alice");
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.join("news", rmds::Role::Writer).await?;
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.leave("chat").await?;
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let r = client.publish_bytes("chat", b"\x00\x01".to_vec(), "application/octet-stream", None).await?;
    /// assert_eq!(r.receivers, ["bob"]);
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let opts = rmds::PublishOptions {
    ///     content_type: "text/plain".into(),
    ///     idempotency_key: Some("order-7".into()),
    ///     ..Default::default()
    /// };
    /// let first = client.publish_with("chat", b"order 7".to_vec(), &opts).await?;
    /// let again = client.publish_with("chat", b"order 7".to_vec(), &opts).await?;
    /// assert_eq!((again.id, again.duplicate), (first.id, true));
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.publish_text("chat", "hello").await?;
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.publish_json("chat", &serde_json::json!({"text": "hi"})).await?;
    /// # Ok(()) });
    /// ```
    pub async fn publish_json<T: Serialize>(
        &self,
        channel: &str,
        value: &T,
    ) -> Result<Receipt, Error> {
        let body = serde_json::to_vec(value).map_err(|e| {
            Error::new(ErrorKind::BadRequest, format!("cannot encode as JSON: {e}")).with_source(e)
        })?;
        self.publish_bytes(channel, body, "application/json", None)
            .await
    }

    /// Publishes many JSON payloads in one request; returns the raw per-item results.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let r = client.publish_batch("chat", &[1, 2, 3]).await?;
    /// assert_eq!(r["accepted"], 3);
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.bob.client().clone();
    /// # d.chat.send_text("hi bob").await?;
    /// let msgs = client.pull("chat", "default", 10, std::time::Duration::from_secs(5)).await?;
    /// for m in &msgs { m.ack().await?; }
    /// # Ok(()) });
    /// ```
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
        #[derive(serde::Deserialize)]
        struct PullAnswer {
            messages: Vec<Message>,
        }
        let mut msgs = Self::answer::<PullAnswer>(r).await?.messages;
        for m in &mut msgs {
            m.settler = Some(crate::message::Settler::Http {
                client: self.clone(),
                group: group.to_string(),
            });
        }
        Ok(msgs)
    }

    pub(crate) async fn settle_ids(
        &self,
        op: crate::message::Op,
        channel: &str,
        group: &str,
        ids: &[String],
        delay: Option<Duration>,
        error: Option<String>,
    ) -> Result<Settled, Error> {
        use crate::message::Op;
        let verb = match op {
            Op::Ack => "acks",
            Op::Nack => "nacks",
            Op::Term => "terms",
            Op::Extend => "extends",
        };
        let mut body = serde_json::json!({"group": group, "ids": ids});
        if let Some(d) = delay {
            body["delay"] = serde_json::json!(format!("{}ms", d.as_millis()));
        }
        if let Some(e) = error {
            body["error"] = serde_json::json!(e);
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.bob.client().clone();
    /// # d.chat.send_text("hi bob").await?;
    /// let msgs = client.pull("chat", "default", 10, std::time::Duration::from_secs(5)).await?;
    /// let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    /// let done = client.ack("chat", "default", &ids).await?;
    /// assert_eq!(done.applied, ids);
    /// # Ok(()) });
    /// ```
    pub async fn ack(&self, channel: &str, group: &str, ids: &[String]) -> Result<Settled, Error> {
        self.settle_ids(crate::message::Op::Ack, channel, group, ids, None, None)
            .await
    }

    /// Gives messages back for redelivery after `delay`.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.bob.client().clone();
    /// # d.chat.send_text("hi bob").await?;
    /// let msgs = client.pull("chat", "default", 10, std::time::Duration::from_secs(5)).await?;
    /// let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    /// client.nack("chat", "default", &ids, std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) });
    /// ```
    pub async fn nack(
        &self,
        channel: &str,
        group: &str,
        ids: &[String],
        delay: Duration,
    ) -> Result<Settled, Error> {
        self.settle_ids(
            crate::message::Op::Nack,
            channel,
            group,
            ids,
            Some(delay),
            None,
        )
        .await
    }

    /// Stops delivering messages to `group` without processing them.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.bob.client().clone();
    /// # d.chat.send_text("hi bob").await?;
    /// let msgs = client.pull("chat", "default", 10, std::time::Duration::from_secs(5)).await?;
    /// let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    /// client.term("chat", "default", &ids).await?;
    /// # Ok(()) });
    /// ```
    pub async fn term(&self, channel: &str, group: &str, ids: &[String]) -> Result<Settled, Error> {
        self.settle_ids(crate::message::Op::Term, channel, group, ids, None, None)
            .await
    }

    /// Per-receiver status of a message published from this node.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let id = client.publish_text("chat", "hi").await?.id;
    /// let st = client.status(&id).await?;
    /// assert_eq!(st["receivers"][0]["receiver"], "bob");
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let nodes = client.get_json("/v1/nodes").await?;
    /// assert!(nodes["nodes"].is_array());
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let answer = client.post_json("/v1/purge", &serde_json::json!({"what": "sent", "scope": "self"})).await?;
    /// assert_eq!(answer["applied"][0]["node"], "alice");
    /// # Ok(()) });
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.create_group("chat", "tmp", &Default::default()).await?;
    /// client.delete("/v1/channels/chat/groups/tmp").await?;
    /// # Ok(()) });
    /// ```
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

    /// `/v1/stats`.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let s = client.stats().await?;
    /// println!("published {}", s["published"]);
    /// # Ok(()) });
    /// ```
    pub async fn stats(&self) -> Result<serde_json::Value, Error> {
        self.get_json("/v1/stats").await
    }
}

/// Percent-encodes a path segment (channels may contain `/`).
pub(crate) fn enc(s: &str) -> String {
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
