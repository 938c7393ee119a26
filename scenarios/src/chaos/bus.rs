//! Hostile traffic on the bus: a plain NATS client that captures every frame on
//! `rmds.>` from the start of the run, and later republishes captured frames (replay)
//! or publishes random, truncated and bit-flipped ones (forgery). It holds no key, so
//! with `cluster_key` set only replays carry a valid signature.

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Frames kept from the beginning of the run (old keepalives are the best replays).
const EARLY: usize = 1_000;
/// Most recent frames kept.
const RECENT: usize = 2_000;

#[derive(Clone)]
struct Frame {
    subject: String,
    headers: Option<HeaderMap>,
    payload: Bytes,
}

#[derive(Default)]
struct Captured {
    early: Vec<Frame>,
    recent: VecDeque<Frame>,
    total: u64,
}

/// The capturing client.
pub struct Bus {
    client: async_nats::Client,
    /// Whether the nodes sign frames. Without a key a frame that still decodes after a
    /// bit flip is indistinguishable from a real one (anyone on the bus can speak for
    /// any node, by design), so then only undecodable forgeries are sent.
    signed: bool,
    captured: Arc<Mutex<Captured>>,
    task: tokio::task::JoinHandle<()>,
}

impl Bus {
    /// Connects to `url` (retrying while NATS is down) and starts capturing.
    pub async fn start(url: &str, prefix: &str, signed: bool) -> anyhow::Result<Bus> {
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .retry_on_initial_connect()
            .connect(url)
            .await?;
        let mut sub = client.subscribe(format!("{prefix}.>")).await?;
        let captured = Arc::new(Mutex::new(Captured::default()));
        let c = captured.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let f = Frame {
                    subject: m.subject.to_string(),
                    headers: m.headers,
                    payload: m.payload,
                };
                let mut g = c.lock().unwrap_or_else(|p| p.into_inner());
                g.total += 1;
                if g.early.len() < EARLY {
                    g.early.push(f);
                } else {
                    if g.recent.len() >= RECENT {
                        g.recent.pop_front();
                    }
                    g.recent.push_back(f);
                }
            }
        });
        Ok(Bus {
            client,
            signed,
            captured,
            task,
        })
    }

    /// Frames captured so far.
    pub fn captured(&self) -> u64 {
        self.captured.lock().map(|g| g.total).unwrap_or(0)
    }

    /// `count` captured frames at random; with `announces`, half of them (when there
    /// are any) keepalives, hellos and byes, which change what nodes believe.
    fn sample(&self, rng: &mut StdRng, count: u32, announces: bool) -> Vec<Frame> {
        let g = self.captured.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<&Frame> = g.early.iter().chain(g.recent.iter()).collect();
        let ann: Vec<&Frame> = all
            .iter()
            .copied()
            .filter(|f| {
                f.subject.ends_with(".keepalive")
                    || f.subject.ends_with(".hello")
                    || f.subject.ends_with(".bye")
            })
            .collect();
        if all.is_empty() {
            return Vec::new();
        }
        (0..count)
            .map(|_| {
                let from = if announces && !ann.is_empty() && rng.random_bool(0.5) {
                    &ann
                } else {
                    &all
                };
                from[rng.random_range(0..from.len())].clone()
            })
            .collect()
    }

    /// Republishes `count` captured frames over `over`; returns how many were sent.
    pub async fn replay(&self, rng: &mut StdRng, count: u32, over: Duration) -> u32 {
        let frames = self.sample(rng, count, true);
        self.send(frames, over).await
    }

    /// Publishes `count` forged frames over `over`; returns how many were sent.
    pub async fn forge(&self, rng: &mut StdRng, count: u32, over: Duration) -> u32 {
        let mut frames = self.sample(rng, count, false);
        for f in frames.iter_mut() {
            let mut p = f.payload.to_vec();
            let kinds = if self.signed { 4 } else { 2 };
            match rng.random_range(0..kinds) {
                0 => {
                    let len = rng.random_range(0..2048);
                    p = (0..len).map(|_| rng.random::<u8>()).collect();
                }
                1 => p.truncate(rng.random_range(0..p.len().max(1))),
                2 => {
                    for _ in 0..rng.random_range(1..8) {
                        if !p.is_empty() {
                            let i = rng.random_range(0..p.len());
                            p[i] ^= 1 << rng.random_range(0..8);
                        }
                    }
                }
                _ => f.headers = None,
            }
            f.payload = Bytes::from(p);
        }
        self.send(frames, over).await
    }

    async fn send(&self, frames: Vec<Frame>, over: Duration) -> u32 {
        let gap = over / (frames.len().max(1) as u32);
        let mut sent = 0;
        for f in frames {
            let r = match f.headers {
                Some(h) => {
                    self.client
                        .publish_with_headers(f.subject, h, f.payload)
                        .await
                }
                None => self.client.publish(f.subject, f.payload).await,
            };
            sent += r.is_ok() as u32;
            tokio::time::sleep(gap).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
        sent
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.task.abort();
    }
}
