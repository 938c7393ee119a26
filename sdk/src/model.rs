//! Typed answers of the management and observation API, field for field as the agent
//! sends them (`GET /v1/nodes`, `/v1/topology`, `/v1/channels`, `/v1/stats`, …).

use crate::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// This node.
    pub node_id: String,
    /// `ok`.
    pub status: String,
    /// NATS connection: `connected`, `connecting`, `disconnected`, …
    pub nats: String,
    /// How this agent authenticates to NATS (`none`, `user_password`, …).
    #[serde(default)]
    pub nats_auth: Option<String>,
    /// Why NATS is not connected, when it is not.
    #[serde(default)]
    pub nats_error: Option<String>,
    /// The kick record, when this node was kicked and has not joined since.
    #[serde(default)]
    pub kicked: Option<serde_json::Value>,
}

/// A node of `GET /v1/topology`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyNode {
    /// Heard from within `node_offline_timeout`.
    pub online: bool,
    /// The node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// The members of a channel in `GET /v1/topology`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMembers {
    /// Reader nodes (`reader` or `rw`).
    pub readers: Vec<String>,
    /// Writer nodes (`writer` or `rw`).
    pub writers: Vec<String>,
}

/// `GET /v1/topology`: nodes and channels as a graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The node answering.
    pub node_id: String,
    /// Every known node.
    pub nodes: BTreeMap<String, TopologyNode>,
    /// Every known channel.
    pub channels: BTreeMap<String, ChannelMembers>,
}

/// A node of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: String,
    /// Online now.
    pub online: bool,
    /// The node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Database epoch (changes when its store is recreated).
    pub epoch: u64,
    /// API address it advertises (peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Last heard from (ms since the Unix epoch, local clock; peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Seconds since last heard from (peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ago_seconds: Option<u64>,
    /// What it reported as pending (peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Whether the answering node follows this peer's keepalives and times it out
    /// (peers). A node that writes a channel follows every peer, a node that writes
    /// none only the writers; an untracked peer is online from its hello to its bye.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked: Option<bool>,
    /// Whether NATS is connected (the node answering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<bool>,
    /// Its kick record (the node answering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kicked: Option<serde_json::Value>,
    /// Channel -> role.
    pub memberships: BTreeMap<String, Role>,
}

/// A channel of `GET /v1/channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    /// Channel.
    pub channel: String,
    /// This node's role, when it is a member.
    pub role: Option<Role>,
    /// Reader nodes.
    pub readers: usize,
    /// Writer nodes.
    pub writers: usize,
}

/// A member of a channel (`GET /v1/channels/{ch}`, `/subscribers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// Online now.
    pub online: bool,
    /// The node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// `GET /v1/channels/{ch}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Channel.
    pub channel: String,
    /// This node's role, when it is a member.
    pub role: Option<Role>,
    /// Every known member.
    pub members: Vec<Member>,
}

/// `GET /v1/stats`: the node's counters. The best-known ones are fields; every
/// other counter is in `counters` under its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The node answering.
    pub node_id: String,
    /// NATS connected now.
    pub nats_connected: bool,
    /// Seconds since the agent started.
    pub uptime_seconds: u64,
    /// Messages published from this node.
    pub published: u64,
    /// Messages delivered to receivers (acknowledged by them).
    pub delivered: u64,
    /// Deliveries waiting at this node.
    pub pending_messages: i64,
    /// Peers online.
    pub peers_online: u64,
    /// Every other counter, by name.
    #[serde(flatten)]
    pub counters: BTreeMap<String, i64>,
}

