//! [`Channel`]: send to a channel and consume from it.

use crate::subscription::{SubscribeOptions, Subscription};
use crate::Handler;
use crate::{Error, ErrorKind, Message, Node, PublishOptions, Receipt, Result, Role};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// Options of [`Channel::send_with`].
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Content type (default `application/octet-stream`).
    pub content_type: Option<String>,
    /// Time to live (default: the channel's policy, else the agent's `message_expiry`).
    pub ttl: Option<Duration>,
    /// Same key, same message: stored once, however often the send is retried.
    pub idempotency_key: Option<String>,
    /// Application headers.
    pub headers: Vec<(String, String)>,
    /// Give up waiting for the agent after this long ([`ErrorKind::Timeout`]). The
    /// message may still have been stored: retry with the same idempotency key.
    pub timeout: Option<Duration>,
}

/// A channel this node has joined. Cheap to clone.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Line { text: String }
/// let chat = node.join("chat", rmds::Role::ReadWrite).await?;
/// let receipt = chat.send(&Line { text: "hi".into() }).await?;
/// println!("{} goes to {:?}", receipt.id, receipt.receivers);
/// chat.on_message("chat-ui", |m| async move {
///     let line: Line = m.json()?;
///     println!("{}: {}", m.sender, line.text);
///     Ok::<_, rmds::Error>(())
/// }).await?;
/// # Ok(()) });
/// ```
#[derive(Clone, Debug)]
pub struct Channel {
    node: Node,
    name: String,
    role: Role,
}

impl Channel {
    pub(crate) fn new(node: Node, name: &str, role: Role) -> Channel {
        Channel {
            node,
            name: name.to_string(),
            role,
        }
    }

    /// The channel's name.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// assert_eq!(chat.name(), "chat");
    /// # Ok(()) });
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role this node joined with.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// assert!(chat.role().writes());
    /// # Ok(()) });
    /// ```
    pub fn role(&self) -> Role {
        self.role
    }

    /// The node this channel belongs to.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// println!("on node {}", chat.node().id());
    /// # Ok(()) });
    /// ```
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends `value` as JSON. Durable on this node when it returns `Ok`; delivered to
    /// every reader node in order, exactly once.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// let r = chat.send(&serde_json::json!({"text": "hi"})).await?;
    /// println!("{} for {:?}", r.id, r.receivers);
    /// # Ok(()) });
    /// ```
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<Receipt> {
        let body = serde_json::to_vec(value).map_err(|e| {
            Error::new(ErrorKind::BadRequest, format!("cannot encode as JSON: {e}")).with_source(e)
        })?;
        self.send_with(
            body,
            SendOptions {
                content_type: Some("application/json".into()),
                ..SendOptions::default()
            },
        )
        .await
    }

    /// Sends raw bytes (`application/octet-stream`).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// chat.send_bytes(vec![0u8, 1, 2]).await?;
    /// # Ok(()) });
    /// ```
    pub async fn send_bytes(&self, payload: impl Into<Vec<u8>>) -> Result<Receipt> {
        self.send_with(payload, SendOptions::default()).await
    }

    /// Sends text (`text/plain; charset=utf-8`).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// chat.send_text("hello").await?;
    /// # Ok(()) });
    /// ```
    pub async fn send_text(&self, text: &str) -> Result<Receipt> {
        self.send_with(
            text.as_bytes().to_vec(),
            SendOptions {
                content_type: Some("text/plain; charset=utf-8".into()),
                ..SendOptions::default()
            },
        )
        .await
    }

