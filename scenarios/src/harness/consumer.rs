//! An application that consumes through a consumer group and records what it got.

use rmds::Client;
use std::time::{Duration, Instant};

/// What one application received, in order.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Every message, in the order the application saw it.
    pub messages: Vec<rmds::Message>,
}

impl Received {
    /// The `n` field of each JSON payload (`{"n": 17, ...}`), in order.
    pub fn numbers(&self) -> Vec<u64> {
        self.messages
            .iter()
            .filter_map(|m| m.data.as_ref()?.get("n")?.as_u64())
            .collect()
    }

    /// Text payloads in order.
    pub fn texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload()).into_owned())
            .collect()
    }

    /// Numbers from messages sent by `sender`.
    pub fn numbers_from(&self, sender: &str) -> Vec<u64> {
        self.messages
            .iter()
            .filter(|m| m.sender == sender)
            .filter_map(|m| m.data.as_ref()?.get("n")?.as_u64())
            .collect()
    }
}

/// Pulls and acknowledges until `expected` messages arrived or `timeout` passed, then
/// keeps listening for `settle` more to catch anything extra (duplicates).
///
/// Like a careful application, it processes each message where it first sees it. When
/// the outcome of an ack is unknown (the call failed, or the agent restarted and no
/// longer knew the lease), the message may legitimately come back: such a redelivery
/// is recognised by id and acknowledged again, not processed twice. Any other repeat
/// is recorded, so the checker reports it as a duplicate.
pub async fn drain(
    client: &Client,
    channel: &str,
    group: &str,
    expected: usize,
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Received> {
    let mut got = Received::default();
    let mut unconfirmed: std::collections::HashSet<String> = Default::default();
    let deadline = Instant::now() + timeout;
    let mut extra_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = extra_until.unwrap_or(deadline);
        if now >= until {
            break;
        }
        let wait = (until - now).min(Duration::from_secs(2));
        let batch = match client.pull(channel, group, 500, wait).await {
            Ok(b) => b,
            // The agent may be restarting in a crash test; keep trying until the deadline.
            Err(e) if matches!(e.kind, rmds::ErrorKind::Connect | rmds::ErrorKind::Decode) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        for m in batch {
            if !unconfirmed.remove(&m.id) {
                got.messages.push(m);
            }
        }
        match client.ack(channel, group, &ids).await {
            Ok(settled) => unconfirmed.extend(settled.not_found),
            Err(e) if matches!(e.kind, rmds::ErrorKind::Connect | rmds::ErrorKind::Decode) => {
                unconfirmed.extend(ids);
            }
            Err(e) => return Err(e.into()),
        }
        if got.messages.len() >= expected && extra_until.is_none() {
            extra_until = Some(Instant::now() + settle);
        }
    }
    Ok(got)
}

/// Pulls from `group` until one pull returns at least `at_least` messages (leased, not
/// acknowledged), or fails after `timeout`.
pub async fn pull_some(
    client: &Client,
    channel: &str,
    group: &str,
    at_least: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<rmds::Message>> {
    super::eventually(
        timeout,
        &format!("{at_least} message(s) in {group} of {channel}"),
        || {
            let c = client.clone();
            async move {
                let m = c
                    .pull(channel, group, 100, Duration::from_secs(1))
                    .await
                    .ok()?;
                (m.len() >= at_least).then_some(m)
            }
        },
    )
    .await
}

/// Waits until `group` of `channel` has exactly `pending` unacknowledged log entries
/// (so that everything is in the local log before the first pull).
pub async fn wait_pending(
    client: &Client,
    channel: &str,
    group: &str,
    pending: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    super::eventually(
        timeout,
        &format!("{pending} entries pending in {group} of {channel}"),
        || {
            let c = client.clone();
            async move {
                let g = c.group(channel, group).await.ok()?;
                (g["pending"].as_u64()? == pending).then_some(())
            }
        },
    )
    .await
}
