//! The chaos checker: turns the ledger and the agents' own records (message status and
//! dead letters at the sender, the group dead-letter queue at the reader) into a
//! verdict per stream. Order, duplicates and losses come from [`crate::checker`];
//! this module decides which missing messages a policy explains.

use super::report::ChaosStream;
use super::traffic::Ledger;
use crate::checker::check_stream;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// What a channel's policy is there to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `overflow = reject` with a small backlog: publishes get 429, nothing is dropped.
    Reject,
    /// `overflow = drop_oldest` with a tiny backlog: drops are expected.
    DropOldest,
    /// Messages with a short TTL: expiries are expected.
    ShortTtl,
    /// A consumer group with `max_deliveries` and poison messages.
    Poison,
    /// Default policy; the readers join only after the bus client captured their
    /// first announcements, so a replay of those says they are not members.
    Late,
}

/// A channel of the run.
#[derive(Debug, Clone, Copy)]
pub struct ChannelDef {
    /// Name.
    pub name: &'static str,
    /// Its policy's purpose.
    pub kind: Kind,
    /// The policy in words, for the report.
    pub about: &'static str,
}

/// A span of wall-clock time (epoch ms) in which `node`'s store was full.
#[derive(Debug, Clone)]
pub struct StoreFull {
    /// The receiver.
    pub node: String,
    /// Start (epoch ms).
    pub from_ms: i64,
    /// End, plus a grace period (epoch ms).
    pub to_ms: i64,
}

const CALL: Duration = Duration::from_secs(10);

async fn json(c: &rmds::Client, path: &str) -> Option<serde_json::Value> {
    tokio::time::timeout(CALL, c.get_json(path))
        .await
        .ok()?
        .ok()
}

/// Per (message id, receiver): the dead letter's reason and time, at each writer.
async fn dead_letters(c: &rmds::Client) -> HashMap<(String, String), (String, i64)> {
    let mut out = HashMap::new();
    if let Some(v) = json(c, "/v1/dead-letters?limit=10000").await {
        for d in v["dead_letters"].as_array().into_iter().flatten() {
            let id = d["id"].as_str().unwrap_or_default().to_string();
            let r = d["receiver"].as_str().unwrap_or_default().to_string();
            let reason = d["reason"].as_str().unwrap_or("?").to_string();
            out.insert((id, r), (reason, d["dead_at"].as_i64().unwrap_or(0)));
        }
    }
    out
}

async fn group_dead(c: &rmds::Client, channel: &str, group: &str) -> HashSet<String> {
    let r = tokio::time::timeout(CALL, c.group_dead_letters(channel, group)).await;
    let rows = match r {
        Ok(Ok(rows)) => rows,
        _ => return HashSet::new(),
    };
    rows.iter()
        .filter_map(|d| {
            d["message_id"]
                .as_str()
                .or_else(|| d["id"].as_str())
                .map(String::from)
        })
        .collect()
}

/// The receiver's delivery state of message `id` at the writer: (state, reason, time).
async fn state(c: &rmds::Client, id: &str, reader: &str) -> (String, String, i64) {
    let Ok(Ok(st)) = tokio::time::timeout(CALL, c.status(id)).await else {
        return ("status unavailable".into(), String::new(), 0);
    };
    let entry = st["receivers"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["receiver"] == reader).cloned());
    match entry {
        Some(e) => (
            e["state"].as_str().unwrap_or("?").to_string(),
            e["reason"].as_str().unwrap_or_default().to_string(),
            e["done_at"].as_i64().unwrap_or(0),
        ),
        None if st["unrouted"] == true => ("unrouted".into(), String::new(), 0),
        None => ("no delivery for this reader".into(), String::new(), 0),
    }
}

