//! The packets agents exchange.

use crate::names::{Channel, NodeId, Role};
use serde::{Deserialize, Serialize};

/// Everything that travels between agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Packet {
    /// Envelopes of one stream, on `{p}.node.{receiver}.data`.
    Data(DataBatch),
    /// Cumulative acknowledgement, on `{p}.node.{sender}.ack`.
    Ack(Ack),
    /// A node announces itself on start or reconnect; peers answer with a keepalive.
    Hello(Announce),
    /// Periodic state.
    Keepalive(Announce),
    /// Clean shutdown.
    Bye(Bye),
    /// Messages first consumed (acknowledged by a consumer group) at a receiver, sent
    /// as a request on `{p}.node.{sender}.ack`; answered with a [`ReceiptAck`].
    Receipt(Receipt),
    /// The sender recorded a receipt batch.
    ReceiptAck(ReceiptAck),
    /// The receiver could not store what it was sent (for example its store refuses
    /// writes), on `{p}.node.{sender}.ack`: resend later.
    Nack(Nack),
    /// Asks a node for one page of its memberships, as a request on
    /// `{p}.node.{node}.state`; answered with a [`StatePage`].
    StateRequest(StateRequest),
    /// One page of a node's memberships.
    State(StatePage),
    /// A management command, on `{p}.mgmt` (every node) or `{p}.node.{id}.mgmt`, sent
    /// as a request; every node it concerns answers with a [`Packet::MgmtReply`].
    Mgmt(crate::mgmt::command::Issued),
    /// A node's answer to a management command.
    MgmtReply(crate::mgmt::command::Reply),
}

/// Freshness proof of a signed frame: the sender's boot counter (persisted, raised at
/// every start) and a counter that only grows within that boot. Ordered boot first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Stamp {
    /// The sender's boot counter.
    pub boot: u64,
    /// Monotonic within the boot, from 1.
    pub counter: u64,
}

/// What a keepalive says about a node's memberships, instead of the list itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// When the memberships last changed (the stamp of that change).
    pub version: Stamp,
    /// Hash of the sorted memberships (see `discovery::state::hash`).
    pub hash: u64,
    /// How many memberships.
    pub count: u32,
}

/// A request for page `page` of `node`'s memberships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRequest {
    /// The node asking.
    pub asker: NodeId,
    /// The node asked (whose subject this is sent on).
    pub node: NodeId,
    /// Page index, from 0.
    pub page: u32,
}

/// One page of a node's memberships at one version; every page fits under max payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatePage {
    /// The node described.
    pub node: NodeId,
    /// The digest of the whole membership list this page belongs to.
    pub digest: Digest,
    /// This page's index.
    pub page: u32,
    /// How many pages make the list.
    pub pages: u32,
    /// This page's memberships.
    pub memberships: Vec<(Channel, Role)>,
}

/// A negative acknowledgement: everything up to `acked` is committed, the rest was
/// refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    /// The node refusing (the stream's receiver).
    pub receiver: NodeId,
    /// The stream's sender.
    pub sender: NodeId,
    /// Channel.
    pub channel: Channel,
    /// The sender's stream epoch.
    pub epoch: u64,
    /// Highest contiguous sequence committed by the receiver.
    pub acked: u64,
    /// Why (for logs and dead-letter history).
    pub reason: String,
    /// Freshness: a replayed refusal is dropped.
    pub stamp: Stamp,
}

/// Consumption receipts from one receiver to one sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The node where the messages were consumed.
    pub receiver: NodeId,
    /// The node that sent them.
    pub sender: NodeId,
    /// Batch id (the receiver's last receipt run in it).
    pub batch: u64,
    /// (message id, consumed at ms on the receiver's clock).
    pub consumed: Vec<(String, i64)>,
}

/// Answer to a [`Receipt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptAck {
    /// The sender answering.
    pub sender: NodeId,
    /// The receiver asked.
    pub receiver: NodeId,
    /// The batch recorded.
    pub batch: u64,
}

/// A batch of envelopes of one (sender, receiver, channel) stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataBatch {
    /// Sending node.
    pub sender: NodeId,
    /// Stream epoch: random, fixed when the sender's database was created.
    pub epoch: u64,
    /// Receiving node.
    pub receiver: NodeId,
    /// Channel.
    pub channel: Channel,
    /// Every sequence below `base` was acknowledged by the receiver or skipped by the
    /// sender; a receiver that lost its state may fast-forward to `base - 1`.
    pub base: u64,
    /// Envelopes in ascending sequence order.
    pub entries: Vec<Entry>,
}

