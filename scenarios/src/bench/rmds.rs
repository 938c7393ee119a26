//! The rmds publish and consume paths of every benchmark, in one place: a faster
//! publish form (binary, NDJSON) or consume form is added here as a [`Form`] variant
//! or a new consumer, and every phase can use it.
//!
//! - Publishing: [`Publisher::send`] (closed loop, any [`Form`]),
//!   [`publish_stamped`] (one message carrying its intended send time).
//! - Consuming: [`consume_count`] (pull + ack, counts what was acknowledged),
//!   [`pull_loop`] (pull, hand each payload over, ack in a pipelined task) and
//!   [`ws_loop`] (the agent's WebSocket push with credit, acks batched).

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The benchmark channel.
pub const CHANNEL: &str = "bench";
/// The consumer group the benchmark applications use.
pub const GROUP: &str = "default";
/// Most messages one pull asks for.
pub const PULL_MAX: usize = 1000;

/// How a load generator hands messages to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// One `POST /v1/channels/{ch}/messages` per message (raw body).
    Single,
    /// `n` messages per `POST …/messages:batch` (JSON array of strings).
    Batch(u64),
}

impl Form {
    /// Messages per request.
    pub fn per_request(self) -> u64 {
        match self {
            Form::Single => 1,
            Form::Batch(n) => n.max(1),
        }
    }

    /// `single` or `batch of N`.
    pub fn label(self) -> String {
        match self {
            Form::Single => "single".into(),
            Form::Batch(n) => format!("batch of {n}"),
        }
    }
}

/// Publishes fixed-size payloads in one [`Form`]; cheap to clone (one per task).
#[derive(Clone)]
pub struct Publisher {
    client: rmds::Client,
    form: Form,
    payload: Vec<u8>,
    item: Value,
}

impl Publisher {
    /// Payloads of `size` bytes (`x` repeated; a JSON string of `size` bytes once
    /// encoded for the batch form).
    pub fn new(client: rmds::Client, form: Form, size: usize) -> Publisher {
        Publisher {
            client,
            form,
            payload: vec![b'x'; size],
            item: Value::String("x".repeat(size.saturating_sub(2))),
        }
    }

    /// One request of up to `k` messages (`k` is 1 for [`Form::Single`]); returns how
    /// many the agent accepted durably. Back-pressure (429, or a batch accepted in
    /// part) is not an error: the caller sends the rest again.
    pub async fn send(&self, k: u64) -> anyhow::Result<u64> {
        let r = match self.form {
            Form::Single => self
                .client
                .publish_bytes(
                    CHANNEL,
                    self.payload.clone(),
                    "application/octet-stream",
                    None,
                )
                .await
                .map(|_| 1),
            Form::Batch(_) => {
                let items = vec![self.item.clone(); k as usize];
                self.client
                    .publish_batch(CHANNEL, &items)
                    .await
                    .map(|v| v["accepted"].as_u64().unwrap_or(0))
            }
        };
        match r {
            Ok(n) => Ok(n),
            Err(e) if e.kind == rmds::ErrorKind::Backpressure => Ok(0),
            Err(e) => Err(anyhow::anyhow!("publish: {e}")),
        }
    }
}