/// Judges every (writer, reader, channel) stream with writer ≠ reader.
pub async fn streams(
    clients: &BTreeMap<String, rmds::Client>,
    ledger: &Ledger,
    writers: &[&str],
    readers: &[&str],
    channels: &[ChannelDef],
    group_of: impl Fn(&ChannelDef) -> &'static str,
    store_full: &[StoreFull],
) -> Vec<ChaosStream> {
    let mut out = Vec::new();
    let none = Vec::new();
    for &w in writers {
        let Some(wc) = clients.get(w) else { continue };
        let dead = dead_letters(wc).await;
        for ch in channels {
            let key = (w.to_string(), ch.name.to_string());
            let accepted = ledger.accepted.get(&key).unwrap_or(&none);
            let ambiguous: BTreeSet<u64> = ledger
                .ambiguous
                .get(&key)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            for &r in readers.iter().filter(|&&r| r != w) {
                let Some(rc) = clients.get(r) else { continue };
                let gdead = if ch.kind == Kind::Poison {
                    group_dead(rc, ch.name, group_of(ch)).await
                } else {
                    HashSet::new()
                };
                let got: Vec<_> = ledger
                    .received
                    .get(&(r.to_string(), ch.name.to_string()))
                    .map(|v| v.iter().filter(|g| g.sender == w).cloned().collect())
                    .unwrap_or_default();
                // In log order: the stream's order is the order of the reader's channel
                // log. The application may see a message again later than newer ones
                // when its lease ran out (a lost pull answer); that is a redelivery,
                // not a reorder, and duplicates still count twice.
                let mut in_log = got.clone();
                in_log.sort_by_key(|g| g.offset);
                let received: Vec<u64> = in_log.iter().map(|g| g.n).collect();
                let have: BTreeSet<u64> = received.iter().copied().collect();
                let mut s = ChaosStream {
                    writer: w.into(),
                    reader: r.into(),
                    channel: ch.name.into(),
                    policy: ch.about.into(),
                    accepted: accepted.len(),
                    received: received.len(),
                    ambiguous: ambiguous.len(),
                    ..Default::default()
                };
                let mut expect: Vec<u64> = Vec::new();
                for a in accepted {
                    if have.contains(&a.n) {
                        expect.push(a.n);
                        continue;
                    }
                    if gdead.contains(&a.id) {
                        s.group_dead += 1;
                        continue;
                    }
                    let (st, reason, at) = state(wc, &a.id, r).await;
                    match (st.as_str(), ch.kind) {
                        // The reader's copy expires too (2 s from its receipt) if the
                        // application did not pull it in time.
                        ("expired" | "delivered", Kind::ShortTtl) => s.expired += 1,
                        ("dropped", Kind::DropOldest) => s.dropped += 1,
                        ("expired" | "dropped", _) => s.unexplained.push((
                            a.n,
                            format!("{st} on a channel whose policy is {}", ch.about),
                        )),
                        ("dead", _) => {
                            let (reason, at) = dead
                                .get(&(a.id.clone(), r.to_string()))
                                .cloned()
                                .unwrap_or((reason, at));
                            let full = store_full
                                .iter()
                                .any(|f| f.node == r && at >= f.from_ms && at <= f.to_ms);
                            if full {
                                s.unexplained.push((
                                    a.n,
                                    format!("dead-lettered ({reason}) while {r}'s store was full"),
                                ));
                            } else {
                                *s.dead_lettered.entry(reason).or_default() += 1;
                            }
                        }
                        _ => {
                            *s.lost_states.entry(st).or_default() += 1;
                            expect.push(a.n);
                        }
                    }
                }
                // Ambiguous publishes that arrived are legitimate, in their place.
                expect.extend(ambiguous.iter().filter(|n| have.contains(n)));
                expect.sort_unstable();
                expect.dedup();
                let c = check_stream(w, r, ch.name, &expect, &received);
                s.lost = c.lost;
                s.duplicated = c.duplicated;
                s.reordered = c.out_of_order;
                s.unexpected = c.unexpected;
                s.dead_but_received = got
                    .iter()
                    .filter(|g| dead.contains_key(&(g.id.clone(), r.to_string())))
                    .map(|g| g.n)
                    .collect();
                out.push(s);
            }
        }
    }
    out
}
