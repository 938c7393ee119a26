//! The outbound side of a WebSocket connection: a bounded queue (frames and bytes)
//! in front of the socket, and the task that writes it. A client that stops reading
//! fills it and is disconnected as a slow consumer.

use super::{QUEUE_BYTES, QUEUE_FRAMES, SLOW_AFTER};
use crate::api::ApiError;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// The outbound side of a connection: a bounded queue in front of the socket.
#[derive(Clone)]
pub(super) struct Outbound {
    tx: mpsc::Sender<Utf8Bytes>,
    pub(super) frames: Arc<AtomicUsize>,
    pub(super) bytes: Arc<AtomicUsize>,
    /// Set when the connection must end (closed, or too slow).
    pub(super) stop: CancellationToken,
    pub(super) slow: Arc<std::sync::atomic::AtomicBool>,
    /// Signalled by the writer after each frame written.
    pub(super) drained: Arc<Notify>,
}

impl Outbound {
    pub(super) fn new(tx: mpsc::Sender<Utf8Bytes>) -> Outbound {
        Outbound {
            tx,
            frames: Arc::new(AtomicUsize::new(0)),
            bytes: Arc::new(AtomicUsize::new(0)),
            stop: CancellationToken::new(),
            slow: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            drained: Arc::new(Notify::new()),
        }
    }

    /// Waits until the queue is at most half full; false (and the connection ends as
    /// a slow consumer) when it makes no progress for [`SLOW_AFTER`].
    pub(super) async fn room(&self) -> bool {
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            if self.frames.load(Ordering::SeqCst) <= QUEUE_FRAMES / 2
                && self.bytes.load(Ordering::SeqCst) <= QUEUE_BYTES / 2
            {
                return true;
            }
            tokio::select! {
                _ = self.drained.notified() => {}
                _ = self.stop.cancelled() => return false,
                _ = tokio::time::sleep(SLOW_AFTER) => {
                    self.slow.store(true, Ordering::SeqCst);
                    self.stop.cancel();
                    return false;
                }
            }
        }
    }
    /// Queues a frame; false (and the connection is ending) when the client is too slow.
    pub(super) fn push(&self, v: &Value) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        let text = v.to_string();
        let len = text.len();
        let frames = self.frames.fetch_add(1, Ordering::SeqCst) + 1;
        let bytes = self.bytes.fetch_add(len, Ordering::SeqCst) + len;
        if frames > QUEUE_FRAMES || bytes > QUEUE_BYTES {
            self.slow.store(true, Ordering::SeqCst);
            self.stop.cancel();
            return false;
        }
        match self.tx.try_send(text.into()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.store(true, Ordering::SeqCst);
                self.stop.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stop.cancel();
                false
            }
        }
    }
}

pub(super) fn error_frame(request_id: &Value, code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "request_id": request_id, "code": code, "message": message.into()})
}

pub(super) fn api_error_frame(request_id: &Value, e: ApiError) -> Value {
    error_frame(request_id, e.code, e.message)
}

/// Writes queued frames to the socket until the connection ends; a slow client gets
/// a last `slow_consumer` error (if the socket takes it) and is closed.
pub(super) async fn writer(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    out: Outbound,
    metrics: Arc<crate::metrics::Metrics>,
) {
    loop {
        tokio::select! {
            biased;
            _ = out.stop.cancelled() => break,
            m = rx.recv() => {
                let Some(text) = m else { break };
                let len = text.len();
                let sent = tokio::select! {
                    r = sink.send(Message::Text(text)) => r.is_ok(),
                    _ = out.stop.cancelled() => false,
                };
                out.frames.fetch_sub(1, Ordering::SeqCst);
                out.bytes.fetch_sub(len, Ordering::SeqCst);
                out.drained.notify_waiters();
                if !sent {
                    break;
                }
            }
        }
    }
    if out.slow.load(Ordering::SeqCst) {
        metrics.ws_slow_consumers.inc();
        tracing::warn!("WebSocket client too slow; disconnecting it");
        let frame = error_frame(
            &Value::Null,
            "slow_consumer",
            "the client did not read fast enough; its queue is full and the connection is closed",
        );
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Text(frame.to_string().into())),
        )
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    out.stop.cancel();
}