/// A consumer group (`GET /v1/channels/{ch}/groups/{g}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Channel.
    pub channel: String,
    /// Group name.
    pub name: String,
    /// Every offset at or below this is acknowledged.
    pub ack_floor: u64,
    /// The next offset never handed out yet.
    pub next_offset: u64,
    /// The offset the next appended entry will get.
    pub log_head: u64,
    /// Entries above the floor not yet acknowledged (in flight included).
    pub pending: u64,
    /// Messages leased right now.
    pub in_flight: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Consumers seen recently.
    pub consumers: Vec<String>,
    /// Lease on a delivered message (ms).
    pub ack_wait_ms: u64,
    /// Deliveries before the dead-letter queue (0: no limit).
    pub max_deliveries: u32,
    /// Most messages leased at once (0: no limit).
    pub max_in_flight: u32,
    /// Deleted after this long idle (ms, 0: never).
    pub idle_ttl_ms: u64,
    /// Waits before redelivery (ms; the last repeats).
    pub backoff_ms: Vec<u64>,
    /// Created (ms).
    pub created_at: i64,
    /// Last pull or ack (ms).
    pub last_active: i64,
}

/// A dead letter of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDeadLetter {
    /// Log offset.
    pub offset: u64,
    /// Message id.
    pub id: String,
    /// `dead`, or `redriven` while being delivered again.
    pub state: String,
    /// Deliveries made.
    pub deliveries: u32,
    /// Why it is here.
    pub reason: String,
    /// The last error a consumer reported with a nack.
    pub last_error: Option<String>,
    /// When it became dead (ms).
    pub dead_at: i64,
}

/// A sender's dead letter: a delivery to one receiver given up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Message id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// The receiver it did not reach.
    pub receiver: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Why.
    pub reason: String,
    /// Sends made.
    pub attempts: u32,
    /// Send times (ms) of the last rounds.
    pub history: Vec<i64>,
    /// When it was given up (ms).
    pub dead_at: i64,
}

/// Where a message stands for one receiver (`GET /v1/messages/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverStatus {
    /// Receiver node.
    pub receiver: String,
    /// `queued`, `sent`, `delivered`, `consumed`, `expired`, `dead`, `dropped` or `purged`.
    pub state: String,
    /// Stream sequence.
    pub seq: u64,
    /// Sends so far.
    pub attempts: u32,
    /// Queued (ms).
    pub queued_at: i64,
    /// Last sent (ms).
    pub sent_at: Option<i64>,
    /// Done (ms).
    pub done_at: Option<i64>,
    /// First acknowledged by a consumer group at the receiver (ms).
    pub consumed_at: Option<i64>,
    /// Why it ended, when not delivered.
    pub reason: Option<String>,
}

/// A message's status at its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatus {
    /// Message id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Waiting for readers to be discovered.
    pub unrouted: bool,
    /// Per receiver.
    pub receivers: Vec<ReceiverStatus>,
}

/// A node's answer to a management command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnswer {
    /// The node.
    pub node: String,
    /// What it did, or why not.
    pub detail: String,
}

/// A node that did not answer a management command in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silent {
    /// The node.
    pub node: String,
    /// Whether the issuer considered it online (an offline node gets the command
    /// when it comes back, while the command is fresh).
    pub online: bool,
}

/// What became of a kick or purge, per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MgmtAnswer {
    /// The command id (in every node's audit log).
    pub id: String,
    /// The command, as issued.
    pub command: serde_json::Value,
    /// Nodes that applied it.
    pub applied: Vec<NodeAnswer>,
    /// Nodes that refused it.
    pub failed: Vec<NodeAnswer>,
    /// Nodes that did not answer in time.
    pub not_answered: Vec<Silent>,
    /// Set when the command could not travel (NATS down): only this node applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A management command this node applied (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Command id.
    pub id: String,
    /// `kick`, `kick_channel` or `purge`.
    pub kind: String,
    /// The node that issued it.
    pub issuer: String,
    /// The command.
    pub command: serde_json::Value,
    /// What this node did.
    pub detail: String,
    /// Applied (ms).
    pub at: i64,
}

/// What a purge removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeWhat {
    /// Messages no receiver has acknowledged yet: dropped on purpose (receipts say
    /// `purged`).
    Queued,
    /// Records of delivered messages.
    Sent,
    /// Both.
    All,
}

/// Which nodes a purge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The node answering.
    This,
    /// Every node.
    All,
    /// One node.
    Node(String),
}

impl Scope {
    pub(crate) fn wire(&self) -> &str {
        match self {
            Scope::This => "self",
            Scope::All => "all",
            Scope::Node(n) => n,
        }
    }
}
