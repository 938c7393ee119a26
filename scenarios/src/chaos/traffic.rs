//! Numbered traffic and its ledger: one publisher per (writer, channel) and one
//! consumer per (reader, channel), recording every publish the agent accepted (201)
//! and every message the application received.
//!
//! A publish whose outcome is unknown (agent killed mid-request, timeout) is retried
//! with the same idempotency key until the agent answers, so it is stored at most once;
//! if the run stops before an answer, its number is `ambiguous` (neither expected nor
//! a surprise). Consumers pull through a consumer group and ack after recording; a
//! message redelivered after an ack of unknown outcome is recognised by id and acked
//! again, not recorded twice (as [`crate::harness::drain`] does). On the poison
//! channel every tenth message is nacked for ever, so it reaches the group's
//! `max_deliveries` and its dead-letter queue.

use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for one API call before its outcome counts as unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A publish the agent accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Number within (writer, channel).
    pub n: u64,
    /// Message id from the 201.
    pub id: String,
}

/// A message as the application received it (first sight only).
#[derive(Debug, Clone)]
pub struct Got {
    /// Writer.
    pub sender: String,
    /// Number.
    pub n: u64,
    /// Message id.
    pub id: String,
    /// Offset in the reader's channel log: order is judged on it, since a consumer
    /// group hands a message out again after its lease ran out, after later ones.
    pub offset: u64,
}

/// Everything published and received, shared by the traffic tasks.
#[derive(Debug, Default)]
pub struct Ledger {
    /// (writer, channel) → accepted publishes in order.
    pub accepted: BTreeMap<(String, String), Vec<Accepted>>,
    /// (writer, channel) → numbers whose publish never got an answer.
    pub ambiguous: BTreeMap<(String, String), Vec<u64>>,
    /// (writer, channel) → publishes definitively refused, by error code.
    pub refused: BTreeMap<(String, String), BTreeMap<String, u64>>,
    /// (reader, channel) → received messages in order.
    pub received: BTreeMap<(String, String), Vec<Got>>,
    /// Poison messages nacked (all deliveries).
    pub nacked: u64,
    /// Pull or ack calls that failed (agent down or frozen).
    pub consumer_errors: u64,
}

/// The shared ledger.
pub type Shared = Arc<Mutex<Ledger>>;

fn with<T>(l: &Shared, f: impl FnOnce(&mut Ledger) -> T) -> T {
    let mut g = l.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

/// Whether message `n` of the poison channel is nacked until dead-lettered.
pub fn is_poison(n: u64) -> bool {
    n.is_multiple_of(10)
}

/// Publishes numbered messages from `writer` to `channel` every `interval` until
/// `stop`; `ttl` for short-lived messages.
pub fn spawn_publisher(
    client: rmds::Client,
    writer: String,
    channel: String,
    ttl: Option<Duration>,
    interval: Duration,
    ledger: Shared,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let key = (writer.clone(), channel.clone());
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let opts = rmds::PublishOptions {
                content_type: "application/json".into(),
                ttl,
                idempotency_key: Some(format!("{writer}-{channel}-{n}")),
                ..Default::default()
            };
            let body = json!({"w": writer, "c": channel, "n": n})
                .to_string()
                .into_bytes();
            let mut unknown = false;
            loop {
                if stop.load(Ordering::Relaxed) {
                    if unknown {
                        with(&ledger, |l| {
                            l.ambiguous.entry(key.clone()).or_default().push(n)
                        });
                    }
                    return;
                }
                let r = tokio::time::timeout(
                    CALL_TIMEOUT,
                    client.publish_with(&channel, body.clone(), &opts),
                )
                .await;
                match r {
                    Ok(Ok(receipt)) => {
                        let a = Accepted { n, id: receipt.id };
                        with(&ledger, |l| {
                            l.accepted.entry(key.clone()).or_default().push(a)
                        });
                        break;
                    }
                    Err(_) => unknown = true,
                    Ok(Err(e)) => match e.kind {
                        rmds::ErrorKind::Connect
                        | rmds::ErrorKind::Decode
                        | rmds::ErrorKind::Server => unknown = true,
                        // Nothing stored; the same number is offered again later.
                        rmds::ErrorKind::Backpressure => {}
                        _ if !unknown => {
                            let code = e.code.unwrap_or_else(|| format!("{:?}", e.kind));
                            with(&ledger, |l| {
                                *l.refused
                                    .entry(key.clone())
                                    .or_default()
                                    .entry(code)
                                    .or_default() += 1
                            });
                            break;
                        }
                        _ => {}
                    },
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(interval).await;
        }
    })
}

/// Pulls `channel` through `group` on `reader`, records and acknowledges, until `stop`.
pub fn spawn_consumer(
    client: rmds::Client,
    reader: String,
    channel: String,
    group: String,
    poison: bool,
    ledger: Shared,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let key = (reader.clone(), channel.clone());
        let mut seen: HashSet<String> = HashSet::new();
        let mut unconfirmed: HashSet<String> = HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            let r = tokio::time::timeout(
                CALL_TIMEOUT,
                client.pull(&channel, &group, 200, Duration::from_secs(1)),
            )
            .await;
            let batch = match r {
                Ok(Ok(b)) => b,
                _ => {
                    with(&ledger, |l| l.consumer_errors += 1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (mut acks, mut nacks) = (Vec::new(), Vec::new());
            for m in batch {
                let n = m.data.as_ref().and_then(|d| d.get("n")?.as_u64());
                let Some(n) = n else {
                    acks.push(m.id.clone());
                    continue;
                };
                let first = seen.insert(m.id.clone());
                if poison && is_poison(n) {
                    if first {
                        record(&ledger, &key, &m, n);
                    }
                    nacks.push(m.id.clone());
                    continue;
                }
                // A repeat of a message whose ack outcome was unknown is acked again;
                // any other repeat is what the checker must see.
                if first || !unconfirmed.remove(&m.id) {
                    record(&ledger, &key, &m, n);
                }
                acks.push(m.id.clone());
            }
            if !nacks.is_empty() {
                let r = tokio::time::timeout(
                    CALL_TIMEOUT,
                    client.nack(&channel, &group, &nacks, Duration::from_millis(50)),
                )
                .await;
                with(&ledger, |l| l.nacked += nacks.len() as u64);
                if !matches!(r, Ok(Ok(_))) {
                    with(&ledger, |l| l.consumer_errors += 1);
                }
            }
            if !acks.is_empty() {
                let r =
                    tokio::time::timeout(CALL_TIMEOUT, client.ack(&channel, &group, &acks)).await;
                match r {
                    Ok(Ok(settled)) => unconfirmed.extend(settled.not_found),
                    _ => {
                        with(&ledger, |l| l.consumer_errors += 1);
                        unconfirmed.extend(acks);
                    }
                }
            }
        }
    })
}

fn record(ledger: &Shared, key: &(String, String), m: &rmds::Message, n: u64) {
    let g = Got {
        sender: m.sender.clone(),
        n,
        id: m.id.clone(),
        offset: m.offset,
    };
    with(ledger, |l| {
        l.received.entry(key.clone()).or_default().push(g)
    });
}

/// A copy of the ledger as it stands.
pub fn snapshot(ledger: &Shared) -> Ledger {
    with(ledger, |l| Ledger {
        accepted: l.accepted.clone(),
        ambiguous: l.ambiguous.clone(),
        refused: l.refused.clone(),
        received: l.received.clone(),
        nacked: l.nacked,
        consumer_errors: l.consumer_errors,
    })
}
