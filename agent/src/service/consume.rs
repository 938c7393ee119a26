//! Consuming: pull through a consumer group (long polling, leases) and settle.

use super::{Service, ServiceError};
use crate::groups::{AckResult, Leased, Settle};
use crate::names::{Channel, GroupName};
use std::time::Duration;

/// Checks that this node reads `channel`.
pub fn check_reader(s: &Service, channel: &Channel) -> Result<(), ServiceError> {
    match s.discovery.own_role(channel) {
        Some(r) if r.reads() => Ok(()),
        _ => Err(ServiceError::forbidden(format!(
            "this node is not a reader of {channel}; PUT /v1/channels/{channel} with {{\"role\":\"reader\"}} first"
        ))),
    }
}

/// One pull: from which group, by whom, how many and how long to wait for the first.
#[derive(Debug, Clone)]
pub struct Pull<'a> {
    /// The consumer group.
    pub group: &'a GroupName,
    /// The consumer's name, shown in the group's inspection (1-64 printable characters).
    pub consumer: Option<&'a str>,
    /// Most messages (1 to the group's `max_batch`).
    pub max: usize,
    /// Long-poll wait when nothing is due (at most the group's `max_wait`).
    pub wait: Duration,
}

impl Service {
    /// Leases up to `p.max` messages of `channel` to the group, waiting up to `p.wait`.
    pub async fn pull(&self, channel: &Channel, p: Pull<'_>) -> Result<Vec<Leased>, ServiceError> {
        check_reader(self, channel)?;
        if p.max == 0 || p.max > self.groups.max_batch() {
            return Err(ServiceError::bad_request(format!(
                "max must be between 1 and {}",
                self.groups.max_batch()
            )));
        }
        if p.wait > self.groups.max_wait() {
            return Err(ServiceError::bad_request(format!(
                "wait must be at most {}",
                humantime::format_duration(self.groups.max_wait())
            )));
        }
        if let Some(c) = p.consumer {
            if c.is_empty() || c.len() > 64 || c.chars().any(|c| c.is_control()) {
                return Err(ServiceError::bad_request(
                    "consumer must be 1-64 printable characters",
                ));
            }
        }
        Ok(self
            .groups
            .pull(channel, p.group, p.consumer, p.max, p.wait)
            .await?)
    }

    /// Acks, nacks, terms or extends `ids` of the group (1 to 10,000 ids).
    pub async fn settle(
        &self,
        channel: &Channel,
        group: &GroupName,
        ids: &[String],
        how: Settle,
    ) -> Result<AckResult, ServiceError> {
        check_reader(self, channel)?;
        if ids.is_empty() {
            return Err(ServiceError::bad_request("ids must not be empty"));
        }
        if ids.len() > 10_000 {
            return Err(ServiceError::bad_request("at most 10000 ids per request"));
        }
        Ok(self.groups.settle(channel, group, ids, how).await?)
    }
}
