//! The application service: publish, pull and settle with every rule that applies to
//! them (membership, size, JSON, schema, routing policy, backpressure, metrics).
//!
//! REST (`api/messages.rs`, `api/batch.rs`), the WebSocket (`api/ws.rs`) and the
//! embedded SDK (`rmds` with the `embedded` feature) all call this one service; none of
//! them repeats a rule. Errors are [`ServiceError`]s: an HTTP status, a stable code and
//! a message a person can act on, the same whichever way the call came in.

mod consume;
mod error;
mod publish;

pub use consume::{check_reader, Pull};
pub use error::ServiceError;
pub use publish::{check_routable, check_writer, Draft, Enqueue, Published};

use crate::delivery::Delivery;
use crate::discovery::Discovery;
use crate::groups::Groups;
use crate::metrics::Metrics;
use crate::names::{Channel, Role};
use crate::store::Store;
use crate::transport::Transport;
use std::sync::Arc;
use std::time::Duration;

/// Every component an application call can reach. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    /// Configuration.
    pub config: Arc<crate::config::Config>,
    /// Store.
    pub store: Store,
    /// Peers and memberships.
    pub discovery: Discovery,
    /// Sending side.
    pub delivery: Delivery,
    /// Consumer groups.
    pub groups: Groups,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// NATS.
    pub transport: Transport,
    /// Domains, schemas and channel policies.
    pub domains: crate::domains::Domains,
    /// Management across nodes.
    pub mgmt: crate::mgmt::Mgmt,
    /// Sampled history and resources.
    pub stats: crate::stats::Stats,
}

/// Parses a duration such as `"30s"`, naming `key` in the error.
pub fn parse_duration(key: &str, v: &str) -> Result<Duration, ServiceError> {
    humantime::parse_duration(v).map_err(|e| {
        ServiceError::bad_request(format!(
            "invalid {key} {v:?}: {e} (use e.g. \"30s\", \"5m\")"
        ))
    })
}

/// Parses a duration and refuses one past `max` (see `durations.rs`), naming `key`.
pub fn parse_bounded(key: &str, v: &str, max: Duration) -> Result<Duration, ServiceError> {
    let d = parse_duration(key, v)?;
    crate::durations::check(key, d, max).map_err(ServiceError::bad_request)?;
    Ok(d)
}

impl Service {
    /// Joins `channel` with `role` (idempotent); a join through the API also ends a
    /// kick of this node from that channel. Answers whether anything changed.
    pub async fn join(&self, channel: &Channel, role: Role) -> Result<bool, ServiceError> {
        let changed = self
            .discovery
            .join(channel.clone(), role)
            .await
            .map_err(|e| ServiceError::unavailable(e.to_string()))?;
        self.joined_after_kick(channel).await?;
        Ok(changed)
    }

    /// This node's kick record, if it was kicked and has not joined since.
    pub async fn kicked(&self) -> Option<serde_json::Value> {
        self.store
            .reads
            .read(crate::store::audit::kicked)
            .await
            .ok()
            .flatten()
    }

    /// An explicit join ends a kick: of the whole node, and of that channel.
    async fn joined_after_kick(&self, channel: &Channel) -> Result<(), ServiceError> {
        use serde_json::{json, Value};
        if self.kicked().await.is_none() {
            return Ok(());
        }
        let ch = json!(channel.as_str());
        self.store
            .writer
            .run(move |c| {
                let Some(mut k) = crate::store::audit::kicked(c)? else {
                    return Ok(());
                };
                k["all"] = json!(false);
                let rest: Vec<Value> = k["channels"]
                    .as_array()
                    .map(|a| a.iter().filter(|x| **x != ch).cloned().collect())
                    .unwrap_or_default();
                if rest.is_empty() {
                    crate::store::audit::set_kicked(c, None)
                } else {
                    k["channels"] = json!(rest);
                    crate::store::audit::set_kicked(c, Some(&k))
                }
            })
            .await
            .map_err(|e| ServiceError::unavailable(e.to_string()))
    }

    /// Leaves `channel`; 404 when this node is not a member.
    pub async fn leave(&self, channel: &Channel) -> Result<(), ServiceError> {
        let left = self
            .discovery
            .leave(channel)
            .await
            .map_err(|e| ServiceError::unavailable(e.to_string()))?;
        if !left {
            return Err(ServiceError::not_found(format!(
                "this node is not a member of {channel}"
            )));
        }
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> String {
        self.discovery.me().to_string()
    }

    /// A message's time to live: `ttl` when given (bounded, above zero), else the
    /// channel's effective policy.
    pub fn ttl_of(&self, channel: &Channel, ttl: Option<&str>) -> Result<Duration, ServiceError> {
        match ttl {
            Some(v) => {
                let d = parse_bounded("ttl", v, crate::durations::MAX_LIFETIME)?;
                if d.is_zero() {
                    return Err(ServiceError::bad_request("ttl must be greater than zero"));
                }
                Ok(d)
            }
            None => Ok(self.domains.effective(channel).ttl),
        }
    }
}
