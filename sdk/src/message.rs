//! A message as an application receives it, and how it is settled.

use crate::{Error, ErrorKind, Result, Settled};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A message delivered to this node's application, leased to its consumer group until
/// it is settled ([`ack`](Message::ack), [`nack`](Message::nack),
/// [`term`](Message::term)) or its lease (`ack_wait`) runs out.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let mut sub = d.subscription().await;
/// use futures::StreamExt;
/// #[derive(serde::Deserialize)]
/// struct Line { text: String }
/// if let Some(msg) = sub.next().await {
///     let msg = msg?;
///     let line: Line = msg.json()?;
///     println!("{} says {}", msg.sender, line.text);
///     msg.ack().await?;
/// }
/// # Ok(()) });
/// ```
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
    #[serde(skip)]
    pub(crate) settler: Option<Settler>,
}

/// How a message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Ack,
    Nack,
    Term,
    Extend,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Ack => "ack",
            Op::Nack => "nack",
            Op::Term => "term",
            Op::Extend => "extend",
        }
    }
}

/// A settlement on its way to the subscription that delivered the message.
pub(crate) struct SettleReq {
    pub op: Op,
    pub ids: Vec<String>,
    pub delay: Option<Duration>,
    pub error: Option<String>,
    pub reply: oneshot::Sender<Result<Settled>>,
}

/// Where a message's settlement goes.
#[derive(Clone)]
pub(crate) enum Settler {
    /// The subscription (WebSocket or embedded) that delivered it.
    Sub(mpsc::UnboundedSender<SettleReq>),
    /// The REST API of the agent it was pulled from.
    Http {
        client: crate::Client,
        group: String,
    },
}

impl std::fmt::Debug for Settler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Settler::Sub(_) => f.write_str("Settler::Subscription"),
            Settler::Http { group, .. } => write!(f, "Settler::Http({group})"),
        }
    }
}

impl Message {
    /// The payload bytes, whatever the encoding (a JSON payload is written out
    /// again from its value).
    ///
    /// # Examples
    /// ```
    /// let m: rmds::Message = serde_json::from_value(serde_json::json!({
    ///     "id": "01J", "channel": "chat", "sender": "alice", "offset": 1,
    ///     "created_at": "2026-12-02T00:00:00Z", "content_type": "text/plain",
    ///     "data": "hello"
    /// })).unwrap();
    /// assert_eq!(m.bytes(), b"hello");
    /// ```
    pub fn bytes(&self) -> Vec<u8> {
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

    /// The payload bytes (the same as [`Message::bytes`]).
    ///
    /// # Examples
    /// ```
    /// let m: rmds::Message = serde_json::from_value(serde_json::json!({
    ///     "id": "01J", "channel": "chat", "sender": "alice", "offset": 1,
    ///     "created_at": "2026-12-02T00:00:00Z", "content_type": "text/plain", "data": "hi"
    /// })).unwrap();
    /// assert_eq!(m.payload(), m.bytes());
    /// ```
    pub fn payload(&self) -> Vec<u8> {
        self.bytes()
    }

    /// The payload as text: a text payload as it is, a JSON payload written out; a
    /// payload that is not UTF-8 is a [`ErrorKind::Decode`] error.
    ///
    /// # Examples
    /// ```
    /// let m: rmds::Message = serde_json::from_value(serde_json::json!({
    ///     "id": "01J", "channel": "chat", "sender": "alice", "offset": 1,
    ///     "created_at": "2026-12-02T00:00:00Z", "content_type": "text/plain",
    ///     "data": "hello"
    /// })).unwrap();
    /// assert_eq!(m.text().unwrap(), "hello");
    /// ```
    pub fn text(&self) -> Result<String> {
        String::from_utf8(self.bytes()).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("payload of {} is not UTF-8", self.id),
            )
            .with_source(e)
        })
    }

    /// The payload as `T`, from JSON ([`ErrorKind::Decode`] when it is not one).
    ///
    /// # Examples
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Line { text: String }
    /// let m: rmds::Message = serde_json::from_value(serde_json::json!({
    ///     "id": "01J", "channel": "chat", "sender": "alice", "offset": 1,
    ///     "created_at": "2026-12-02T00:00:00Z", "content_type": "application/json",
    ///     "data": {"text": "hi"}
    /// })).unwrap();
    /// assert_eq!(m.json::<Line>().unwrap().text, "hi");
    /// ```
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        match &self.data {
            Some(v) if self.content_type.starts_with("application/json") => {
                T::deserialize(v).map_err(Error::decode)
            }
            _ => serde_json::from_slice(&self.bytes()).map_err(Error::decode),
        }
    }

    /// Acknowledges: processed, never delivered to this group again. Waits for the
    /// agent's answer; an id it does not know any more (already settled, or handed
    /// to another consumer after the lease ran out) is under `not_found`.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let msg = d.message().await;
    /// let settled = msg.ack().await?;
    /// assert_eq!(settled.applied, vec![msg.id.clone()]);
    /// # Ok(()) });
    /// ```
    pub async fn ack(&self) -> Result<Settled> {
        self.settle(Op::Ack, None, None).await
    }

    /// Gives the message back: delivered again after `delay`.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let msg = d.message().await;
    /// msg.nack(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) });
    /// ```
    pub async fn nack(&self, delay: Duration) -> Result<Settled> {
        self.settle(Op::Nack, Some(delay), None).await
    }

    /// Gives the message back with the error that made processing fail; the group's
    /// dead-letter queue keeps the last one.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let msg = d.message().await;
    /// msg.nack_with_error(std::time::Duration::ZERO, "database locked").await?;
    /// # Ok(()) });
    /// ```
    pub async fn nack_with_error(&self, delay: Duration, error: &str) -> Result<Settled> {
        self.settle(Op::Nack, Some(delay), Some(error.to_string()))
            .await
    }

    /// Never delivers the message to this group again without processing it.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let msg = d.message().await;
    /// msg.term().await?;
    /// # Ok(()) });
    /// ```
    pub async fn term(&self) -> Result<Settled> {
        self.settle(Op::Term, None, None).await
    }

    /// Still working: the lease runs for another `ack_wait` from now.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let msg = d.message().await;
    /// msg.extend().await?;
    /// # Ok(()) });
    /// ```
    pub async fn extend(&self) -> Result<Settled> {
        self.settle(Op::Extend, None, None).await
    }

    async fn settle(
        &self,
        op: Op,
        delay: Option<Duration>,
        error: Option<String>,
    ) -> Result<Settled> {
        match &self.settler {
            Some(Settler::Sub(tx)) => {
                let (reply, rx) = oneshot::channel();
                tx.send(SettleReq {
                    op,
                    ids: vec![self.id.clone()],
                    delay,
                    error,
                    reply,
                })
                .map_err(|_| Error::closed("the subscription"))?;
                rx.await.map_err(|_| Error::closed("the subscription"))?
            }
            Some(Settler::Http { client, group }) => {
                client
                    .settle_ids(op, &self.channel, group, std::slice::from_ref(&self.id), delay, error)
                    .await
            }
            None => Err(Error::new(
                ErrorKind::BadRequest,
                "this message was not delivered by a subscription or a pull; settle it with Client::ack",
            )),
        }
    }
}