/// Publishes `n` messages of `size` bytes with `publishers` concurrent tasks, each
/// sending its next request when the previous one is answered (closed loop).
/// Returns the time until the last one was accepted.
pub async fn publish_all(
    client: rmds::Client,
    n: u64,
    publishers: u64,
    size: usize,
    form: Form,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let publishers = publishers.max(1);
    let p = Publisher::new(client, form, size);
    let mut tasks = Vec::new();
    for i in 0..publishers {
        let p = p.clone();
        let share = n / publishers + u64::from(i < n % publishers);
        tasks.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 {
                let k = left.min(p.form.per_request());
                let accepted = p.send(k).await?;
                left -= accepted.min(left);
                if accepted < k {
                    // Back-pressure: give the receiver time.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// The consuming application of the throughput phases: pulls (long poll), then acks
/// what it pulled, and counts a message once its ack is answered, until `target`.
pub async fn consume_count(
    client: rmds::Client,
    target: u64,
    count: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    while count.load(Ordering::Relaxed) < target {
        let batch = client
            .pull(CHANNEL, GROUP, PULL_MAX, Duration::from_secs(1))
            .await?;
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        client.ack(CHANNEL, GROUP, &ids).await?;
        count.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Waits until `count` reaches `target`.
pub async fn wait_count(count: &AtomicU64, target: u64) {
    while count.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Spawns a watcher that polls each agent's `/healthz` every 5 ms and returns how
/// long after `since` the last of them reported NATS `connected` (None after 60 s).
/// An agent reconnects with its own backoff (`reconnect_max_delay`), so a drain
/// measured from the server's start includes this wait.
pub fn reconnect_watch(
    clients: Vec<rmds::Client>,
    since: Instant,
) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let mut left = clients;
        while since.elapsed() < Duration::from_secs(60) {
            let mut still = Vec::new();
            for c in left {
                let up = c.health().await.is_ok_and(|h| h["nats"] == "connected");
                if !up {
                    still.push(c);
                }
            }
            if still.is_empty() {
                return Some(since.elapsed());
            }
            left = still;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    })
}

/// A payload of `size` bytes that starts with `T` and the intended send time in
/// microseconds (20 digits), or `W` for warm-up messages that are not measured.
pub fn stamped(stamp: Option<u64>, size: usize) -> Vec<u8> {
    let mut p = match stamp {
        Some(t) => format!("T{t:020} ").into_bytes(),
        None => b"W".to_vec(),
    };
    p.resize(size.max(p.len()), b'x');
    p
}

/// The stamp of a [`stamped`] payload: `Some(Some(t))`, `Some(None)` for warm-up,
/// `None` for anything else.
pub fn read_stamp(payload: &[u8]) -> Option<Option<u64>> {
    match payload.first()? {
        b'W' => Some(None),
        b'T' => std::str::from_utf8(payload.get(1..21)?)
            .ok()?
            .parse()
            .ok()
            .map(Some),
        _ => None,
    }
}

/// Publishes one stamped payload (one HTTP request, keep-alive connection).
pub async fn publish_stamped(client: &rmds::Client, payload: Vec<u8>) -> anyhow::Result<()> {
    client
        .publish_bytes(CHANNEL, payload, "text/plain", None)
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("publish: {e}"))
}

/// A consuming application that long-polls, hands every payload to `on` as soon as
/// the pull returns, and acks in a separate task (acks pipelined, so an ack's commit
/// never delays the next pull). Runs until `done`; returns the messages seen.
pub async fn pull_loop(
    client: rmds::Client,
    done: Arc<AtomicBool>,
    mut on: impl FnMut(&[u8]) + Send,
) -> anyhow::Result<u64> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
    let acker = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(mut ids) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    ids.extend(more);
                }
                for chunk in ids.chunks(PULL_MAX) {
                    client
                        .ack(CHANNEL, GROUP, chunk)
                        .await
                        .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                }
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let mut seen = 0u64;
    while !done.load(Ordering::Relaxed) {
        let batch = client
            .pull(CHANNEL, GROUP, PULL_MAX, Duration::from_secs(1))
            .await
            .map_err(|e| anyhow::anyhow!("pull: {e}"))?;
        for m in &batch {
            on(&m.payload());
        }
        seen += batch.len() as u64;
        if !batch.is_empty() {
            let _ = tx.send(batch.into_iter().map(|m| m.id).collect());
        }
    }
    drop(tx);
    acker.await??;
    Ok(seen)
}

#[derive(Deserialize)]
struct WsFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subscription: Option<String>,
    /// The message (a `message` frame) or the error text (an `error` frame).
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    code: Option<String>,
}

/// A consuming application on the agent's WebSocket (`/v1/ws`): subscribes to the
/// bench channel's default group with `credit`, hands every pushed payload to `on`
/// on arrival, and acks what it holds with at most one ack request in flight (as
/// [`pull_loop`]: the ids that arrive while one ack commits go in the next), which
/// gives the credit back. Runs until `done`; returns the messages seen.
pub async fn ws_loop(
    base: &str,
    credit: usize,
    done: Arc<AtomicBool>,
    mut on: impl FnMut(&[u8]) + Send,
) -> anyhow::Result<u64> {
    let url = format!("{}/v1/ws", base.replacen("http", "ws", 1));
    // TCP_NODELAY on the client side: small ack frames are not held back by Nagle.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|e| anyhow::anyhow!("WebSocket {url}: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let sub = json!({"op": "subscribe", "request_id": "sub", "channel": CHANNEL,
                     "group": GROUP, "credit": credit});
    sink.send(WsMessage::text(sub.to_string())).await?;
    let mut pending: Vec<String> = Vec::new();
    let mut acking = false;
    let mut subscription: Option<String> = None;
    let mut seen = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            f = stream.next() => {
                let text = match f {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(c))) => anyhow::bail!("WebSocket closed by the agent: {c:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => anyhow::bail!("WebSocket: {e}"),
                    None => anyhow::bail!("WebSocket ended"),
                };
                let frame: WsFrame = serde_json::from_str(text.as_str())
                    .map_err(|e| anyhow::anyhow!("WebSocket frame {text}: {e}"))?;
                match frame.kind.as_str() {
                    "subscribed" => subscription = frame.subscription,
                    "acked" => acking = false,
                    "message" => {
                        if let Some(m) = frame.message {
                            let m: rmds::Message = serde_json::from_value(m)
                                .map_err(|e| anyhow::anyhow!("WebSocket message frame: {e}"))?;
                            on(&m.payload());
                            seen += 1;
                            pending.push(m.id);
                        }
                        if subscription.is_none() {
                            subscription = frame.subscription;
                        }
                    }
                    "error" => anyhow::bail!("WebSocket error frame ({:?}): {text}", frame.code),
                    _ => {}
                }
                !acking && !pending.is_empty()
            }
            _ = tick.tick() => {
                if done.load(Ordering::Relaxed) && pending.is_empty() && !acking {
                    break;
                }
                !acking && !pending.is_empty()
            }
        };
        if flush {
            if let Some(s) = &subscription {
                let ids: Vec<String> = std::mem::take(&mut pending);
                let ack = json!({"op": "ack", "request_id": "ack", "subscription": s, "ids": ids});
                sink.send(WsMessage::text(ack.to_string())).await?;
                acking = true;
            }
        }
    }
    let _ = sink.send(WsMessage::Close(None)).await;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let p = stamped(Some(1_234_567), 256);
        assert_eq!(p.len(), 256);
        assert_eq!(read_stamp(&p), Some(Some(1_234_567)));
        assert_eq!(read_stamp(&stamped(None, 256)), Some(None));
        assert_eq!(read_stamp(b"xyz"), None);
        assert_eq!(stamped(Some(1), 4).len(), 22);
    }
}
