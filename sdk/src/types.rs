//! Roles, options and answers shared by every part of the SDK.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A node's role in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Receives.
    Reader,
    /// Publishes.
    Writer,
    /// Both (`"rw"` on the wire).
    #[serde(rename = "rw")]
    ReadWrite,
}

impl Role {
    /// The short name of [`Role::ReadWrite`], as the API and config files spell it.
    #[allow(non_upper_case_globals)]
    pub const Rw: Role = Role::ReadWrite;

    /// Whether this role receives.
    ///
    /// # Examples
    /// ```
    /// assert!(rmds::Role::ReadWrite.reads() && !rmds::Role::Writer.reads());
    /// ```
    pub fn reads(self) -> bool {
        self != Role::Writer
    }

    /// Whether this role publishes.
    ///
    /// # Examples
    /// ```
    /// assert!(rmds::Role::Rw.writes() && !rmds::Role::Reader.writes());
    /// ```
    pub fn writes(self) -> bool {
        self != Role::Reader
    }
}

impl std::str::FromStr for Role {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Role> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "rw" | "readwrite" | "read-write" => Ok(Role::ReadWrite),
            other => Err(crate::Error::new(
                crate::ErrorKind::BadRequest,
                format!("invalid role {other:?}: expected reader, writer or rw"),
            )),
        }
    }
}

/// Options of [`Client::publish_with`](crate::Client::publish_with).
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

/// The agent's answer to a publish: the message is durable on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Result of ack / nack / term / extend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// Ids applied.
    pub applied: Vec<String>,
    /// Ids not leased by the group.
    pub not_found: Vec<String>,
}