/// One sequence number of a stream: a message, or an explicit skip (expired, dead-lettered,
/// dropped) so that the stream never stalls behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Gap-free sequence number within the stream, from 1.
    pub seq: u64,
    /// The message, or `None` for a skip.
    pub body: Option<MessageBody>,
    /// For a skip: the id of the message skipped, when the sender still knows it. A
    /// receiver that already has that message says so in its ACK (`had`), so that the
    /// sender records it as delivered rather than dead, expired or dropped.
    #[serde(default)]
    pub skipped: Option<String>,
}

/// One message as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageBody {
    /// Message id (ULID), the same for every receiver.
    pub id: String,
    /// Creation time at the sender, ms since the Unix epoch (informational only).
    pub created_at_ms: i64,
    /// Remaining time to live when sent, in ms: clock skew cannot expire or keep it.
    pub ttl_ms: u64,
    /// Content type given at publish.
    pub content_type: String,
    /// Application headers.
    pub headers: Vec<(String, String)>,
    /// Whether `payload` is snappy-compressed.
    pub compressed: bool,
    /// Payload bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Cumulative acknowledgement of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The node acknowledging (the stream's receiver).
    pub receiver: NodeId,
    /// The stream's sender, whose subject this is published on.
    pub sender: NodeId,
    /// Channel.
    pub channel: Channel,
    /// The sender's stream epoch this ACK is for.
    pub epoch: u64,
    /// Highest contiguous sequence committed by the receiver.
    pub acked: u64,
    /// Skipped sequences whose message the receiver had committed before the skip
    /// came (its ACK had been lost): they were delivered after all.
    #[serde(default)]
    pub had: Vec<u64>,
}

/// A node's self-description, sent in hello and keepalive. Small whatever the number
/// of channels: the memberships travel as a digest and are fetched in pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    /// The node.
    pub node: NodeId,
    /// Its database epoch.
    pub epoch: u64,
    /// Freshness: boot (a change means the node restarted) and counter.
    pub stamp: Stamp,
    /// Its memberships, as a digest.
    pub digest: Digest,
    /// Messages waiting to be delivered from it (informational).
    pub pending: u64,
    /// Its API address, for topology views (informational).
    pub api: String,
}

/// Clean shutdown notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bye {
    /// The node leaving.
    pub node: NodeId,
    /// Freshness: a bye from a previous run, or replayed, is ignored.
    pub stamp: Stamp,
}

impl MessageBody {
    /// Builds a body, compressing the payload when it is at least `threshold` bytes and
    /// compression actually shrinks it.
    pub fn new(
        id: String,
        created_at_ms: i64,
        ttl_ms: u64,
        content_type: String,
        headers: Vec<(String, String)>,
        payload: &[u8],
        compress_threshold: Option<usize>,
    ) -> MessageBody {
        if let Some(threshold) = compress_threshold {
            if payload.len() >= threshold {
                if let Ok(c) = snap::raw::Encoder::new().compress_vec(payload) {
                    if c.len() < payload.len() {
                        return MessageBody {
                            id,
                            created_at_ms,
                            ttl_ms,
                            content_type,
                            headers,
                            compressed: true,
                            payload: c,
                        };
                    }
                }
            }
        }
        MessageBody {
            id,
            created_at_ms,
            ttl_ms,
            content_type,
            headers,
            compressed: false,
            payload: payload.to_vec(),
        }
    }

    /// The payload as the application published it; refuses anything that would
    /// decompress to more than `max_len` bytes.
    pub fn decompressed(&self, max_len: usize) -> Result<Vec<u8>, super::DecodeError> {
        if !self.compressed {
            return Ok(self.payload.clone());
        }
        let len = snap::raw::decompress_len(&self.payload)
            .map_err(|e| super::DecodeError::Compression(e.to_string()))?;
        if len > max_len {
            return Err(super::DecodeError::TooLarge(len));
        }
        snap::raw::Decoder::new()
            .decompress_vec(&self.payload)
            .map_err(|e| super::DecodeError::Compression(e.to_string()))
    }

    /// Approximate encoded size, for batch budgeting.
    pub fn approx_size(&self) -> usize {
        super::body_size_bound(
            self.id.len(),
            self.content_type.len(),
            self.headers.iter().map(|(k, v)| (k.len(), v.len())),
            self.payload.len(),
        )
    }
}

impl Packet {
    /// Refuses sequence numbers no real stream can reach (above [`super::MAX_SEQ`]),
    /// so that stream arithmetic never overflows on forged frames.
    pub(crate) fn check_sequences(&self) -> Result<(), String> {
        let max = super::MAX_SEQ;
        let bad = match self {
            Packet::Data(b) => b.base == 0 || b.base > max || b.entries.iter().any(|e| e.seq > max),
            Packet::Ack(a) => a.acked > max || a.had.len() > super::MAX_HAD,
            Packet::Nack(n) => n.acked > max,
            _ => false,
        };
        if bad {
            return Err(format!("sequence number out of range (max {max})"));
        }
        Ok(())
    }
}