    /// Sends with every option: content type, time to live, idempotency key,
    /// headers and a timeout.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// use std::time::Duration;
    /// let opts = rmds::SendOptions {
    ///     content_type: Some("text/plain".into()),
    ///     ttl: Some(Duration::from_secs(3600)),
    ///     idempotency_key: Some("order-42".into()),
    ///     headers: vec![("trace".into(), "abc".into())],
    ///     timeout: Some(Duration::from_secs(2)),
    /// };
    /// chat.send_with("order 42 shipped", opts).await?;
    /// # Ok(()) });
    /// ```
    pub async fn send_with(
        &self,
        payload: impl Into<Vec<u8>>,
        opts: SendOptions,
    ) -> Result<Receipt> {
        let payload = payload.into();
        let fut = self.publish(payload, &opts);
        match opts.timeout {
            Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no answer from the agent within {t:?}; the message may be stored, retry with the same idempotency key"
                    ),
                )
            })?,
            None => fut.await,
        }
    }

    async fn publish(&self, payload: Vec<u8>, opts: &SendOptions) -> Result<Receipt> {
        #[cfg(feature = "embedded")]
        if let Some(e) = &self.node.inner.embedded {
            return e.publish(&self.name, payload, opts).await;
        }
        let p = PublishOptions {
            content_type: opts.content_type.clone().unwrap_or_default(),
            ttl: opts.ttl,
            idempotency_key: opts.idempotency_key.clone(),
            headers: opts.headers.clone(),
        };
        self.node
            .inner
            .client
            .publish_with(&self.name, payload, &p)
            .await
    }

    /// Sends many JSON values in one request (one store transaction); each item has
    /// its own result, in order.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// let results = chat.send_batch(&[serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]).await?;
    /// assert!(results.iter().all(|r| r.is_ok()));
    /// # Ok(()) });
    /// ```
    pub async fn send_batch<T: Serialize>(&self, items: &[T]) -> Result<Vec<Result<Receipt>>> {
        #[cfg(feature = "embedded")]
        if let Some(e) = &self.node.inner.embedded {
            return e.publish_batch(&self.name, items).await;
        }
        let v = self
            .node
            .inner
            .client
            .publish_batch(&self.name, items)
            .await?;
        let results = v["results"]
            .as_array()
            .ok_or_else(|| Error::new(ErrorKind::Decode, "batch answer without results"))?;
        Ok(results
            .iter()
            .map(|r| {
                let status = r["status"].as_u64().unwrap_or(0) as u16;
                if (200..300).contains(&status) {
                    serde_json::from_value::<Receipt>(r.clone()).map_err(Error::decode)
                } else {
                    Err(Error::from_status(
                        status,
                        r["error"]["code"].as_str().map(String::from),
                        r["error"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ))
                }
            })
            .collect())
    }

    /// Subscribes through consumer `group` (created with `opts` when it does not
    /// exist): a [`Stream`](futures::Stream) of messages, with at most `opts.credit`
    /// unsettled at once. It reconnects by itself when the agent restarts.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// use futures::StreamExt;
    /// let mut sub = chat.subscribe("audit", rmds::SubscribeOptions { credit: 10, ..Default::default() }).await?;
    /// # d.bob_chat.send_text("hi alice").await?;
    /// if let Some(m) = sub.next().await {
    ///     let m = m?;
    ///     println!("{}", m.text()?);
    ///     m.ack().await?;
    /// }
    /// # Ok(()) });
    /// ```
    pub async fn subscribe(&self, group: &str, opts: SubscribeOptions) -> Result<Subscription> {
        Subscription::start(self.clone(), group, opts).await
    }

    /// Runs `handler` for every message of `group` (at most `opts.concurrency` at
    /// once, default 1: in order): `Ok` acks the message, `Err` nacks it (with the
    /// error's text) so that it comes back. A handler may also settle the message
    /// itself. Returns at once; the [`Handler`] stops it.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// let h = chat.on_message("printer", |m| async move {
    ///     println!("{}: {}", m.sender, m.text()?);
    ///     Ok::<_, rmds::Error>(())
    /// }).await?;
    /// # d.bob_chat.send_text("hi alice").await?;
    /// tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    /// h.stop().await?;
    /// # Ok(()) });
    /// ```
    pub async fn on_message<F, Fut, E>(&self, group: &str, handler: F) -> Result<Handler>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.on_message_with(group, SubscribeOptions::default(), handler)
            .await
    }

    /// [`Channel::on_message`] with subscription options (credit, concurrency, the
    /// group's settings).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let jobs = d.chat.clone();
    /// let opts = rmds::SubscribeOptions { credit: 32, concurrency: 8, ..Default::default() };
    /// jobs.on_message_with("workers", opts, |m| async move {
    ///     println!("job {}", m.id);
    ///     Ok::<_, rmds::Error>(())
    /// }).await?;
    /// # Ok(()) });
    /// ```
    pub async fn on_message_with<F, Fut, E>(
        &self,
        group: &str,
        opts: SubscribeOptions,
        handler: F,
    ) -> Result<Handler>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let concurrency = opts.concurrency.max(1);
        let sub = self.subscribe(group, opts).await?;
        Ok(Handler::spawn(sub, concurrency, handler))
    }

    /// Leaves the channel.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// chat.leave().await?;
    /// # Ok(()) });
    /// ```
    pub async fn leave(&self) -> Result<()> {
        self.node.leave(&self.name).await
    }
}
